"""The one error path (``console/errors.py``): every class of fault ends in one line, nothing
is lost.

One test per class of fault, in-process (``main.main`` with capsys, or the library function
behind it) on tiny images. Faults that cannot be made portably (a full disk, no memory, a
fault in the middle of a folder) are injected at their boundary; a stand-in derainer
replaces the network where only the writing of results is under test. The classes that need
a real process (Ctrl-C during start-up, a closed pipe, training) are in test_bad_inputs.py.
"""
import csv
import errno
import json
import os
import shutil
import signal
import struct
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from console import errors
import dataloader
from loading import images
import inference
import main
import settings
from conftest import ROOT, write_pairs


def one_error(err, *words):
    """The single ``error:`` line of ``err`` (no traceback), containing ``words``."""
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def photo(path, size=(20, 30), seed=0):
    """A small random PNG/JPEG photo at ``path`` (any name); returns the path as a str."""
    image = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    return images.write_image(str(path), image)


class StandIn(object):
    """A derainer without a network: ``output = 0.9 * input``; raises ``error`` on call
    number ``fail_at``."""
    prefix = 'stand-in'

    def __init__(self, fail_at=None, error=None):
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def derain(self, image, stages=False):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        output = 0.9 * image
        return (output, [output] * 3) if stages else output


# ----------------------------------------------------------------------------- flags
@pytest.mark.parametrize('argv, words', [
    (['--intra_op_threads', '-1'], ['--intra_op_threads']),
    (['--inter_op_threads', '100000'], ['--inter_op_threads']),
    (['--seed', '-1'], ['--seed']),
    (['--iterations', str(2 ** 40)], ['--iterations']),
    (['--is_training', 'True', '--batch_size', '200000'], ['--batch_size', 'GB']),
    (['--lr', '-1'], ['--lr']),
    (['--lr', 'nan'], ['--lr']),
    (['--lr', 'inf'], ['--lr']),
    (['--edge_loss_weight', 'nan'], ['--edge_loss_weight']),
    (['--beta1', '2'], ['--beta1']),
    (['--beta2', '1'], ['--beta2']),
    (['--tile', '8'], ['--tile', 'halo']),
    (['--memory_budget_mb', '-1'], ['--memory_budget_mb']),
    (['--is_training', 'True', '--save_every', '100', '--keep_every', '250'],
     ['--keep_every 250', 'multiple of --save_every 100']),
    (['--divergence_factor', '-2'], ['--divergence_factor']),
    (['--keep_every', '-1'], ['--keep_every']),
    (['--input', ''], ['--input', 'empty']),
    (['--is_training', 'True', '--checkpoint_dir', ''], ['--checkpoint_dir', 'empty']),
    ([], ['nothing to do']),
])
def test_bad_flags_end_in_one_line_before_work_starts(argv, words, capsys):
    assert main.main(argv) == 2
    one_error(capsys.readouterr().err, *words)


def test_small_tiles_get_a_note_and_flags_in_range_pass(capsys):
    args = settings.parse_args(['--tile', '128', '--seed', '0', '--beta1', '0',
                                '--intra_op_threads', '1024', '--edge_loss_weight', '0'])
    assert (args.tile, args.seed, args.beta1) == (128, 0, 0.0)
    assert 'note: --tile 128 is small' in capsys.readouterr().out
    settings.parse_args(['--tile', '512'])
    assert 'note' not in capsys.readouterr().out


