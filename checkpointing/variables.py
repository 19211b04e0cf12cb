"""A checkpoint's variables: reading them, checking they fit the network, restoring them.

``read_variables`` / ``stored_step`` read a checkpoint without a graph, ``check_compatible``
compares it with the graph's variables (one line naming what differs), ``make_restorer`` /
``restore`` load the network's weights (optimizer slots are optional), ``mean_weights`` averages
several checkpoints of one run. TensorFlow through ``quiet.import_tf``, inside the functions.
"""
import re

import numpy as np

from checkpointing.files import CheckpointError, _corrupt, _first_line
from console import quiet
from console.errors import UsageError


# Variables a checkpoint may hold beyond the network's own weights (ignored on restore).
_OPTIMIZER_VARIABLE = re.compile(r'(/Adam(_\d+)?$|^beta[12]_power(_\d+)?$|^global_step$)')


NETWORK_FLAGS = ('channel_dim', 'stages', 'dilations', 'shared_attention', 'skip_connections')


# ----------------------------------------------------------------------------- reading
def read_variables(prefix):
    """``{name: shape}`` of the variables stored under ``prefix``; CheckpointError if unreadable."""
    tf = quiet.import_tf()
    try:
        return {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)}
    except Exception as exc:  # DataLossError, NotFoundError, OutOfRange... all mean the same
        raise _corrupt(prefix, _first_line(exc))


def stored_step(prefix):
    """The ``global_step`` stored under ``prefix``, None for weights only (e.g. the release)."""
    if 'global_step' not in read_variables(prefix):
        return None
    return int(quiet.import_tf().train.load_variable(prefix, 'global_step'))


def check_compatible(prefix, variables):
    """``{name: shape}`` stored under ``prefix``, checked against the model's ``variables``
    (tf.Variable list); CheckpointError naming missing, unexpected or mis-shaped ones."""
    stored = read_variables(prefix)
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
    """Build (in the current graph, before it is finalized) what restores ``prefix``.

    Args:
      prefix: checkpoint prefix.
      variables: the ``derainNet`` variables; all must be in the checkpoint.
      global_step: optional global-step variable, restored if stored, else left as is.
      optional: more variables (Adam's moments and beta powers when resuming) restored when
        stored with the same shape, else left initial (``restore_fn.skipped`` names them).

    Returns:
      ``restore_fn(sess) -> int``: the restored global step, or 0 when the checkpoint has none.
    """
    tf = quiet.import_tf()
    stored = check_compatible(prefix, variables)
    with_step = global_step is not None and 'global_step' in stored
    extra, skipped = [], []
    for variable in optional:
        if stored.get(variable.op.name) == tuple(variable.get_shape().as_list()):
            extra.append(variable)
        else:
            skipped.append(variable.op.name)
    saver = tf.train.Saver(var_list=list(variables) + ([global_step] if with_step else [])
                           + extra)

    def restore_fn(sess):
        try:
            saver.restore(sess, prefix)
        except (tf.errors.OpError, ValueError) as exc:
            raise CheckpointError('cannot restore %s (%s); the files are corrupt or incomplete: '
                                  'delete them or pass another --checkpoint'
                                  % (prefix, _first_line(exc)))
        return int(sess.run(global_step)) if with_step else 0
    restore_fn.skipped = skipped
    return restore_fn


def restore(sess, prefix, variables, global_step=None):
    """Restore the network weights now (see ``make_restorer``); returns the global step."""
    with sess.graph.as_default():
        restore_fn = make_restorer(prefix, variables, global_step)
    return restore_fn(sess)


def mean_weights(prefixes, variables):
    """The element-wise mean of each of ``variables`` over the checkpoints ``prefixes``.

    Averaging the weights of checkpoints of one run (Polyak averaging, as BasicSR's EMA
    models or SWA) smooths the step-to-step noise of a constant learning rate.

    Args:
      prefixes: non-empty list of checkpoint prefixes, each fitting ``variables``
        (``check_compatible``; CheckpointError otherwise).
      variables: tf.Variable list (the network's, ``model.model_variables()``).

    Returns:
      list of float32 arrays, one per variable, summed in float64.
    """
    if not prefixes:
        raise UsageError('no checkpoints to average')
    tf = quiet.import_tf()
    totals = [0.0] * len(variables)
    for prefix in prefixes:
        check_compatible(prefix, variables)
        try:
            reader = tf.train.load_checkpoint(prefix)
            for k, variable in enumerate(variables):
                totals[k] = totals[k] + reader.get_tensor(variable.op.name).astype(np.float64)
        except Exception as exc:  # DataLossError, NotFoundError... all mean the same
            raise _corrupt(prefix, _first_line(exc))
    return [(total / len(prefixes)).astype(np.float32) for total in totals]
