"""``remaen_settings.json``: the architecture and training settings a checkpoint folder keeps.

``save_settings`` writes it atomically, ``load_settings`` reads it and checks each value's type
(one error line naming the file, the key and the type), ``stored_config`` gives the network it
describes, and ``check_settings`` refuses a run whose network differs from the stored one.
``differing_settings`` compares two sets of settings (the divergence guard's stored losses, the
rain layers of a resume).
"""
import json
import os

from checkpointing.files import CheckpointError, SETTINGS_FILE, _atomic_write, _first_line
from console.errors import UsageError


# Settings the guard's stored losses need not share with the resuming run: the learning rate
# and its schedule change the steps to come, not the loss level of the checkpoint's weights
# (and the guard's own error suggests resuming with a lower --lr).
GUARD_IGNORED_SETTINGS = ('lr', 'lr_decay_step')


# Settings recorded both as a path (for people) and as a digest of what the path held (for the
# checks). When both sides record the digest, it decides and the paths may differ (a clone at
# another place, a copy of the data); settings written before the digest existed compare paths.
CONTENT_DIGESTS = {'rain_layers': 'rain_layers_digest'}


def differing_settings(stored, current, ignored=GUARD_IGNORED_SETTINGS):
    """The names of the settings (``run_settings`` keys) in which ``stored`` differs from
    ``current``, ``ignored`` left out and paths compared by content (``CONTENT_DIGESTS``);
    ValueError when ``stored`` is not a dict (a file written by hand)."""
    if not isinstance(stored, dict):
        raise ValueError('no settings stored')
    current = json.loads(json.dumps(current))
    names = (set(stored) | set(current)) - set(ignored)
    for path, digest in CONTENT_DIGESTS.items():
        names.discard(path if digest in stored and digest in current else digest)
    return sorted(n for n in names if stored.get(n) != current.get(n))


# ----------------------------------------------------------------------------- settings
def save_settings(folder, values):
    """Write ``<folder>/remaen_settings.json`` atomically (temporary file, then rename)."""
    _atomic_write(os.path.join(folder, SETTINGS_FILE),
                  json.dumps(values, indent=2, sort_keys=True))


# The type of each value of remaen_settings.json this version reads ("model." for the network
# settings); other keys are kept and ignored. bool is not an int here (JSON true is not 3).
_INTEGER, _NUMBER, _TEXT, _BOOLEAN = 'an integer', 'a number', 'a string', 'true or false'
_SETTING_TYPES = {
    'model.stages': _INTEGER, 'model.channels': _INTEGER, 'model.input_channels': _INTEGER,
    'model.dilations': 'a list of integers', 'model.shared_attention': _BOOLEAN,
    'model.skip_connections': _BOOLEAN, 'batch_size': _INTEGER, 'patch_size': _INTEGER,
    'train_pairs': _INTEGER, 'lr_decay_step': _INTEGER, 'lr': _NUMBER,
    'edge_loss_weight': _NUMBER, 'train_dataset': _TEXT,
}


def _has_type(value, kind):
    """True when a JSON ``value`` is of ``kind`` (a value of ``_SETTING_TYPES``)."""
    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == _INTEGER:
        return integer(value)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _BOOLEAN:
        return isinstance(value, bool)
    return isinstance(value, list) and all(integer(v) for v in value)


def _wrongly_typed(values):
    """``(key, value, expected)`` of the first setting of ``values`` whose type is wrong."""
    for key, kind in _SETTING_TYPES.items():
        section, _, name = key.rpartition('.')
        holder = values.get(section, {}) if section else values
        if name in holder and not _has_type(holder[name], kind):
            return key, holder[name], kind
    return None


def load_settings(folder):
    """The dict of ``<folder>/remaen_settings.json``, None when there is none; CheckpointError
    when it is not a settings file (not JSON, or not an object whose ``model`` is an object)
    or when a value this version reads has the wrong type (``"stages": "three"``)."""
    path = os.path.join(folder, SETTINGS_FILE)
    try:
        with open(path, encoding='utf-8') as handle:
            values = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        values = exc
    if not isinstance(values, dict) or not isinstance(values.get('model', {}), dict):
        raise CheckpointError('%s is not a settings file (%s); restore it or delete it (the '
                              'network flags are then checked against the variables only)'
                              % (path, _first_line(values) if isinstance(values, Exception)
                                 else 'expected a JSON object with a "model" object'))
    wrong = _wrongly_typed(values)
    if wrong:
        raise CheckpointError('%s: "%s" is %s, expected %s; write the value the checkpoint '
                              'was trained with, or delete the file (the network flags are then '
                              'checked against the variables only)'
                              % (path, wrong[0], json.dumps(wrong[1]), wrong[2]))
    return values


def stored_config(folder, default=None, stored=None):
    """The ModelConfig stored next to a checkpoint (``stored``: its loaded settings), else
    ``default`` (None = the paper's). UsageError for one this version cannot build (e.g. a
    1-channel model of an earlier version)."""
    from model import ModelConfig  # imports TensorFlow: after quiet.setup (the package docstring)
    stored = load_settings(folder) if stored is None else stored
    if not stored or 'model' not in stored:
        return default or ModelConfig()
    try:
        return ModelConfig.from_dict(stored['model'])
    except (TypeError, ValueError) as exc:
        raise UsageError('checkpoint %s: %s; use another --checkpoint' % (folder, exc))


def check_settings(folder, config, edge_loss_weight=None):
    """UsageError listing the differences when the settings stored in ``folder`` (if any: the
    authors' release has none) differ from ``config`` (model.ModelConfig) or, when resuming
    training, from ``edge_loss_weight`` (None: not checked)."""
    stored = load_settings(folder)
    if not stored:
        return
    diffs = stored_config(folder, config, stored).differences(config)
    if edge_loss_weight is not None and stored.get('edge_loss_weight') != edge_loss_weight:
        diffs.append('edge_loss_weight: %r vs %r' % (stored.get('edge_loss_weight'),
                                                    edge_loss_weight))
    if diffs:
        raise UsageError('checkpoint %s was trained with other settings (checkpoint vs flags: '
                         '%s); pass the same flags or another --checkpoint'
                         % (folder, '; '.join(diffs)))
