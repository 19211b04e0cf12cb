"""The divergence guard: loss judgement, held-back checkpoints, rollback of a real run."""
import functools
import io
import json
import os
import re
import signal

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import write_pairs
import checkpointing
import dataloader
from training import divergence
from training import evaluation
import main
from console.progress import Progress


# ----------------------------------------------------------------------------- the guard
def test_guard_judges_against_the_median_of_recent_normal_losses():
    guard = divergence.DivergenceGuard(factor=4, window=5, min_history=3, patience=3)
    rng = np.random.default_rng(0)
    normal = list(0.01 + 0.002 * rng.random(8))
    # No judgement before min_history normal losses, however large.
    assert [guard.observe(v) for v in [0.01, 5.0, 0.011]] == ['ok'] * 3
    assert guard.reference() == pytest.approx(np.median([0.01, 5.0, 0.011]))
    guard = divergence.DivergenceGuard(factor=4, window=5, min_history=3, patience=3)
    assert [guard.observe(v) for v in normal] == ['ok'] * 8
    assert guard.reference() == pytest.approx(np.median(normal[-5:]))  # the last window
    reference = guard.reference()
    assert guard.observe(3.9 * reference) == 'ok'        # below factor x reference
    reference = guard.reference()
    assert guard.observe(4.1 * reference) == 'high' and guard.holding
    # A high loss stays out of the history: the reference is the pre-spike one.
    assert guard.reference() == pytest.approx(reference)
    assert guard.observe(reference) == 'ok' and not guard.holding   # a lone hard batch
    spike = [10 * reference, 20 * reference, 30 * reference]
    assert [guard.observe(v) for v in spike] == ['high', 'high', 'diverged']
    assert '30x the median' in guard.describe()
    assert guard.can_roll_back_to('ReMAEN-4')
    guard.rolled_back('ReMAEN-4')
    assert guard.rollbacks == 1 and guard.high_run == 0
    assert guard.reference() == pytest.approx(reference)


def test_preloaded_losses_judge_the_first_iterations_of_a_resume():
    guard = divergence.DivergenceGuard(factor=4, window=5, min_history=3, patience=2)
    before = [0.010, 0.012, 0.011, 0.009, 0.013, 0.010, 0.011]
    guard.preload(before)
    assert list(guard.history) == before[-5:]           # the newest window
    reference = float(np.median(before[-5:]))
    assert guard.reference() == pytest.approx(reference)
    assert [guard.observe(v) for v in (5 * reference, 6 * reference)] == ['high', 'diverged']
    # Without them the same spike would have become the reference.
    blind = divergence.DivergenceGuard(factor=4, window=5, min_history=3, patience=2)
    assert [blind.observe(v) for v in (5 * reference, 6 * reference)] == ['ok', 'ok']


def test_stored_losses_come_back_only_for_the_same_settings(tmp_path):
    notes = []
    store = checkpointing.TrainingFolder(str(tmp_path), 2, log=notes.append)
    try:
        assert store.recent_losses({'batch_size': 32}) == ([], None) and notes == []
        losses = list(np.random.default_rng(1).random(7) * 1e-3)
        store.save_losses(8750, {'batch_size': 32, 'model': {'stages': 3}}, losses)
        back, step = store.recent_losses({'batch_size': 32, 'model': {'stages': 3}})
        assert step == 8750 and back == pytest.approx(losses, rel=0, abs=0)
        assert store.recent_losses({'batch_size': 16, 'model': {'stages': 3}}) == ([], None)
        assert 'other settings (batch_size;' in notes[-1] and checkpointing.GUARD_FILE in notes[-1]
        # The learning rate and its schedule may differ: they change the steps to come, not
        # the loss level of the checkpoint (the guard's error suggests a lower --lr).
        lower = {'batch_size': 32, 'model': {'stages': 3}, 'lr': 1e-4, 'lr_decay_step': 1}
        count = len(notes)
        assert store.recent_losses(lower)[1] == 8750 and len(notes) == count
        store.save_losses(8760, {'batch_size': 32, 'model': {'stages': 3}, 'lr': 1e-3}, losses)
        assert store.recent_losses(lower) == (pytest.approx(losses, rel=0, abs=0), 8760)
        assert store.recent_losses({'batch_size': 32, 'model': {'stages': 2}, 'lr': 1e-3}) \
            == ([], None) and '(model;' in notes[-1]
        with open(os.path.join(str(tmp_path), checkpointing.GUARD_FILE), 'w') as handle:
            handle.write('{"step": 3, "losses": [0.1], "settings": [32]}')
        assert store.recent_losses({'batch_size': 32}) == ([], None)
        assert 'no settings stored' in notes[-1]
        with open(os.path.join(str(tmp_path), checkpointing.GUARD_FILE), 'w') as handle:
            handle.write('{"step": 3, "losses": [0.1, NaN]')
        assert store.recent_losses({'batch_size': 32}) == ([], None)
        assert notes[-1].startswith('note: ignored ') and 'this run only' in notes[-1]
    finally:
        store.close()


