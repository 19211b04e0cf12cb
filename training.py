"""Training: a list of named steps, in the manner of BasicSR's ``train.py``.

    run = prepare(args)                 # data, checkpoint folder, settings checks
    graph = build(args, run)            # one graph: training, samples, evaluation, saver
    session, step = restore_or_init(args, run, graph)
    step = loop(args, run, graph, session, step)    # until --iterations or SIGINT/SIGTERM
    finish(...)                         # last checkpoint, summary line

``train(args)`` runs them all. Training checkpoints hold the whole state (weights,
``global_step``, Adam moments and beta powers), so rerunning the same command resumes
exactly. The checkpoint folder is a ``checkpoints.TrainingFolder``: locked for this process,
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
import math
import os
import signal
import time

import numpy as np

import audit
import checkpoints
import dataloader
import distributed
import divergence
import metrics
import precision
import quiet
import rainlayers
import settings
import utils
from dataloader import DataError
from errors import TrainingError, UsageError, reason as errors_reason
from evaluation import (CURVE_FILE, read_curve, run_evaluation, scalar_summary,
                        truncate_curve, write_samples)
from progress import Progress

# cluster/server: the TF_CONFIG task (distributed.Cluster) and its tf.train.Server, or None.
# store: the chief's checkpoints.TrainingFolder (locked; it saves), None elsewhere.
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
    audit.training_warning(data_dir, test_dir, args.test_dataset, log_dir,
                           rainy_half=args.rainy_half)


def prepare(args):
    """Check the flags and the data, open the checkpoint folder. Returns a Run.

    The chief opens the folder as a ``checkpoints.TrainingFolder`` (its lock, the cleanup of
    an interrupted save, the newest readable checkpoint to resume); the caller closes it
    (``run.store.close()``). With a TF_CONFIG cluster this task's server is started here; a
    ps task gets a Run with only ``cluster`` and ``server`` (it needs no data).
    """
    cluster = distributed.from_environment()
    if cluster:
        distributed.check_flags(cluster, args)
        if cluster.is_ps:
            return Run(None, None, [], None, [], [], None, False, None, cluster,
                       distributed.start_server(cluster, _session_config(args)))
    hvd = _horovod(args)
    chief = cluster.is_chief if cluster else hvd is None or hvd.rank() == 0
    if args.num_gpus > 1 and args.batch_size % args.num_gpus:
        raise UsageError('--batch_size %d does not split evenly over --num_gpus %d'
                         % (args.batch_size, args.num_gpus))
    config = settings.model_config(args)
    folder = checkpoints.default_folder(args)
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
    store = (checkpoints.TrainingFolder(folder, args.keep_checkpoints,
                                        keep_every=args.keep_every) if chief else None)
    try:
        prefix = store.resume if store else (
            None if cluster else checkpoints.newest_readable(folder, log=lambda _: None))
        if prefix:
            checkpoints.check_settings(folder, config, edge_loss_weight=args.edge_loss_weight)
            rainlayers.check_resume(checkpoints.load_settings(folder), layers, folder)
        warm_start = _warm_start(args, folder, prefix, config)
        log_dir = os.path.join(args.logs_dir, os.path.basename(folder))
        server = distributed.start_server(cluster, _session_config(args)) if cluster else None
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
        return (checkpoints.load_settings(folder) or {}).get('init_weights')
    if args.init_weights is None:
        return None
    where = args.init_weights
    if where in checkpoints.SHIPPED_MODELS and not os.path.exists(where):
        where = checkpoints.shipped_model_folder(where)
    init = checkpoints.find(where) if where else None
    if init is None:
        raise UsageError('--init_weights %s holds no checkpoint; pass a checkpoint folder or '
                         'prefix, e.g. checkpoints/ReMAEN_light' % (args.init_weights or "''"))
    checkpoints.check_settings(os.path.dirname(init), config)
    return init


def _session_config(args):
    return utils.session_config(args.intra_op_threads, args.inter_op_threads, args.xla,
                                precision=args.precision)


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
    direct_dilation = precision.direct_dilation_trainable(_session_config(args))
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
        saver = checkpoints.make_saver(net.variables + [net.global_step] + optimizer_state)
        infer = model.build_inference_graph(run.config)
        init = tf.global_variables_initializer()
        restore_fn = (checkpoints.make_restorer(run.prefix, net.variables, net.global_step,
                                                optional=optimizer_state) if run.prefix
                      else checkpoints.make_restorer(run.warm_start, net.variables)
                      if run.warm_start else None)  # a warm start: the weights only
        broadcast = run.hvd.broadcast_global_variables(0) if run.hvd else None
        if replicas:
            replicas.build()
    graph.finalize()
    return Graph(graph, rain, clean, net, psnr, summaries, saver, infer, init, restore_fn,
                 broadcast, replicas, output=clipped)


def batch_ssim_summary(output, clean):
    """The ``metrics/ssim`` summary of a training batch, computed in float64 by ``metrics.ssim``.

    Args:
      output: float array (B, H, W, 3), the network output clipped to [0, 1].
      clean: float array (B, H, W, 3) in [0, 1], the clean crops.

    Returns:
      tf.Summary with one value: the mean SSIM over the batch (paper protocol); None when the
      crops are smaller than SSIM's 11x11 window.
    """
    if min(np.shape(output)[1:3]) < metrics.SSIM_WIN_SIZE:
        return None
    value = float(np.mean([metrics.ssim(o, c) for o, c in zip(output, clean)]))  # float64
    return scalar_summary({'metrics/ssim': value})


# ----------------------------------------------------------------------------- step 3
def restore_or_init(args, run, graph):
    """Open the session, initialise, restore the checkpoint if any. Returns (session, step).

    TF_CONFIG: the session runs on this task's server; the chief initialises or restores
    the variables (on the ps) and then marks them ready, the other workers wait for that.
    """
    tf = quiet.import_tf()
    session_config = _session_config(args)
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


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(args, run, graph, session, step, guard=None):
    """Save ``ReMAEN-<step>`` (the whole training state) and apply ``--keep_checkpoints``
    (``checkpoints.TrainingFolder.save``); then the ``guard``'s recent batch losses
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
    ``checkpoints.GUARD_IGNORED_SETTINGS``). ``train_pairs``: the training-set size,
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
        saved_at = checkpoints.step_of(target)
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
    except (tf.errors.OpError, ValueError, checkpoints.CheckpointError) as exc:
        raise TrainingError('the loss diverged at iteration %d (%s) and its checkpoint %s '
                            'cannot be restored (%s); stopped without saving'
                            % (step, guard.describe(), target, errors_reason(exc)))
    for abandoned, _ in given_up:
        guard.stepped_back(checkpoints.step_of(abandoned))
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
                     os.path.join(run.store.folder, checkpoints.DIVERGED_FOLDER)))
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
        distributed.serve_ps(run.cluster, run.server,
                             distributed.session_config(run.cluster, _session_config(args)))
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
            checkpoints.save_settings(run.folder, stored_settings(args, run))
            import quiet
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
            run.cluster, _session_config(args)))
