"""The divergence guard of a training run: a loss spike rolls the run back to its checkpoint.

Adam at a constant learning rate and without gradient clipping (the paper's recipe) can
diverge: in the Rain100L campaign the batch loss went from 0.001 to 0.23 within 20 iterations
(iteration 6,510, bf16), and the evaluations fell from 29.5 to 23 dB. Recovering takes
thousands of iterations, and with ``--keep_checkpoints 2 --save_every 100`` the spike would
also rotate every good checkpoint out of the folder within 200 iterations. The guard watches
the batch loss of every iteration:

- its **reference** is the median of the last ``WINDOW`` (100) normal batch losses; there is
  none before ``MIN_HISTORY`` (20) of them (the first iterations of a run). Every checkpoint
  save stores them beside it (``remaen_guard.json``) and a resume starts from them: the
  campaign's 8,750 spiked 12 iterations after a resume, before the guard had its 20, and
  the spike's losses became the reference;
- an iteration is **high** when its loss exceeds ``factor`` (``--divergence_factor``,
  default 10) times the reference. Batch losses of normal training stay within about 2x
  their running median (the campaign's logged losses), a spike reaches 20-5,000x;
- while the latest iteration is high, periodic and final checkpoints are **held back**, so
  the newest checkpoint is from before the spike;
- ``PATIENCE`` (5) high iterations in a row mean **diverged**: ``training`` restores the
  newest checkpoint (weights, ``global_step``, Adam state) and goes on with the next batches
  of the crop sequence (not the ones it diverged on). Rollbacks to newer checkpoints are not
  limited: a long run at lr 1e-3 can spike every few hundred iterations (the campaign, fp32:
  7,468, 7,871, 8,069) and still make progress between the spikes;
- after ``MAX_ROLLBACKS`` (3) rollbacks to the same checkpoint (no new one saved between
  them: no progress) the checkpoint itself is suspect: the campaign's 8,400 one diverged
  within 8-14 iterations four times on different batches (its weights and Adam moments were
  already on the way up). The run then **steps back** to the newest older checkpoint of its
  folder; the suspect one moves to ``<folder>/diverged/`` (out of the way of a resume, not
  deleted). After ``MAX_STEP_BACKS`` (2) step-backs without getting past the checkpoint last
  given up (no checkpoint newer than it saved or rolled back to since), or with no older
  checkpoint, it stops with an error instead;
- a checkpoint saved fewer than ``MARGIN`` (8) iterations before the first high iteration
  of a divergence is **passed over** at once, as a step-back without the retries: in the
  campaign a spike was already under way some iterations before the loss rose (the shared
  SE biases' steps grew for 8 iterations, docs/training.md), and the checkpoints given up
  after four divergences in a row had the loss rise 2-14 iterations after them (9,543: 2,
  four times on different batches), those that trained on after one rollback 6 and 12
  (9,075, 9,575). Passing over uses the step-backs' count, and is skipped when none is left
  or no older checkpoint exists (the run retries the newest, as before).

A single high batch (a hard crop) only holds one save back; nothing changes the recipe while
the loss is normal. This module is plain Python and numpy; the rollback itself is
``training.rollback``.
"""
import collections

import numpy as np

WINDOW = 100        # normal batch losses in the reference median
MIN_HISTORY = 20    # normal batch losses needed before the guard judges
PATIENCE = 5        # high iterations in a row that mean diverged
MAX_ROLLBACKS = 3   # rollbacks to one checkpoint before stepping back past it
MAX_STEP_BACKS = 2  # step-backs in a row (nothing newer reached) before training stops
MARGIN = 8          # a checkpoint this close before a divergence's first high loss is passed over
DEFAULT_FACTOR = 10.0

OK, HIGH, DIVERGED = 'ok', 'high', 'diverged'


