"""Training's loop: iterations, evaluation, checkpoints, and the rollback after a divergence.

``loop`` runs the iterations (a batch, one step, summaries, the curve every ``--eval_every``,
samples, checkpoints every ``--save_every``) until ``--iterations`` or a stop signal, the
divergence guard (``divergence``) judging each batch loss; ``rollback`` restores the newest
checkpoint before a spike and skips the batches that caused it; ``save_checkpoint`` saves
through the run's ``checkpointing.TrainingFolder`` with the settings and the guard's losses.
``IterationClock`` measures seconds per iteration without the evaluation and the saves.
"""
import math
import os
import time

import numpy as np

import checkpointing
import settings
from console import quiet
from console.errors import TrainingError, reason as errors_reason
from training import divergence
from training.evaluation import (CURVE_FILE, batch_ssim_summary, read_curve, run_evaluation,
                                 truncate_curve, write_samples)


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(args, run, graph, session, step, guard=None):
    """Save ``ReMAEN-<step>`` (the whole training state) and apply ``--keep_checkpoints``
    (``checkpointing.TrainingFolder.save``); then the ``guard``'s recent batch losses
    (``remaen_guard.json``, read back by ``preload_guard`` on resume). A disabled guard
    (``--divergence_factor 0``) keeps all of them: a later guarded resume then judges against
    the loss level the run had reached, not an older one. Returns step."""
    run.store.save(session, graph.saver, step)
    if guard is not None:
        run.store.save_losses(step, stored_settings(args, run), guard.history)
        guard.saved(step)
    return step


def stored_settings(args, run):
    """The settings written beside the checkpoints (``remaen_settings.json``); also what the
    guard's stored losses must match to be used (but for the learning rate,
    ``checkpointing.GUARD_IGNORED_SETTINGS``). ``train_pairs``: the training-set size,
    reported by reproduce.py (Rain100H caveat)."""
    values = dict(settings.run_settings(args), train_pairs=len(run.pairs))
    if run.layers:
        values.update(run.layers.settings())
    if run.warm_start:
        values['init_weights'] = run.warm_start
    return values


def preload_guard(args, run, guard, step):
    """A resume (chief, guard enabled) starts the guard from the batch losses stored with
    the checkpoints, so that a spike in its first iterations is caught (divergence.py)."""
    if not (run.chief and guard.enabled and step > 0):
        return
    losses, stored_at = run.store.recent_losses(stored_settings(args, run))
    guard.preload(losses)
    if losses:
        reference = guard.reference()
        print('Divergence guard: judging from the %d batch losses stored at iteration %d '
              '(median %s)' % (len(guard.history), stored_at, 'none yet' if reference is None
                               else '%.4g' % reference))


# ----------------------------------------------------------------------------- step 4
def _worker_seed(seed, hvd):
    """Crop seed of this process: Horovod workers must not all draw the same crops."""
    if seed is None or hvd is None:
        return seed
    return seed + hvd.rank()


class IterationClock(object):
    """Wall time of each training iteration, evaluations and samples apart.

    An iteration is what every step of a long run pays: the batch, ``session.run`` of the
    training step and its fetches, the progress line, summaries and checkpoint saves (the
    periodic ones amortised where they happen). Evaluations and samples are timed apart, so
    the median iteration compares with ``bench.py``'s training step.
    """

    def __init__(self):
        self.seconds = []       # one per iteration
        self.other = 0.0        # evaluations and samples

    def median(self):
        """Median seconds per iteration, the first one (graph warm-up) left out; None if
        fewer than two."""
        return float(np.median(self.seconds[1:])) if len(self.seconds) > 1 else None

    def describe(self):
        """'2.950 s per iteration (median of 120; evaluations and samples 84 s)' or ''."""
        median = self.median()
        if median is None:
            return ''
        return ('%.3f s per iteration (median of %d; evaluations and samples %.0f s)'
                % (median, len(self.seconds) - 1, self.other))


