"""Training: a list of named steps, in the manner of BasicSR's ``train.py``.

    run = prepare(args)                 # data, checkpoint folder, settings checks
    graph = build(args, run)            # one graph: training, samples, evaluation, saver
    session, step = restore_or_init(args, run, graph)
    step = loop(args, run, graph, session, step)    # until --iterations or SIGINT/SIGTERM
    finish(...)                         # last checkpoint, summary line

``train(args)`` runs them all. Training checkpoints hold the whole state (weights,
``global_step``, Adam moments and beta powers), so rerunning the same command resumes
exactly. The checkpoint folder is a ``checkpointing.TrainingFolder``: locked for this process,
saved atomically, ``--keep_checkpoints`` enforced over it (earlier runs' files included).
With ``TF_CONFIG`` set the same steps run as one task of a cluster (``distributed.py``); a
ps task only serves the variables.
With ``--eval_every N`` the test set is derained every N iterations and every stage's output
is measured in both protocols (``evaluation.py``: ``curve.csv`` and TensorBoard scalars).

``model`` (which imports TensorFlow) is imported inside the functions that build graphs, so
that importing this module does not start TensorFlow before ``quiet.setup`` has silenced it.
"""
import collections
import contextlib
import os
import signal
import time


import checkpointing
import dataloader
import settings
import utils
from auditing import warning as audit_warning
from console import quiet
from console.errors import TrainingError, UsageError
from console.progress import Progress
from dataloader import DataError
from loading import rainlayers
from machine import precision
from training import distributed, divergence
from training.loop import (IterationClock, _worker_seed, loop, preload_guard, save_checkpoint,
                           stored_settings)

# cluster/server: the TF_CONFIG task (distributed.Cluster) and its tf.train.Server, or None.
# store: the chief's checkpointing.TrainingFolder (locked; it saves), None elsewhere.
# layers: the rainlayers.LayerSet of --rain_layers (then pairs are clean backgrounds), or None.
# warm_start: the checkpoint whose weights started the run (--init_weights), or None.
Run = collections.namedtuple('Run', [
    'config', 'folder', 'pairs', 'prefix', 'sample_pairs', 'eval_pairs', 'hvd', 'chief',
    'log_dir', 'cluster', 'server', 'store', 'layers', 'warm_start'],
    defaults=(None, None, None, None, None))
# replicas: distributed.SyncReplicas of a TF_CONFIG worker, else None.
Graph = collections.namedtuple('Graph', [
    'graph', 'rain', 'clean', 'net', 'psnr', 'summaries', 'saver', 'infer', 'init',
    'restore_fn', 'broadcast', 'replicas', 'output'], defaults=(None, None))