# ----------------------------------------------------------------------------- paths
@pytest.mark.parametrize('flag, command', [
    ('--checkpoint_dir', ['--is_training', 'True']),
    ('--logs_dir', ['--is_training', 'True']),
    ('--sample_dir', ['--is_training', 'True']),
    ('--test_dir', ['--input', 'PHOTO']),
    ('--export_weights', []),
])
def test_output_folders_below_a_regular_file(flag, command, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    command = [photo(tmp_path / 'p.png') if a == 'PHOTO' else a for a in command]
    assert main.main(command + [flag, str(blocker / 'sub')]) == 2
    one_error(capsys.readouterr().err, flag, str(blocker), 'not a folder')


def test_inputs_that_are_not_photos(tmp_path, capsys):
    text = tmp_path / 'notes'
    text.mkdir()
    (text / 'a.png').write_text('not an image')
    cases = [(str(text), [os.path.join(str(text), 'a.png'), 'is not an image']),
             (str(tmp_path / 'missing'), ['missing', 'does not exist'])]
    # A single file says what it is, as in a folder (not only that it does not decode).
    (tmp_path / 'empty.png').write_bytes(b'')
    half = photo(tmp_path / 'whole.jpg')
    with open(half, 'rb') as handle:
        data = handle.read()
    (tmp_path / 'half.jpg').write_bytes(data[:len(data) // 2])
    cases += [(str(text / 'a.png'), [os.path.join(str(text), 'a.png'), 'is not an image']),
              (str(tmp_path / 'empty.png'), ['empty.png', 'is not an image', 'it is empty']),
              (str(tmp_path / 'half.jpg'), ['half.jpg', 'corrupt', 'replace it'])]
    if os.path.exists('/dev/null'):
        cases.append(('/dev/null', ['/dev/null', 'not an image file or a folder']))
    for path, words in cases:
        assert main.main(['--input', path]) == 2
        one_error(capsys.readouterr().err, *words)


def test_input_folder_is_every_photo_in_it_never_a_dataset_layout(tmp_path, capsys):
    folder = tmp_path / 'photos'
    (folder / 'data').mkdir(parents=True)
    names = ['rain1.jpg', 'norain1.jpg', 'rain-2.png', 'norain-2.png', '1_in.png', '1_GT.png']
    for index, name in enumerate(names):
        photo(folder / name, seed=index)
    photo(folder / 'data' / 'inside.png')
    pairs, label, source = main.input_pairs(settings.parse_args(['--input', str(folder)]))
    assert sorted(os.path.basename(p.rain_path) for p in pairs) == sorted(names)
    assert all(p.clean_path is None and p.half is None for p in pairs)
    assert (label, source) == ('photos', str(folder))
    assert 'subfolders are not searched (data/)' in capsys.readouterr().out


# ----------------------------------------------------------------------------- photos
def exif_jpeg(image, orientation):
    """JPEG bytes of ``image`` with an EXIF APP1 segment holding only ``orientation``."""
    data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    tiff = (b'MM\x00\x2a\x00\x00\x00\x08' + b'\x00\x01'
            + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0) + b'\x00\x00\x00\x00')
    app1 = b'Exif\x00\x00' + tiff
    return data[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + data[2:]


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255                       # a white band on the left, as stored
    path = tmp_path / 'phone.jpg'
    path.write_bytes(exif_jpeg(stored, 6))     # 6: shown rotated 90 degrees clockwise
    upright = images.read_image(str(path))
    assert upright.shape == (40, 20, 3)
    assert upright[:8].min() > 0.9 and upright[12:].max() < 0.1   # the band is on top


def test_any_file_name_is_written_and_writes_are_atomic(tmp_path, monkeypatch):
    try:
        name = os.fsdecode(os.fsencode(str(tmp_path)) + b'/ph\xffoto.png')
        images.write_image(name, np.zeros((4, 4, 3), np.uint8))
    except (OSError, UnicodeError):
        pytest.skip('this file system refuses names that are not UTF-8')
    assert cv2.imdecode(np.fromfile(name, np.uint8), cv2.IMREAD_COLOR).shape == (4, 4, 3)
    target = str(tmp_path / 'results.json')
    images.atomic_write(target, lambda handle: handle.write('good'))

    def full(handle):
        handle.write('half')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError) as caught:
        images.atomic_write(target, full)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == target
    assert open(target).read() == 'good' and os.listdir(str(tmp_path)).count(
        'results.json.tmp') == 0


# ----------------------------------------------------------------------------- results
def _folder(tmp_path, count=3):
    folder = tmp_path / 'in'
    folder.mkdir()
    return [photo(folder / ('%s.png' % chr(ord('a') + i)), seed=i) for i in range(count)]


def _disk_full_at(monkeypatch, suffix):
    real = images.write_image

    def write(path, image, params=()):
        if path.endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(path, image, params)
    monkeypatch.setattr(images, 'write_image', write)


@pytest.mark.parametrize('fault, code, words', [
    ('unreadable image', 2, ['b.png', 'corrupt']),
    ('disk full', 2, ['disk is full', 'b.png']),
    ('Ctrl-C', 130, ['interrupted by Ctrl-C']),
    ('SIGTERM', 143, ['SIGTERM']),
    ('out of memory', 2, ['out of memory']),
])
def test_a_fault_in_the_middle_of_a_folder_keeps_the_images_done(fault, code, words,
                                                                  tmp_path, monkeypatch,
                                                                  capsys):
    paths = _folder(tmp_path)
    derainer = StandIn()
    if fault == 'unreadable image':
        with open(paths[1], 'r+b') as handle:
            handle.truncate(40)
    elif fault == 'disk full':
        _disk_full_at(monkeypatch, 'b.png')
    else:
        error = {'Ctrl-C': KeyboardInterrupt(), 'SIGTERM': errors.Interrupted(signal.SIGTERM),
                 'out of memory': MemoryError()}[fault]
        derainer = StandIn(fail_at=2, error=error)
    pairs = dataloader.folder_images(str(tmp_path / 'in'), verbose=False)
    out = str(tmp_path / 'out')
    assert errors.run(lambda: inference.derain_pairs(derainer, pairs, out, 'in')) == code
    one_error(capsys.readouterr().err, *words + ['1 of 3 image(s) already derained', out])
    with open(os.path.join(out, 'results.json')) as handle:
        assert [row['name'] for row in json.load(handle)['images']] == ['a']
    assert os.path.isfile(os.path.join(out, 'index.html'))
    assert os.path.isfile(os.path.join(out, 'a.png'))
    assert not [n for n in os.listdir(out) if n.endswith('.tmp')]


def test_names_are_written_safely(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    formula = '=HYPERLINK("evil.example","x")'
    photo(folder / (formula + '.png'))
    try:
        for raw in (b'ph\xffoto.png', b'ph\xfeoto.png'):  # both show as 'ph\ufffdoto'
            photo(os.fsdecode(os.fsencode(str(folder)) + b'/' + raw))
    except (OSError, UnicodeError):
        pytest.skip('this file system refuses names that are not UTF-8')
    pairs = dataloader.folder_images(str(folder), verbose=False)
    out = str(tmp_path / 'out')
    results = inference.derain_pairs(StandIn(), pairs, out, 'in', verbose=True)
    assert sorted(row['name'] for row in results['images']) == sorted(
        [formula, 'ph\ufffdoto', 'ph\ufffdoto_2'])
    assert all(os.path.isfile(row['output']) for row in results['images'])
    with open(os.path.join(out, 'results.csv'), encoding='utf-8') as handle:
        cells = [row[0] for row in csv.reader(handle)]
    assert "'" + formula in cells and formula not in cells
    assert os.path.isfile(os.path.join(out, 'index.html'))


def test_results_of_inputs_with_the_same_name_never_collide(tmp_path, capsys):
    out = str(tmp_path / 'results')
    first, second = (str(tmp_path / trip / 'photos') for trip in ('trip1', 'trip2'))
    for folder in (first, second):
        os.makedirs(folder)
        photo(os.path.join(folder, 'a.png'))
    folder_1 = inference.results_folder(out, 'photos', first)
    inference.derain_pairs(StandIn(), dataloader.folder_images(first), folder_1, 'photos',
                           verbose=False, source=first)
    folder_2 = inference.results_folder(out, 'photos', second)
    assert folder_2 == os.path.join(out, 'photos_2')
    assert 'the results of %s go to %s' % (second, folder_2) in capsys.readouterr().out
    assert inference.results_folder(out, 'photos', first) == folder_1     # a rerun
    legacy = os.path.join(out, 'old')
    os.makedirs(legacy)
    with open(os.path.join(legacy, 'results.json'), 'w') as handle:
        json.dump({'images': []}, handle)          # an earlier version's: no source
    assert inference.results_folder(out, 'old', second) == legacy


# ----------------------------------------------------------------------------- describing
FLAGS = settings.parse_args(['--is_training', 'True', '--test_dir', '/data/results'])


@pytest.mark.parametrize('exc, code, words', [
    (OSError(errno.ENOSPC, 'x', '/data/results/Demo/a.png'), 2,
     ['the disk is full', '/data/results/Demo/a.png', '--test_dir']),
    (PermissionError(errno.EACCES, 'x', '/data/results/a.png'), 2, ['permission denied']),
    (NotADirectoryError(errno.ENOTDIR, 'x', 'logs/run'), 2, ['not a folder']),
    (OSError(errno.EROFS, 'x', '/data/results/a.png'), 2, ['read-only']),
    (tf.errors.ResourceExhaustedError(None, None, "Graph execution error:\n\nNode: 'save/SaveV2'"
                                      '\nckpt/ReMAEN-5.data-00000-of-00001.tempstate123; '
                                      'No space left on device'), 2,
     ['the disk is full', 'ckpt/ReMAEN-5.data-00000-of-00001;']),
    (tf.errors.FailedPreconditionError(None, None, '/etc/hostname is not a directory'), 2,
     ['/etc/hostname', 'not a folder']),
    (tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor'), 2,
     ['out of memory', '--batch_size (now 32)']),
    (MemoryError(), 2, ['out of memory', '--patch_size (now 64)']),
    (UnicodeEncodeError('utf-8', 'ph\udcffoto.png', 2, 3, 'surrogates not allowed'), 2,
     ['ph\\udcffoto.png', 'not valid']),
    (KeyboardInterrupt(), 130, ['interrupted by Ctrl-C']),
    (errors.Interrupted(signal.SIGTERM), 143, ['SIGTERM']),
    (tf.errors.InvalidArgumentError(None, None, 'shapes differ'), 1,
     ['internal error', 'InvalidArgumentError', 'a bug', '--verbose']),
    (ValueError('not ours'), 1, ['internal error', 'ValueError: not ours']),
])
def test_every_fault_is_one_line_with_its_exit_code(exc, code, words, capsys):
    def fail():
        raise exc
    assert errors.run(fail, args=FLAGS) == code
    one_error(capsys.readouterr().err, *words)


def test_reason_is_a_short_cause_for_messages_written_elsewhere():
    assert errors.reason(tf.errors.ResourceExhaustedError(
        None, None, 'Graph execution error:\n\nx.tempstate1; No space left on device')) == \
        'the disk is full'
    assert errors.reason(tf.errors.NotFoundError(
        None, None, 'Graph execution error:\n\nKey w not found')) == 'Key w not found'
    assert errors.reason(MemoryError()) == 'out of memory'


def test_traceback_only_with_verbose_and_notes_are_kept(capsys):
    def fail():
        exc = ValueError('boom')
        exc.add_note('where the results went')
        raise exc
    assert errors.run(fail) == 1
    assert 'Traceback' not in capsys.readouterr().err
    assert errors.run(fail, verbose=True) == 1
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.strip().splitlines()[-1].endswith(
        'where the results went')


def test_closed_stdout_is_a_quiet_exit(capsys):
    def fail():
        raise BrokenPipeError(errno.EPIPE, 'Broken pipe')
    assert errors.run(fail) == errors.EXIT_STDOUT_CLOSED == 141
    assert capsys.readouterr().err == ''


def test_sigterm_raises_inside_and_the_handler_is_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def work():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)                        # interrupted long before
    started = time.perf_counter()
    assert errors.run(work) == 143
    assert time.perf_counter() - started < 4
    one_error(capsys.readouterr().err, 'interrupted by SIGTERM')
    assert signal.getsignal(signal.SIGTERM) is before


def test_user_errors_include_checkpoint_errors_once_loaded():
    import dataloader
    classes = errors.user_errors()
    assert issubclass(dataloader.DataError, classes)
    assert issubclass(errors.UsageError, classes) and issubclass(errors.TrainingError, classes)
    for name in ('checkpointing', 'utils'):
        module = __import__(name)
        if hasattr(module, 'CheckpointError'):
            assert issubclass(module.CheckpointError, errors.user_errors())


def test_pairs_for_testing_are_checked_before_work(tmp_path):
    folder = str(tmp_path / 'set')
    write_pairs(folder, 2, size=(12, 12))
    cv2.imwrite(os.path.join(folder, 'norain-2.png'), np.zeros((14, 12, 3), np.uint8))
    pairs, _ = dataloader.find_pairs(folder, verbose=False)
    with pytest.raises(dataloader.DataError, match='size mismatch'):
        dataloader.check_pairs(pairs)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_given_as_one_of_its_files_derains_as_its_prefix(tmp_path, capsys):
    """``--checkpoint .../ReMAEN.data-00000-of-00001`` (a file manager's copied path) derains
    exactly as the folder does."""
    folder = os.path.join(ROOT, 'checkpoints', 'ReMAEN_light')
    source = photo(tmp_path / 'photo.png', size=(16, 20))
    outputs = []
    for index, where in enumerate([folder, os.path.join(folder, 'ReMAEN.data-00000-of-00001'),
                                   os.path.join(folder, 'ReMAEN.index')]):
        out = str(tmp_path / ('out%d' % index))
        assert main.main(['--input', source, '--checkpoint', where, '--test_dir', out]) == 0
        assert 'error:' not in capsys.readouterr().err
        outputs.append(cv2.imread(os.path.join(out, 'photo', 'photo.png')))
    assert outputs[0].shape == (16, 20, 3)
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_settings_value_of_the_wrong_type_is_one_line_naming_the_file(tmp_path, capsys):
    folder = str(tmp_path / 'model')
    shutil.copytree(os.path.join(ROOT, 'checkpoints', 'ReMAEN_light'), folder)
    path = os.path.join(folder, 'remaen_settings.json')
    with open(path) as handle:
        values = json.load(handle)
    values['model']['stages'] = 'three'
    with open(path, 'w') as handle:
        json.dump(values, handle)
    before = {name: open(os.path.join(folder, name), 'rb').read() for name in os.listdir(folder)}
    source = photo(tmp_path / 'photo.png', size=(16, 20))
    assert main.main(['--input', source, '--checkpoint', folder,
                      '--test_dir', str(tmp_path / 'out')]) == 2
    one_error(capsys.readouterr().err, path, '"model.stages" is "three"', 'an integer',
              'delete the file')
    assert {name: open(os.path.join(folder, name), 'rb').read()
            for name in os.listdir(folder)} == before
