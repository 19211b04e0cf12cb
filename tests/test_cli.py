"""End-to-end CLI runs of main.py on tiny generated data: train, resume, test, derain, errors.

``main.main`` runs in this process (the flags, outputs and exit codes are the command's; only
TensorFlow's start-up is shared); the one property that needs a process of its own, SIGINT
during training, runs ``main.py`` in a subprocess, in the slow tier.
"""
import contextlib
import glob
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import ROOT, write_pairs
import main
import metrics

MAIN = os.path.join(ROOT, 'main.py')
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')


class Ran(object):
    """What a command line run left: ``returncode``, ``stdout``, ``stderr`` (as
    ``subprocess.run`` gives them)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(args, cwd):
    """``python main.py ARGS`` run from ``cwd``, in this process: ``main.main(args)`` with its
    standard output and error captured."""
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main.main(args)
    finally:
        os.chdir(previous)
    return Ran(code, out.getvalue(), err.getvalue())


def common_flags(root):
    return ['--data_path', os.path.join(root, 'data', 'train', '{}'),
            '--test_path', os.path.join(root, 'data', 'test', '{}'),
            '--checkpoint_dir', os.path.join(root, 'ckpt'),
            '--test_dir', os.path.join(root, 'results'),
            '--logs_dir', os.path.join(root, 'logs'),
            '--sample_dir', os.path.join(root, 'samples'),
            '--patch_size', '24', '--lr_decay_step', '3', '--summary_every', '1', '--seed', '0']


PAPER_TEST = ['--is_testing', 'True', '--train_dataset', 'Tiny', '--test_dataset', 'TinyTest',
              '--trainset_size', '200', '--testset_size', '100', '--batch_size', '2']


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """Tiny data, then 2 training iterations with --is_testing False."""
    root = str(tmp_path_factory.mktemp('cli'))
    write_pairs(os.path.join(root, 'data', 'train', 'Tiny'), 3, size=(28, 36), seed=0)
    write_pairs(os.path.join(root, 'data', 'test', 'TinyTest'), 2, size=(28, 36), seed=1)
    first = run_main(['--is_training', 'True', '--is_testing', 'False', '--train_dataset', 'Tiny',
                      '--test_dataset', 'TinyTest', '--batch_size', '2', '--iterations', '2']
                     + common_flags(root), cwd=root)
    return root, first


def checkpoint_step(folder):
    import checkpointing
    prefix = checkpointing.find(folder)
    values = dict(tf.train.list_variables(prefix))
    assert 'global_step' in values
    return prefix, int(tf.train.load_variable(prefix, 'global_step'))


def logged_scalars(logs, tag):
    """{step: value of tag} from the events files; a file still being written is read up to
    its end."""
    values = {}
    for path in glob.glob(os.path.join(logs, '*', 'events.*')):
        try:
            for event in tf.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == tag:
                        values[event.step] = value.simple_value
        except tf.errors.DataLossError:
            pass  # the last record is half written (the run is still going)
    return values


def test_train_then_resume_keeps_step_and_schedule_then_tests(workspace):
    root, first = workspace
    assert first.returncode == 0, first.stderr
    assert 'Parameters: 495771 in 138 variables' in first.stdout
    # The command reports its own iteration time (what bench.py compares with its step).
    assert re.search(r'Iteration time: [0-9.]+ s per iteration \(median of 1;', first.stdout)
    # Training and test sets share no background: no warning.
    assert 'warning:' not in first.stdout
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_2')
    assert checkpoint_step(folder)[1] == 2
    # --is_testing False did not test.
    assert not os.path.exists(os.path.join(root, 'results'))

    # The resume moves the decay step from 3 to 2 (as the Rain100L campaign did, issue 41).
    second = run_main(['--is_training', 'True'] + PAPER_TEST[2:] + ['--iterations', '4']
                      + common_flags(root) + ['--is_testing', 'True', '--lr_decay_step', '2'],
                      cwd=root)
    assert second.returncode == 0, second.stderr
    assert 'Resuming from' in second.stdout and 'at iteration 2' in second.stdout
    prefix, step = checkpoint_step(folder)
    assert step == 4 and 'no optimizer state' not in second.stdout
    # Adam's state was saved and restored: beta1_power = 0.9 ** (steps + 1) only if the
    # resumed run continued from the stored value instead of a fresh 0.9.
    stored = dict(tf.train.list_variables(prefix))
    assert 'derainNet/RMG/Conv_1/weights/Adam' in stored
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.9 ** 5, rel=1e-6)
    rates = logged_scalars(os.path.join(root, 'logs'), 'schedule/learning_rate')
    # The graph's learning rate: x0.1 once the global step reaches the decay step. Iterations
    # 1-2 ran with decay step 3 (global steps 0-1: 1e-3); the resume's decay step 2 applies
    # from its first iteration (3, global step 2: 1e-4; with the first run's 3 it would be
    # 1e-3), which only holds if the resumed run continued the global step.
    assert sorted(rates) == [1, 2, 3, 4]
    np.testing.assert_allclose([rates[s] for s in (1, 2, 3, 4)], [1e-3, 1e-3, 1e-4, 1e-4],
                               rtol=1e-6)
    # The folder's settings record the decay step the checkpoint trained with last.
    import checkpointing
    assert checkpointing.load_settings(folder)['lr_decay_step'] == 2
    # The batch SSIM (computed in numpy beside the graph's summaries) is logged at every step.
    ssims = logged_scalars(os.path.join(root, 'logs'), 'metrics/ssim')
    assert sorted(ssims) == [1, 2, 3, 4] and all(-1.0 <= v <= 1.0 for v in ssims.values())
    check_test_outputs(root, second.stdout)

    exported = os.path.join(root, 'exported')
    third = run_main(PAPER_TEST + common_flags(root) + ['--export_weights', exported], cwd=root)
    assert third.returncode == 0, third.stderr
    weights = dict(tf.train.list_variables(os.path.join(exported, 'ReMAEN')))
    assert len(weights) == 138 and all(name.startswith('derainNet/') for name in weights)
    np.testing.assert_array_equal(
        tf.train.load_variable(os.path.join(exported, 'ReMAEN'), 'derainNet/RMG/Conv_1/biases'),
        tf.train.load_variable(prefix, 'derainNet/RMG/Conv_1/biases'))


def check_test_outputs(root, stdout):
    """Both protocols printed; results files agree with metrics recomputed on saved images."""
    assert 'PSNR-Y' in stdout and 'SSIM-Y' in stdout and 'paper protocol' in stdout
    out_dir = os.path.join(root, 'results', 'TinyTest')
    with open(os.path.join(out_dir, 'results.json')) as handle:
        results = json.load(handle)
    assert results['dataset'] == 'TinyTest' and results['checkpoint'].endswith('ReMAEN-4')
    assert [r['name'] for r in results['images']] == ['rain-1', 'rain-2']
    test_dir = os.path.join(root, 'data', 'test', 'TinyTest')
    for row in results['images']:
        saved = cv2.imread(row['output']).astype(np.float32) / 255.0
        clean = cv2.imread(os.path.join(test_dir, 'no' + row['name'] + '.png'))
        expected = metrics.evaluate(saved, clean.astype(np.float32) / 255.0)
        # The Y protocol is defined on the uint8 image, i.e. the saved PNG: exact.
        for key in ('psnr_y', 'ssim_y'):
            assert abs(row[key] - expected[key]) < 1e-6, key
        # The paper protocol is measured on the float output (SPEC); rounding to 8 bits
        # moves it by at most about 0.02 dB / 1e-3 SSIM on these images.
        assert abs(row['psnr'] - expected['psnr']) < 0.05
        assert abs(row['ssim'] - expected['ssim']) < 2e-3
        assert row['seconds'] > 0
        assert row['name'] in stdout
    for key in ('psnr', 'ssim', 'psnr_y', 'ssim_y', 'seconds'):
        expected = np.mean([r[key] for r in results['images']])
        assert abs(results['mean'][key] - expected) < 1e-9
    with open(os.path.join(out_dir, 'results.csv')) as handle:
        lines = handle.read().splitlines()
    assert lines[0].startswith('name,output,psnr,ssim,psnr_y,ssim_y')
    assert len(lines) == 4 and lines[-1].startswith('mean,')
    assert ('%.2f' % results['mean']['psnr']) in stdout


def test_training_warns_of_training_pairs_that_share_test_backgrounds(workspace, capsys):
    import settings
    import training
    root, _ = workspace
    train_dir = os.path.join(root, 'data', 'train', 'Tiny')
    args = settings.parse_args(['--is_training', 'True', '--train_dataset', 'Tiny',
                                '--test_dataset', 'Tiny'] + common_flags(root)
                               + ['--test_path', train_dir])
    cache = os.path.join(root, 'logs', 'warning_check')
    training.steps._warn_shared_backgrounds(args, train_dir, cache)
    first = capsys.readouterr().out.splitlines()
    # Every training pair is its own test pair: one warning line per shared background.
    assert len(first) == 3 and all(line.startswith('warning: ') for line in first)
    assert all('share' in line and 'test set Tiny' in line for line in first)
    # A resumed run reads the answer from the cache: the same lines.
    training.steps._warn_shared_backgrounds(args, train_dir, cache)
    assert capsys.readouterr().out.splitlines() == first
    assert os.listdir(cache) == ['dataset_audit.json']


def test_testing_without_checkpoint_fails_clearly(workspace):
    root, _ = workspace
    flags = common_flags(root)
    flags[flags.index('--checkpoint_dir') + 1] = os.path.join(root, 'empty')
    result = run_main(PAPER_TEST + flags, cwd=root)
    assert result.returncode == 2
    assert 'error: no checkpoint found at' in result.stderr
    assert 'Traceback' not in result.stderr


def test_corrupt_checkpoint_gives_clear_error(workspace):
    root, _ = workspace
    import shutil
    import checkpointing
    source, _ = checkpoint_step(os.path.join(root, 'ckpt', 'ReMAEN_Tiny_2'))
    broken = os.path.join(root, 'broken')
    os.makedirs(broken)
    for path in glob.glob(source + '.*'):
        shutil.copy(path, broken)
    data = glob.glob(os.path.join(broken, '*.data-*'))[0]
    with open(data, 'r+b') as handle:
        handle.truncate(os.path.getsize(data) // 3)
    result = run_main(PAPER_TEST + common_flags(root) + ['--checkpoint', broken], cwd=root)
    assert result.returncode == 2, result.stderr
    assert 'error:' in result.stderr and 'corrupt' in result.stderr
    assert 'Traceback' not in result.stderr
    assert checkpointing.find(broken)


def test_derain_folder_without_ground_truth(workspace):
    root, _ = workspace
    photos = os.path.join(root, 'photos')
    os.makedirs(photos)
    rng = np.random.default_rng(5)
    for name in ('street.jpg', 'roof.png'):
        cv2.imwrite(os.path.join(photos, name), (rng.random((20, 30, 3)) * 255).astype(np.uint8))
    result = run_main(['--input', photos, '--train_dataset', 'Tiny', '--batch_size', '2']
                      + common_flags(root), cwd=root)
    assert result.returncode == 0, result.stderr
    out_dir = os.path.join(root, 'results', 'photos')
    with open(os.path.join(out_dir, 'results.json')) as handle:
        results = json.load(handle)
    assert sorted(r['name'] for r in results['images']) == ['roof', 'street']
    for row in results['images']:
        assert row['psnr'] is None and row['ssim_y'] is None
        assert cv2.imread(row['output']).shape == (20, 30, 3)
    assert results['mean']['psnr'] is None and results['mean']['seconds'] > 0
    assert 'not available' in result.stdout


@pytest.mark.slow   # a real process and a real signal
def test_sigint_saves_a_loadable_checkpoint(workspace):
    root, _ = workspace
    flags = common_flags(root)
    flags[flags.index('--checkpoint_dir') + 1] = os.path.join(root, 'ckpt_sigint')
    logs = os.path.join(root, 'logs_sigint')
    flags[flags.index('--logs_dir') + 1] = logs
    process = subprocess.Popen(
        [sys.executable, MAIN, '--is_training', 'True', '--train_dataset', 'Tiny',
         '--test_dataset', 'TinyTest', '--batch_size', '2', '--iterations', '100000',
         '--save_every', '100000'] + flags, cwd=root, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    # Wait until training has started (the summary file gets its first scalars).
    while time.time() < deadline and not logged_scalars(logs, 'schedule/learning_rate'):
        time.sleep(1)
        assert process.poll() is None, process.stdout.read()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert 'Interrupted by SIGINT' in output and 'Traceback' not in output
    prefix, step = checkpoint_step(os.path.join(root, 'ckpt_sigint', 'ReMAEN_Tiny_2'))
    assert step >= 1
    import checkpointing
    import model
    with tf.Graph().as_default():
        model.remaen(tf.placeholder(tf.float32, [1, None, None, 3]))
        with tf.Session() as sess:
            assert checkpointing.restore(sess, prefix, model.model_variables(),
                                 tf.train.get_or_create_global_step()) == step


def test_bad_flag_and_missing_dataset(workspace):
    root, _ = workspace
    result = run_main(['--is_testing', 'perhaps'], cwd=root)
    assert result.returncode == 2 and '--is_testing' in result.stderr
    result = run_main(['--is_testing', 'True', '--test_dataset', 'Nope'] + common_flags(root)
                      [:4], cwd=root)
    assert result.returncode == 2
    assert 'Nope does not exist' in result.stderr and '--test_path' in result.stderr
    assert 'Traceback' not in result.stderr