class StopFlag(object):
    """Turns SIGINT/SIGTERM into a flag so the loop can save a checkpoint and exit cleanly."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.signal = signum

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------- step 1
def _horovod(args):
    """Horovod module when --horovod True (imported lazily)."""
    if not args.horovod:
        return None
    try:
        import horovod.tensorflow as hvd
    except ImportError:
        raise UsageError('--horovod True needs Horovod: see docs/multi-machine.md (it must be '
                         'built against the installed TensorFlow), then run with '
                         'horovodrun -np K python main.py ...')
    hvd.init()
    return hvd


def _test_pairs(args, limit=None, purpose='training samples'):
    """Test pairs with ground truth (for samples and curves); [] with a note if none."""
    try:
        folder = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset,
                                                '--test_path')
        pairs, _ = dataloader.find_pairs(folder, rainy_half=args.rainy_half, verbose=False)
        return pairs[:limit] if limit else pairs
    except DataError as exc:
        print('note: no %s (%s)' % (purpose, exc))
        return []


def _warn_shared_backgrounds(args, data_dir, log_dir):
    """One ``warning:`` line per test background the training set shares (``audit.py``).

    Cached in ``log_dir`` by the files' names, sizes and dates, so a resumed run does not pay
    twice; a missing test set or unreadable data only skips the check (training goes on).
    """
    try:
        test_dir = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset,
                                                  '--test_path')
    except DataError:
        return
    audit_warning.training_warning(data_dir, test_dir, args.test_dataset, log_dir,
                           rainy_half=args.rainy_half)


def prepare(args):
    """Check the flags and the data, open the checkpoint folder. Returns a Run.

    The chief opens the folder as a ``checkpointing.TrainingFolder`` (its lock, the cleanup of
    an interrupted save, the newest readable checkpoint to resume); the caller closes it
    (``run.store.close()``). With a TF_CONFIG cluster this task's server is started here; a
    ps task gets a Run with only ``cluster`` and ``server`` (it needs no data).
    """
    cluster = distributed.from_environment()
    if cluster:
        distributed.check_flags(cluster, args)
        if cluster.is_ps:
            return Run(None, None, [], None, [], [], None, False, None, cluster,
                       distributed.start_server(cluster, utils.flags_session_config(args)))
    hvd = _horovod(args)
    chief = cluster.is_chief if cluster else hvd is None or hvd.rank() == 0
    if args.num_gpus > 1 and args.batch_size % args.num_gpus:
        raise UsageError('--batch_size %d does not split evenly over --num_gpus %d'
                         % (args.batch_size, args.num_gpus))
    config = settings.model_config(args)
    folder = checkpointing.default_folder(args)
    data_dir = dataloader.resolve_dataset_dir(args.data_path, args.train_dataset, '--data_path')
    pairs, _ = dataloader.find_pairs(data_dir, rainy_half=args.rainy_half,
                                     limit=args.trainset_size)
    layers = None
    if args.rain_layers is not None:
        layers = rainlayers.load_layers(args.rain_layers, args.patch_size, args.rainy_half)
        pairs = rainlayers.background_pairs(pairs, layers)
        print('Backgrounds: %d clean images (the training pairs\' and the rain layers\')'
              % len(pairs))
    sample_pairs = _test_pairs(args, 2) if chief else []
    eval_pairs = []
    if chief and args.eval_every:
        eval_pairs = _test_pairs(args, args.eval_images, 'evaluation curve')
    if chief:
        _warn_shared_backgrounds(args, data_dir, os.path.join(args.logs_dir,
                                                              os.path.basename(folder)))
        if layers:
            _warn_shared_backgrounds(args, layers.folder, os.path.join(
                args.logs_dir, os.path.basename(folder), 'rain_layers'))
    # One writer per folder: the chief. Other Horovod ranks read the same checkpoint (rank 0
    # broadcasts it anyway); a TF_CONFIG worker other than the chief never restores: the
    # variables live on the ps.
    store = (checkpointing.TrainingFolder(folder, args.keep_checkpoints,
                                        keep_every=args.keep_every) if chief else None)
    try:
        prefix = store.resume if store else (
            None if cluster else checkpointing.newest_readable(folder, log=lambda _: None))
        if prefix:
            checkpointing.check_settings(folder, config, edge_loss_weight=args.edge_loss_weight)
            rainlayers.check_resume(checkpointing.load_settings(folder), layers, folder)
        warm_start = _warm_start(args, folder, prefix, config)
        log_dir = os.path.join(args.logs_dir, os.path.basename(folder))
        server = (distributed.start_server(cluster, utils.flags_session_config(args))
                  if cluster else None)
    except BaseException:
        if store:
            store.close()
        raise
    return Run(config, folder, pairs, prefix, sample_pairs, eval_pairs, hvd, chief, log_dir,
               cluster, server, store, layers, warm_start)


def _warm_start(args, folder, prefix, config):
    """The checkpoint whose network weights start a new run (``--init_weights``): a prefix,
    checked against the network flags. A resume keeps the one its settings recorded (the
    flag is then ignored, with a note). None without a warm start."""
    if prefix:
        if args.init_weights:
            print('note: --init_weights ignored: %s resumes from its own checkpoint %s'
                  % (folder, prefix))
        return (checkpointing.load_settings(folder) or {}).get('init_weights')
    if args.init_weights is None:
        return None
    where = args.init_weights
    if where in checkpointing.SHIPPED_MODELS and not os.path.exists(where):
        where = checkpointing.shipped_model_folder(where)
    init = checkpointing.find(where) if where else None
    if init is None:
        raise UsageError('--init_weights %s holds no checkpoint; pass a checkpoint folder or '
                         'prefix, e.g. checkpoints/ReMAEN_light' % (args.init_weights or "''"))
    checkpointing.check_settings(os.path.dirname(init), config)
    return init


# ----------------------------------------------------------------------------- step 2
def build(args, run):
    """The training graph, its summaries and saver, and the inference graph on the same
    variables (samples and evaluation curves). Returns a Graph (finalized).

    A TF_CONFIG worker places the variables on the ps and wraps Adam in a
    SyncReplicasOptimizer (``distributed.SyncReplicas``).
    """
    import model  # imports TensorFlow: after quiet.setup (the module docstring)
    tf = quiet.import_tf()
    graph = tf.Graph()
    replicas = distributed.SyncReplicas(run.cluster) if run.cluster else None
    wrap_optimizer = (run.hvd.DistributedOptimizer if run.hvd
                      else replicas.wrap_optimizer if replicas else None)
    # Dilated convs as single Conv2D ops where this process's kernels differentiate them
    # (oneDNN, GPUs): same variables and math, no SpaceToBatchND/BatchToSpaceND copies.
    direct_dilation = precision.direct_dilation_trainable(utils.flags_session_config(args))
    with graph.as_default(), (tf.device(replicas.device_setter()) if replicas
                              else contextlib.nullcontext()):
        if args.seed is not None:
            tf.set_random_seed(args.seed)
        shape = [args.batch_size, args.patch_size, args.patch_size, model.IMAGE_CHANNELS]
        rain = tf.placeholder(tf.float32, shape, name='rain')
        clean = tf.placeholder(tf.float32, shape, name='clean')
        devices = ['/gpu:%d' % i for i in range(args.num_gpus)] if args.num_gpus > 1 else None
        net = model.build_train_graph(
            rain, clean, run.config, lr=args.lr, beta1=args.beta1, beta2=args.beta2,
            lr_decay_step=args.lr_decay_step, edge_loss_weight=args.edge_loss_weight,
            devices=devices,
            wrap_optimizer=wrap_optimizer,
            precision=args.precision, direct_dilation=direct_dilation)
        clipped = tf.clip_by_value(net.output, 0.0, 1.0)
        psnr = tf.reduce_mean(tf.image.psnr(clipped, clean, max_val=1.0))
        # metrics/ssim is computed in numpy (batch_ssim_summary): SSIM's variances are small
        # differences of large means, which a bf16 session would compute in bfloat16.
        summaries = tf.summary.merge([
            tf.summary.scalar('loss/total', net.loss), tf.summary.scalar('loss/mse', net.mse_loss),
            tf.summary.scalar('loss/edge', net.edge_loss),
            tf.summary.scalar('metrics/psnr', psnr),
            tf.summary.scalar('schedule/learning_rate', net.learning_rate)])
        optimizer_state = [v for v in tf.global_variables()
                           if v not in set(net.variables) and v is not net.global_step]
        saver = checkpointing.make_saver(net.variables + [net.global_step] + optimizer_state)
        infer = model.build_inference_graph(run.config)
        init = tf.global_variables_initializer()
        restore_fn = (checkpointing.make_restorer(run.prefix, net.variables, net.global_step,
                                                optional=optimizer_state) if run.prefix
                      else checkpointing.make_restorer(run.warm_start, net.variables)
                      if run.warm_start else None)  # a warm start: the weights only
        broadcast = run.hvd.broadcast_global_variables(0) if run.hvd else None
        if replicas:
            replicas.build()
    graph.finalize()
    return Graph(graph, rain, clean, net, psnr, summaries, saver, infer, init, restore_fn,
                 broadcast, replicas, output=clipped)


# ----------------------------------------------------------------------------- step 3
def restore_or_init(args, run, graph):
    """Open the session, initialise, restore the checkpoint if any. Returns (session, step).

    TF_CONFIG: the session runs on this task's server; the chief initialises or restores
    the variables (on the ps) and then marks them ready, the other workers wait for that.
    """
    tf = quiet.import_tf()
    session_config = utils.flags_session_config(args)
    if run.hvd:
        session_config.gpu_options.visible_device_list = str(run.hvd.local_rank())
    if run.cluster:
        session_config = distributed.session_config(run.cluster, session_config)
    session = tf.Session(run.server.target if run.server else '', graph=graph.graph,
                         config=session_config)
    if graph.replicas and not run.chief:
        graph.replicas.wait_until_ready(session)
        step = int(session.run(graph.net.global_step))
        print('%s: training from iteration %d' % (run.cluster.describe(), step))
        return session, step
    session.run(graph.init)
    step = 0
    if run.prefix:
        step = graph.restore_fn(session)
        print('Resuming from %s at iteration %d' % (run.prefix, step))
        if graph.restore_fn.skipped:
            print('note: the checkpoint has no optimizer state (%d Adam variables, e.g. %s): '
                  'Adam restarts from zero moments' % (len(graph.restore_fn.skipped),
                                                       graph.restore_fn.skipped[0]))
    elif graph.restore_fn is not None:
        graph.restore_fn(session)
        print('Warm start from %s: its network weights; Adam and the iteration count start '
              'from zero' % run.warm_start)
    if graph.broadcast is not None:
        session.run(graph.broadcast)
    if graph.replicas:
        graph.replicas.chief_ready(session)
        print('%s: variables ready at iteration %d' % (run.cluster.describe(), step))
    return session, step


# ----------------------------------------------------------------------------- all steps
def _replica_seed(seed, run):
    """Crop seed of this process: S + rank (Horovod) or S + replica index (TF_CONFIG)."""
    if seed is None or run.cluster is None:
        return _worker_seed(seed, run.hvd)
    return seed + run.cluster.replica_index


def _replica_name(run):
    """'worker-1' (TF_CONFIG task), 'rank-1' (Horovod) or 'single'."""
    if run.cluster:
        return '%s-%d' % (run.cluster.task_type, run.cluster.task_index)
    return 'rank-%d' % run.hvd.rank() if run.hvd else 'single'


def _chief_name(run):
    if run.cluster:
        return 'the chief (%s)' % run.cluster.chief_device
    return 'the chief (rank 0)'


def train(args):
    """--is_training: train (or resume) the network on --train_dataset. Returns the step.

    A TF_CONFIG ps task serves the variables until the workers are done and returns 0.
    """
    run = prepare(args)
    try:
        return _train(args, run)
    finally:
        if run.store:
            run.store.close()  # the folder's lock, released however training ends


def _train(args, run):
    """``train`` once ``prepare`` is done: build, restore, loop, last checkpoint."""
    import model  # imports TensorFlow: after quiet.setup (the module docstring)
    if run.cluster and run.cluster.is_ps:
        distributed.serve_ps(run.cluster, run.server, distributed.session_config(
            run.cluster, utils.flags_session_config(args)))
        return 0
    settings.print_configuration(args, 'training')
    graph = build(args, run)
    session, step = restore_or_init(args, run, graph)
    early = True  # stopped before --iterations (error, signal): release the others (_close)
    try:
        distributed.dump_variables(session, _global_variables(graph), step, _replica_name(run))
        print('Parameters: %d in %d variables' % (model.count_parameters(graph.net.variables),
                                                 len(graph.net.variables)))
        if step >= args.iterations:
            print('Already trained to iteration %d (>= --iterations %d); nothing to do.'
                  % (step, args.iterations))
            early = False
            return step
        # The batcher validates the data (decoding, sizes) before anything is written, so a
        # bad training set leaves the folder of an earlier run untouched.
        batcher = dataloader.TrainBatcher(run.pairs, args.patch_size, args.batch_size,
                                          flip=args.flip, seed=_replica_seed(args.seed, run),
                                          memory_budget_mb=args.memory_budget_mb, start=step,
                                          layers=run.layers)
        writer = None
        if run.chief:
            checkpointing.save_settings(run.folder, stored_settings(args, run))
            from console import quiet
            tf = quiet.import_tf()
            writer = tf.summary.FileWriter(run.log_dir, graph.graph if step == 0 else None)
        started, first_step, last_saved = time.perf_counter(), step, step
        clock = IterationClock()
        # Only the chief judges the loss: it alone saves, and its stop releases the others.
        guard = divergence.DivergenceGuard(args.divergence_factor if run.chief else 0)
        preload_guard(args, run, guard, step)
        try:
            with StopFlag() as stop, Progress(args.iterations, 'train', unit='it',
                                              initial=step, enabled=run.chief) as bar:
                try:
                    step, last_saved = loop(args, run, graph, session, step, batcher, writer,
                                            stop, bar, clock, guard)
                except _released_errors(graph):
                    step, released = int(session.run(graph.net.global_step)), True
                    bar.write('another worker stopped before --iterations: stopping at '
                              'iteration %d' % step)
                else:
                    released = False
            early = step < args.iterations and not released
            if run.chief and step != last_saved:
                if guard.holding:
                    print('note: the checkpoint of iteration %d is held back (%s); the newest '
                          'checkpoint is %s' % (step, guard.describe(), run.store.last_saved))
                else:
                    last_saved = save_checkpoint(args, run, graph, session, step, guard)
            distributed.dump_variables(session, _global_variables(graph), step,
                                       _replica_name(run))
            elapsed = time.perf_counter() - started
            # The checkpoint holding this state: saved now, earlier, or resumed from; None
            # when nothing was trained yet (e.g. stopped during the first evaluation).
            saved = run.store.last_saved if run.chief else None
            if stop.signal is not None:
                if not run.chief:
                    kept = 'the chief saves the checkpoint'
                elif not saved:
                    kept = 'nothing trained, no checkpoint'
                elif step != last_saved:
                    kept = 'its checkpoint held back, the newest is %s' % saved
                else:
                    kept = 'checkpoint saved'
                print('Interrupted by %s at iteration %d: %s, exiting.'
                      % (signal.Signals(stop.signal).name, step, kept))
            where = ('checkpoint: %s' % (saved or 'none written') if run.chief
                     else 'checkpoints are written by %s only' % _chief_name(run))
            print('Trained iterations %d..%d in %.1f s (%s); %s; waited for data '
                  '%.2f%% of the time' % (first_step, step, elapsed,
                                          _rate(step - first_step, len(clock.seconds),
                                                elapsed, guard.rollbacks), where,
                                          100.0 * batcher.wait_seconds / max(elapsed, 1e-9)))
            if clock.median() is not None:
                print('Iteration time: %s' % clock.describe())
            if guard.rollbacks:
                print('Divergence guard: %d rollback(s) in this run (see the warnings above)'
                      % guard.rollbacks)
        except TrainingError:
            # Stopped by the loss (NaN, a divergence with no rollback left): what ran still
            # counts in a run's record (docs/training.md's runs table).
            if run.chief and clock.seconds:
                print('Stopped after %d iteration(s) (rollbacks included) in %.1f s%s'
                      % (len(clock.seconds), time.perf_counter() - started,
                         '; iteration time: %s' % clock.describe()
                         if clock.median() is not None else ''))
            raise
        finally:
            batcher.close()
            if writer:
                writer.close()
    finally:
        _close(args, run, graph, session, early)
    return step


def _rate(net, ran, elapsed, rollbacks):
    """'2.50 it/s', or with rollbacks '98 iterations run, 0.09 it/s; net -10 after 5
    rollback(s)' (a run that stepped back can end before the iteration it started from)."""
    if not rollbacks:
        return '%.2f it/s' % (net / max(elapsed, 1e-9))
    return ('%d iterations run, %.2f it/s; net %+d after %d rollback(s)'
            % (ran, ran / max(elapsed, 1e-9), net, rollbacks))


def _global_variables(graph):
    tf = quiet.import_tf()
    return graph.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)


def _released_errors(graph):
    """The error of a TF_CONFIG worker whose token queue another worker closed (nothing to
    catch otherwise)."""
    if not graph.replicas:
        return ()
    return (quiet.import_tf().errors.OutOfRangeError,)


def _close(args, run, graph, session, early):
    """Close the session; a TF_CONFIG worker first stops its replication threads (and
    releases the other workers when ``early``), then tells the ps it is done. The checkpoint
    folder is closed by ``train``."""
    if graph.replicas:
        graph.replicas.stop(session, early)
    session.close()
    if graph.replicas:
        graph.replicas.signal_done(run.server, distributed.session_config(
            run.cluster, utils.flags_session_config(args)))
