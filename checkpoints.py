"""Checkpoint folders: naming, finding, restoring, settings, saving with retention, export, lock.

The one module that names, globs, reads or writes checkpoint files; training, inference, the
tools and the tests ask it. ``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch><suffix>/`` holds::

    ReMAEN-<step>.index, ReMAEN-<step>.data-*   training checkpoints (weights, global_step, Adam)
    ReMAEN.index, ReMAEN.data-*                 weights only (authors' release, shipped, exports)
    checkpoint                                  TensorFlow's state file, naming the newest
    remaen_settings.json                        architecture and training settings
    remaen_guard.json                           the divergence guard's recent batch losses
    remaen.lock                                 the training process writing here (pid, host)

Its guarantees (one writer, atomic saves, cleanup after ``kill -9``, fallback from an unreadable
newest checkpoint, export never into a training folder) are in docs/training.md ("Checkpoint
folder guarantees"). TensorFlow (and ``model``, which imports it) is imported inside the
functions that need it, through ``quiet.import_tf``, so that importing this module does not
start TensorFlow before ``quiet.setup`` has silenced it: the only function-level imports here.
"""
import json
import os
import re
import shutil

import numpy as np

import lockfile
import quiet
import settings
import utils
from errors import UsageError, UserError, reason

PREFIX = 'ReMAEN'
STATE_FILE = 'checkpoint'
SETTINGS_FILE = 'remaen_settings.json'
LOCK_FILE = 'remaen.lock'
GUARD_FILE = 'remaen_guard.json'   # recent normal batch losses (``TrainingFolder.save_losses``)
DIVERGED_FOLDER = 'diverged'   # training checkpoints a run gave up (``TrainingFolder.set_aside``)
# Settings the guard's stored losses need not share with the resuming run: the learning rate
# and its schedule change the steps to come, not the loss level of the checkpoint's weights
# (and the guard's own error suggests resuming with a lower --lr).
GUARD_IGNORED_SETTINGS = ('lr', 'lr_decay_step')
# Variables a checkpoint may hold beyond the network's own weights (ignored on restore).
_OPTIMIZER_VARIABLE = re.compile(r'(/Adam(_\d+)?$|^beta[12]_power(_\d+)?$|^global_step$)')
_STEP_INDEX = re.compile(r'^%s-(\d+)\.index$' % PREFIX)
_DATA_FILE = re.compile(r'^(%s(?:-\d+)?)\.data-\d+-of-\d+$' % PREFIX)
# Left by an interrupted save: TensorFlow's bundle writer (``.tempstate<n>``), its sharded
# temporary folders (``_temp``), atomic state-file writes (``checkpoint.tmp<hex>``) and ours.
_TEMPORARY = re.compile(r'^(%s.*\.tempstate\d*|%s(-\d+)?_temp.*|%s\.tmp.*|(%s|%s)\.tmp)$'
                        % (PREFIX, PREFIX, re.escape(STATE_FILE), re.escape(SETTINGS_FILE),
                           re.escape(GUARD_FILE)))
# What follows a checkpoint's prefix in the names of its files.
_CHECKPOINT_FILE_SUFFIX = re.compile(r'\.(index|meta|data-\d+-of-\d+)$')
_STATE_NEWEST = re.compile(r'^\s*model_checkpoint_path\s*:\s*"(.+)"\s*$', re.M)

# Folders of the shipped models (weights only, with remaen_settings.json), by --model name.
SHIPPED_MODELS = {'light': os.path.join('checkpoints', 'ReMAEN_light'),
                  'heavy': os.path.join('checkpoints', 'ReMAEN_heavy')}
