"""Multi-worker training on TensorFlow's distributed runtime, configured by ``TF_CONFIG``.

Synchronous between-graph replication, the classic TF1 recipe (docs/multi-machine.md)::

    TF_CONFIG='{"cluster": {"ps": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' python main.py --is_training True ...

* every task starts a ``tf.train.Server``; a ``ps`` task only serves the variables and exits
  once every worker has put a token in its done-queue (``serve_ps``);
* each worker builds the whole training graph with its variables on the ps
  (``tf.train.replica_device_setter``) and Adam wrapped in ``tf.train.SyncReplicasOptimizer``
  with ``replicas_to_aggregate = total_num_replicas = number of workers``: the gradients of
  every worker are averaged, then one Adam step updates the shared variables and
  ``global_step`` (the lr schedule reads it). No initial tokens are queued, so the workers
  run in lockstep: each update holds exactly one gradient of each worker;
* the chief (the ``chief`` task, or worker 0 when there is none) initialises or restores
  the variables, runs the optimizer's queue runner and writes checkpoints, settings, logs,
  samples and curves; the other workers wait until the chief marks the variables ready;
* at the end each worker enqueues a token to the done-queue of every ps.

``--batch_size`` is per worker. Nothing here is built at import.
"""
import collections
import json
import os
import re
import time

from console.errors import UsageError

TF_CONFIG = 'TF_CONFIG'
# Hidden test hook: a folder where each worker writes its variables at start and at the end.
DUMP_ENV = 'REMAEN_DUMP_VARIABLES'
JOBS = ('chief', 'worker', 'ps')
READY_POLL_SECONDS = 0.1
WAIT_NOTE_SECONDS = 30.0
DONE_TIMEOUT_MS = 60000
STOP_GRACE_SECONDS = 5.0
_ADDRESS = re.compile(r'^\[?[\w.:-]+\]?:\d{1,5}$')


class Cluster(collections.namedtuple('Cluster', ['jobs', 'task_type', 'task_index'])):
    """The cluster of ``TF_CONFIG`` and this process's task in it.

    Attributes:
      jobs: ``{job: [address, ...]}`` for 'ps', 'worker' and optionally 'chief'.
      task_type: this task's job ('chief', 'worker' or 'ps').
      task_index: this task's index in its job.
    """
    __slots__ = ()

    @property
    def device(self):
        """This task's device prefix, e.g. '/job:worker/task:1'."""
        return '/job:%s/task:%d' % (self.task_type, self.task_index)

    @property
    def is_ps(self):
        return self.task_type == 'ps'

    @property
    def workers(self):
        """The training tasks as (job, index), the chief first."""
        return ([('chief', 0)] if self.jobs.get('chief') else []) + \
            [('worker', i) for i in range(len(self.jobs.get('worker', [])))]

    @property
    def num_workers(self):
        return len(self.workers)

    @property
    def num_ps(self):
        return len(self.jobs['ps'])

    @property
    def chief_device(self):
        return '/job:%s/task:%d' % self.workers[0]

    @property
    def is_chief(self):
        """The 'chief' task, or worker 0 of a cluster without one."""
        return not self.is_ps and self.device == self.chief_device

    @property
    def replica_index(self):
        """Position among the training tasks (0 = chief); None on a ps."""
        if self.is_ps:
            return None
        return self.workers.index((self.task_type, self.task_index))

    def describe(self):
        """One line: what this task is in the cluster."""
        if self.is_ps:
            return 'ps %d of %d' % (self.task_index + 1, self.num_ps)
        return '%s, replica %d of %d%s (ps: %d)' % (
            self.device, self.replica_index + 1, self.num_workers,
            ', the chief' if self.is_chief else '', self.num_ps)


