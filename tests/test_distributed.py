"""TF_CONFIG multi-worker training (``training/distributed.py``): the parser, the CLI's error
line, and 1 ps + 2 workers on 127.0.0.1 checked against a single-process step.

The cluster test starts three ``main.py`` processes with free ports, bounds every wait and
ends every process it started by its PID.
"""
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import ROOT, write_pairs
import checkpointing
from training import distributed
import settings
from console.errors import UsageError

MAIN = os.path.join(ROOT, 'main.py')
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
ENV.pop(distributed.TF_CONFIG, None)
# A small network keeps three TensorFlow processes on two cores within CI's budget.
NETWORK = ['--stages', '1', '--channel_dim', '8', '--dilations', '1']
WAIT_SECONDS = 300


def tf_config(jobs, task_type, index):
    return json.dumps({'cluster': jobs, 'task': {'type': task_type, 'index': index}})


JOBS = {'ps': ['127.0.0.1:2222'], 'worker': ['127.0.0.1:2223', '127.0.0.1:2224']}


# ----------------------------------------------------------------------------- parsing
def test_worker_zero_is_the_chief_without_a_chief_task():
    tasks = [distributed.parse_tf_config(tf_config(JOBS, job, i))
             for job, i in (('worker', 0), ('worker', 1), ('ps', 0))]
    assert [t.is_chief for t in tasks] == [True, False, False]
    assert [t.replica_index for t in tasks] == [0, 1, None]
    assert tasks[1].device == '/job:worker/task:1'
    assert tasks[1].chief_device == '/job:worker/task:0'
    assert tasks[2].is_ps and tasks[2].num_workers == 2 and tasks[2].num_ps == 1


def test_a_chief_task_is_the_chief_and_counts_as_a_worker():
    jobs = dict(JOBS, chief=['127.0.0.1:2225'])
    chief = distributed.parse_tf_config(tf_config(jobs, 'chief', 0))
    worker = distributed.parse_tf_config(tf_config(jobs, 'worker', 0))
    assert chief.is_chief and not worker.is_chief
    assert chief.num_workers == 3
    assert (chief.replica_index, worker.replica_index) == (0, 1)


@pytest.mark.parametrize('text, words', [
    ('{"cluster": ', 'not valid JSON'),
    ('[1, 2]', '"cluster" and "task"'),
    (tf_config({'worker': ['127.0.0.1:1']}, 'worker', 0), 'at least one "ps"'),
    (tf_config({'ps': ['127.0.0.1:1']}, 'ps', 0), 'at least one "worker"'),
    (tf_config(dict(JOBS, evaluator=['127.0.0.1:9']), 'worker', 0), "'evaluator'"),
    (tf_config(dict(JOBS, chief=['127.0.0.1:8', '127.0.0.1:9']), 'chief', 0), 'one chief'),
    (tf_config(dict(JOBS, worker=['127.0.0.1:2222']), 'worker', 0), 'appears twice'),
    (tf_config(dict(JOBS, worker=['127.0.0.1']), 'worker', 0), 'host:port'),
    (tf_config(JOBS, 'worker', 2), 'out of range'),
    (tf_config(JOBS, 'chief', 0), '"task" must name a job'),
    (tf_config(JOBS, 'worker', '1'), 'out of range'),
])
def test_bad_tf_config_is_one_line_usage_error(text, words):
    with pytest.raises(UsageError) as info:
        distributed.parse_tf_config(text)
    message = str(info.value)
    assert words in message and message.startswith('TF_CONFIG: ')
    assert '\n' not in message


def test_unset_or_clusterless_tf_config_means_one_process():
    assert distributed.from_environment({}) is None
    assert distributed.from_environment({'TF_CONFIG': ' '}) is None
    assert distributed.from_environment({'TF_CONFIG': '{}'}) is None
    assert distributed.from_environment(
        {'TF_CONFIG': '{"task": {"type": "worker", "index": 0}}'}) is None
    assert distributed.from_environment(
        {'TF_CONFIG': tf_config(JOBS, 'worker', 1)}).task_index == 1


def test_cli_prints_one_error_line_for_a_bad_tf_config(tmp_path):
    env = dict(ENV, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {}}')
    env.pop('TF_CPP_MIN_LOG_LEVEL')  # what a user gets: quiet.setup decides
    result = subprocess.run([sys.executable, MAIN, '--is_training', 'True'], cwd=str(tmp_path),
                            env=env, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: TF_CONFIG: the cluster needs at least one "ps" task (variables live there) '
        '(see docs/multi-machine.md)']