DEFAULT_SHIPPED_MODEL = 'light'
# Flags that name a checkpoint: without any of them, --input uses the shipped default model.
CHECKPOINT_FLAGS = ('checkpoint', 'model', 'train_dataset', 'batch_size', 'checkpoint_dir')
NETWORK_FLAGS = ('channel_dim', 'stages', 'dilations', 'shared_attention', 'skip_connections')


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, in use or does not fit the model (one line)."""


def _differing_settings(stored, current):
    """The names of the settings (``run_settings`` keys) in which ``stored`` differs from
    ``current``, ``GUARD_IGNORED_SETTINGS`` left out; ValueError when ``stored`` is not a
    dict (a file written by hand)."""
    if not isinstance(stored, dict):
        raise ValueError('no settings stored')
    current = json.loads(json.dumps(current))
    names = (set(stored) | set(current)) - set(GUARD_IGNORED_SETTINGS)
    return sorted(n for n in names if stored.get(n) != current.get(n))


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# ----------------------------------------------------------------------------- naming
def checkpoint_folder(checkpoint_dir, train_dataset, batch_size, suffix=''):
    """``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch_size><suffix>`` (the paper's naming)."""
    return os.path.join(checkpoint_dir, 'ReMAEN_%s_%d%s' % (train_dataset, batch_size, suffix))


def default_folder(args):
    """The checkpoint folder of parsed flags (``settings.run_suffix`` tags ablations)."""
    return checkpoint_folder(args.checkpoint_dir, args.train_dataset, args.batch_size,
                             settings.run_suffix(args))


def step_of(prefix):
    """The step in a ``<name>-<step>`` prefix, -1 for a prefix without one."""
    match = re.search(r'-(\d+)$', prefix)
    return int(match.group(1)) if match else -1


def steps(folder):
    """``{step: prefix}`` of the training checkpoints ``ReMAEN-<step>`` in ``folder``."""
    return {int(m.group(1)): os.path.join(folder, m.group(0)[:-len('.index')])
            for m in map(_STEP_INDEX.match, _names(folder)) if m}


def holds_training_checkpoints(folder):
    """True when ``folder`` has training checkpoints (or their data files) or a lock file."""
    return any(_STEP_INDEX.match(n) or n == LOCK_FILE
               or (_DATA_FILE.match(n) and _DATA_FILE.match(n).group(1) != PREFIX)
               for n in _names(folder))


def _names(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []


# ----------------------------------------------------------------------------- finding
def candidates(folder):
    """Checkpoint prefixes of ``folder``, newest first: by step, then the one the state file
    names (its base name: the paths may be another machine's; an empty or garbage state file
    is ignored), then by time."""
    try:
        with open(os.path.join(folder, STATE_FILE), encoding='utf-8', errors='replace') as f:
            match = _STATE_NEWEST.search(f.read(1 << 20))
    except OSError:
        match = None
    named = os.path.basename(match.group(1).replace('\\', '/')) if match else None
    prefixes = [os.path.join(folder, n[:-len('.index')]) for n in _names(folder)
                if n.endswith('.index') and os.path.isfile(os.path.join(folder, n))]
    return sorted(prefixes, key=lambda p: (step_of(p), os.path.basename(p) == named,
                                           os.path.getmtime(p + '.index')), reverse=True)


def find(path):
    """The checkpoint prefix of a prefix, a folder (its newest, without reading it) or one of a
    checkpoint's files (``.index``, ``.data-00000-of-00001``, ``.meta``: the path a file
    manager copies); None when there is none."""
    path = _CHECKPOINT_FILE_SUFFIX.sub('', path)
    if os.path.isfile(path + '.index'):
        return path
    found = candidates(path) if os.path.isdir(path) else []
    return found[0] if found else None


def unreadable(prefix):
    """Why ``prefix`` cannot be read (a short reason), or None when every tensor reads (about
    6 MB for a training checkpoint: a missing, truncated or corrupt file is found)."""
    tf = quiet.import_tf()
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as exc:  # DataLossError, NotFoundError, IndexError... all mean the same
        return _first_line(exc)
    return None


def _corrupt(prefix, reason):
    return CheckpointError('cannot read checkpoint %s (%s); the files are corrupt or '
                           'incomplete: delete them or pass another --checkpoint'
                           % (prefix, reason))


def newest_readable(folder, log=print):
    """The newest checkpoint of ``folder`` that can be read, None when it has none. Newer ones
    that cannot be read are skipped with a note each (no file is deleted); CheckpointError when
    none can be read."""
    first_error = None
    for prefix in candidates(folder):
        reason = unreadable(prefix)
        if reason is None:
            return prefix
        first_error = first_error or _corrupt(prefix, reason)
        log('note: skipping checkpoint %s: it cannot be read (%s); its files are left in '
            'place' % (prefix, reason))
    if first_error:
        raise first_error
    return None


def resolve(where, log=print):
    """The checkpoint prefix of ``--checkpoint`` (a prefix, ``.index`` file or folder) or of a
    default folder (its ``newest_readable``); CheckpointError when there is none."""
    prefix = find(where) if not os.path.isdir(where) else newest_readable(where, log)
    if prefix is None:
        raise CheckpointError(
            'no checkpoint found at %s; train first (--is_training True with the same '
            '--train_dataset/--batch_size) or pass --checkpoint PATH (a folder such as the '
            "authors' checkpoint/ReMAEN_Rain100L_32/ or a prefix)" % where)
    return prefix


def shipped_model_folder(name):
    """Absolute folder of a shipped model (relative to this file, so any cwd works)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), SHIPPED_MODELS[name])


def is_shipped(prefix):
    """True when ``prefix`` lies in a shipped model's folder."""
    return os.path.dirname(os.path.abspath(prefix)) in {
        os.path.abspath(shipped_model_folder(name)) for name in SHIPPED_MODELS}


CARD_FILE = 'model_card.json'   # a shipped model's measured facts (tools/ship_model.py)


def model_card(folder):
    """The dict of ``<folder>/model_card.json`` (a shipped model's facts), None without one."""
    try:
        with open(os.path.join(folder, CARD_FILE), encoding='utf-8') as handle:
            card = json.load(handle)
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def schedule_text(lr, decay_step, iterations, decay_rate=0.1):
    """The learning-rate schedule a checkpoint of ``iterations`` trained with, in words.

    Args:
      lr: the run's ``--lr`` (float > 0).
      decay_step: its ``--lr_decay_step``: ``lr * decay_rate`` from that iteration on.
      iterations: the checkpoint's step.

    Returns:
      e.g. 'lr 1e-3 to 9,534, 1e-4 after (paper: to 30,000)', or 'lr 1e-3 throughout (paper:
      to 30,000)' when the checkpoint is from before ``decay_step``.
    """
    default = settings.build_parser().get_default('lr_decay_step')
    paper = '' if decay_step == default else ' (paper: to {:,})'.format(default)
    if iterations is not None and iterations <= decay_step:
        return 'lr %s throughout%s' % (_rate(lr), paper)
    return 'lr {} to {:,}, {} after{}'.format(_rate(lr), decay_step, _rate(lr * decay_rate),
                                              paper)


def _rate(value):
    """'1e-3' for 0.001, '2.5e-4' for 0.00025 (a learning rate as people write it)."""
    mantissa, exponent = ('%.2e' % value).split('e')
    return '%se%d' % (mantissa.rstrip('0').rstrip('.'), int(exponent))


def location(args, log=print):
    """Where the checkpoint of parsed flags is: ``--checkpoint``, ``--model``, or the default
    folder of ``--train_dataset``/``--batch_size``; ``--input`` without any checkpoint flag
    uses the shipped light model (and says so). Testing never falls back silently."""
    given = getattr(args, 'given', set())
    if args.checkpoint:
        return args.checkpoint
    if getattr(args, 'model', None):
        return shipped_model_folder(args.model)
    if args.input and not args.is_testing and not (set(CHECKPOINT_FLAGS) & given):
        where = shipped_model_folder(DEFAULT_SHIPPED_MODEL)
        log('Using the shipped %s-rain model %s (--model heavy for heavy rain, or '
            '--checkpoint PATH)' % (DEFAULT_SHIPPED_MODEL, os.path.relpath(where)))
        return where
    return default_folder(args)


def resolve_args(args, log=print):
    """Checkpoint prefix of parsed flags (``location``, ``resolve``); CheckpointError if none."""
    return resolve(location(args, log), log)


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
    from model import ModelConfig  # imports TensorFlow (see the module docstring)
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


# ----------------------------------------------------------------------------- writing
def make_folder(folder, flag='--checkpoint_dir'):
    """Create ``folder`` (and parents): True when created; CheckpointError when impossible."""
    if os.path.isdir(folder):
        return False
    try:
        os.makedirs(folder)
        return True
    except OSError as exc:
        raise CheckpointError('cannot create the checkpoint folder %s (%s); choose another %s'
                              % (folder, exc.strerror or exc, flag))


def _atomic_write(path, text):
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise CheckpointError('cannot write %s (%s)' % (path, exc.strerror or exc))


def write_state(folder, newest, others=()):
    """Write the ``checkpoint`` state file (relative names; temporary file, then rename)."""
    names = [os.path.basename(p) for p in list(others) + [newest]]
    _atomic_write(os.path.join(folder, STATE_FILE),
                  'model_checkpoint_path: "%s"\n' % names[-1]
                  + ''.join('all_model_checkpoint_paths: "%s"\n' % n for n in names))


def make_saver(variables):
    """The tf.train.Saver of a checkpoint's variables, built in the current graph; pass it to
    ``TrainingFolder.save`` or ``save_weights`` (they write the state file and prune)."""
    return quiet.import_tf().train.Saver(list(variables), max_to_keep=None,
                                         save_relative_paths=True)


def _save(session, saver, prefix):
    """``saver.save`` to ``prefix`` without state file; CheckpointError (temporaries removed)."""
    tf = quiet.import_tf()
    try:
        return saver.save(session, prefix, write_meta_graph=False, write_state=False)
    except (tf.errors.OpError, OSError, ValueError) as exc:
        clean_temporaries(os.path.dirname(prefix))
        raise CheckpointError('cannot save checkpoint %s (%s); the earlier checkpoints are '
                              'intact: free some space or choose another --checkpoint_dir, '
                              'then rerun to resume' % (prefix, reason(exc)))


def clean_temporaries(folder):
    """Remove what an interrupted save left in ``folder``: temporary files and folders, and
    data files without their index. Only while holding its lock. Returns the removed names."""
    names = _names(folder)
    indexes = {n[:-len('.index')] for n in names if n.endswith('.index')}
    removed = [n for n in names if _TEMPORARY.match(n)
               or (_DATA_FILE.match(n) and _DATA_FILE.match(n).group(1) not in indexes)]
    for name in removed:
        _remove(os.path.join(folder, name))
    return sorted(removed)


def _remove(path):
    try:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except OSError:
        pass


def _checkpoint_files(prefix):
    """The file names of checkpoint ``prefix`` in its folder, index first (removed or moved
    in this order, a half-handled checkpoint is never found)."""
    folder, base = os.path.split(prefix)
    return [base + '.index'] + sorted(n for n in _names(folder) if n.startswith(base + '.data-'))


def _remove_checkpoint(prefix):
    """Index first: a half-removed checkpoint is never found, its data files are cleaned."""
    folder = os.path.dirname(prefix)
    for name in _checkpoint_files(prefix):
        _remove(os.path.join(folder, name))


# ----------------------------------------------------------------------------- training
class TrainingFolder(object):
    """The checkpoint folder of a training run, written by this process only.

    Opening it creates the folder, takes its lock (``lockfile.FileLock``), removes what an
    interrupted save left (``clean_temporaries``) and finds the checkpoint to resume from
    (``resume``: ``newest_readable``, or None); CheckpointError when one of them fails.
    ``save`` writes the next checkpoint; ``close`` releases the lock (and removes the folder
    again when it created it and nothing was written).

    Args:
      folder: the checkpoint folder.
      keep: how many of the newest checkpoints the rotation keeps (``--keep_checkpoints``).
      log: where notes go.
      keep_every: N > 0 also keeps every checkpoint whose step is a multiple of N: the
        rotation never removes them (``--keep_every``, e.g. to average weights); 0 = none.
    """

    def __init__(self, folder, keep, log=print, keep_every=0):
        self.folder, self.keep, self.log = folder, keep, log
        self.keep_every = int(keep_every)
        self._created = make_folder(folder)
        self.lock = lockfile.FileLock(os.path.join(folder, LOCK_FILE))
        try:
            self._take_lock()
            removed = clean_temporaries(folder)
            if removed:
                log('note: removed what an interrupted save left in %s: %s'
                    % (folder, ', '.join(removed)))
            self.resume = newest_readable(folder, log)
        except BaseException:
            self.close()
            raise
        self.last_saved = self.resume

    def save(self, session, saver, step):
        """Write ``ReMAEN-<step>`` with ``saver`` (``make_saver``): data and index, then the
        state file; then remove all but the ``keep`` newest checkpoints up to ``step``, earlier
        runs' included (newer ones, e.g. one skipped as unreadable, stay; so do the steps
        ``keep_every`` keeps). Returns its prefix."""
        prefix = _save(session, saver, os.path.join(self.folder, '%s-%d' % (PREFIX, step)))
        older = [p for s, p in sorted(steps(self.folder).items(), reverse=True)
                 if s <= step and p != prefix]
        kept, removed = older[:self.keep - 1], older[self.keep - 1:]
        write_state(self.folder, prefix, kept[::-1])
        for old in removed:
            if not self.kept_for_good(step_of(old)):
                _remove_checkpoint(old)
        self.last_saved = prefix
        return prefix

    def set_aside(self, prefix):
        """Give up checkpoint ``prefix`` for the newest readable one older than it: move its
        files to ``<folder>/diverged/`` (index first, so a half-moved checkpoint is never
        found; an earlier one set aside under the same name stays, the new one gets a
        ``-2``, ``-3``... suffix), name the older one in the state file and make it
        ``last_saved``. Returns the older prefix, or None (nothing moved) when the folder has
        no readable older checkpoint."""
        older = [p for s, p in sorted(steps(self.folder).items(), reverse=True)
                 if s < step_of(prefix)]
        # Read newest first and stop at the first readable one (the folder may hold dozens).
        target = next((p for p in older if unreadable(p) is None), None)
        if target is None:
            return None
        aside = os.path.join(self.folder, DIVERGED_FOLDER)
        make_folder(aside)
        base = os.path.basename(prefix)
        name, n = base, 1
        while os.path.exists(os.path.join(aside, name + '.index')):
            n += 1
            name = '%s-%d' % (base, n)
        for old in _checkpoint_files(prefix):
            os.replace(os.path.join(self.folder, old),
                       os.path.join(aside, name + old[len(base):]))
        rest = older[older.index(target) + 1:]
        write_state(self.folder, target, rest[:self.keep - 1][::-1])
        self.last_saved = target
        return target

    def save_losses(self, step, run_settings, losses):
        """Write ``remaen_guard.json`` atomically: the divergence guard's recent normal batch
        losses up to iteration ``step`` (floats, oldest first) and the settings of the run
        they come from (``run_settings``: a JSON-able dict, e.g. what ``save_settings``
        stores). A resume reads them back (``recent_losses``) so that its first iterations
        are judged too. CheckpointError when it cannot be written."""
        _atomic_write(os.path.join(self.folder, GUARD_FILE),
                      json.dumps({'step': int(step), 'settings': run_settings,
                                  'losses': [float(v) for v in losses]}, sort_keys=True))

    def recent_losses(self, run_settings):
        """The batch losses ``save_losses`` stored, oldest first: [] when there are none, and
        with a note (``log``) when the file is unreadable or belongs to other settings (other
        data, model or batch: its losses say nothing about this run's; the learning rate,
        ``GUARD_IGNORED_SETTINGS``, may differ). Returns (losses, step)."""
        path = os.path.join(self.folder, GUARD_FILE)
        try:
            with open(path, encoding='utf-8') as handle:
                stored = json.load(handle)
            losses = [float(v) for v in stored['losses']]
            step = int(stored['step'])
            if not all(np.isfinite(losses)):
                raise ValueError('a loss is not finite')
            differ = _differing_settings(stored.get('settings'), run_settings)
        except FileNotFoundError:
            return [], None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self.log('note: ignored %s (%s): the divergence guard judges from the losses of '
                     'this run only' % (path, _first_line(exc)))
            return [], None
        if differ:
            self.log('note: ignored %s: its batch losses come from a run with other settings '
                     '(%s; the divergence guard judges from the losses of this run only)'
                     % (path, ', '.join(differ)))
            return [], None
        return losses, step

    def kept_for_good(self, step):
        """True for a step ``keep_every`` keeps out of the rotation."""
        return self.keep_every > 0 and step % self.keep_every == 0

    def _take_lock(self):
        try:
            previous = self.lock.acquire()
        except lockfile.Held as held:
            raise CheckpointError('checkpoint folder %s is in use by another training process '
                                  '(%s); wait for it to end or stop it, or train into another '
                                  '--checkpoint_dir' % (self.folder, held))
        except OSError as exc:
            raise CheckpointError('cannot create the lock file %s (%s); choose another '
                                  '--checkpoint_dir' % (self.lock.path, exc.strerror or exc))
        if previous is not None:
            self.log('note: took over the lock of %s, which ended without releasing it'
                     % lockfile.describe(previous))

    def close(self):
        """Release the lock (idempotent)."""
        self.lock.release()
        if self._created and not _names(self.folder):
            try:
                os.rmdir(self.folder)
            except OSError:
                pass
        self._created = False


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
    import model  # imports TensorFlow (see the module docstring)
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
