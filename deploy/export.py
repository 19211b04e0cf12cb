"""Export a ReMAEN checkpoint as a SavedModel, an ONNX model or a LiteRT model, checked.

    python main.py --export onnx --model light --export_dir exports/light_onnx

One inference graph per model, any image size: input ``rain_bgr`` [1, H, W, 3] float32, BGR
(OpenCV's order, as everywhere in this project) in [0, 1]; outputs ``derained_bgr`` (the
derained image) and ``stage<s>_bgr`` (the earlier stages), each [1, H, W, 3] clipped to
[0, 1]. The graph is the factory's (``model.build_inference_graph``) with two execution
options every runtime computes alike (``EXPORT_OPTIONS``): dilated convolutions on explicitly
padded inputs (ONNX Runtime refuses a dilated SAME convolution of open size) and the SE
blocks' means as means of row means (one float32 mean of H x W terms differs between runtimes
by ~1e-4 in the output; docs/deploy.md). Same variables, same checkpoint.

``export`` writes the format into a temporary folder next to the target, checks the exported
model in its own runtime against the graph on real images (``CHECK_TOLERANCE``), writes the
model card (``model_card.json``: the checkpoint's card, if any, with an ``export`` section),
and only then renames the folder into place: a failure leaves nothing behind. TensorFlow,
tf2onnx and onnx are imported inside the functions that need them (``quiet.import_tf``), so
that the command line can check its flags before TensorFlow starts.
"""
import datetime
import json
import logging
import os
import shutil
import tempfile

import numpy as np

import checkpointing
import dataloader
import inference
from console import quiet
import utils
from deploy import runtimes
from console.errors import UsageError, UserError, reason

FORMATS = runtimes.FORMATS
CARD_FILE = checkpointing.CARD_FILE
# The largest |exported - export graph| an export may have (any output, any check image).
# Another runtime's float32 arithmetic (its conv summation order, its sigmoid and tanh) moves
# the SE means by a few units in the 7th digit, and the network amplifies that ~100x: on the
# demo pairs 7.5e-6 (ONNX Runtime) and 1.1e-5 (LiteRT) for the light model, against 1.6e-4
# between the default graph and the exact (float64) network. A conversion fault, such as a
# swapped channel order, changes the output by far more. docs/deploy.md.
CHECK_TOLERANCE = 5e-5
ONNX_OPSET = 17
# The graph factory's options of the export graph (see the module docstring); 'padded' is
# ``maeb.PADDED`` (maeb imports TensorFlow).
EXPORT_OPTIONS = {'direct_dilation': 'padded', 'row_means': True}
# The images of the command's check: the shipped demo pairs (the card's ``demo_set``).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ROOT = os.path.join(PROJECT_ROOT, 'data', 'test')
DEFAULT_DEMO_SET = 'Demo'


class ExportError(UserError):
    """A conversion failed, or the exported model does not equal the graph (one line)."""