def test_rollbacks_are_limited_per_checkpoint_not_per_run():
    # A run that saves new checkpoints between its spikes keeps going; one that spikes
    # before it can save again stops after max_rollbacks rollbacks to the same checkpoint.
    guard = divergence.DivergenceGuard(max_rollbacks=2)
    for target in ('ReMAEN-100', 'ReMAEN-200', 'ReMAEN-300', 'ReMAEN-400'):
        assert guard.can_roll_back_to(target)
        guard.rolled_back(target)
    assert guard.rollbacks == 4 and guard.rollbacks_to('ReMAEN-400') == 1
    guard.rolled_back('ReMAEN-400')
    assert not guard.can_roll_back_to('ReMAEN-400') and guard.rollbacks_to('ReMAEN-400') == 2
    assert guard.can_roll_back_to('ReMAEN-500') and guard.rollbacks_to('ReMAEN-300') == 0


def test_step_backs_are_limited_until_the_run_gets_past_the_cliff():
    guard = divergence.DivergenceGuard(max_rollbacks=1, max_step_backs=2)
    guard.rolled_back('ReMAEN-400', 400)
    assert not guard.can_roll_back_to('ReMAEN-400') and guard.can_step_back()
    guard.stepped_back(400)                       # gave up 400 for 350
    guard.rolled_back('ReMAEN-350', 350)
    assert guard.step_backs == 1 and guard.cliff == 400 and guard.can_step_back()
    guard.rolled_back('ReMAEN-400', 400)          # a new 400: not past the cliff yet
    guard.stepped_back(400)
    guard.rolled_back('ReMAEN-350', 350)
    assert guard.step_backs == 2 and not guard.can_step_back()
    guard.rolled_back('ReMAEN-450', 450)          # past it: step-backs allowed again
    assert guard.step_backs == 0 and guard.cliff is None and guard.can_step_back()
    assert guard.rollbacks == 5
    # Saving a checkpoint past the cliff is getting past it too; saving one at or before it
    # is not (the campaign's 9,625 and 9,650, passed over in turn).
    guard.stepped_back(625)
    guard.saved(600)
    guard.saved(625)
    assert guard.step_backs == 1 and guard.cliff == 625
    guard.saved(650)
    assert guard.step_backs == 0 and guard.cliff is None
    guard.saved(675)
    assert guard.step_backs == 0


def test_a_checkpoint_saved_just_before_the_loss_rose_is_too_close():
    guard = divergence.DivergenceGuard(factor=10, min_history=3, patience=3, margin=8)
    for loss in (1.0, 1.1, 0.9, 1.0):
        guard.observe(loss)
    assert [guard.observe(v) for v in (20.0, 30.0, 40.0)] == ['high', 'high', 'diverged']
    # Iterations 9,545-9,547 were high (9,547 diverged): 9,543 is 2 before the rise.
    assert guard.first_high(9547) == 9545
    assert guard.too_close(9543, 9545) and guard.too_close(9538, 9545)
    assert not guard.too_close(9537, 9545) and not guard.too_close(9525, 9545)
    assert not divergence.DivergenceGuard(margin=0).too_close(9545, 9545)
    with pytest.raises(ValueError):
        divergence.DivergenceGuard(margin=-1)


