"""Compute precision of training, testing and deraining: fp32, bf16 (CPU) or fp16 (GPU).

* ``fp32``: the reference float32 graph (the paper's numbers; the default).
* ``bf16``: the same float32 graph and float32 variables; oneDNN's auto-mixed-precision
  graph rewrite (a session option, ``apply_to_session_config``) runs the convolutions and
  their neighbours in bfloat16 and casts back at the edges. Only worth it on CPUs with
  bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``); elsewhere bfloat16 is only
  emulated (on AVX2 CPUs by TensorFlow's Eigen kernels), slowly, so we run fp32 with a
  note. The rewrite needs TensorFlow's oneDNN ops, which TensorFlow turns on by default on
  such CPUs (``TF_ENABLE_ONEDNN_OPTS``, read when TensorFlow is imported; on CPUs without
  AVX-512/AMX neural-network features they are off unless it is set to 1).
* ``fp16``: float16 compute with float32 variables, built into the graph by
  ``model.remaen(precision='fp16')`` (``graph_float16``); for GPUs only.

Checkpoints are the same in every precision: the variables stay float32.

``REMAEN_CPU_FLAGS`` (space-separated) replaces the flags read from ``/proc/cpuinfo``, so
tests can fake a CPU (e.g. ``REMAEN_CPU_FLAGS=avx512_bf16``).
"""
import os

from console import quiet

PRECISIONS = ('fp32', 'bf16', 'fp16')
CHOICES = PRECISIONS + ('auto',)
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
FLAGS_ENV = 'REMAEN_CPU_FLAGS'
ONEDNN_ENV = 'TF_ENABLE_ONEDNN_OPTS'

NOTE_BF16_CPU = ('note: --precision bf16 needs a CPU with avx512_bf16 or amx_bf16 (this one '
                 'has neither): running fp32')
NOTE_BF16_GPU = 'note: --precision bf16 is for CPUs; GPUs use float16: running fp16'
NOTE_FP16_CPU = ('note: --precision fp16 (--mixed_precision True) is for GPUs and no GPU is '
                 'visible: running fp32')
NOTE_ONEDNN = ('note: --precision bf16 needs TensorFlow\'s oneDNN ops, which are off in this '
               'process (set TF_ENABLE_ONEDNN_OPTS=1 before starting): running fp32')
NOTE_BOTH = ('note: --mixed_precision True is the old name of --precision fp16; '
             '--precision %s wins')


def cpu_flags(path='/proc/cpuinfo'):
    """The CPU feature flags (the first ``flags`` line of ``path``).

    ``REMAEN_CPU_FLAGS``, when set (even empty), replaces them.

    Args:
      path: a cpuinfo file.

    Returns:
      set of str (e.g. ``{'avx', 'avx2', 'fma'}``); empty when unreadable or absent.
    """
    if FLAGS_ENV in os.environ:
        return set(os.environ[FLAGS_ENV].split())
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(':')
                if key.strip() == 'flags':
                    return set(value.split())
    except (OSError, UnicodeDecodeError):
        pass
    return set()


def bf16_supported(flags=None):
    """True when the CPU has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``).

    Args:
      flags: iterable of CPU flags (None = ``cpu_flags()``).

    Returns:
      bool.
    """
    flags = cpu_flags() if flags is None else set(flags)
    return any(flag in flags for flag in BF16_FLAGS)


def gpu_available():
    """True when TensorFlow sees at least one GPU (after ``CUDA_VISIBLE_DEVICES``)."""
    tf = quiet.import_tf()
    try:
        return bool(tf.config.list_physical_devices('GPU'))
    except AttributeError:  # TensorFlow 1.x
        from tensorflow.python.client import device_lib
        return any(d.device_type == 'GPU' for d in device_lib.list_local_devices())