def parse_tf_config(text):
    """Parse a ``TF_CONFIG`` value.

    Args:
      text: JSON ``{"cluster": {"ps": [...], "worker": [...], "chief": [one]},
        "task": {"type": ..., "index": ...}}`` with 'host:port' addresses.

    Returns:
      Cluster.

    Raises:
      UsageError: with a one-line message saying what is wrong.
    """
    def bad(message):
        return UsageError('TF_CONFIG: %s (see docs/multi-machine.md)' % message)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise bad('not valid JSON (%s)' % exc)
    if not isinstance(value, dict) or not isinstance(value.get('cluster'), dict):
        raise bad('expected an object with "cluster" and "task"')
    jobs = {}
    for job, addresses in value['cluster'].items():
        if job not in JOBS:
            raise bad('job %r is not supported (only %s)' % (job, ', '.join(JOBS)))
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _ADDRESS.match(a) for a in addresses)):
            raise bad('job %r needs a non-empty list of "host:port" addresses, got %r'
                      % (job, addresses))
        jobs[job] = list(addresses)
    everything = [a for addresses in jobs.values() for a in addresses]
    if len(set(everything)) != len(everything):
        raise bad('an address appears twice in the cluster')
    if len(jobs.get('chief', [])) > 1:
        raise bad('at most one chief, got %d' % len(jobs['chief']))
    if 'ps' not in jobs:
        raise bad('the cluster needs at least one "ps" task (variables live there)')
    if not jobs.get('worker') and not jobs.get('chief'):
        raise bad('the cluster needs at least one "worker" (or a "chief")')
    task = value.get('task')
    if not isinstance(task, dict) or task.get('type') not in jobs:
        raise bad('"task" must name a job of the cluster as "type" (%s), got %r'
                  % (', '.join(sorted(jobs)), task))
    index = task.get('index', 0)
    if not isinstance(index, int) or isinstance(index, bool) \
            or not 0 <= index < len(jobs[task['type']]):
        raise bad('task index %r out of range for job %r (%d task(s))'
                  % (index, task['type'], len(jobs[task['type']])))
    return Cluster(jobs, task['type'], index)


