"""checkpointing/: the checkpoint folder and its guarantees.

One writer per folder (two real trainers, a lock left by ``kill -9``), atomic saves and the
cleanup of an interrupted one (a real ``kill -9`` in the middle of a save), the fallback from
an unreadable newest checkpoint (no file deleted), export never into a training folder (its
state file untouched), and the files a user may break: an empty or garbage state file, a
settings file of the wrong shape, a folder below a regular file.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, write_pairs
import checkpointing
from checkpointing import lockfile
from console import quiet
import settings
from console.errors import UsageError

tf = quiet.import_tf()
MAIN = os.path.join(ROOT, 'main.py')
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='')


def snapshot(folder):
    """{name: bytes} of the files of ``folder`` (not recursive)."""
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                found[name] = handle.read()
    return found


class Tiny(object):
    """A graph of two variables and its saver: checkpoints of a few bytes."""

    def __init__(self):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.weights = tf.Variable(np.arange(6, dtype=np.float32), name='derainNet/w')
            self.step = tf.Variable(0, dtype=tf.int64, name='global_step')
            self.saver = checkpointing.make_saver([self.weights, self.step])
            self.init = tf.global_variables_initializer()
        self.session = tf.Session(graph=self.graph)
        self.session.run(self.init)

    def save(self, store, step):
        self.session.run(self.step.assign(step))
        return store.save(self.session, self.saver, step)


def training_folder(folder, keep=5):
    notes = []
    return checkpointing.TrainingFolder(str(folder), keep, log=notes.append), notes


# ----------------------------------------------------------------------------- naming, finding
def test_folder_naming_follows_the_flags():
    args = settings.parse_args(['--checkpoint_dir', 'ck', '--train_dataset', 'Rain100H',
                                '--batch_size', '8', '--stages', '2'])
    assert checkpointing.default_folder(args) == os.path.join('ck', 'ReMAEN_Rain100H_8_s2')
    assert checkpointing.checkpoint_folder('c', 'Rain100L', 32) == os.path.join(
        'c', 'ReMAEN_Rain100L_32')
    assert checkpointing.is_shipped(os.path.join(checkpointing.shipped_model_folder('light'),
                                               'ReMAEN'))


@pytest.mark.parametrize('state', ['', 'garbage\x00\xff', 'model_checkpoint_path: "ReMAEN"\n'])
def test_steps_win_over_the_state_file_whatever_it_holds(tmp_path, state):
    # An earlier version's export repointed the state file to weights-only ReMAEN.
    for name in ('ReMAEN', 'ReMAEN-5', 'ReMAEN-12'):
        (tmp_path / (name + '.index')).write_bytes(b'')
    (tmp_path / 'checkpoint').write_text(state)
    assert checkpointing.find(str(tmp_path)) == str(tmp_path / 'ReMAEN-12')
    assert checkpointing.steps(str(tmp_path)) == {5: str(tmp_path / 'ReMAEN-5'),
                                                12: str(tmp_path / 'ReMAEN-12')}


def test_weights_only_folder_with_another_machines_state_file(tmp_path):
    (tmp_path / 'ReMAEN.index').write_bytes(b'')
    (tmp_path / 'other.index').write_bytes(b'')
    os.utime(str(tmp_path / 'ReMAEN.index'), (1, 1))        # older than other.index
    (tmp_path / 'checkpoint').write_text('model_checkpoint_path: "/elsewhere/x/ReMAEN"\n')
    assert checkpointing.find(str(tmp_path)) == str(tmp_path / 'ReMAEN')
    assert checkpointing.find(str(tmp_path / 'ReMAEN.index')) == str(tmp_path / 'ReMAEN')
    assert checkpointing.find(str(tmp_path / 'nothing')) is None


# ----------------------------------------------------------------------------- saving
def test_saves_keep_the_newest_and_write_the_state_file_last(tmp_path):
    tiny = Tiny()
    store, notes = training_folder(tmp_path, keep=2)
    assert store.resume is None and notes == []
    assert os.path.isfile(str(tmp_path / checkpointing.LOCK_FILE))
    for step in (1, 2, 3):
        prefix = tiny.save(store, step)
    assert prefix == str(tmp_path / 'ReMAEN-3') == store.last_saved
    assert sorted(checkpointing.steps(str(tmp_path))) == [2, 3]
    assert (tmp_path / 'checkpoint').read_text() == (
        'model_checkpoint_path: "ReMAEN-3"\nall_model_checkpoint_paths: "ReMAEN-2"\n'
        'all_model_checkpoint_paths: "ReMAEN-3"\n')
    assert checkpointing.stored_step(prefix) == 3
    # TensorFlow reads the state file we write.
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
    store.close()
    assert not os.path.exists(str(tmp_path / checkpointing.LOCK_FILE))
    # A failing save (here: the disk is full) leaves the earlier state: no temporary file,
    # the same state file, a clear error.
    store, _ = training_folder(tmp_path, keep=2)
    before = snapshot(str(tmp_path))

    def full_disk(session, prefix, **_):
        with open(prefix + '.data-00000-of-00001.tempstate1', 'w') as handle:
            handle.write('partial')
        raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
    tiny.saver.save = full_disk
    with pytest.raises(checkpointing.CheckpointError, match='the disk is full.*intact'):
        tiny.save(store, 4)
    assert snapshot(str(tmp_path)) == before
    store.close()


def test_keep_every_keeps_its_multiples_out_of_the_rotation(tmp_path):
    tiny = Tiny()
    store = checkpointing.TrainingFolder(str(tmp_path), 2, log=lambda _: None, keep_every=3)
    for step in range(1, 9):
        tiny.save(store, step)
    # The 2 newest, and every multiple of 3 saved on the way.
    assert sorted(checkpointing.steps(str(tmp_path))) == [3, 6, 7, 8]
    assert checkpointing.stored_step(str(tmp_path / 'ReMAEN-3')) == 3
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / 'ReMAEN-8')
    store.close()
    # A later run without keep_every rotates them like any other.
    store = checkpointing.TrainingFolder(str(tmp_path), 2, log=lambda _: None)
    assert store.resume == str(tmp_path / 'ReMAEN-8')
    tiny.save(store, 9)
    assert sorted(checkpointing.steps(str(tmp_path))) == [8, 9]
    store.close()


@pytest.mark.slow   # a real process killed by a real signal
def test_kill_9_in_the_middle_of_a_save_resumes_from_the_previous_one(tmp_path):
    folder = str(tmp_path / 'run')
    script = r'''
import os, signal, sys, threading, time
sys.path.insert(0, %r)
import checkpointing
from console import quiet
tf = quiet.import_tf()
store = checkpointing.TrainingFolder(%r, keep=5)
big = tf.Variable(tf.random.normal([4, 1024, 1024]), name='big')
step = tf.Variable(0, name='global_step')
saver = checkpointing.make_saver([big, step])
with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    store.save(session, saver, 1)
    threading.Thread(target=store.save, args=(session, saver, 2)).start()
    deadline = time.time() + 60
    while time.time() < deadline:  # TensorFlow is writing ReMAEN-2: kill -9 now
        if any('tempstate' in name for name in os.listdir(%r)):
            os.kill(os.getpid(), signal.SIGKILL)
''' % (ROOT, folder, folder)
    killed = subprocess.run([sys.executable, '-c', script], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert any('tempstate' in name for name in os.listdir(folder))
    with open(os.path.join(folder, checkpointing.LOCK_FILE)) as handle:
        pid = json.load(handle)['pid']                  # the lock file stayed, naming it
    store, notes = training_folder(folder)
    try:
        assert store.resume == os.path.join(folder, 'ReMAEN-1')
        assert checkpointing.unreadable(store.resume) is None
        assert notes[0].startswith('note: took over the lock of process %d on ' % pid)
        assert notes[1].startswith('note: removed what an interrupted save left')
        assert not any('tempstate' in name for name in os.listdir(folder))
    finally:
        store.close()


def test_interrupted_save_leftovers_are_removed_at_the_next_start(tmp_path):
    tiny = Tiny()
    store, _ = training_folder(tmp_path)
    tiny.save(store, 1)
    store.close()
    leftovers = ['ReMAEN-2.index.tempstate77', 'ReMAEN-2.data-00000-of-00001',
                 'checkpoint.tmp4f2a', 'remaen_settings.json.tmp', 'remaen_guard.json.tmp']
    for name in leftovers:
        (tmp_path / name).write_text('x')
    (tmp_path / 'ReMAEN-3_temp').mkdir()
    (tmp_path / 'ReMAEN-3_temp' / 'part-00000-of-00001.index').write_text('x')
    store, notes = training_folder(tmp_path)
    store.close()
    assert notes == ['note: removed what an interrupted save left in %s: %s'
                     % (tmp_path, ', '.join(sorted(leftovers + ['ReMAEN-3_temp'])))]
    assert sorted(os.listdir(str(tmp_path))) == [
        'ReMAEN-1.data-00000-of-00001', 'ReMAEN-1.index', 'checkpoint']


# ----------------------------------------------------------------------------- reading
def test_unreadable_newest_is_skipped_and_nothing_is_deleted(tmp_path):
    tiny = Tiny()
    store, _ = training_folder(tmp_path)
    for step in (1, 2, 3):
        tiny.save(store, step)
    store.close()
    data = str(tmp_path / 'ReMAEN-3.data-00000-of-00001')
    with open(data, 'r+b') as handle:
        handle.truncate(10)
    os.remove(str(tmp_path / 'ReMAEN-2.data-00000-of-00001'))     # and a missing data file
    before = snapshot(str(tmp_path))
    notes = []
    assert checkpointing.newest_readable(str(tmp_path), notes.append) == str(
        tmp_path / 'ReMAEN-1')
    assert [n.split(': it')[0] for n in notes] == [
        'note: skipping checkpoint %s' % (tmp_path / name) for name in ('ReMAEN-3', 'ReMAEN-2')]
    assert all('cannot be read' in n and 'left in place' in n for n in notes)
    assert checkpointing.resolve(str(tmp_path), notes.append) == str(tmp_path / 'ReMAEN-1')
    # A resumed run uses it, and its next save does not remove the newer unreadable one.
    store, notes = training_folder(tmp_path, keep=1)
    assert store.resume == str(tmp_path / 'ReMAEN-1')
    opened = snapshot(str(tmp_path))
    assert opened.pop(checkpointing.LOCK_FILE) and opened == before
    tiny.save(store, 2)
    store.close()
    assert sorted(checkpointing.steps(str(tmp_path))) == [2, 3]
    # Nothing readable at all: an error, not a fresh start.
    os.remove(str(tmp_path / 'ReMAEN-2.index'))
    with pytest.raises(checkpointing.CheckpointError, match='ReMAEN-3.*corrupt'):
        training_folder(tmp_path)
    assert checkpointing.LOCK_FILE not in os.listdir(str(tmp_path))   # released on the error


@pytest.mark.parametrize('text', ['[1, 2]', '"model"', '{"model": 3}', '{"model": ', ''])
def test_settings_file_of_the_wrong_shape_is_one_clear_error(tmp_path, text):
    (tmp_path / checkpointing.SETTINGS_FILE).write_text(text)
    with pytest.raises(checkpointing.CheckpointError, match='remaen_settings.json is not a '
                                                          'settings file'):
        checkpointing.load_settings(str(tmp_path))
    with pytest.raises(checkpointing.CheckpointError):
        checkpointing.stored_config(str(tmp_path))


def test_settings_with_values_a_model_cannot_have(tmp_path):
    from model import ModelConfig
    checkpointing.save_settings(str(tmp_path), {'model': {'channels': 6}})
    with pytest.raises(UsageError, match='use another --checkpoint'):
        checkpointing.check_settings(str(tmp_path), ModelConfig())
    assert checkpointing.load_settings(str(tmp_path / 'absent')) is None


@pytest.mark.parametrize('key, value, expected', [
    ('model.stages', 'three', 'an integer'), ('model.stages', True, 'an integer'),
    ('model.channels', 32.5, 'an integer'), ('model.dilations', [1, '2', 3], 'list of integers'),
    ('model.dilations', 3, 'list of integers'), ('model.shared_attention', 'yes', 'true or false'),
    ('edge_loss_weight', '0.1', 'a number'), ('batch_size', None, 'an integer'),
])
def test_settings_values_of_the_wrong_type_name_the_file_and_the_key(tmp_path, key, value,
                                                                     expected):
    from model import ModelConfig
    values = {'model': ModelConfig().to_dict(), 'batch_size': 32, 'edge_loss_weight': 0.1}
    section, _, name = key.rpartition('.')
    (values[section] if section else values)[name] = value
    checkpointing.save_settings(str(tmp_path), values)
    path = str(tmp_path / checkpointing.SETTINGS_FILE)
    for call in (checkpointing.load_settings, checkpointing.stored_config):
        with pytest.raises(checkpointing.CheckpointError) as caught:
            call(str(tmp_path))
        message = str(caught.value)
        assert message.startswith(path + ': "%s" is %s' % (key, json.dumps(value)))
        assert expected in message and 'delete the file' in message
    # The right types of the same keys load (bool is not taken for an int, nor the reverse).
    checkpointing.save_settings(str(tmp_path), dict(values, model=ModelConfig().to_dict(),
                                                  batch_size=32, edge_loss_weight=0.1))
    assert checkpointing.stored_config(str(tmp_path)) == ModelConfig()


@pytest.mark.parametrize('suffix', ['', '.index', '.data-00000-of-00001', '.meta'])
def test_a_checkpoints_own_file_names_its_prefix(tmp_path, suffix):
    tiny = Tiny()
    store, _ = training_folder(tmp_path)
    prefix = tiny.save(store, 7)
    store.close()
    assert checkpointing.find(prefix + suffix) == prefix
    assert checkpointing.resolve(prefix + suffix) == prefix
    assert checkpointing.find(str(tmp_path / 'ReMAEN-8') + suffix) is None


# ----------------------------------------------------------------------------- the lock
def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path):
    store, _ = training_folder(tmp_path)
    with open(str(tmp_path / checkpointing.LOCK_FILE)) as handle:
        holder = json.load(handle)
    assert holder['pid'] == os.getpid() and holder['host']
    with pytest.raises(checkpointing.CheckpointError) as refused:
        training_folder(tmp_path)
    message = str(refused.value)
    assert 'in use by another training process (process %d on %s' % (
        os.getpid(), holder['host']) in message and '\n' not in message
    store.close()
    # The lock file of a process that no longer runs (its flock died with it).
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True, check=True)
    dead = dict(holder, pid=int(gone.stdout))
    (tmp_path / checkpointing.LOCK_FILE).write_text(json.dumps(dead))
    store, notes = training_folder(tmp_path)
    store.close()
    assert notes == ['note: took over the lock of %s, which ended without releasing it'
                     % lockfile.describe(dead)]


def test_cannot_create_the_folder_below_a_regular_file(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(checkpointing.CheckpointError, match='cannot create the checkpoint folder'
                                                          '.*--checkpoint_dir'):
        training_folder(tmp_path / 'file' / 'run')


# ----------------------------------------------------------------------------- export
def test_export_refuses_a_training_folder_and_leaves_it_as_it_was(tmp_path):
    from model import ModelConfig
    tiny = Tiny()
    store, _ = training_folder(tmp_path / 'train')
    tiny.save(store, 7)
    store.close()
    before = snapshot(str(tmp_path / 'train'))
    shipped = checkpointing.find(checkpointing.shipped_model_folder('light'))
    with pytest.raises(checkpointing.CheckpointError, match='holds training checkpoints'):
        checkpointing.export_weights(shipped, str(tmp_path / 'train'), ModelConfig(), {})
    assert snapshot(str(tmp_path / 'train')) == before
    (tmp_path / 'file').write_text('x')
    with pytest.raises(checkpointing.CheckpointError, match='is a file'):
        checkpointing.export_weights(shipped, str(tmp_path / 'file'), ModelConfig(), {})
    prefix, count, size = checkpointing.export_weights(shipped, str(tmp_path / 'out'),
                                                     ModelConfig(), {'note': 1})
    assert prefix == str(tmp_path / 'out' / 'ReMAEN') and count == 138 and size > 1e6
    assert checkpointing.load_settings(str(tmp_path / 'out'))['note'] == 1
    assert tf.train.latest_checkpoint(str(tmp_path / 'out')) == prefix
    np.testing.assert_array_equal(
        tf.train.load_variable(prefix, 'derainNet/RMG/Conv_1/biases'),
        tf.train.load_variable(shipped, 'derainNet/RMG/Conv_1/biases'))


@pytest.mark.slow   # three trainings and an export (15-40 s on a 2-core CPU)
def test_export_of_several_checkpoints_writes_the_mean_of_their_weights(tmp_path):
    """Averaged export: every one of the 138 variables is the mean of the sources' (here the
    shipped weights and a copy with 1, 2, 3... added per variable), checked against the
    checkpoint files read back; a source of another network is refused, nothing written."""
    from model import ModelConfig, build_inference_graph, model_variables
    shipped = checkpointing.find(checkpointing.shipped_model_folder('light'))
    with tf.Graph().as_default():
        build_inference_graph(ModelConfig())
        variables = model_variables()
        with tf.Session() as sess:
            checkpointing.restore(sess, shipped, variables)
            for k, variable in enumerate(variables):
                variable.load(sess.run(variable) + (k + 1), sess)
            shifted = checkpointing.save_weights(sess, variables, str(tmp_path / 'shifted'))
        names = [v.op.name for v in variables]
    prefix, count, _ = checkpointing.export_weights([shipped, shifted], str(tmp_path / 'mean'),
                                                  ModelConfig(), {})
    assert count == len(names) == 138
    for k, name in enumerate(names):
        expected = tf.train.load_variable(shipped, name) + (k + 1) / 2.0
        np.testing.assert_allclose(tf.train.load_variable(prefix, name), expected,
                                   rtol=1e-6, atol=1e-6)
    with pytest.raises(checkpointing.CheckpointError, match='does not fit this model'):
        checkpointing.export_weights([shipped, shifted], str(tmp_path / 'small'),
                                   ModelConfig(channels=8), {})
    assert not os.path.exists(str(tmp_path / 'small' / 'ReMAEN.index'))
    with pytest.raises(UsageError, match='no checkpoints'):
        checkpointing.export_weights([], str(tmp_path / 'none'), ModelConfig(), {})


# ----------------------------------------------------------------------------- the CLI
def run_main(args, cwd):
    return subprocess.run([sys.executable, MAIN] + args, cwd=cwd, env=ENV, timeout=600,
                          capture_output=True, text=True)


def one_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert 'Traceback' not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])


def cli_flags(root):
    return ['--data_path', os.path.join(root, 'data', '{}'), '--train_dataset', 'Tiny',
            '--test_path', os.path.join(root, 'data', '{}'), '--test_dataset', 'TinyTest',
            '--checkpoint_dir', os.path.join(root, 'ckpt'),
            '--logs_dir', os.path.join(root, 'logs'),
            '--sample_dir', os.path.join(root, 'samples'),
            '--test_dir', os.path.join(root, 'results'),
            '--batch_size', '1', '--patch_size', '16', '--seed', '0']


@pytest.mark.slow
def test_two_trainers_on_one_folder_then_kill_9_then_a_broken_newest(tmp_path):
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'data', 'Tiny'), 2, size=(20, 20))
    write_pairs(os.path.join(root, 'data', 'TinyTest'), 1, size=(20, 20), seed=1)
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    first = subprocess.Popen(
        [sys.executable, MAIN, '--is_training', 'True', '--iterations', '100000',
         '--save_every', '1', '--keep_checkpoints', '3'] + cli_flags(root),
        cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(checkpointing.steps(folder)) < 2:
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.5)
        second = run_main(['--is_training', 'True', '--iterations', '100000']
                          + cli_flags(root), root)
        one_error(second, 'in use by another training process', 'process %d on' % first.pid)
        assert first.poll() is None
    finally:
        first.kill()        # kill -9: its lock file stays, naming it
        first.wait()
    with open(os.path.join(folder, checkpointing.LOCK_FILE)) as handle:
        assert json.load(handle)['pid'] == first.pid
    # Break the newest checkpoint: the resume falls back to the one before.
    done, newest = sorted(checkpointing.steps(folder).items())[-2:]
    done = done[0]
    with open(newest[1] + '.data-00000-of-00001', 'r+b') as handle:
        handle.truncate(100)
    newest = newest[1]
    broken = snapshot(folder)
    third = run_main(['--is_training', 'True', '--iterations', str(done)] + cli_flags(root),
                     root)
    assert third.returncode == 0, third.stderr[-3000:]
    assert 'note: took over the lock of process %d' % first.pid in third.stdout
    assert 'note: skipping checkpoint %s' % newest in third.stdout
    assert 'Resuming from %s-%d at iteration %d' % (
        os.path.join(folder, 'ReMAEN'), done, done) in third.stdout
    after = snapshot(folder)
    assert checkpointing.LOCK_FILE not in after                      # released at the end
    # No checkpoint was deleted or changed (a save killed midway may have left temporaries,
    # removed at the start).
    saved = [k for k in broken if k.startswith('ReMAEN-') and k.split('.')[0] + '.index' in broken]
    assert len(saved) >= 4 and {k: after.get(k) for k in saved} == {k: broken[k] for k in saved}
    assert after['checkpoint'] == broken['checkpoint']
    # Export into this training folder: refused, its state file untouched.
    export = run_main(['--export_weights', folder] + cli_flags(root), root)
    one_error(export, '--export_weights', 'holds training checkpoints')
    assert snapshot(folder) == after
    # A garbage state file is ignored; a settings file of the wrong shape is one error line.
    with open(os.path.join(folder, 'checkpoint'), 'wb') as handle:
        handle.write(b'\xff\xfe garbage')
    tested = run_main(['--is_testing', 'True'] + cli_flags(root), root)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert 'Restoring %s-%d' % (os.path.join(folder, 'ReMAEN'), done) in tested.stdout
    with open(os.path.join(folder, checkpointing.SETTINGS_FILE), 'w') as handle:
        handle.write('[1, 2]')
    one_error(run_main(['--is_testing', 'True'] + cli_flags(root), root),
              'remaen_settings.json is not a settings file')
    # --checkpoint_dir below a regular file.
    flags = cli_flags(root)
    flags[flags.index('--checkpoint_dir') + 1] = os.path.join(root, 'data', 'Tiny',
                                                              'rain-1.png', 'ck')
    one_error(run_main(['--is_training', 'True', '--iterations', '1'] + flags, root),
              'rain-1.png', '--checkpoint_dir')


@pytest.mark.slow
def test_sigterm_before_any_checkpoint_names_none(tmp_path):
    """Stopped during the first evaluation (before iteration 1): no checkpoint is claimed."""
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'data', 'Tiny'), 1, size=(20, 20))
    write_pairs(os.path.join(root, 'data', 'TinyTest'), 4, size=(160, 160), seed=1)
    process = subprocess.Popen(
        [sys.executable, MAIN, '--is_training', 'True', '--iterations', '5', '--eval_every',
         '5'] + cli_flags(root), cwd=root, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith('Training set:'):   # the loop begins with the first evaluation
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            break
    output = ''.join(lines) + process.communicate(timeout=300)[0]
    assert 'Traceback' not in output, output
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    for line in output.splitlines():
        if 'checkpoint: ' in line:
            named = line.split('checkpoint: ')[1].split(';')[0]
            assert named == 'none written' or os.path.isfile(named + '.index'), line
        if line.startswith('Interrupted by SIGTERM at iteration 0'):
            assert 'no checkpoint' in line and not checkpointing.steps(folder), line
