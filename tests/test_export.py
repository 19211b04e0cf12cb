"""Exports (deploy/): SavedModel, ONNX and LiteRT equal the graph; deraining without TensorFlow.

The export graph's options (padded dilated convolutions, SE means as means of row means) keep
the manifest's variables and compute the default graph's numbers. Each format is exported
from a small checkpoint, loaded in its own runtime and compared with the project's graph
(``inference.Derainer``, computed independently) on images of sizes it was not checked on.
``deploy/derain_onnx.py`` derains a photo in a process where TensorFlow cannot be imported.
Bad requests end in one ``error:`` line and leave nothing behind. The shipped models' exports
are ``slow``.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, fast_session_config, randomize_biases, read_manifest, variable_shapes
import checkpointing
import inference
import maeb
import main
import model
from console import quiet
import settings
import utils
from deploy import export, runtimes

tf = quiet.import_tf()
TOLERANCE = 1e-5
# A small network with both paths of the dilated convolutions (rate 1 and rate 2).
TINY = model.ModelConfig(stages=2, channels=8, dilations=(1, 2))
TINY_FLAGS = ['--stages', '2', '--channel_dim', '8', '--dilations', '1', '2']
DERAIN_ONNX = os.path.join(ROOT, 'deploy', 'derain_onnx.py')


def random_image(height, width, seed):
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A weights-only checkpoint of ``TINY`` (random weights and biases): its prefix."""
    folder = str(tmp_path_factory.mktemp('tiny'))
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        model.build_inference_graph(TINY)
        variables = model.model_variables()
        with tf.Session(config=fast_session_config()) as session:
            session.run(tf.variables_initializer(variables))
            randomize_biases(session, 0)
            prefix = checkpointing.save_weights(session, variables, folder)
    checkpointing.save_settings(folder, {'model': TINY.to_dict()})
    return prefix


@pytest.fixture(scope='module')
def graph_outputs(tiny):
    """``outputs(image)``: the project's graph (the default options) on the tiny weights,
    every stage, by export output name."""
    derainer = inference.Derainer(tiny, TINY, utils.session_config(), tile=0)
    names = runtimes.output_names(TINY.stages)
    yield lambda image: dict(zip(names, derainer.run_stages(image)))
    derainer.close()


@pytest.fixture(scope='module')
def exports(tiny, tmp_path_factory):
    """``folder(fmt)``: the tiny checkpoint exported once per format (checked on two small
    images), with the export's card section in ``sections``."""
    root = tmp_path_factory.mktemp('exports')
    sections, folders = {}, {}
    check = [('a', random_image(33, 47, 1)), ('b', random_image(20, 26, 2))]

    def folder(fmt):
        if fmt not in folders:
            folders[fmt] = str(root / fmt)
            sections[fmt] = export.export(tiny, TINY, fmt, folders[fmt], check)
        return folders[fmt]
    folder.sections = sections
    return folder


def max_diff(got, want):
    assert sorted(got) == sorted(want)
    return max(float(np.abs(got[name] - want[name]).max()) for name in want)


# ----------------------------------------------------------------------------- the graph option
def test_export_options_keep_the_variables_and_the_numbers():
    """The paper's model: padded dilations and row means add no variable, replace every
    dilated SAME convolution, and give the default graph's outputs (same weights)."""
    image = random_image(29, 43, 0)[np.newaxis]
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        default = model.build_inference_graph()
        shapes = variable_shapes()
        with tf.name_scope('export'):
            padded = model.build_inference_graph(**export.EXPORT_OPTIONS)
        assert variable_shapes() == shapes == read_manifest()
        with tf.Session(config=fast_session_config()) as session:
            session.run(tf.global_variables_initializer())
            randomize_biases(session, 1)
            values = [session.run(net.stage_outputs, {net.images: image})
                      for net in (default, padded)]
    dilated = [op for op in graph.get_operations() if op.name.startswith('export/')
               and op.type == 'Conv2D' and max(op.get_attr('dilations')) > 1]
    assert dilated and all(op.get_attr('padding') == b'VALID' for op in dilated)
    assert export.EXPORT_OPTIONS['direct_dilation'] == maeb.PADDED
    for stage in range(3):
        assert np.abs(values[1][stage] - values[0][stage]).max() < TOLERANCE
    assert np.abs(values[0][-1] - image).max() > 1e-3   # the network does change the image


def test_export_formats_are_the_flag_choices():
    choices = [a for a in settings.build_parser()._actions if a.dest == 'export'][0].choices
    assert tuple(choices) == export.FORMATS == runtimes.FORMATS


