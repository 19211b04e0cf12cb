"""Training: a list of named steps, in the manner of BasicSR's ``train.py``.

    run = prepare(args)                 # data, checkpoint folder, settings checks
    graph = build(args, run)            # one graph: training, samples, evaluation, saver
    session, step = restore_or_init(args, run, graph)
    step = loop(args, run, graph, session, step)    # until --iterations or SIGINT/SIGTERM
    finish(...)                         # last checkpoint, summary line

``train(args)`` runs them all. Training checkpoints hold the whole state (weights,
``global_step``, Adam moments and beta powers), so rerunning the same command resumes
exactly; ``--keep_checkpoints`` is enforced over the folder, earlier runs' files included.
With ``TF_CONFIG`` set the same steps run as one task of a cluster (``distributed.py``); a
ps task only serves the variables.
With ``--eval_every N`` the test set is derained every N iterations and every stage's output
is measured in both protocols: rows ``step,stage,psnr,ssim,psnr_y,ssim_y,seconds`` are
appended to ``<logs_dir>/<checkpoint folder name>/curve.csv`` (the paper's "recurrent rain
removal analysis"; ``python figures.py curves`` draws it) and written as TensorBoard scalars.
"""
import collections
import csv
import math
import os
import re
import signal
import time

import numpy as np

import dataloader
import settings
from dataloader import DataError
from errors import TrainingError, UsageError

CURVE_FILE = 'curve.csv'
CURVE_COLUMNS = ('step', 'stage', 'psnr', 'ssim', 'psnr_y', 'ssim_y', 'seconds')

# cluster/server: the TF_CONFIG task (distributed.Cluster) and its tf.train.Server, or None.
Run = collections.namedtuple('Run', [
    'config', 'folder', 'pairs', 'prefix', 'sample_pairs', 'eval_pairs', 'hvd', 'chief',
    'log_dir', 'cluster', 'server'], defaults=(None, None))
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


def prepare(args):
    """Check the flags and the data, find the checkpoint to resume. Returns a Run.

    With a TF_CONFIG cluster this task's server is started here; a ps task gets a Run with
    only ``cluster`` and ``server`` (it needs no data).
    """
    import distributed
    from inference import check_settings
    import utils
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
    folder = settings.default_checkpoint_folder(args)
    data_dir = dataloader.resolve_dataset_dir(args.data_path, args.train_dataset, '--data_path')
    pairs, _ = dataloader.find_pairs(data_dir, rainy_half=args.rainy_half,
                                     limit=args.trainset_size)
    # A TF_CONFIG worker other than the chief never restores: the variables live on the ps.
    prefix = utils.find_checkpoint(folder) if chief or not cluster else None
    if prefix:
        check_settings(folder, config, edge_loss_weight=args.edge_loss_weight)
    sample_pairs = _test_pairs(args, 2) if chief else []
    eval_pairs = []
    if chief and args.eval_every:
        eval_pairs = _test_pairs(args, args.eval_images, 'evaluation curve')
    log_dir = os.path.join(args.logs_dir, os.path.basename(folder))
    server = distributed.start_server(cluster, _session_config(args)) if cluster else None
    return Run(config, folder, pairs, prefix, sample_pairs, eval_pairs, hvd, chief, log_dir,
               cluster, server)


def _session_config(args):
    import utils
    return utils.session_config(args.intra_op_threads, args.inter_op_threads, args.xla,
                                precision=args.precision)


