"""Checkpoint files: their names, finding the one to use, and writing them safely.

``ReMAEN-<step>.index`` / ``.data-*`` are training checkpoints, ``ReMAEN.index`` / ``.data-*``
weights only, ``checkpoint`` TensorFlow's state file naming the newest. This module names a
run's folder (``checkpoint_folder``, ``default_folder``) and its steps (``step_of``,
``steps``), finds a checkpoint from a folder or prefix (``find``, ``newest_readable``,
``resolve``: an unreadable newest one falls back to the previous), and writes and removes
files atomically (``write_state``, ``clean_temporaries``, the other modules' ``_atomic_write``).
It asks nothing of TensorFlow except in ``unreadable`` (through ``quiet.import_tf``).
"""
import os
import re
import shutil

import settings
from console import quiet
from console.errors import UserError


PREFIX = 'ReMAEN'
STATE_FILE = 'checkpoint'
SETTINGS_FILE = 'remaen_settings.json'
LOCK_FILE = 'remaen.lock'
GUARD_FILE = 'remaen_guard.json'   # recent normal batch losses (``TrainingFolder.save_losses``)
DIVERGED_FOLDER = 'diverged'   # training checkpoints a run gave up (``TrainingFolder.set_aside``)


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


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, in use or does not fit the model (one line)."""


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


def select_prefixes(sources, step_range=None, every=None):
    """The checkpoint prefixes the sources stand for, in the order given (a folder's by step),
    those of ``step_range`` (FIRST, LAST) only and, with ``every``, those whose step is a multiple
    of it.

    Raises:
      CheckpointError: a source is neither a checkpoint nor a folder of training checkpoints, or
        nothing is left.
    """
    prefixes = []
    for source in sources:
        if os.path.isdir(source):
            found = [p for _, p in sorted(steps(source).items())]
            if not found:
                raise CheckpointError('%s holds no training checkpoints (ReMAEN-<step>); give '
                                      'checkpoint prefixes or a training folder' % source)
        elif find(source) == source:
            found = [source]
        else:
            raise CheckpointError('no checkpoint at %s: give a checkpoint prefix (without '
                                  '.index) or a training folder' % source)
        prefixes += found
    if step_range is not None:
        prefixes = [p for p in prefixes
                    if step_range[0] <= step_of(p) <= step_range[1]]
    if every is not None:
        prefixes = [p for p in prefixes
                    if step_of(p) >= 0 and step_of(p) % every == 0]
    if not prefixes:
        wanted = ' and '.join(w for w in (
            'in %d-%d' % step_range if step_range is not None else '',
            'a multiple of %d' % every if every is not None else '') if w)
        raise CheckpointError('no checkpoint with an iteration %s among %s'
                              % (wanted, ', '.join(sources)))
    return prefixes


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
