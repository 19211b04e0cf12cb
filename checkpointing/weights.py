"""Weights-only checkpoints: ``--export_weights``, shipped models and means of checkpoints.

``save_weights`` / ``export_weights`` write the network's weights (no Adam state, no step) with
``remaen_settings.json`` into a folder that holds no training checkpoints; ``export_mean_weights``
writes the mean of several checkpoints of one run (tools/average_weights.py, tools/ship_model.py).
"""
import os

import utils
from checkpointing.files import (CheckpointError, PREFIX, SETTINGS_FILE, STATE_FILE, _names,
                                 holds_training_checkpoints, make_folder, write_state)
from checkpointing.settings_file import check_settings, load_settings, save_settings, stored_config
from checkpointing.training_folder import _save
from checkpointing.variables import mean_weights, restore
from console import quiet


# ----------------------------------------------------------------------------- export
def save_weights(session, variables, folder, flag='--export_weights'):
    """Write ``variables`` as the weights-only checkpoint ``<folder>/ReMAEN`` with its state
    file; returns the prefix. CheckpointError for a folder holding training checkpoints."""
    _check_export_target(folder, flag)
    make_folder(folder, flag)
    prefix = _save(session, quiet.import_tf().train.Saver(list(variables)),
                   os.path.join(folder, PREFIX))
    write_state(folder, prefix)
    return prefix


def _check_export_target(folder, flag):
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CheckpointError('%s %s is a file, not a folder; choose another %s'
                              % (flag, folder, flag))
    if holds_training_checkpoints(folder):
        raise CheckpointError(
            '%s %s holds training checkpoints (ReMAEN-<step> or a training lock): weights are '
            'exported into a folder of their own, to leave the training state untouched; '
            'choose another %s' % (flag, folder, flag))


def export_weights(source, target, config, values, session_config=None):
    """Copy the network weights of prefix ``source`` (no Adam slots, no step) to the folder
    ``target`` (``--export_weights``): ``ReMAEN.{index,data-*}``, ``checkpoint`` and
    ``remaen_settings.json`` (``values`` with ``model`` = ``config``, a ModelConfig), never into
    a folder holding training checkpoints. ``source`` may also be a list of prefixes: their
    weights are averaged (``mean_weights``). Returns (prefix, variables, bytes written)."""
    import model  # imports TensorFlow: after quiet.setup (the package docstring)
    _check_export_target(target, '--export_weights')
    tf = quiet.import_tf()
    with tf.Graph().as_default():
        model.build_inference_graph(config)
        variables = model.model_variables()
        with tf.Session(config=session_config or utils.session_config()) as sess:
            if isinstance(source, str):
                restore(sess, source, variables)
            else:
                for variable, value in zip(variables, mean_weights(source, variables)):
                    variable.load(value, sess)
            prefix = save_weights(sess, variables, target)
    save_settings(target, dict(values, model=config.to_dict()))
    base = os.path.basename(prefix)
    size = sum(os.path.getsize(os.path.join(target, n)) for n in _names(target)
               if n.startswith(base + '.') or n in (STATE_FILE, SETTINGS_FILE))
    return prefix, len(variables), size


def export_mean_weights(prefixes, target, names=None):
    """Export the mean of the weights of ``prefixes`` (checkpoints of one run, each checked
    against the first one's settings: ``check_settings``) to the folder ``target``, with the
    first folder's settings and ``averaged_checkpoints`` = ``names`` (default the prefixes).
    Returns (prefix, variables, bytes written), as ``export_weights``."""
    folder = os.path.dirname(prefixes[0])
    config = stored_config(folder)
    for prefix in prefixes:
        check_settings(os.path.dirname(prefix), config)
    values = dict(load_settings(folder) or {},
                  averaged_checkpoints=list(prefixes) if names is None else list(names))
    return export_weights(list(prefixes), target, config, values)