class DivergenceGuard(object):
    """Judges each batch loss against the median of the recent normal ones.

    Args:
      factor: a loss above ``factor`` x the reference is high; 0 (or less) disables the
        guard (every loss is OK).
      window, min_history, patience, max_rollbacks, max_step_backs, margin: see the module
        docstring (``margin`` 0: never pass a checkpoint over).

    Attributes:
      high_run: high iterations in a row up to the latest one.
      rollbacks: rollbacks done in this run.
      target, repeats: the checkpoint of the latest rollback and how many rollbacks in a
        row went to it.
      step_backs, cliff: step-backs since the run last got past ``cliff``, the step of the
        checkpoint the latest step-back gave up (None before any).
      last_loss: the latest batch loss observed.
    """

    def __init__(self, factor=DEFAULT_FACTOR, window=WINDOW, min_history=MIN_HISTORY,
                 patience=PATIENCE, max_rollbacks=MAX_ROLLBACKS, max_step_backs=MAX_STEP_BACKS,
                 margin=MARGIN):
        if (min_history < 1 or window < min_history or patience < 1 or max_rollbacks < 0
                or max_step_backs < 0 or margin < 0):
            raise ValueError('need 1 <= min_history <= window, patience >= 1, '
                             'max_rollbacks >= 0, max_step_backs >= 0, margin >= 0')
        self.margin = int(margin)
        self.factor = float(factor)
        self.min_history, self.patience = int(min_history), int(patience)
        self.max_rollbacks, self.max_step_backs = int(max_rollbacks), int(max_step_backs)
        self.history = collections.deque(maxlen=int(window))
        self.high_run = 0
        self.rollbacks = 0
        self.target, self.repeats = None, 0
        self.step_backs, self.cliff = 0, None
        self.last_loss = None

    @property
    def enabled(self):
        return self.factor > 0

    def reference(self):
        """Median of the recent normal batch losses, or None before ``min_history`` of them."""
        if len(self.history) < self.min_history:
            return None
        return float(np.median(self.history))

    def preload(self, losses):
        """Take the normal batch losses of the run before a resume (oldest first; the newest
        ``window`` are kept) as the start of the history, so the first iterations after the
        resume are judged too (``checkpointing.TrainingFolder.recent_losses``)."""
        self.history.extend(float(v) for v in losses)

    def observe(self, loss):
        """Judge one iteration's batch loss. Returns OK, HIGH or DIVERGED.

        A normal loss joins the reference's history and ends a run of high ones; a high loss
        is kept out of the history (the reference stays the pre-spike one).
        """
        loss = float(loss)
        self.last_loss = loss
        reference = self.reference() if self.enabled else None
        if reference is not None and loss > self.factor * reference:
            self.high_run += 1
            return DIVERGED if self.high_run >= self.patience else HIGH
        self.high_run = 0
        self.history.append(loss)
        return OK

    @property
    def holding(self):
        """True while the latest iteration is high: checkpoints are held back."""
        return self.high_run > 0

    def rollbacks_to(self, target):
        """Rollbacks in a row so far to checkpoint ``target`` (0 if the latest went elsewhere)."""
        return self.repeats if target == self.target else 0

    def can_roll_back_to(self, target):
        """False after ``max_rollbacks`` rollbacks in a row to ``target`` (no progress)."""
        return self.rollbacks_to(target) < self.max_rollbacks

    def can_step_back(self):
        """False after ``max_step_backs`` step-backs without getting past the last cliff."""
        return self.step_backs < self.max_step_backs

    def first_high(self, step):
        """The first iteration of the high ones in a row that end at iteration ``step``."""
        return step - self.high_run + 1

    def too_close(self, checkpoint_step, first_high):
        """True when a checkpoint of ``checkpoint_step`` was saved fewer than ``margin``
        iterations before ``first_high`` (the spike was likely under way): pass it over."""
        return first_high - checkpoint_step < self.margin

    def stepped_back(self, abandoned_step):
        """Record that the checkpoint of ``abandoned_step`` was given up for an older one."""
        self.step_backs += 1
        self.cliff = int(abandoned_step)

    def saved(self, step):
        """Record a checkpoint saved at iteration ``step``: one newer than the last cliff
        means the run got past it, and the step-backs count from zero again (the campaign's
        9,650 was passed over after a new 9,625 and 9,650 had been saved past the cliff of
        9,625; counting that as no progress left no step-back and stopped the run)."""
        if self.cliff is not None and step > self.cliff:
            self.step_backs, self.cliff = 0, None

    def rolled_back(self, target, step=None):
        """Record a rollback to ``target`` (of iteration ``step``): the high run ends, the
        reference is kept; a checkpoint newer than the last cliff ends the step-backs."""
        if self.cliff is not None and step is not None and step > self.cliff:
            self.step_backs, self.cliff = 0, None
        self.repeats = self.rollbacks_to(target) + 1
        self.target = target
        self.rollbacks += 1
        self.high_run = 0

    def describe(self):
        """'batch loss 0.2256, 205x the median 0.0011 of the last 100 normal iterations'."""
        reference = self.reference()
        if self.last_loss is None or reference is None:
            return 'batch loss %s' % ('none' if self.last_loss is None
                                      else '%.4g' % self.last_loss)
        return ('batch loss %.4g, %.0fx the median %.4g of the last %d normal iterations'
                % (self.last_loss, self.last_loss / max(reference, 1e-30), reference,
                   len(self.history)))