def loop(args, run, graph, session, step, batcher, writer, stop, bar, clock=None, guard=None):
    """Train from ``step`` until --iterations or a stop signal. Returns (step, last_saved).

    ``clock`` (an ``IterationClock``) records the time of every iteration; ``guard`` (a
    ``divergence.DivergenceGuard``, default from ``--divergence_factor``) judges every batch
    loss: checkpoints are held back while it is high, and a divergence rolls the run back
    (``rollback``)."""
    clock = clock if clock is not None else IterationClock()
    guard = guard if guard is not None else divergence.DivergenceGuard(args.divergence_factor)
    net = graph.net
    last_saved = step
    curve = os.path.join(run.log_dir, CURVE_FILE)
    first_eval = True
    if run.eval_pairs and not any(r['step'] == step for r in read_curve(curve)):
        bar.write(run_evaluation(args, run, graph, session, writer, step, first_eval))
        first_eval = False
    while step < args.iterations and stop.signal is None:
        started = time.perf_counter()
        rain_batch, clean_batch = batcher.next_batch()
        fetches = {'train': net.train_op, 'loss': net.loss, 'psnr': graph.psnr,
                   'lr': net.learning_rate}
        if writer and (step + 1) % args.summary_every == 0:
            fetches['summary'] = graph.summaries
            fetches['output'] = graph.output
        values = session.run(fetches, {graph.rain: rain_batch, graph.clean: clean_batch})
        if not math.isfinite(values['loss']):
            raise TrainingError(
                'loss became %s at iteration %d; stopped without saving (last good '
                'checkpoint: %s); try a lower --lr'
                % (values['loss'], step + 1, (run.store.last_saved if run.store else None)
                   or 'none'))
        step += 1
        verdict = guard.observe(values['loss'])
        bar.update(1, loss='%.5f' % values['loss'], psnr='%.2f' % values['psnr'],
                   lr='%.0e' % values['lr'])
        if 'summary' in values:
            writer.add_summary(values['summary'], step)
            ssim = batch_ssim_summary(values['output'], clean_batch)
            if ssim is not None:
                writer.add_summary(ssim, step)
        if verdict == divergence.DIVERGED:
            try:
                step = last_saved = rollback(args, run, graph, session, step, guard, writer,
                                             bar)
            finally:  # the iteration ran, whether the rollback restored or stopped the run
                clock.seconds.append(time.perf_counter() - started)
            continue
        if run.chief and step % args.save_every == 0:
            if guard.holding:
                bar.write('note: checkpoint of iteration %d held back: %s'
                          % (step, guard.describe()))
            else:
                last_saved = save_checkpoint(args, run, graph, session, step, guard)
        clock.seconds.append(time.perf_counter() - started)
        if not run.chief:
            continue
        started = time.perf_counter()
        if run.sample_pairs and step % args.sample_every == 0:
            write_samples(session, graph.infer, run.sample_pairs,
                          os.path.join(args.sample_dir, os.path.basename(run.folder)), step)
        if run.eval_pairs and step % args.eval_every == 0:
            bar.write(run_evaluation(args, run, graph, session, writer, step, first_eval))
            first_eval = False
        clock.other += time.perf_counter() - started
    return step, last_saved