def test_guard_with_factor_zero_never_judges_and_bad_settings_are_refused():
    guard = divergence.DivergenceGuard(factor=0, min_history=1, window=1)
    assert not guard.enabled
    assert [guard.observe(v) for v in [0.001, 1e6, 1e9, 1e12]] == ['ok'] * 4
    for kwargs in ({'min_history': 0}, {'window': 2, 'min_history': 3}, {'patience': 0},
                   {'max_step_backs': -1}):
        with pytest.raises(ValueError):
            divergence.DivergenceGuard(**kwargs)
    guard = divergence.DivergenceGuard(max_rollbacks=0)
    assert not guard.can_roll_back_to('ReMAEN-4')


def test_truncate_curve_drops_only_the_rows_after_the_step(tmp_path):
    path = str(tmp_path / 'logs' / 'curve.csv')
    means = [{'psnr': 20.0 + s, 'ssim': 0.5, 'psnr_y': 21.0 + s, 'ssim_y': None}
             for s in range(3)]
    for step in (0, 250, 500, 750):
        evaluation.append_curve(path, step, means, 1.5)
    before = evaluation.read_curve(path)
    assert evaluation.truncate_curve(path, 500) == 3
    after = evaluation.read_curve(path)
    assert after == [row for row in before if row['step'] <= 500]
    assert evaluation.truncate_curve(path, 500) == 0
    assert evaluation.truncate_curve(str(tmp_path / 'none.csv'), 0) == 0


def test_progress_rewind_keeps_the_rate():
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(100, 'train', stream=stream, tty=False, initial=10, clock=lambda: now[0])
    now[0] = 8.0
    bar.update(8)
    assert bar.seconds_per_unit() == pytest.approx(1.0)
    bar.rewind(5)
    assert bar.n == 13 and bar.seconds_per_unit() == pytest.approx(1.0)
    assert bar.seconds_left() == pytest.approx(87.0)


# ----------------------------------------------------------------------------- a real run
SPIKE = (7, 8, 9)   # iterations trained on corrupted batches


class CorruptingBatcher(dataloader.TrainBatcher):
    """The real batcher, whose batches ``spike`` (counted from 1 over the run, rollbacks
    included) get a target that is the rainy crop inverted: a loss tens of times the normal
    one, as in a divergence."""
    spike = SPIKE

    def next_batch(self):
        rain, clean = super().next_batch()
        if self.batches_served in self.spike:
            clean = 1.0 - rain
        return rain, clean


@pytest.fixture()
def spiking(tmp_path, monkeypatch):
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'train', 'Tiny'), 3, size=(24, 24), seed=0)
    write_pairs(os.path.join(root, 'test', 'Tiny'), 1, size=(24, 24), seed=1)
    monkeypatch.setattr(dataloader, 'TrainBatcher', CorruptingBatcher)
    flags = ['--is_training', 'True', '--train_dataset', 'Tiny', '--test_dataset', 'Tiny',
             '--batch_size', '1', '--patch_size', '16', '--seed', '0',
             '--data_path', os.path.join(root, 'train', '{}'),
             '--test_path', os.path.join(root, 'test', '{}'),
             '--checkpoint_dir', os.path.join(root, 'ckpt'),
             '--logs_dir', os.path.join(root, 'logs'),
             '--sample_dir', os.path.join(root, 'samples'),
             '--save_every', '4', '--keep_checkpoints', '5', '--eval_every', '3',
             '--eval_images', '1', '--divergence_factor', '3']
    return root, flags