def from_environment(environ=None):
    """The Cluster of ``$TF_CONFIG``, or None when it is unset, empty or has no cluster.

    Raises:
      UsageError: a malformed TF_CONFIG.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, '').strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and not value.get('cluster'):
        return None  # schedulers set '{}' or a task without cluster for single processes
    return parse_tf_config(text)


def check_flags(cluster, args):
    """Refuse flags that do not combine with a TF_CONFIG cluster (UsageError)."""
    if args.horovod:
        raise UsageError('TF_CONFIG is set: use either the TF_CONFIG cluster or --horovod '
                         'True, not both (unset TF_CONFIG for Horovod)')
    if args.num_gpus > 1:
        raise UsageError('--num_gpus %d cannot be combined with a TF_CONFIG cluster: run one '
                         'worker task per GPU instead' % args.num_gpus)


# ----------------------------------------------------------------------------- processes
def start_server(cluster, config=None):
    """Start this task's ``tf.train.Server`` (gRPC). Returns the server.

    Raises:
      UsageError: the server cannot start (e.g. its port is taken).
    """
    from console import quiet
    tf = quiet.import_tf()
    try:
        return tf.train.Server(tf.train.ClusterSpec(cluster.jobs), job_name=cluster.task_type,
                               task_index=cluster.task_index, config=config, start=True)
    except (tf.errors.OpError, ValueError) as exc:
        address = cluster.jobs[cluster.task_type][cluster.task_index]
        raise UsageError('cannot start the server of %s at %s (%s)' % (
            cluster.device, address, str(exc).strip().splitlines()[0][:200]))


def session_config(cluster, config):
    """``config`` restricted to the devices this task talks to (the ps and itself), so a
    worker neither waits for nor depends on the other workers. Returns ``config``."""
    del config.device_filters[:]
    config.device_filters.extend(['/job:ps/task:%d' % cluster.task_index] if cluster.is_ps
                                 else ['/job:ps', cluster.device])
    return config


def _done_queue(tf, cluster, ps_index):
    """The done-queue of ps ``ps_index`` (the same on the ps and on every worker)."""
    with tf.device('/job:ps/task:%d' % ps_index):
        return tf.FIFOQueue(cluster.num_workers, tf.int32, shapes=[()],
                            shared_name='remaen_done_queue_ps%d' % ps_index,
                            name='done_queue_ps%d' % ps_index)


def serve_ps(cluster, server, config=None):
    """Serve the variables until every worker has signalled it is done, then return.

    Args:
      cluster: Cluster of a ps task.
      server: its started tf.train.Server.
      config: optional ConfigProto of the ps session.

    Returns:
      The replica indices of the workers, in the order they finished.
    """
    from console import quiet
    tf = quiet.import_tf()
    graph = tf.Graph()
    with graph.as_default():
        dequeue = _done_queue(tf, cluster, cluster.task_index).dequeue()
    graph.finalize()
    config = session_config(cluster, config if config is not None else tf.ConfigProto())
    print('%s: serving %d worker(s) at %s' % (cluster.describe(), cluster.num_workers,
                                             cluster.jobs['ps'][cluster.task_index]))
    finished = []
    with tf.Session(server.target, graph=graph, config=config) as session:
        while len(finished) < cluster.num_workers:
            finished.append(int(session.run(dequeue)))
            print('ps %d: replica %d is done (%d of %d)' % (
                cluster.task_index, finished[-1], len(finished), cluster.num_workers))
    print('ps %d: every worker is done; exiting' % cluster.task_index)
    return finished


# ----------------------------------------------------------------------------- graph side
class SyncReplicas(object):
    """What a worker adds to its training graph, and the runtime steps that go with it.

    In ``training.build``::

        replicas = SyncReplicas(cluster)
        with tf.device(replicas.device_setter()):
            net = model.build_train_graph(..., wrap_optimizer=replicas.wrap_optimizer)
            ...
            replicas.build()                # before graph.finalize()

    then ``chief_ready`` or ``wait_until_ready`` (``training.restore_or_init``), and
    ``stop`` / ``signal_done`` when training ends (``training.train``).
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.optimizer = None
        self.queue_runner = None
        self._ops = None
        self._coordinator = None
        self._threads = []

    def device_setter(self):
        """Variables round-robin on the ps tasks, every other op on this worker."""
        from console import quiet
        tf = quiet.import_tf()
        return tf.train.replica_device_setter(
            ps_tasks=self.cluster.num_ps, worker_device=self.cluster.device,
            cluster=tf.train.ClusterSpec(self.cluster.jobs))

    def wrap_optimizer(self, optimizer):
        """``model.build_train_graph``'s ``wrap_optimizer``: SyncReplicasOptimizer(optimizer)."""
        from console import quiet
        tf = quiet.import_tf()
        count = self.cluster.num_workers
        self.optimizer = tf.train.SyncReplicasOptimizer(
            optimizer, replicas_to_aggregate=count, total_num_replicas=count)
        return self.optimizer

    def build(self):
        """The readiness flag, the chief's init ops and the release of the token queue.

        Call after the train op exists, inside ``device_setter`` (the flag lives on a ps).
        """
        from console import quiet
        tf = quiet.import_tf()
        if self.optimizer is None or self.optimizer.chief_init_op is None:
            raise ValueError('build() needs the train op of wrap_optimizer\'s optimizer')
        # Not in any collection: neither initialised with the others nor saved. The chief
        # initialises it last, once the variables hold their initial or restored values.
        ready = tf.Variable(True, trainable=False, collections=[], name='remaen_chief_ready')
        self._ops = {
            'is_ready': tf.is_variable_initialized(ready),
            'mark_ready': ready.initializer,
            'chief_init': self.optimizer.chief_init_op,
            # No initial tokens: every update waits for one gradient of each worker.
            'init_tokens': self.optimizer.get_init_tokens_op(num_tokens=0),
            'local_init': self.optimizer.local_step_init_op,
            # A worker that stops early releases the others blocked on their next token.
            # (The token queue is a private attribute of the TF1 class, which is frozen.)
            'release': self.optimizer._sync_token_queue.close(),
        }
        self.queue_runner = self.optimizer.get_chief_queue_runner()
        # TF warns at exit about tensors it marks "should use" that a run never fetched: the
        # optimizer's ready_for_local_init_op (we wait on our own flag) and, on the chief,
        # is_ready.
        for tensor in (self.optimizer.ready_for_local_init_op, self._ops['is_ready']):
            getattr(tensor, 'mark_used', lambda: None)()

    # ------------------------------------------------------------------------- runtime
    def chief_ready(self, session):
        """Chief, after init/restore: sync the accumulators with ``global_step``, start the
        queue runner that applies the averaged gradients, then let the workers in."""
        from console import quiet
        tf = quiet.import_tf()
        session.run([self._ops['chief_init'], self._ops['init_tokens']])
        self._coordinator = tf.train.Coordinator()
        self._threads = self.queue_runner.create_threads(session, coord=self._coordinator,
                                                         daemon=True, start=True)
        session.run(self._ops['mark_ready'])

    def wait_until_ready(self, session, poll_seconds=READY_POLL_SECONDS):
        """Non-chief: wait until the chief marks the variables ready, then take its local
        step from ``global_step``. Polls every ``poll_seconds`` (TensorFlow's own
        ``SessionManager`` waits 30 s between checks)."""
        started = noted = time.perf_counter()
        print('%s: waiting for the chief (%s) to initialise or restore the variables'
              % (self.cluster.device, self.cluster.chief_device))
        while not session.run(self._ops['is_ready']):
            time.sleep(poll_seconds)
            if time.perf_counter() - noted > WAIT_NOTE_SECONDS:
                noted = time.perf_counter()
                print('%s: still waiting for the chief (%.0f s)'
                      % (self.cluster.device, noted - started))
        session.run(self._ops['local_init'])

    def stop(self, session, early):
        """Before the session closes: stop the chief's queue runner; when this worker stops
        before --iterations (signal, error), close the token queue so that the other workers
        stop at their next step instead of waiting for this one forever."""
        from console import quiet
        tf = quiet.import_tf()
        if self._coordinator is not None:
            # Its closing thread closes the token queue too, but maybe after the session.
            self._coordinator.request_stop()
        if early:
            try:
                session.run(self._ops['release'])
            except tf.errors.CancelledError:
                pass  # already closed (by another worker or the queue runner)
            except tf.errors.OpError as exc:  # e.g. the ps is gone: nothing left to release
                print('note: could not release the other workers (%s)'
                      % str(exc).strip().splitlines()[0][:200])

    def signal_done(self, server, config):
        """After the session closed: join the queue runner, then put this worker's token in
        the done-queue of every ps (a small graph and session of its own; bounded wait)."""
        from console import quiet
        tf = quiet.import_tf()
        if self._coordinator is not None:
            # A few seconds, not the default 120: the thread may still wait on the ps.
            try:
                self._coordinator.join(self._threads, stop_grace_period_secs=STOP_GRACE_SECONDS,
                                       ignore_live_threads=True)
            except Exception as exc:  # the queue runner's own error, re-raised by join
                print('note: the gradient queue runner stopped with: %s'
                      % str(exc).strip().splitlines()[0][:200])
            self._coordinator = None
        graph = tf.Graph()
        with graph.as_default():
            token = tf.constant(self.cluster.replica_index, tf.int32)
            done = tf.group(*[_done_queue(tf, self.cluster, i).enqueue(token)
                              for i in range(self.cluster.num_ps)])
        try:
            with tf.Session(server.target, graph=graph, config=config) as session:
                session.run(done, options=tf.RunOptions(timeout_in_ms=DONE_TIMEOUT_MS))
        except tf.errors.OpError as exc:
            print('note: could not tell the ps that %s is done (%s)' % (
                self.cluster.device, str(exc).strip().splitlines()[0][:200]))


def dump_variables(session, variables, step, name, folder=None):
    """Test hook: with ``$REMAEN_DUMP_VARIABLES`` set (or ``folder``), write
    ``<folder>/<name>-<step>.npz`` with the values of ``variables`` as this process reads them
    (from the ps for a TF_CONFIG worker). Returns the path, or None when the hook is off."""
    folder = folder or os.environ.get(DUMP_ENV)
    if not folder:
        return None
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    values = session.run({v.op.name: v for v in variables})
    path = os.path.join(folder, '%s-%d.npz' % (name, step))
    np.savez(path, **{key.replace('/', '|'): value for key, value in values.items()})
    return path