# ----------------------------------------------------------------------------- the cluster
def free_ports(count):
    """``count`` distinct free TCP ports of 127.0.0.1 (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(('127.0.0.1', 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def crops(pairs, seed, replicas, batch=0):
    """Batch number ``batch`` (rain, clean) of each replica (crop seed = seed + replica)."""
    import dataloader
    batches = []
    for replica in range(replicas):
        batcher = dataloader.TrainBatcher(pairs, 16, 1, seed=seed + replica, verbose=False)
        try:
            for _ in range(batch + 1):
                rain, clean = batcher.next_batch()
            batches.append((rain, clean))
        finally:
            batcher.close()
    return batches


def single_process_step(prefix, rain, clean):
    """Restore the whole training state of ``prefix``, run one step of
    ``model.build_train_graph`` on the batch; returns {variable name: value}."""
    import model
    from console import quiet
    tf = quiet.import_tf()
    with tf.Graph().as_default(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=UserWarning, module=quiet.NOISY_MODULES)
        net = model.build_train_graph(tf.constant(rain), tf.constant(clean),
                                      model.ModelConfig(stages=1, channels=8, dilations=(1,)))
        variables = tf.global_variables()
        with tf.Session() as session:
            tf.train.Saver(variables).restore(session, prefix)
            session.run(net.train_op)
            return session.run({v.op.name: v for v in variables})


def load_dump(path):
    with np.load(path) as values:
        return {name.replace('|', '/'): values[name] for name in values.files}


def assert_same(first, second, atol=0.0):
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=atol,
                                   err_msg=name)


def tiny_run(root):
    """Two 16x16 training pairs, a test pair, the folder flags and a crop seed whose two
    replicas draw different crops in batches 0 and 1 (so their gradients differ and the
    average matters)."""
    import dataloader
    data = os.path.join(root, 'data', 'train', 'Tiny')
    write_pairs(data, 2, size=(16, 16), seed=5)
    write_pairs(os.path.join(root, 'data', 'test', 'TinyTest'), 1, size=(16, 16), seed=6)
    pairs, _ = dataloader.find_pairs(data, verbose=False)
    seed = next(s for s in range(100)
                if all(not np.array_equal(*[rain for rain, _ in crops(pairs, s, 2, batch=b)])
                       for b in (0, 1)))
    folders = ['--data_path', os.path.join(root, 'data', 'train', '{}'),
               '--test_path', os.path.join(root, 'data', 'test', '{}'),
               '--checkpoint_dir', os.path.join(root, 'ckpt'),
               '--logs_dir', os.path.join(root, 'logs'),
               '--sample_dir', os.path.join(root, 'samples'),
               '--test_dir', os.path.join(root, 'results')]
    train = (['--is_training', 'True', '--train_dataset', 'Tiny', '--test_dataset', 'TinyTest',
              '--patch_size', '16', '--batch_size', '1', '--seed', str(seed),
              '--save_every', '1', '--keep_checkpoints', '5'] + NETWORK + folders)
    return pairs, seed, folders, train


def check_synchronous_steps(train, pairs, seed, dumps, names, steps):
    """Every replica read the same variables at each of ``steps`` (its dumps), equal to the
    chief's checkpoint there, and the last step equals one single-process step from the
    checkpoint before it on the batch of both replicas' crops (batch ``steps[-1] - 1`` of
    their seeded sequences, which a resumed run continues).

    Returns:
      the largest absolute difference to the single-process step.
    """
    from console import quiet
    tf = quiet.import_tf()
    folder = checkpointing.default_folder(settings.parse_args(train))
    last = steps[-1]
    saved = {}
    for step in (last - 1, last):
        prefix = os.path.join(folder, 'ReMAEN-%d' % step)
        saved[step] = {name: tf.train.load_variable(prefix, name)
                       for name, _ in tf.train.list_variables(prefix)}
    assert saved[last]['global_step'] == last
    for step in steps:
        first = load_dump(os.path.join(dumps, '%s-%d.npz' % (names[0], step)))
        for name in names[1:]:
            assert_same(first, load_dump(os.path.join(dumps, '%s-%d.npz' % (name, step))))
        if step in saved:
            assert_same(first, saved[step])
    batches = crops(pairs, seed, 2, batch=last - 1)
    reference = single_process_step(os.path.join(folder, 'ReMAEN-%d' % (last - 1)),
                                    np.concatenate([b[0] for b in batches]),
                                    np.concatenate([b[1] for b in batches]))
    assert_same(reference, saved[last], atol=1e-5)
    moved = max(np.abs(saved[last][n] - saved[last - 1][n]).max() for n in saved[last]
                if n != 'global_step')
    assert moved > 1e-4, moved  # the step did change the weights
    return max(np.abs(reference[n] - saved[last][n]).max() for n in reference)


def read_logs(handles):
    texts = []
    for handle in handles:
        handle.seek(0)
        texts.append(handle.read())
        handle.close()
    return texts


@pytest.mark.slow
def test_one_ps_two_workers_average_gradients_resume_and_stop(tmp_path):
    import main
    started = time.perf_counter()
    root = str(tmp_path)
    pairs, seed, folders, train = tiny_run(root)

    # Iteration 1 in one process: the cluster resumes from its checkpoint.
    first = subprocess.run([sys.executable, MAIN] + train + ['--iterations', '1'], cwd=root,
                           env=ENV, capture_output=True, text=True, timeout=WAIT_SECONDS)
    assert first.returncode == 0, first.stdout + first.stderr
    single_seconds = time.perf_counter() - started

    ports = free_ports(3)
    jobs = {'ps': ['127.0.0.1:%d' % ports[0]],
            'worker': ['127.0.0.1:%d' % p for p in ports[1:]]}
    dumps = os.path.join(root, 'dumps')
    processes, logs = [], []
    try:
        for job, index in [('ps', 0), ('worker', 0), ('worker', 1)]:
            logs.append(open(os.path.join(root, '%s%d.log' % (job, index)), 'w+'))
            env = dict(ENV, TF_CONFIG=tf_config(jobs, job, index),
                       **{distributed.DUMP_ENV: dumps})
            processes.append(subprocess.Popen(
                [sys.executable, MAIN] + train + ['--iterations', '2'], cwd=root, env=env,
                stdout=logs[-1], stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + WAIT_SECONDS
        # The ps exits by itself once both workers are done.
        codes = [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        outputs = read_logs(logs)
    cluster_seconds = time.perf_counter() - started - single_seconds
    assert codes == [0, 0, 0], '\n'.join(outputs)
    ps_log, chief_log, worker_log = outputs
    assert 'every worker is done; exiting' in ps_log
    assert 'Resuming from' in chief_log and 'ReMAEN-1 at iteration 1' in chief_log
    assert 'training from iteration 1' in worker_log
    assert 'checkpoints are written by the chief (/job:worker/task:0) only' in worker_log
    assert 'Traceback' not in ''.join(outputs) and 'ERROR:tensorflow' not in ''.join(outputs)

    # The non-chief waited for the restored variables (iteration 1), then both read the
    # variables of the synchronous update (iteration 2).
    difference = check_synchronous_steps(train, pairs, seed, dumps, ['worker-0', 'worker-1'],
                                         [1, 2])
    # The chief's checkpoint works in the normal test command.
    assert main.main(['--is_testing', 'True', '--train_dataset', 'Tiny', '--batch_size', '1',
                      '--test_dataset', 'TinyTest'] + NETWORK + folders) == 0
    print('single process %.1f s, cluster %.1f s, total %.1f s; largest difference to the '
          'single-process step %.2g' % (single_seconds, cluster_seconds,
                                        time.perf_counter() - started, difference))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec('horovod') is None,
                    reason='Horovod is not installed: bash tools/build_horovod.sh')
def test_horovod_two_processes_average_gradients(tmp_path):
    try:
        import horovod.tensorflow  # noqa: F401
    except Exception as exc:  # ImportError, or a build that does not fit this TensorFlow
        pytest.skip('import horovod.tensorflow fails (%s): bash tools/build_horovod.sh' % exc)
    if not shutil.which('horovodrun'):
        pytest.skip('horovodrun is not on PATH')
    started = time.perf_counter()
    root = str(tmp_path)
    pairs, seed, _, train = tiny_run(root)
    dumps = os.path.join(root, 'dumps')
    env = dict(ENV, **{distributed.DUMP_ENV: dumps})
    command = (['horovodrun', '-np', '2', '-H', 'localhost:2', '--gloo', '--start-timeout',
                '120', sys.executable, MAIN] + train + ['--iterations', '2', '--horovod', 'True'])
    # A session of its own: horovodrun's workers are ended with it if the wait times out.
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=WAIT_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == 0, output
    lines = output.splitlines()
    assert [line for line in lines if 'checkpoints are written by' in line] == [
        line for line in lines if line.startswith('[1]<stdout>:Trained iterations 0..2 ')]
    assert any('checkpoints are written by the chief (rank 0) only' in line for line in lines)
    assert any(line.startswith('[0]<stdout>:Trained iterations 0..2 ') and 'checkpoint: '
               in line for line in lines)
    # Rank 1 starts from rank 0's broadcast variables; both hold the same after each step.
    difference = check_synchronous_steps(train, pairs, seed, dumps, ['rank-0', 'rank-1'],
                                         [0, 2])
    print('horovodrun %.1f s; largest difference to the single-process step %.2g'
          % (time.perf_counter() - started, difference))