def rollback(args, run, graph, session, step, guard, writer, bar):
    """Undo a divergence: restore the newest checkpoint, whole state. Returns its step.

    The guard held checkpoints back while the loss was high, so the newest one is from
    before the spike. Evaluations after it leave ``curve.csv`` and TensorBoard (a session
    START event at the restored step hides the discarded points); the crop sampler goes on
    with the next batches. After ``MAX_ROLLBACKS`` rollbacks in a row to one checkpoint it
    **steps back**: that checkpoint is set aside (``TrainingFolder.set_aside``) and the run
    restores the one before it; so it does at once with a checkpoint saved fewer than
    ``divergence.MARGIN`` iterations before the first high loss (``guard.too_close``). A
    run of several processes (Horovod, TF_CONFIG), a run with no checkpoint yet, or a run
    that has used its rollbacks to the newest checkpoint (``MAX_ROLLBACKS``) with no
    step-back left (``MAX_STEP_BACKS``, or no older checkpoint) stops with TrainingError
    instead.
    """
    target = run.store.last_saved if run.store else None
    single = run.cluster is None and run.hvd is None
    first_high = guard.first_high(step)
    given_up = []   # (prefix, what it did), newest first: set aside for an older checkpoint
    while single and target and guard.step_backs + len(given_up) < guard.max_step_backs:
        saved_at = checkpointing.step_of(target)
        if not guard.can_roll_back_to(target):
            why = 'diverged %d times in a row' % (guard.max_rollbacks + 1)
        elif guard.too_close(saved_at, first_high):
            why = ('was saved %d iteration(s) before the loss rose (iteration %d)'
                   % (first_high - saved_at, first_high))
        else:
            break
        try:
            older = run.store.set_aside(target)
        except OSError as exc:
            raise TrainingError('the loss diverged at iteration %d (%s) and its checkpoint %s '
                                'cannot be moved aside (%s); stopped without saving'
                                % (step, guard.describe(), target, exc.strerror or exc))
        if not older:
            break
        given_up.append((target, why))
        target = older
    if not (single and target and guard.can_roll_back_to(target)):
        why = _no_rollback_reason(single, target, guard)
        raise TrainingError(
            'the loss diverged at iteration %d (%s; %s); stopped without saving (last good '
            'checkpoint: %s); rerun to resume from it, with --precision fp32 if it trained in '
            'bf16, or a lower --lr' % (step, guard.describe(), why, target or 'none'))
    tf = quiet.import_tf()
    try:
        if target == run.prefix:
            # The checkpoint this run resumed from (perhaps without Adam state): restore it as
            # at the start, Adam's moments re-initialised where it has none.
            session.run(graph.init)
            back = graph.restore_fn(session)
        else:
            graph.saver.restore(session, target)
            back = int(session.run(graph.net.global_step))
    except (tf.errors.OpError, ValueError, checkpointing.CheckpointError) as exc:
        raise TrainingError('the loss diverged at iteration %d (%s) and its checkpoint %s '
                            'cannot be restored (%s); stopped without saving'
                            % (step, guard.describe(), target, errors_reason(exc)))
    for abandoned, _ in given_up:
        guard.stepped_back(checkpointing.step_of(abandoned))
    guard.rolled_back(target, back)
    truncate_curve(os.path.join(run.log_dir, CURVE_FILE), back)
    if writer is not None:
        writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), back)
    bar.rewind(step - back)
    bar.write('warning: the loss diverged at iteration %d (%s): rolled back to %s (iteration '
              '%d) and going on with new batches (rollback %d of this run; %d of at most %d '
              'in a row to this checkpoint)'
              % (step, guard.describe(), os.path.basename(target), back, guard.rollbacks,
                 guard.repeats, guard.max_rollbacks))
    for number, (abandoned, why) in enumerate(given_up, guard.step_backs - len(given_up) + 1):
        bar.write('warning: %s %s: stepped back to the checkpoint before it (step-back %d of '
                  'at most %d) and moved it to %s'
                  % (os.path.basename(abandoned), why, number,
                     guard.max_step_backs,
                     os.path.join(run.store.folder, checkpointing.DIVERGED_FOLDER)))
    return back


def _no_rollback_reason(single, target, guard):
    """Why ``rollback`` cannot roll back to ``target`` (the error's middle part)."""
    if not single:
        return 'a run of several processes is not rolled back'
    if not target:
        return 'no checkpoint to roll back to'
    if guard.step_backs:
        after = ('and stepped back %d time(s) without getting past iteration %d'
                 % (guard.step_backs, guard.cliff))
    elif guard.can_step_back():
        after = 'and no older checkpoint to step back to'
    else:
        after = 'and no step-back allowed'
    return 'already rolled back to it %d times in a row, %s' % (guard.rollbacks_to(target),
                                                                after)