def onednn_enabled():
    """True when TensorFlow's oneDNN ops (needed by the bf16 rewrite) are on in this process.

    Asks TensorFlow; where that private check is missing, reads ``TF_ENABLE_ONEDNN_OPTS``
    (unset counts as on, TensorFlow's default on CPUs with bfloat16).
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        value = os.environ.get(ONEDNN_ENV, '1').strip().lower()
        return value not in ('0', 'false', 'off', 'no')


def _check_requested(requested):
    if requested not in CHOICES:
        raise ValueError('precision must be one of %s, got %r' % (', '.join(CHOICES), requested))


def resolve_precision(requested, gpu=None, flags=None, log=print, onednn=None):
    """The precision to run with, given what was asked for and what this machine has.

    ``auto`` picks fp16 on a visible GPU, bf16 on a CPU with bfloat16 instructions, else
    fp32, silently. An explicit request the machine cannot honour prints one ``note:`` line
    and falls back: bf16 on a GPU -> fp16; bf16 on a CPU without bfloat16 -> fp32; fp16
    without a GPU -> fp32. bf16 also needs oneDNN on (see ``onednn_enabled``), else fp32.

    Args:
      requested: 'fp32', 'bf16', 'fp16' or 'auto'.
      gpu: whether a GPU is visible (None = ``gpu_available()``).
      flags: CPU flags (None = ``cpu_flags()``).
      log: where the notes go (one line each).
      onednn: whether oneDNN is on (None = ``onednn_enabled()``, asked only for bf16).

    Returns:
      'fp32', 'bf16' or 'fp16'.

    Raises:
      ValueError: ``requested`` is not one of the four.
    """
    _check_requested(requested)
    if requested == 'fp32':
        return 'fp32'
    if gpu is None:
        gpu = gpu_available()
    if gpu:
        if requested == 'bf16':
            log(NOTE_BF16_GPU)
        return 'fp16'
    if requested == 'fp16':
        log(NOTE_FP16_CPU)
        return 'fp32'
    if not bf16_supported(flags):
        if requested == 'bf16':
            log(NOTE_BF16_CPU)
        return 'fp32'
    if not (onednn_enabled() if onednn is None else onednn):
        log(NOTE_ONEDNN)
        return 'fp32'
    return 'bf16'


def requested_precision(args, log=print):
    """What the flags ask for: ``--precision``, else fp16 for the old ``--mixed_precision``.

    Args:
      args: parsed flags with ``precision`` (None = not given) and ``mixed_precision``.
      log: where a note goes when both flags disagree.

    Returns:
      'fp32', 'bf16', 'fp16' or 'auto'.
    """
    requested = getattr(args, 'precision', None)
    mixed = bool(getattr(args, 'mixed_precision', False))
    if requested is None:
        return 'fp16' if mixed else 'fp32'
    if mixed and requested != 'fp16':
        log(NOTE_BOTH % requested)
    return requested


def from_args(args, log=print):
    """The precision to run with, from the ``--precision`` and ``--mixed_precision`` flags.

    Args:
      args: parsed flags (``settings.add_session_flags``).
      log: where the notes go.

    Returns:
      'fp32', 'bf16' or 'fp16' (see ``resolve_precision``).
    """
    return resolve_precision(requested_precision(args, log), gpu=gpu_available(), log=log)


def graph_float16(precision):
    """True when the graph itself must compute in float16 (``model.remaen``'s fp16)."""
    return precision == 'fp16'


def _rewriter_field(rewrite_options):
    """Name of the oneDNN bf16 toggle (renamed from ``auto_mixed_precision_mkl`` in TF 2.9)."""
    for name in ('auto_mixed_precision_onednn_bfloat16', 'auto_mixed_precision_mkl'):
        if name in rewrite_options.DESCRIPTOR.fields_by_name:
            return name
    raise RuntimeError('this TensorFlow has no oneDNN bfloat16 rewrite option')


def apply_to_session_config(config, precision):
    """Switch oneDNN's bfloat16 auto-mixed-precision rewrite ON for 'bf16', OFF otherwise.

    Args:
      config: tf.ConfigProto, changed in place.
      precision: 'fp32', 'bf16' or 'fp16' (a resolved precision).

    Returns:
      ``config``.
    """
    if precision not in PRECISIONS:
        raise ValueError('precision must be one of %s, got %r' % (', '.join(PRECISIONS),
                                                                   precision))
    from tensorflow.core.protobuf import rewriter_config_pb2
    toggle = rewriter_config_pb2.RewriterConfig
    options = config.graph_options.rewrite_options
    setattr(options, _rewriter_field(options), toggle.ON if precision == 'bf16' else toggle.OFF)
    return config


def bf16_rewrite_requested(config):
    """True when ``config`` (tf.ConfigProto) has the oneDNN bfloat16 rewrite ON."""
    from tensorflow.core.protobuf import rewriter_config_pb2
    options = config.graph_options.rewrite_options
    return getattr(options, _rewriter_field(options)) == rewriter_config_pb2.RewriterConfig.ON


def rewrite_active(session_config):
    """Whether sessions with ``session_config`` really compute in bfloat16.

    Runs two tiny 3x3 convolutions (4 channels, 8x8) in a graph of their own and looks for
    bfloat16 in the graph the session executed (its partition graphs). The rewrite is
    silently inert when oneDNN is off; on CPUs without bfloat16 instructions it runs, and
    TensorFlow computes the bfloat16 convolutions with its Eigen kernels (slow).

    Args:
      session_config: tf.ConfigProto.

    Returns:
      bool.
    """
    import numpy as np
    import tensorflow.compat.v1 as tf
    rng = np.random.default_rng(0)
    with tf.Graph().as_default():
        net = inputs = tf.placeholder(tf.float32, [1, 8, 8, 4])
        for _ in range(2):  # a graph this size is big enough for grappler to optimise
            kernel = tf.constant(rng.normal(0.0, 0.3, (3, 3, 4, 4)).astype(np.float32))
            net = tf.nn.relu(tf.nn.conv2d(net, kernel, 1, 'SAME'))
        metadata = tf.RunMetadata()
        with tf.Session(config=session_config) as session:
            session.run(net, {inputs: rng.random((1, 8, 8, 4), np.float32)},
                        options=tf.RunOptions(output_partition_graphs=True),
                        run_metadata=metadata)
    return any(value.type == tf.bfloat16.as_datatype_enum
               for graph in metadata.partition_graphs for node in graph.node
               for value in node.attr.values())


_DILATION_PROBES = {}


def direct_dilation_trainable(session_config):
    """Whether sessions with ``session_config`` can differentiate a dilated ``Conv2D``.

    oneDNN's CPU convolution kernels (and GPUs) compute the gradients of a ``Conv2D`` with
    ``dilations``; TensorFlow's plain CPU kernels refuse them, so without oneDNN training must
    build dilated convolutions as SpaceToBatchND -> Conv2D -> BatchToSpaceND. Runs the
    gradient of one tiny dilated convolution (4 channels, 8x8) in a graph of its own; the
    answer is cached per configuration.

    Args:
      session_config: tf.ConfigProto.

    Returns:
      bool.
    """
    key = session_config.SerializeToString()
    if key not in _DILATION_PROBES:
        import numpy as np
        tf = quiet.import_tf()
        with tf.Graph().as_default():
            inputs = tf.constant(np.ones((1, 8, 8, 4), np.float32))
            kernel = tf.constant(np.ones((3, 3, 4, 4), np.float32))
            output = tf.nn.conv2d(inputs, kernel, 1, 'SAME', dilations=2)
            gradients = tf.gradients(tf.reduce_sum(output), [inputs, kernel])
            try:
                with tf.Session(config=session_config) as session:
                    session.run(gradients)
                _DILATION_PROBES[key] = True
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
                _DILATION_PROBES[key] = False
    return _DILATION_PROBES[key]