# ----------------------------------------------------------------------------- step 2
def build(args, run):
    """The training graph, its summaries and saver, and the inference graph on the same
    variables (samples and evaluation curves). Returns a Graph (finalized).

    A TF_CONFIG worker places the variables on the ps and wraps Adam in a
    SyncReplicasOptimizer (``distributed.SyncReplicas``).
    """
    import contextlib
    import distributed
    import model
    import quiet
    import utils
    tf = quiet.import_tf()
    graph = tf.Graph()
    replicas = distributed.SyncReplicas(run.cluster) if run.cluster else None
    wrap_optimizer = (run.hvd.DistributedOptimizer if run.hvd
                      else replicas.wrap_optimizer if replicas else None)
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
            precision=args.precision)
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
        saver = tf.train.Saver(net.variables + [net.global_step] + optimizer_state,
                               max_to_keep=args.keep_checkpoints)
        infer = model.build_inference_graph(run.config)
        init = tf.global_variables_initializer()
        restore_fn = (utils.make_restorer(run.prefix, net.variables, net.global_step,
                                          optional=optimizer_state) if run.prefix else None)
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
    import metrics
    if min(np.shape(output)[1:3]) < metrics.SSIM_WIN_SIZE:
        return None
    value = float(np.mean([metrics.ssim(o, c) for o, c in zip(output, clean)]))  # float64
    return scalar_summary({'metrics/ssim': value})


def scalar_summary(values):
    """A tf.Summary of scalars computed outside the graph: ``{tag: float}``, in that order."""
    import quiet
    tf = quiet.import_tf()
    return tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=value)
                             for tag, value in values.items()])


# ----------------------------------------------------------------------------- step 3
def restore_or_init(args, run, graph):
    """Open the session, initialise, restore the checkpoint if any. Returns (session, step).

    TF_CONFIG: the session runs on this task's server; the chief initialises or restores
    the variables (on the ps) and then marks them ready, the other workers wait for that.
    """
    import distributed
    import quiet
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
    if graph.broadcast is not None:
        session.run(graph.broadcast)
    if graph.replicas:
        graph.replicas.chief_ready(session)
        print('%s: variables ready at iteration %d' % (run.cluster.describe(), step))
    return session, step


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_steps(folder):
    """``{step: prefix}`` of the ``ReMAEN-<step>`` checkpoints in ``folder``."""
    import utils
    found = {}
    if not os.path.isdir(folder):
        return found
    pattern = re.compile(r'^%s-(\d+)\.index$' % re.escape(utils.CHECKPOINT_PREFIX))
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name[:-len('.index')])
    return found


def prune_checkpoints(folder, keep, protect=()):
    """Delete all but the ``keep`` newest ``ReMAEN-<step>`` checkpoints of ``folder``.

    Called after a checkpoint was written, so the one a run resumed from is only removed
    once a newer one exists. Earlier runs' checkpoints count too (``tf.train.Saver`` only
    prunes its own). Prefixes in ``protect`` are never removed.

    Returns:
      The removed prefixes.
    """
    steps = checkpoint_steps(folder)
    removed = []
    for step in sorted(steps)[:-keep] if keep > 0 else []:
        prefix = steps[step]
        if prefix in protect:
            continue
        for path in [prefix + '.index'] + _data_files(prefix):
            try:
                os.remove(path)
            except OSError:
                pass
        removed.append(prefix)
    return removed


def _data_files(prefix):
    folder, base = os.path.split(prefix)
    return [os.path.join(folder, n) for n in os.listdir(folder or '.')
            if n.startswith(base + '.data-')]


def save_checkpoint(args, run, graph, session, step):
    """Save ``ReMAEN-<step>`` (whole training state), then prune old ones. Returns step."""
    import utils
    save_path = os.path.join(run.folder, utils.CHECKPOINT_PREFIX)
    prefix = graph.saver.save(session, save_path, global_step=step, write_meta_graph=False)
    prune_checkpoints(run.folder, args.keep_checkpoints, protect=(prefix,))
    return step