# ----------------------------------------------------------------------------- the target
def check_target(folder, flag='--export_dir'):
    """UsageError now for an export folder that cannot be used; creates nothing.

    The folder must be new or empty (an export never mixes with other files), and its
    nearest existing ancestor a writable folder.
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError('%s %s is a file; pick an empty or new folder' % (flag, folder))
    if os.path.isdir(folder):
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise UsageError('cannot read %s %s (%s); pick an empty or new folder'
                             % (flag, folder, exc.strerror or exc))
        if names:
            raise UsageError('%s %s is not empty (%d entries, e.g. %s); pick an empty or new '
                             'folder, or remove it' % (flag, folder, len(names),
                                                       sorted(names)[0]))
    inference.check_output_dir(folder, flag)


# ----------------------------------------------------------------------------- the graph
def build_export_graph(config):
    """The export graph in the default graph: the factory's inference graph, named outputs.

    Args:
      config: ModelConfig.

    Returns:
      (images, outputs): the [1, H, W, 3] float32 placeholder (BGR in [0, 1]) and an ordered
      ``{name: tensor}`` of ``runtimes.output_names(config.stages)``, each [1, H, W, 3]
      float32 clipped to [0, 1] (``tf.identity`` ops of those names).
    """
    import model
    tf = quiet.import_tf()
    net = model.build_inference_graph(config, **EXPORT_OPTIONS)
    names = runtimes.output_names(config.stages)
    outputs = {name: tf.identity(tensor, name=name)
               for name, tensor in zip(names, net.stage_outputs)}
    return net.images, outputs


def _frozen(session, images, outputs):
    """The export graph as a GraphDef with the weights as constants and the input renamed
    ``runtimes.INPUT_NAME`` (what the ONNX and LiteRT files call it)."""
    tf = quiet.import_tf()
    graph_def = tf.graph_util.convert_variables_to_constants(
        session, session.graph.as_graph_def(), [t.op.name for t in outputs.values()])
    old, new = images.op.name, runtimes.INPUT_NAME
    for node in graph_def.node:
        if node.name == old:
            node.name = new
        for k, name in enumerate(node.input):
            bare = name.lstrip('^').split(':')[0]
            if bare == old:
                node.input[k] = name.replace(old, new, 1)
    return graph_def


# ----------------------------------------------------------------------------- the formats
def write_savedmodel(session, images, outputs, folder):
    """A TF1 SavedModel (tag ``serve``) with the weights as variables and the signature
    ``serving_default``: input ``rain_bgr``, the outputs by name (``saved_model_cli``, TF
    Serving, ``tf.saved_model.load(folder).signatures['serving_default']``)."""
    tf = quiet.import_tf()
    temporary = os.path.join(folder, 'savedmodel')   # the builder wants a new folder
    builder = tf.saved_model.Builder(temporary)
    signature = tf.saved_model.signature_def_utils.predict_signature_def(
        {runtimes.INPUT_NAME: images}, outputs)
    builder.add_meta_graph_and_variables(
        session, [tf.saved_model.tag_constants.SERVING], clear_devices=True,
        signature_def_map={runtimes.SIGNATURE: signature}, strip_default_attrs=True)
    builder.save()
    for name in os.listdir(temporary):
        os.rename(os.path.join(temporary, name), os.path.join(folder, name))
    os.rmdir(temporary)


def write_onnx(session, images, outputs, folder):
    """``remaen.onnx`` (opset ``ONNX_OPSET``) converted by tf2onnx from the frozen graph;
    input and outputs named without TensorFlow's ``:0``, the open sides named H and W."""
    import tf2onnx
    if not quiet.is_verbose():
        logging.getLogger('tf2onnx').setLevel(logging.ERROR)
    graph_def = _frozen(session, images, outputs)
    with quiet.stderr_silenced(not quiet.is_verbose()):
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def, input_names=[runtimes.INPUT_NAME + ':0'],
            output_names=[name + ':0' for name in outputs], opset=ONNX_OPSET)
    _plain_onnx_names(proto)
    with open(os.path.join(folder, runtimes.MODEL_FILES['onnx']), 'wb') as handle:
        handle.write(proto.SerializeToString())


def _plain_onnx_names(proto):
    """Rename the graph's inputs and outputs ``name:0`` -> ``name`` (everywhere they are
    used) and give their height and width the symbolic names H and W."""
    graph = proto.graph
    ends = list(graph.input) + list(graph.output)
    renamed = {info.name: info.name.split(':')[0] for info in ends}
    for info in ends:
        info.name = renamed[info.name]
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[1].dim_param, dims[2].dim_param = 'H', 'W'
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for info in graph.value_info:
        info.name = renamed.get(info.name, info.name)


