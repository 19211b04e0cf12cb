"""Checkpoint and session helpers shared by training, testing, derain and benchmarks.

Checkpoint layout: ``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch_size><suffix>/`` holding
``ReMAEN-<step>.{index,data-*}`` (ours, with ``global_step``) or ``ReMAEN.{index,data-*}``
(the authors' release, weights only), plus ``remaen_settings.json`` with the architecture.
"""
import glob
import json
import os
import re

import numpy as np
import tensorflow.compat.v1 as tf

CHECKPOINT_PREFIX = 'ReMAEN'
SETTINGS_FILE = 'remaen_settings.json'
# Variables a checkpoint may hold beyond the network's own weights (ignored on restore).
_OPTIMIZER_VARIABLE = re.compile(r'(/Adam(_\d+)?$|^beta[12]_power(_\d+)?$|^global_step$)')


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit the model (one-line message)."""


def checkpoint_folder(checkpoint_dir, train_dataset, batch_size, suffix=''):
    """``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch_size><suffix>`` (paper naming)."""
    return os.path.join(checkpoint_dir, 'ReMAEN_%s_%d%s' % (train_dataset, batch_size, suffix))


def _prefix_step(prefix):
    match = re.search(r'-(\d+)$', prefix)
    return int(match.group(1)) if match else -1


def find_checkpoint(path):
    """Resolve a checkpoint prefix from a prefix, an ``.index`` file or a folder.

    A folder is searched through its ``checkpoint`` state file (whose paths may be absolute
    paths of another machine: only the base name is used then) and, failing that, for
    ``*.index`` files (the one with the highest step wins).

    Args:
      path: str.

    Returns:
      The prefix (str) or None when nothing is found.
    """
    if path.endswith('.index'):
        path = path[:-len('.index')]
    if os.path.isfile(path + '.index'):
        return path
    if not os.path.isdir(path):
        return None
    state = tf.train.get_checkpoint_state(path)
    if state and state.model_checkpoint_path:
        # The folder's own file first: a copied folder's state file may still name the
        # original (absolute) location.
        for candidate in (os.path.join(path, os.path.basename(state.model_checkpoint_path)),
                          state.model_checkpoint_path):
            if os.path.isfile(candidate + '.index'):
                return candidate
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(path, '*.index'))]
    if not prefixes:
        return None
    return max(prefixes, key=lambda p: (_prefix_step(p), os.path.getmtime(p + '.index')))


def list_checkpoint(prefix):
    """``{name: shape}`` of the variables stored under ``prefix``; CheckpointError if corrupt."""
    try:
        return {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)}
    except Exception as exc:  # DataLossError, NotFoundError, OutOfRange... all mean the same
        raise CheckpointError('cannot read checkpoint %s (%s); the files are corrupt or '
                              'incomplete: delete them or pass another --checkpoint'
                              % (prefix, str(exc).strip().splitlines()[0][:200]))


def check_compatible(prefix, variables):
    """Compare a checkpoint with the model's variables.

    Args:
      prefix: checkpoint prefix.
      variables: list of tf.Variable (the ``derainNet`` weights).

    Returns:
      dict of the stored (name -> shape).

    Raises:
      CheckpointError naming the missing, unexpected or mis-shaped variables.
    """
    stored = list_checkpoint(prefix)
    wanted = {v.op.name: tuple(v.get_shape().as_list()) for v in variables}
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(n for n in set(stored) - set(wanted)
                        if not _OPTIMIZER_VARIABLE.search(n))
    mismatched = sorted('%s %s vs %s' % (n, stored[n], wanted[n])
                        for n in set(wanted) & set(stored) if stored[n] != wanted[n])
    problems = []
    for label, names in (('missing', missing), ('unexpected', unexpected),
                         ('shape differs (checkpoint vs model)', mismatched)):
        if names:
            shown = ', '.join(names[:3]) + (' ...' if len(names) > 3 else '')
            problems.append('%d %s: %s' % (len(names), label, shown))
    if problems:
        raise CheckpointError('checkpoint %s does not fit this model (%s); check the network '
                              'flags (--channel_dim, --dilations, --shared_attention ...)'
                              % (prefix, '; '.join(problems)))
    return stored


def make_restorer(prefix, variables, global_step=None, optional=()):
    """Build (in the current graph) what restores the network weights from ``prefix``.

    Call it before the graph is finalized; run the returned function once a session exists.

    Args:
      prefix: checkpoint prefix.
      variables: the ``derainNet`` variables; all must be in the checkpoint.
      global_step: optional global-step variable, restored if stored, else left as is.
      optional: more variables (the optimizer's Adam moments and beta powers when resuming
        training) restored when the checkpoint has them with the same shape, else left at
        their initial values (``restore_fn.skipped`` lists their names).

    Returns:
      ``restore_fn(sess) -> int``: the restored global step, or 0 when the checkpoint has none.
    """
    stored = check_compatible(prefix, variables)
    with_step = global_step is not None and 'global_step' in stored
    extra, skipped = [], []
    for variable in optional:
        name = variable.op.name
        if stored.get(name) == tuple(variable.get_shape().as_list()):
            extra.append(variable)
        else:
            skipped.append(name)
    saver = tf.train.Saver(var_list=list(variables) + ([global_step] if with_step else [])
                           + extra)

    def restore_fn(sess):
        try:
            saver.restore(sess, prefix)
        except (tf.errors.OpError, ValueError) as exc:
            raise CheckpointError('cannot restore %s (%s); the files are corrupt or incomplete: '
                                  'delete them or pass another --checkpoint'
                                  % (prefix, str(exc).strip().splitlines()[0][:200]))
        return int(sess.run(global_step)) if with_step else 0
    restore_fn.skipped = skipped
    return restore_fn


def restore(sess, prefix, variables, global_step=None):
    """Restore the network weights now (see ``make_restorer``); returns the global step."""
    with sess.graph.as_default():
        restore_fn = make_restorer(prefix, variables, global_step)
    return restore_fn(sess)


def save_settings(folder, values):
    """Write ``remaen_settings.json`` atomically (temp file + rename)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SETTINGS_FILE)
    tmp = path + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(values, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def load_settings(folder):
    """The dict saved by ``save_settings`` in ``folder``, or None when absent/unreadable."""
    path = os.path.join(folder, SETTINGS_FILE)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def session_config(intra_op_threads=0, inter_op_threads=0, xla=False, precision='fp32'):
    """ConfigProto: GPU memory growth on, soft placement, thread counts, XLA, precision.

    ``0`` threads lets TensorFlow choose (one per core). GPU selection is left to
    ``CUDA_VISIBLE_DEVICES``; without a GPU everything runs on the CPU.

    Args:
      intra_op_threads, inter_op_threads: int >= 0.
      xla: bool, session-level XLA JIT.
      precision: a resolved precision (``precision.from_args``): 'bf16' turns on oneDNN's
        bfloat16 rewrite, 'fp32' and 'fp16' keep it off (fp16 lives in the graph).

    Returns:
      tf.ConfigProto.
    """
    import precision as precision_lib
    config = tf.ConfigProto(allow_soft_placement=True,
                            intra_op_parallelism_threads=intra_op_threads,
                            inter_op_parallelism_threads=inter_op_threads)
    config.gpu_options.allow_growth = True
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    return precision_lib.apply_to_session_config(config, precision)


def gpu_available():
    """True when TensorFlow sees at least one GPU (after ``CUDA_VISIBLE_DEVICES``)."""
    try:
        return bool(tf.config.list_physical_devices('GPU'))
    except AttributeError:  # TensorFlow 1.x
        from tensorflow.python.client import device_lib
        return any(d.device_type == 'GPU' for d in device_lib.list_local_devices())


def use_mixed_precision(requested):
    """``--mixed_precision``: honoured only where a GPU is visible, else a note and float32.

    float16 convolutions on a CPU are slower than float32 and gain nothing, and the CPU is
    all we can test on, so the CPU path stays the reference float32 graph. The same rule as
    ``--precision fp16`` (``precision.resolve_precision``).

    Returns:
      bool: build the float16 graph.
    """
    if not requested:
        return False
    import precision
    return precision.resolve_precision('fp16') == 'fp16'


def to_uint8(image):
    """Float image in [0, 1] (any range: clipped) -> uint8, ROUNDED (the release truncated)."""
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)