# ----------------------------------------------------------------------------- each format
@pytest.mark.parametrize('fmt', export.FORMATS)
def test_export_equals_the_graph_at_any_size(exports, graph_outputs, fmt):
    folder = exports(fmt)
    section = exports.sections[fmt]
    assert section['check']['max_abs_diff'] <= TOLERANCE
    assert section['check']['images'] == ['a', 'b']
    runtime = runtimes.load(fmt, folder)
    try:
        for height, width, seed in ((41, 30, 3), (17, 64, 4)):     # sizes never exported
            image = random_image(height, width, seed)
            got = runtime(image)
            assert got[runtimes.OUTPUT_NAME].shape == (height, width, 3)
            assert max_diff(got, graph_outputs(image)) <= TOLERANCE
    finally:
        runtime.close()
    with open(os.path.join(folder, export.CARD_FILE)) as handle:
        card = json.load(handle)
    assert card['export']['input'] == {'name': 'rain_bgr', 'shape': [1, 'H', 'W', 3],
                                       'dtype': 'float32', 'channels': 'BGR',
                                       'range': [0.0, 1.0]}
    assert sorted(card['export']['outputs']) == ['derained_bgr', 'stage1_bgr']
    assert card['export']['model'] == TINY.to_dict()
    assert not [name for name in os.listdir(os.path.dirname(folder)) if '.partial' in name]


def test_onnx_input_has_named_open_sides(exports):
    import onnx
    proto = onnx.load(runtimes.model_path('onnx', exports('onnx')))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == 'rain_bgr'
    assert [d.dim_value or d.dim_param for d in dims] == [1, 'H', 'W', 3]
    assert sorted(o.name for o in proto.graph.output) == ['derained_bgr', 'stage1_bgr']


def test_derain_onnx_runs_without_tensorflow(exports, graph_outputs, tmp_path):
    """The standalone script, in a process where ``import tensorflow`` fails."""
    shim = tmp_path / 'shim' / 'tensorflow'
    shim.mkdir(parents=True)
    (shim / '__init__.py').write_text('raise ImportError("TensorFlow is not allowed here")\n')
    image = np.random.default_rng(5).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    photo, output = str(tmp_path / 'photo.png'), str(tmp_path / 'derained.png')
    assert cv2.imwrite(photo, image)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'shim'))
    check = subprocess.run([sys.executable, '-c', 'import tensorflow'], env=env,
                           capture_output=True, text=True)
    assert 'TensorFlow is not allowed here' in check.stderr
    done = subprocess.run([sys.executable, DERAIN_ONNX,
                           runtimes.model_path('onnx', exports('onnx')), photo, output],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'derained' in done.stdout
    want = utils.to_uint8(graph_outputs(image.astype(np.float32) / 255)['derained_bgr'])
    got = cv2.imread(output)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- the command
def run_main(argv, capsys):
    code = main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(code, err, *words):
    assert code == 2, err
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_command_exports_and_prints_its_check(tiny, tmp_path, capsys):
    folder = str(tmp_path / 'out')
    code, out, err = run_main(['--export', 'savedmodel', '--checkpoint', tiny,
                               '--export_dir', folder] + TINY_FLAGS, capsys)
    assert code == 0, err
    line = [text for text in out.splitlines() if text.startswith('export check:')][0]
    assert line.startswith('export check: max |diff| ') and ' on 5 images ' in line
    assert float(line.split()[4]) <= TOLERANCE
    assert sorted(os.listdir(folder)) == ['model_card.json', 'saved_model.pb', 'variables']


def test_bad_requests_end_in_one_line_and_touch_nothing(tiny, tmp_path, capsys):
    # An unknown format: argparse's choices.
    code, _, err = run_main(['--export', 'pytorch', '--model', 'light', '--export_dir',
                             str(tmp_path / 'x')], capsys)
    one_error(code, err, "invalid choice: 'pytorch'", 'savedmodel', 'onnx', 'litert')
    code, _, err = run_main(['--export', 'onnx', '--model', 'light'], capsys)
    one_error(code, err, '--export_dir')
    # A folder that holds something already.
    busy = tmp_path / 'busy'
    busy.mkdir()
    (busy / 'keep.txt').write_text('mine')
    code, _, err = run_main(['--export', 'onnx', '--model', 'light', '--export_dir',
                             str(busy)], capsys)
    one_error(code, err, str(busy), 'not empty', 'remove it')
    assert os.listdir(str(busy)) == ['keep.txt']
    # A checkpoint that is not ReMAEN's.
    other = tmp_path / 'other'
    with tf.Graph().as_default():
        variable = tf.Variable(np.ones(3, np.float32), name='resnet/conv1/weights')
        with tf.Session() as session:
            session.run(variable.initializer)
            tf.train.Saver([variable]).save(session, str(other / 'model'))
    target = tmp_path / 'target'
    code, _, err = run_main(['--export', 'litert', '--checkpoint', str(other / 'model'),
                             '--export_dir', str(target)] + TINY_FLAGS, capsys)
    one_error(code, err, 'does not fit this model')
    assert sorted(os.listdir(str(tmp_path))) == ['busy', 'other']


# ----------------------------------------------------------------------------- shipped models
@pytest.mark.slow
@pytest.mark.parametrize('fmt', export.FORMATS)
def test_shipped_light_model_exports_within_tolerance(fmt, tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), '--export', fmt,
                           '--model', 'light', '--export_dir', str(tmp_path / fmt)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [text for text in done.stdout.splitlines() if text.startswith('export check:')][0]
    assert float(line.split()[4]) <= TOLERANCE and ' on 5 images ' in line