def write_litert(session, images, outputs, folder):
    """``remaen.tflite``, float32, converted by TensorFlow's LiteRT converter from the frozen
    graph; its input keeps the open height and width (resize it to each image)."""
    tf = quiet.import_tf()
    graph_def = _frozen(session, images, outputs)
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name='')
        inputs = [graph.get_tensor_by_name(runtimes.INPUT_NAME + ':0')]
        fetched = [graph.get_tensor_by_name(name + ':0') for name in outputs]
        with tf.Session(graph=graph) as frozen, \
                quiet.stderr_silenced(not quiet.is_verbose()):
            flatbuffer = tf.lite.TFLiteConverter.from_session(frozen, inputs,
                                                             fetched).convert()
    with open(os.path.join(folder, runtimes.MODEL_FILES['litert']), 'wb') as handle:
        handle.write(flatbuffer)


WRITERS = {'savedmodel': write_savedmodel, 'onnx': write_onnx, 'litert': write_litert}


# ----------------------------------------------------------------------------- the check
def demo_images(card=None):
    """The rainy images of the demo set of ``card`` (its ``demo_set``; default ``Demo``).

    Returns:
      list of (name, [H, W, 3] float32 BGR image in [0, 1]).
    """
    name = (card or {}).get('demo_set') or DEFAULT_DEMO_SET
    pairs, _ = dataloader.find_pairs(os.path.join(DEMO_ROOT, name), allow_missing_gt=True,
                                     verbose=False)
    return [(pair.name, dataloader.read_image(pair.rain_path)) for pair in pairs]


def check_export(runtime, session, images, outputs, derainer, check_images):
    """Compare an exported model in its runtime with the graph on ``check_images``.

    Args:
      runtime: a ``runtimes`` runtime of the export.
      session, images, outputs: the export graph (``build_export_graph``), restored.
      derainer: the project's ``inference.Derainer`` (the default graph) on the same weights.
      check_images: list of (name, [H, W, 3] float32 image).

    Returns:
      (export_diff, default_diff): the largest |runtime - export graph| over every output and
      image, and the largest |runtime - default graph| (per-stage outputs included).
    """
    export_diff = default_diff = 0.0
    for _, image in check_images:
        got = runtime(image)
        want = session.run(outputs, {images: image[np.newaxis]})
        default = dict(zip(outputs, derainer.run_stages(image)))
        for name in outputs:
            export_diff = max(export_diff, float(np.abs(got[name] - want[name][0]).max()))
            default_diff = max(default_diff, float(np.abs(got[name] - default[name]).max()))
    return export_diff, default_diff