# ----------------------------------------------------------------------------- evaluation
def read_curve(path):
    """The rows of a curve.csv as dicts of numbers (empty list when absent)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as handle:
        return [{k: (int(v) if k in ('step', 'stage') else float(v)) if v != '' else None
                 for k, v in row.items()} for row in csv.DictReader(handle)]


def evaluate_stages(session, infer, pairs):
    """Derain ``pairs`` and average every stage's metrics over them.

    Args:
      session: session holding the weights of ``infer``'s variables.
      infer: model.InferenceGraph.
      pairs: dataloader.Pair list with ground truth.

    Returns:
      (list of dicts, one per stage (stage 1 first) with psnr, ssim, psnr_y, ssim_y means;
      seconds spent).
    """
    from inference import Measurer
    measure = Measurer()
    start = time.perf_counter()
    per_stage = None
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        outputs = session.run(infer.stage_outputs, {infer.images: rain[np.newaxis]})
        values = [measure(out[0], clean) for out in outputs]
        per_stage = per_stage or [[] for _ in values]
        for stage, value in enumerate(values):
            per_stage[stage].append(value)
    means = [{k: _mean([v[k] for v in values]) for k in CURVE_COLUMNS[2:6]}
             for values in per_stage or []]
    return means, time.perf_counter() - start


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def append_curve(path, step, means, seconds):
    """Append one evaluation (a row per stage) to curve.csv, header first if new."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    new = not os.path.isfile(path)
    with open(path, 'a', newline='') as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(CURVE_COLUMNS)
        for stage, values in enumerate(means, 1):
            writer.writerow([step, stage] + ['' if values[k] is None else '%.6f' % values[k]
                                             for k in CURVE_COLUMNS[2:6]] + ['%.2f' % seconds])


def run_evaluation(args, run, graph, session, writer, step, first):
    """Measure the curve point of ``step``; print it (and its cost the first time)."""
    means, seconds = evaluate_stages(session, graph.infer, run.eval_pairs)
    append_curve(os.path.join(run.log_dir, CURVE_FILE), step, means, seconds)
    if writer is not None:
        writer.add_summary(scalar_summary({
            'eval/stage%d/%s' % (stage, key): float('nan') if values[key] is None else values[key]
            for stage, values in enumerate(means, 1) for key in CURVE_COLUMNS[2:6]}), step)
    stages = '  '.join('stage %d %.2f dB / %.4f' % (s, v['psnr'], v['ssim'] or float('nan'))
                       for s, v in enumerate(means, 1))
    text = 'eval @ %d on %d image(s): %s' % (step, len(run.eval_pairs), stages)
    if first:
        text += ('  [one evaluation takes %.1f s; every %d iterations]'
                 % (seconds, args.eval_every))
    return text


# ----------------------------------------------------------------------------- step 4
def _sample_strip(rain, derained, clean, residual):
    """rain | derained | clean | residual side by side (uint8, BGR)."""
    from utils import to_uint8
    residual = np.abs(residual)
    residual = residual / max(float(residual.max()), 1e-6)
    return np.concatenate([to_uint8(x) for x in (rain, derained, clean, residual)], axis=1)