def guard_with(monkeypatch, **kwargs):
    """The guard with a short history; ``margin`` 0 unless given (no checkpoint passed over:
    the tests below are about rollbacks and retries)."""
    kwargs.setdefault('margin', 0)
    monkeypatch.setattr(divergence, 'DivergenceGuard',
                        functools.partial(divergence.DivergenceGuard, min_history=3, window=10,
                                          **kwargs))


def test_a_spike_holds_the_save_back_and_rolls_the_run_back(spiking, monkeypatch, capsys):
    root, flags = spiking
    # ReMAEN-4 is 3 iterations before the rise (7), within the margin, but there is no
    # older checkpoint to pass it over for: the run rolls back to it.
    guard_with(monkeypatch, patience=3, margin=8)
    assert main.main(flags + ['--iterations', '12']) == 0
    out = capsys.readouterr().out
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    assert 'stepped back' not in out and not os.path.exists(os.path.join(folder, 'diverged'))
    # Iterations 7, 8, 9 were high: the save of 8 was held back, 9 rolled back to 4.
    assert 'note: checkpoint of iteration 8 held back: batch loss' in out
    assert ('warning: the loss diverged at iteration 9 (batch loss' in out
            and 'rolled back to ReMAEN-4 (iteration 4)' in out and '(rollback 1 of this run; '
            '1 of at most 3 in a row to this checkpoint)' in out)
    assert 'Divergence guard: 1 rollback(s) in this run' in out
    # 9 iterations, rolled back to 4, then 8 more: 17 run for a net 12.
    assert re.search(r'Trained iterations 0\.\.12 in [\d.]+ s \(17 iterations run, '
                     r'[\d.]+ it/s; net \+12 after 1 rollback\(s\)\)', out), out
    prefix = os.path.join(folder, 'ReMAEN-12')
    assert int(tf.train.load_variable(prefix, 'global_step')) == 12
    # Adam's state came back with the weights: beta1_power = 0.9 ** (steps taken + 1) counts
    # 4 restored + 8 after the rollback, not the 9 + 8 steps actually run.
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 13, rel=1e-6)
    # The evaluation of 6 (in the discarded stretch) left the curve and was measured again.
    rows = evaluation.read_curve(os.path.join(root, 'logs', 'ReMAEN_Tiny_1', 'curve.csv'))
    steps = [r['step'] for r in rows if r['stage'] == 3]
    assert steps == [0, 3, 6, 9, 12]


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_spike_past_the_rollbacks_stops_without_saving_it(spiking, monkeypatch, capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=2, max_rollbacks=0)
    assert main.main(flags + ['--iterations', '12']) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in captured.err
    assert 'the loss diverged at iteration 8' in errors[0]
    assert 'already rolled back to it 0 times in a row' in errors[0] and 'ReMAEN-4' in errors[0]
    assert 'and no older checkpoint to step back to' in errors[0]
    # What ran is still reported (8 iterations, the 2 high ones included).
    assert 'Stopped after 8 iteration(s) (rollbacks included) in ' in captured.out
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    assert sorted(os.path.basename(p) for p in os.listdir(folder) if p.endswith('.index')) \
        == ['ReMAEN-4.index']


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_rollback_to_an_unreadable_checkpoint_stops_with_one_line(spiking, monkeypatch,
                                                                   capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=2)
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')

    class Damaging(CorruptingBatcher):
        """Truncates ReMAEN-4's data while the spike starts (a disk fault)."""

        def next_batch(self):
            if self.batches_served + 1 == SPIKE[0]:
                with open(os.path.join(folder, 'ReMAEN-4.data-00000-of-00001'), 'r+b') as f:
                    f.truncate(16)
            return super().next_batch()
    monkeypatch.setattr(dataloader, 'TrainBatcher', Damaging)
    assert main.main(flags + ['--iterations', '12']) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and 'Traceback' not in err
    assert 'diverged at iteration 8' in errors[0] and 'cannot be restored' in errors[0]


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_checkpoint_that_keeps_diverging_is_set_aside_for_the_one_before(spiking, monkeypatch,
                                                                          capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=2, max_rollbacks=2, max_step_backs=1)

    class Cliff(CorruptingBatcher):
        spike = (7, 8, 9, 10, 11, 12)   # iterations 7-8 three times: 6 is a cliff

    monkeypatch.setattr(dataloader, 'TrainBatcher', Cliff)
    assert main.main(flags + ['--save_every', '2', '--iterations', '12']) == 0
    out = capsys.readouterr().out
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    assert out.count('rolled back to ReMAEN-6 (iteration 6)') == 2
    assert 'rolled back to ReMAEN-4 (iteration 4)' in out
    assert ('warning: ReMAEN-6 diverged 3 times in a row: stepped back to the checkpoint '
            'before it (step-back 1 of at most 1) and moved it to '
            + os.path.join(folder, 'diverged')) in out
    # The given-up checkpoint is kept aside, whole; the run went on from 4 and saved a new 6.
    aside = os.path.join(folder, 'diverged', 'ReMAEN-6')
    assert int(tf.train.load_variable(aside, 'global_step')) == 6
    prefix = os.path.join(folder, 'ReMAEN-12')
    assert int(tf.train.load_variable(prefix, 'global_step')) == 12
    # 4 restored steps + 8 after the step-back: Adam's beta1_power is 0.9 ** (12 + 1).
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 13, rel=1e-6)
    assert int(tf.train.load_variable(os.path.join(folder, 'ReMAEN-6'), 'global_step')) == 6
    rows = evaluation.read_curve(os.path.join(root, 'logs', 'ReMAEN_Tiny_1', 'curve.csv'))
    assert [r['step'] for r in rows if r['stage'] == 3] == [0, 3, 6, 9, 12]


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_checkpoint_saved_just_before_the_rise_is_passed_over(spiking, monkeypatch, capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=2, margin=3, max_step_backs=2)
    monkeypatch.setattr(CorruptingBatcher, 'spike', (7, 8))
    assert main.main(flags + ['--save_every', '2', '--iterations', '12']) == 0
    out = capsys.readouterr().out
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    # The loss rose at 7 and diverged at 8: ReMAEN-6 (1 before the rise) is passed over at
    # once, without retrying it; ReMAEN-4 (3 before) is the rollback's target.
    assert ('warning: the loss diverged at iteration 8' in out
            and 'rolled back to ReMAEN-4 (iteration 4)' in out)
    assert ('warning: ReMAEN-6 was saved 1 iteration(s) before the loss rose (iteration 7): '
            'stepped back to the checkpoint before it (step-back 1 of at most 2) and moved it '
            'to ' + os.path.join(folder, 'diverged')) in out
    assert out.count('rolled back to') == 1
    aside = os.path.join(folder, 'diverged', 'ReMAEN-6')
    assert int(tf.train.load_variable(aside, 'global_step')) == 6
    # 4 restored steps + 8 after the rollback: Adam's beta1_power is 0.9 ** (12 + 1); the
    # new ReMAEN-6 is the retrained one.
    prefix = os.path.join(folder, 'ReMAEN-12')
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 13, rel=1e-6)
    assert tf.train.load_variable(os.path.join(folder, 'ReMAEN-6'), 'beta1_power') \
        == pytest.approx(0.9 ** 7, rel=1e-6)
    assert checkpointing.newest_readable(folder) == prefix


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_checkpoint_saved_past_the_cliff_resets_the_step_backs(spiking, monkeypatch, capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=2, margin=3, max_step_backs=1, max_rollbacks=1)
    # Iterations 7-8 spike (6 passed over, back to 4), then 5-8 train on, 8 is saved past the
    # cliff of 6, and 9-10 spike: 8 is passed over in turn, with the step-back that saving 8
    # gave back (the campaign's 9,625 and 9,650).
    monkeypatch.setattr(CorruptingBatcher, 'spike', (7, 8, 13, 14))
    assert main.main(flags + ['--save_every', '2', '--iterations', '12']) == 0
    out = capsys.readouterr().out
    assert 'ReMAEN-6 was saved 1 iteration(s) before the loss rose (iteration 7)' in out
    assert ('warning: ReMAEN-8 was saved 1 iteration(s) before the loss rose (iteration 9): '
            'stepped back to the checkpoint before it (step-back 1 of at most 1)') in out
    assert out.count('rolled back to ReMAEN-4 (iteration 4)') == 1
    assert out.count('rolled back to ReMAEN-6 (iteration 6)') == 1
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    assert sorted(os.listdir(os.path.join(folder, 'diverged'))) == [
        'ReMAEN-6.data-00000-of-00001', 'ReMAEN-6.index',
        'ReMAEN-8.data-00000-of-00001', 'ReMAEN-8.index']
    # 6 restored steps (4 + 2 retrained) + 6 after the second rollback.
    prefix = os.path.join(folder, 'ReMAEN-12')
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 13, rel=1e-6)