# ----------------------------------------------------------------------------- the export
def export(prefix, config, fmt, folder, check_images, card=None, session_config=None):
    """Export the weights of ``prefix`` in format ``fmt`` into the new or empty ``folder``.

    Args:
      prefix: checkpoint prefix; CheckpointError when it is not a ReMAEN checkpoint of
        ``config`` (before anything is written).
      config: ModelConfig of the checkpoint.
      fmt: one of ``FORMATS``.
      folder: the export folder (``check_target``).
      check_images: list of (name, [H, W, 3] float32 BGR image in [0, 1]), at least one.
      card: the checkpoint's model card (dict) or None.
      session_config: tf.ConfigProto (None = ``utils.session_config()``).

    Returns:
      dict: the card's ``export`` section (format, files, input and outputs, graph options,
      ``check``: images, ``max_abs_diff`` against the export graph, ``default_graph_diff``).

    Raises:
      ExportError: the converter failed, or the check exceeds ``CHECK_TOLERANCE``.
    """
    import model
    if fmt not in FORMATS:
        raise UsageError('--export must be one of %s, got %r' % (', '.join(FORMATS), fmt))
    check_target(folder)
    tf = quiet.import_tf()
    session_config = session_config or utils.session_config()
    graph = tf.Graph()
    with graph.as_default():
        images, outputs = build_export_graph(config)
        session = tf.Session(config=session_config)
        checkpointing.restore(session, prefix, model.model_variables())
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix='.%s.partial-' % os.path.basename(folder), dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o777 & ~umask)   # mkdtemp's 0700 would stay the export's
    derainer = runtime = None
    try:
        with graph.as_default():
            _convert(fmt, session, images, outputs, partial)
        runtime = runtimes.load(fmt, partial)
        derainer = inference.Derainer(prefix, config, session_config, tile=0)
        diff, default_diff = check_export(runtime, session, images, outputs, derainer,
                                          check_images)
        if not diff <= CHECK_TOLERANCE:
            raise ExportError('the %s export differs from the graph by %.1e (more than %.0e) '
                              'on %d images; nothing was written to %s'
                              % (fmt, diff, CHECK_TOLERANCE, len(check_images), folder))
        section = _card_section(fmt, prefix, config, check_images, diff, default_diff)
        _write_card(partial, card, section)
        _move_into_place(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        for opened in (runtime, derainer, session):
            if opened is not None:
                opened.close()
    return section


def _convert(fmt, session, images, outputs, folder):
    """Run the writer of ``fmt``; a converter's own failure becomes one ExportError line."""
    try:
        WRITERS[fmt](session, images, outputs, folder)
    except (OSError, MemoryError, KeyboardInterrupt, UserError):
        raise
    except Exception as exc:  # noqa: BLE001 - tf2onnx and the LiteRT converter raise anything
        raise ExportError('the %s conversion failed (%s); --verbose shows the converter\'s '
                          'messages' % (fmt, reason(exc)))


def _card_section(fmt, prefix, config, check_images, diff, default_diff):
    """The ``export`` section of the model card (see ``export``)."""
    stages = runtimes.output_names(config.stages)
    section = {
        'format': fmt,
        'file': runtimes.MODEL_FILES[fmt],
        'checkpoint': _project_path(prefix),
        'model': config.to_dict(),
        'input': {'name': runtimes.INPUT_NAME, 'shape': [1, 'H', 'W', 3], 'dtype': 'float32',
                  'channels': 'BGR', 'range': [0.0, 1.0]},
        'outputs': {name: ('the derained image' if name == runtimes.OUTPUT_NAME else
                           'stage %d of %d' % (k + 1, config.stages))
                    + ', [1, H, W, 3] float32 BGR clipped to [0, 1]'
                    for k, name in enumerate(stages)},
        'graph_options': {'direct_dilation': EXPORT_OPTIONS['direct_dilation'],
                          'row_means': EXPORT_OPTIONS['row_means']},
        'check': {'images': [name for name, _ in check_images],
                  'sizes': sorted({'%dx%d' % image.shape[:2] for _, image in check_images}),
                  'max_abs_diff': diff, 'tolerance': CHECK_TOLERANCE,
                  'default_graph_diff': default_diff},
        'tensorflow': quiet.import_tf().version.VERSION,
        'date': datetime.date.today().isoformat(),
    }
    if fmt == 'onnx':
        import onnxruntime
        import tf2onnx
        section.update(opset=ONNX_OPSET, tf2onnx=tf2onnx.__version__,
                       onnxruntime=onnxruntime.__version__)
    return section


def _project_path(path):
    """``path`` relative to the project when inside it (shipped models), else absolute."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, PROJECT_ROOT]) == PROJECT_ROOT
    return os.path.relpath(path, PROJECT_ROOT) if inside else path


def _write_card(folder, card, section):
    """``<folder>/model_card.json``: ``card`` (or one naming the checkpoint) with the
    ``export`` section."""
    values = dict(card or {'name': os.path.basename(os.path.dirname(section['checkpoint']))})
    values['export'] = section
    with open(os.path.join(folder, CARD_FILE), 'w', encoding='utf-8') as handle:
        json.dump(values, handle, indent=2)
        handle.write('\n')


def _move_into_place(partial, folder):
    """Rename the finished ``partial`` folder to ``folder`` (new, or empty and replaced)."""
    if os.path.isdir(folder):
        os.rmdir(folder)      # empty (check_target); rename() then creates it
    os.rename(partial, folder)


def files_of(folder):
    """{relative path: bytes} of the files under ``folder`` (what an export wrote)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = os.path.getsize(path)
    return found