def write_samples(session, infer, pairs, folder, step):
    """rain | derained | clean | residual strips of the sample pairs at ``step``."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        out = session.run(infer.output, {infer.images: rain[np.newaxis]})[0]
        cv2.imwrite(os.path.join(folder, '%s_iter%06d.png' % (pair.name, step)),
                    _sample_strip(rain, out, clean, rain - out))


def _worker_seed(seed, hvd):
    """Crop seed of this process: Horovod workers must not all draw the same crops."""
    if seed is None or hvd is None:
        return seed
    return seed + hvd.rank()


def loop(args, run, graph, session, step, batcher, writer, stop, bar):
    """Train from ``step`` until --iterations or a stop signal. Returns (step, last_saved)."""
    import utils
    net = graph.net
    last_saved = step
    curve = os.path.join(run.log_dir, CURVE_FILE)
    first_eval = True
    if run.eval_pairs and not any(r['step'] == step for r in read_curve(curve)):
        bar.write(run_evaluation(args, run, graph, session, writer, step, first_eval))
        first_eval = False
    while step < args.iterations and stop.signal is None:
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
                % (values['loss'], step + 1, utils.find_checkpoint(run.folder) or 'none'))
        step += 1
        bar.update(1, loss='%.5f' % values['loss'], psnr='%.2f' % values['psnr'],
                   lr='%.0e' % values['lr'])
        if 'summary' in values:
            writer.add_summary(values['summary'], step)
            ssim = batch_ssim_summary(values['output'], clean_batch)
            if ssim is not None:
                writer.add_summary(ssim, step)
        if not run.chief:
            continue
        if step % args.save_every == 0:
            last_saved = save_checkpoint(args, run, graph, session, step)
        if run.sample_pairs and step % args.sample_every == 0:
            write_samples(session, graph.infer, run.sample_pairs,
                          os.path.join(args.sample_dir, os.path.basename(run.folder)), step)
        if run.eval_pairs and step % args.eval_every == 0:
            bar.write(run_evaluation(args, run, graph, session, writer, step, first_eval))
            first_eval = False
    return step, last_saved


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
    import distributed
    import model
    import utils
    from progress import Progress
    run = prepare(args)
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
                                          memory_budget_mb=args.memory_budget_mb)
        writer = None
        if run.chief:
            # train_pairs: the training-set size, reported by reproduce.py (Rain100H caveat).
            utils.save_settings(run.folder, dict(settings.run_settings(args),
                                                 train_pairs=len(run.pairs)))
            import quiet
            tf = quiet.import_tf()
            writer = tf.summary.FileWriter(run.log_dir, graph.graph if step == 0 else None)
        started, first_step, last_saved = time.perf_counter(), step, step
        try:
            with StopFlag() as stop, Progress(args.iterations, 'train', unit='it',
                                              initial=step, enabled=run.chief) as bar:
                try:
                    step, last_saved = loop(args, run, graph, session, step, batcher, writer,
                                            stop, bar)
                except _released_errors(graph):
                    step, released = int(session.run(graph.net.global_step)), True
                    bar.write('another worker stopped before --iterations: stopping at '
                              'iteration %d' % step)
                else:
                    released = False
            early = step < args.iterations and not released
            if run.chief and step != last_saved:
                last_saved = save_checkpoint(args, run, graph, session, step)
            distributed.dump_variables(session, _global_variables(graph), step,
                                       _replica_name(run))
            elapsed = time.perf_counter() - started
            if stop.signal is not None:
                print('Interrupted by %s at iteration %d: %s, exiting.'
                      % (signal.Signals(stop.signal).name, step,
                         'checkpoint saved' if run.chief else 'the chief saves the checkpoint'))
            where = ('checkpoint: %s-%d' % (os.path.join(run.folder, utils.CHECKPOINT_PREFIX),
                                            last_saved)
                     if run.chief else 'checkpoints are written by %s only' % _chief_name(run))
            print('Trained iterations %d..%d in %.1f s (%.2f it/s); %s; waited for data '
                  '%.2f%% of the time' % (first_step, step, elapsed,
                                          (step - first_step) / max(elapsed, 1e-9), where,
                                          100.0 * batcher.wait_seconds / max(elapsed, 1e-9)))
        finally:
            batcher.close()
            if writer:
                writer.close()
    finally:
        _close(args, run, graph, session, early)
    return step


def _global_variables(graph):
    import quiet
    tf = quiet.import_tf()
    return graph.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)


def _released_errors(graph):
    """The error of a TF_CONFIG worker whose token queue another worker closed (nothing to
    catch otherwise)."""
    if not graph.replicas:
        return ()
    import quiet
    return (quiet.import_tf().errors.OutOfRangeError,)


def _close(args, run, graph, session, early):
    """Close the session; a TF_CONFIG worker first stops its replication threads (and
    releases the other workers when ``early``), then tells the ps it is done."""
    import distributed
    if graph.replicas:
        graph.replicas.stop(session, early)
    session.close()
    if graph.replicas:
        graph.replicas.signal_done(run.server, distributed.session_config(
            run.cluster, _session_config(args)))
