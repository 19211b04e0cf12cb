"""Bad-input corpus: every case a new user hits gets the right result or one ``error:`` line.

Each case runs ``main.py`` in a subprocess on tiny images and asserts the exit code, that no
traceback was printed, the key words of the message, and that nothing already produced was
removed. The network runs only where the case needs it (shared tiny checkpoint). The faults
that need a real process are here too (Ctrl-C during start-up, a closed standard output, a
full disk during training); the other classes of fault are in test_errors.py, in-process.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import main
from conftest import ROOT, write_pairs

pytestmark = pytest.mark.slow
MAIN = os.path.join(ROOT, 'main.py')
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='')
ENV.pop('TF_CPP_MIN_LOG_LEVEL', None)   # the CLI must be quiet by itself
SIZE = 24


def run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, MAIN] + args, cwd=cwd, env=ENV, timeout=timeout,
                          capture_output=True, text=True)


def assert_user_error(result, *words):
    """Exit 2, exactly one ``error:`` line naming ``words``, no traceback."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert 'Traceback' not in err and 'Traceback' not in result.stdout
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('error:')]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def snapshot(folder):
    """{relative path: bytes} of every file below ``folder``."""
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, folder)] = handle.read()
    return found


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A tiny trained checkpoint (1 iteration) and its data."""
    root = str(tmp_path_factory.mktemp('bad'))
    write_pairs(os.path.join(root, 'train', 'Tiny'), 2, size=(SIZE, SIZE), seed=0)
    result = run(['--is_training', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                  '--iterations', '1', '--patch_size', '16', '--seed', '0']
                 + flags(root), cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def flags(root):
    return ['--data_path', os.path.join(root, 'train', '{}'),
            '--checkpoint_dir', os.path.join(root, 'ckpt'),
            '--logs_dir', os.path.join(root, 'logs'),
            '--sample_dir', os.path.join(root, 'samples'),
            '--test_dir', os.path.join(root, 'results')]


def test_quiet_run_prints_only_our_output(workspace):
    """A normal run (training was one) has nothing from TensorFlow on stderr."""
    result = run(['--is_training', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                  '--iterations', '1', '--patch_size', '16'] + flags(workspace), cwd=workspace)
    assert result.returncode == 0
    assert result.stderr.strip() == '', result.stderr
    assert '\r' not in result.stdout          # not a terminal: plain progress lines


def test_images_too_small_for_ssim_complete_with_psnr(workspace, tmp_path):
    folder = str(tmp_path / 'ten')
    write_pairs(folder, 1, size=(10, 10), seed=3)
    result = run(['--is_testing', 'True', '--test_path', folder, '--train_dataset', 'Tiny',
                  '--batch_size', '1'] + flags(workspace), cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and 'SSIM is null' in result.stdout
    with open(os.path.join(workspace, 'results', 'ten', 'results.json')) as handle:
        image = json.load(handle)['images'][0]
    assert image['psnr'] is not None and image['ssim'] is None and image['ssim_y'] is None


def test_unwritable_output_folder(workspace):
    before = snapshot(os.path.join(workspace, 'ckpt'))
    result = run(['--input', os.path.join(workspace, 'train', 'Tiny'), '--train_dataset', 'Tiny',
                  '--batch_size', '1'] + flags(workspace) + ['--test_dir', '/etc/hostname/out'],
                 cwd=workspace)
    assert_user_error(result, '/etc/hostname/out', '--test_dir')
    assert snapshot(os.path.join(workspace, 'ckpt')) == before


def test_keep_checkpoints_across_resumed_runs(tmp_path):
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'train', 'Tiny'), 1, size=(SIZE, SIZE), seed=0)
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    for iterations in (2, 4):
        result = run(['--is_training', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                      '--iterations', str(iterations), '--patch_size', '16',
                      '--keep_checkpoints', '1'] + flags(root), cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
        indexes = sorted(n for n in os.listdir(folder) if n.endswith('.index'))
        assert indexes == ['ReMAEN-%d.index' % iterations]


def test_input_alone_uses_the_shipped_model(tmp_path):
    photo = str(tmp_path / 'photo.png')
    cv2.imwrite(photo, np.full((20, 28, 3), 128, np.uint8))
    result = run(['--input', photo, '--test_dir', str(tmp_path / 'out')], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'shipped light-rain model' in result.stdout
    assert os.path.isfile(str(tmp_path / 'out' / 'photo' / 'photo.png'))
    assert 'n/a' not in result.stdout and 'no ground truth' in result.stdout


def test_testing_requires_the_named_checkpoint(tmp_path):
    write_pairs(str(tmp_path / 'mine'), 1, size=(SIZE, SIZE))
    result = run(['--is_testing', 'True', '--test_path', str(tmp_path / 'mine'),
                  '--checkpoint_dir', str(tmp_path / 'none')], cwd=str(tmp_path))
    assert_user_error(result, 'no checkpoint found')


def test_custom_test_path_is_labelled_by_its_folder(workspace, tmp_path):
    folder = str(tmp_path / 'my_set')
    write_pairs(folder, 1, size=(SIZE, SIZE), seed=5)
    result = run(['--is_testing', 'True', '--test_path', folder, '--train_dataset', 'Tiny',
                  '--batch_size', '1'] + flags(workspace), cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(workspace, 'results', 'my_set', 'results.json')) as handle:
        assert json.load(handle)['dataset'] == 'my_set'
    index = os.path.join(workspace, 'results', 'my_set', 'index.html')
    assert os.path.isfile(index)


def _corpus(root):
    """Folder cases -> (folder, expected key words); built on disk under ``root``."""
    cases = {}

    def case(name):
        path = os.path.join(root, name)
        os.makedirs(path, exist_ok=True)
        return path

    cases['empty'] = (case('empty'), ['no image pairs', 'empty'])
    corrupt = case('corrupt')
    write_pairs(corrupt, 1, size=(SIZE, SIZE))
    with open(os.path.join(corrupt, 'rain-1.png'), 'wb') as handle:
        handle.write(b'not a png at all')
    cases['corrupt'] = (corrupt, ['rain-1.png', 'corrupt'])
    mismatch = case('mismatch')
    write_pairs(mismatch, 1, size=(SIZE, SIZE))
    cv2.imwrite(os.path.join(mismatch, 'norain-1.png'), np.zeros((SIZE + 4, SIZE, 3), np.uint8))
    cases['size mismatch'] = (mismatch, ['rain-1.png', 'size'])
    orphan = case('orphan')
    write_pairs(orphan, 1, size=(SIZE, SIZE))
    cv2.imwrite(os.path.join(orphan, 'norain-7.png'), np.zeros((SIZE, SIZE, 3), np.uint8))
    cases['orphan'] = (orphan, ['norain-7.png'])
    small = case('small')
    write_pairs(small, 2, size=(8, 8))
    cases['smaller than patch'] = (small, ['smaller than the training patch'])
    return cases


@pytest.mark.parametrize('name', ['empty', 'corrupt', 'size mismatch', 'orphan',
                                  'smaller than patch'])
def test_training_data_corpus(name, workspace, tmp_path):
    folder, words = _corpus(str(tmp_path))[name]
    before = snapshot(os.path.join(workspace, 'ckpt'))
    result = run(['--is_training', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                  '--iterations', '9', '--patch_size', '16', '--data_path', folder]
                 + flags(workspace)[2:], cwd=workspace)
    assert_user_error(result, *words)
    assert snapshot(os.path.join(workspace, 'ckpt')) == before


def test_missing_folder_and_bad_flags(workspace, tmp_path):
    result = run(['--input', str(tmp_path / 'nowhere')], cwd=workspace)
    assert_user_error(result, 'nowhere', 'does not exist')
    for argv, word in ((['--is_training', 'True', '--batch_size', '0'], '--batch_size'),
                       (['--is_testing', 'maybe'], '--is_testing'),
                       (['--input', 'x', '--tile_mode', 'slow'], '--tile_mode')):
        result = run(argv, cwd=workspace)
        assert result.returncode == 2 and 'Traceback' not in result.stderr
        assert word in result.stderr


def test_converted_images_16bit_gray_alpha_derain(workspace, tmp_path):
    folder = str(tmp_path / 'odd')
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    cv2.imwrite(os.path.join(folder, 'deep.png'),
                rng.integers(0, 65535, (SIZE, SIZE, 3), dtype=np.uint16))
    cv2.imwrite(os.path.join(folder, 'gray.png'), rng.integers(0, 255, (SIZE, SIZE), np.uint8))
    cv2.imwrite(os.path.join(folder, 'alpha.png'),
                rng.integers(0, 255, (SIZE, SIZE, 4), dtype=np.uint8))
    result = run(['--input', folder, '--train_dataset', 'Tiny', '--batch_size', '1']
                 + flags(workspace), cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    # One ``note:`` line each, not Python's "file:line: DataWarning" and source line.
    notes = [line for line in result.stderr.splitlines() if line.startswith('note: ')]
    for word in ('16-bit', 'grayscale', 'alpha'):
        assert len([line for line in notes if word in line]) == 1, result.stderr[-2000:]
    assert 'DataWarning' not in result.stderr and 'images.py' not in result.stderr
    out = os.path.join(workspace, 'results', 'odd')
    assert sorted(n for n in os.listdir(out) if n.endswith('.png')) == \
        ['alpha.png', 'deep.png', 'gray.png']


def test_corrupt_checkpoint_keeps_files(workspace, tmp_path):
    broken = str(tmp_path / 'broken')
    shutil.copytree(os.path.join(workspace, 'ckpt', 'ReMAEN_Tiny_1'), broken)
    data = [n for n in os.listdir(broken) if '.data-' in n][0]
    with open(os.path.join(broken, data), 'r+b') as handle:
        handle.truncate(100)
    before = snapshot(broken)
    result = run(['--input', os.path.join(workspace, 'train', 'Tiny'), '--checkpoint', broken,
                  '--test_dir', str(tmp_path / 'out')], cwd=workspace)
    assert_user_error(result, 'corrupt')
    assert snapshot(broken) == before


def _started(tmp_path):
    """main.py --input on a folder of one photo, unbuffered; returns it once it has printed
    its first line ("Found 1 image(s)", before TensorFlow starts)."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    cv2.imwrite(str(folder / 'p.png'), np.full((20, 28, 3), 128, np.uint8))
    process = subprocess.Popen(
        [sys.executable, MAIN, '--input', str(folder), '--test_dir', str(tmp_path / 'out')],
        cwd=str(tmp_path), env=dict(ENV, PYTHONUNBUFFERED='1'), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith('Found 1 image(s)')
    return process


def test_ctrl_c_during_start_up(tmp_path):
    process = _started(tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err
    assert err.strip() == 'error: interrupted by Ctrl-C (SIGINT)'
    assert not os.path.exists(str(tmp_path / 'out' / 'photos' / 'p.png'))


def test_stdout_closed_early_is_a_quiet_exit(tmp_path):
    """``python main.py --input photos | head -n 1``."""
    process = _started(tmp_path)
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=600) == 141 and err == ''


def test_disk_full_while_training_keeps_the_checkpoints(workspace, tmp_path, monkeypatch,
                                                        capsys):
    root = str(tmp_path)
    shutil.copytree(os.path.join(workspace, 'ckpt'), os.path.join(root, 'ckpt'))
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    before = {name: data for name, data in snapshot(folder).items() if 'ReMAEN' in name}

    def full(saver, session, prefix, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "Graph execution error:\n\nNode: 'save/SaveV2'\n%s-2.data-00000-of-"
            '00001.tempstate1; %s' % (prefix, os.strerror(errno.ENOSPC)))
    monkeypatch.setattr(tf.train.Saver, 'save', full)
    code = main.main(['--is_training', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                      '--iterations', '2', '--patch_size', '16']
                     + flags(workspace)[:2] + flags(root)[2:])
    err = capsys.readouterr().err
    assert code == 2, err
    line = assert_user_error(subprocess.CompletedProcess([], 2, '', err), 'ReMAEN_Tiny_1')
    assert 'space' in line
    assert {name: data for name, data in snapshot(folder).items() if 'ReMAEN' in name} == before
