"""A training run's checkpoint folder: one writer, atomic saves, retention, rollback targets.

``TrainingFolder`` holds the folder's lock (``lockfile``: one training process per folder),
cleans what an interrupted save left, saves with retention (``--keep_checkpoints``,
``--keep_every``), sets aside checkpoints a run gave up (``diverged/``) and keeps the divergence
guard's recent losses (``remaen_guard.json``). ``make_saver`` is the one ``tf.train.Saver`` of
training checkpoints. Its guarantees are in docs/training.md ("Checkpoint folder guarantees").
"""
import json
import os

import numpy as np

from checkpointing import lockfile
from checkpointing.files import (CheckpointError, DIVERGED_FOLDER, GUARD_FILE, LOCK_FILE, PREFIX,
                                 _atomic_write, _checkpoint_files, _first_line, _names,
                                 _remove_checkpoint, clean_temporaries, make_folder,
                                 newest_readable, step_of, steps, unreadable, write_state)
from checkpointing.settings_file import differing_settings
from console import quiet
from console.errors import reason


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
            differ = differing_settings(stored.get('settings'), run_settings)
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