@pytest.mark.slow   # two whole training runs with rollbacks (15-40 s on a 2-core CPU)
def test_a_spike_right_after_a_resume_is_rolled_back(spiking, monkeypatch, capsys):
    root, flags = spiking
    observed = []

    class Recording(divergence.DivergenceGuard):
        def observe(self, loss):
            observed.append(float(loss))
            return super().observe(loss)

    monkeypatch.setattr(divergence, 'DivergenceGuard',
                        functools.partial(Recording, min_history=3, window=10, patience=3,
                                          margin=0))
    # A first run without the guard (factor 0), through two corrupted batches.
    monkeypatch.setattr(CorruptingBatcher, 'spike', (5, 6))
    assert main.main(flags + ['--iterations', '12', '--divergence_factor', '0']) == 0
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    with open(os.path.join(folder, checkpointing.GUARD_FILE)) as handle:
        stored = json.load(handle)
    # Saved with ReMAEN-12: the last window (10) of the 12 batch losses, the high ones too
    # (nothing judged them): the loss level the run reached.
    assert stored['step'] == 12 and stored['losses'] == pytest.approx(observed[-10:])
    assert max(observed[4:6]) > 3 * np.median(observed)
    median = np.median(observed[-10:])
    capsys.readouterr()
    # The resumed run (guard on) has its first three batches corrupted: judged against the
    # stored losses (it has none of its own yet), they roll it back to the one it resumed.
    monkeypatch.setattr(CorruptingBatcher, 'spike', (1, 2, 3))
    assert main.main(flags + ['--iterations', '16']) == 0
    out = capsys.readouterr().out
    assert ('Divergence guard: judging from the 10 batch losses stored at iteration 12 '
            '(median %.4g)' % median) in out
    assert ('warning: the loss diverged at iteration 15' in out
            and 'rolled back to ReMAEN-12 (iteration 12)' in out)
    prefix = os.path.join(folder, 'ReMAEN-16')
    # 12 restored steps + 4 after the rollback.
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 17, rel=1e-6)


@pytest.mark.slow   # a whole training run with rollbacks (15-40 s on a 2-core CPU)
def test_a_stop_signal_during_a_spike_keeps_the_last_good_checkpoint(spiking, monkeypatch,
                                                                    capsys):
    root, flags = spiking
    guard_with(monkeypatch, patience=5)

    class StoppedInSpike(CorruptingBatcher):
        """SIGTERM arrives while the second corrupted batch trains (iteration 8)."""

        def next_batch(self):
            batch = super().next_batch()
            if self.batches_served == SPIKE[1]:
                os.kill(os.getpid(), signal.SIGTERM)
            return batch
    monkeypatch.setattr(dataloader, 'TrainBatcher', StoppedInSpike)
    assert main.main(flags + ['--iterations', '12']) == 0
    out = capsys.readouterr().out
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    newest = os.path.join(folder, 'ReMAEN-4')
    assert ('Interrupted by SIGTERM at iteration 8: its checkpoint held back, the newest is %s, '
            'exiting.' % newest) in out
    assert sorted(n for n in os.listdir(folder) if n.endswith('.index')) == ['ReMAEN-4.index']
