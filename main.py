"""ReMAEN command line: train, test (with PSNR/SSIM) and derain your own photos.

    python main.py --is_training True --train_dataset Rain100L --batch_size 32
    python main.py --is_testing True --train_dataset Rain100L --test_dataset Rain100L \
        --trainset_size 200 --testset_size 100 --batch_size 32
    python main.py --input my_photos/ --checkpoint checkpoints/ReMAEN_Demo_4

``main(argv)`` owns the graph and the session; user errors print one ``error:`` line and
return exit code 2 (no traceback).
"""
import csv
import json
import math
import os
import signal
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dataloader  # noqa: E402
import metrics  # noqa: E402
import settings  # noqa: E402
from dataloader import DataError  # noqa: E402

PAPER_EDGE_LOSS_WEIGHT = 0.1
METRIC_KEYS = ('psnr', 'ssim', 'psnr_y', 'ssim_y')


class UsageError(Exception):
    """Flags that cannot work together (one-line message)."""


class TrainingError(Exception):
    """Training had to stop (e.g. a NaN loss); the last good checkpoint is untouched."""


def _tf():
    """Import TensorFlow in TF1 graph mode (lazily: ``--help`` stays fast)."""
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    tf.get_logger().setLevel('ERROR')
    return tf


# ----------------------------------------------------------------------------- settings
def model_config(args):
    """The ModelConfig described by the network flags."""
    from model import ModelConfig
    return ModelConfig(stages=args.stages, channels=args.channel_dim,
                       input_channels=args.input_channels, dilations=tuple(args.dilations),
                       shared_attention=args.shared_attention,
                       skip_connections=args.skip_connections)


def run_suffix(args):
    """Checkpoint-folder suffix: '' for the paper's model and loss, else one tag per change."""
    suffix = model_config(args).suffix()
    if args.edge_loss_weight != PAPER_EDGE_LOSS_WEIGHT:
        suffix += '_edge%g' % args.edge_loss_weight
    return suffix


def run_settings(args):
    """What is stored next to a checkpoint (remaen_settings.json)."""
    return {'model': model_config(args).to_dict(), 'edge_loss_weight': args.edge_loss_weight,
            'train_dataset': args.train_dataset, 'batch_size': args.batch_size,
            'patch_size': args.patch_size, 'lr': args.lr, 'lr_decay_step': args.lr_decay_step}


def default_checkpoint_folder(args):
    import utils
    return utils.checkpoint_folder(args.checkpoint_dir, args.train_dataset, args.batch_size,
                                   run_suffix(args))


def check_settings(folder, args, training=False):
    """Refuse a checkpoint whose stored network settings differ from the flags.

    Args:
      folder: checkpoint folder (may lack remaen_settings.json, e.g. the authors' release:
        then only the variable check of ``utils.restore`` applies).
      args: parsed flags.
      training: also compare the loss settings (resuming must not change the objective).
    """
    import utils
    from model import ModelConfig
    stored = utils.load_settings(folder)
    if not stored:
        return
    diffs = ModelConfig.from_dict(stored.get('model', {})).differences(model_config(args))
    if training and stored.get('edge_loss_weight') != args.edge_loss_weight:
        diffs.append('edge_loss_weight: %r vs %r' % (stored.get('edge_loss_weight'),
                                                    args.edge_loss_weight))
    if diffs:
        raise UsageError('checkpoint %s was trained with other settings (checkpoint vs flags: '
                         '%s); pass the same flags or another --checkpoint'
                         % (folder, '; '.join(diffs)))


def resolve_checkpoint(args):
    """Checkpoint prefix for testing/deraining; CheckpointError when there is none."""
    import utils
    where = args.checkpoint or default_checkpoint_folder(args)
    prefix = utils.find_checkpoint(where)
    if prefix is None:
        raise utils.CheckpointError(
            'no checkpoint found at %s; train first (--is_training True with the same '
            '--train_dataset/--batch_size) or pass --checkpoint PATH (a folder such as the '
            "authors' checkpoint/ReMAEN_Rain100L_32/ or a prefix)" % where)
    return prefix


def print_configuration(args, title):
    print('== ReMAEN %s ==' % title)
    for key in sorted(vars(args)):
        print('  %-18s %s' % (key, getattr(args, key)))


# ----------------------------------------------------------------------------- inference
class Derainer(object):
    """A restored network that derains images of any size with one graph.

    Args:
      prefix: checkpoint prefix.
      config: ModelConfig.
      session_config: tf.ConfigProto.
      tile: 0 for whole-image passes, else the tile side in pixels: images with a side
        larger than ``tile`` go through ``tiling`` (exact, bounded memory, ~K/2 + 1 passes
        with K = 12 * stages SE blocks); smaller ones get one whole-image pass.
      tile_overlap: halo of each tile in pixels; None = the receptive-field radius
        (``tiling.receptive_field_radius``, exact). A smaller value is approximate.
      mixed_precision: float16 whole-image passes (GPU only; see ``model.remaen``).

    Calling it with an HxWx3 float32 BGR image in [0, 1] returns the derained image,
    HxWx3 float32 clipped to [0, 1].
    """

    def __init__(self, prefix, config, session_config=None, tile=0, tile_overlap=None,
                 mixed_precision=False):
        tf = _tf()
        import model
        import tiling
        import utils
        self.tile, self.tile_overlap, self.tiled, self.point_radii = tile, None, None, None
        if tile:
            self.tile_overlap = self._check_tiling(config, tile, tile_overlap)
            self.point_radii = tiling.se_point_radii(config)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf.placeholder(tf.float32, [1, None, None, config.input_channels],
                                         name='rain')
            output, _, _ = model.remaen(self.images, config, inference=True,
                                        mixed_precision=mixed_precision)
            self.output = tf.clip_by_value(output, 0.0, 1.0)
            if tile:
                # Same graph, same (AUTO_REUSE) variables: one restore serves both passes.
                self.tiled = tiling.build_tiled_graph(config)
            self.session = tf.Session(config=session_config or utils.session_config())
            utils.restore(self.session, prefix, model.model_variables())
        self.prefix = prefix

    @staticmethod
    def _check_tiling(config, tile, overlap):
        """The halo to use (UsageError for negative values; a note when approximate)."""
        import tiling
        radius = tiling.receptive_field_radius(config)
        if tile < 0 or (overlap is not None and overlap < 0):
            raise UsageError('--tile and --tile_overlap must be >= 0 (got %d and %s)'
                             % (tile, overlap))
        if overlap is None:
            return radius
        if overlap < radius:
            print('note: --tile_overlap %d is below the receptive-field radius %d: tiled '
                  'results are approximate (omit --tile_overlap for exact tiling)'
                  % (overlap, radius))
        return overlap

    def run(self, image):
        """One network pass on a whole HxWx3 image (float32 in [0, 1])."""
        return self.session.run(self.output, {self.images: image[np.newaxis]})[0]

    def __call__(self, image):
        if self.tiled is not None and max(image.shape[:2]) > self.tile:
            import tiling
            output = tiling.derain_tiled(self.session, self.tiled, image, self.tile,
                                         self.tile_overlap, self.point_radii)
            return np.clip(output, 0.0, 1.0)
        return self.run(image)

    def close(self):
        self.session.close()


def _safe_output_path(out_dir, name, pair):
    path = os.path.join(out_dir, name + '.png')
    inputs = {os.path.realpath(p) for p in (pair.rain_path, pair.clean_path) if p}
    if os.path.realpath(path) in inputs:
        raise UsageError('output %s would overwrite an input image; choose another --test_dir'
                         % path)
    return path


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(value, digits):
    return '   n/a' if value is None else ('%.*f' % (digits, value))


def derain_pairs(derainer, pairs, out_dir, dataset, verbose=True):
    """Derain every pair, save outputs, measure both protocols, write results.csv/json.

    Args:
      derainer: Derainer.
      pairs: list of dataloader.Pair (clean_path may be None: metrics are then null).
      out_dir: folder for the derained PNGs and the results files (created).
      dataset: label written in the results.

    Returns:
      The results dict (as written to results.json).
    """
    from utils import to_uint8
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    bar = tqdm(pairs, desc='derain', unit='img', disable=not verbose, file=sys.stdout)
    for pair in bar:
        rain, clean = dataloader.load_pair(pair)
        start = time.perf_counter()
        derained = derainer(rain)
        seconds = time.perf_counter() - start
        path = _safe_output_path(out_dir, pair.name, pair)
        import cv2
        if not cv2.imwrite(path, to_uint8(derained)):
            raise UsageError('cannot write %s; check that --test_dir is writable' % path)
        row = {'name': pair.name, 'output': path, 'seconds': seconds}
        if clean is not None:
            # Paper protocol on the float output clipped to [0, 1] (SPEC); the Y protocol
            # rounds it to uint8 first, which is exactly the saved PNG.
            row.update(metrics.evaluate(derained, clean))
            row['input'] = metrics.evaluate(rain, clean)
        else:
            row.update({k: None for k in METRIC_KEYS})
            row['input'] = {k: None for k in METRIC_KEYS}
        rows.append(row)
        if verbose:
            bar.write('%-14s input %s dB / %s  ->  output %s dB / %s  (Y: %s dB / %s)  %.2f s'
                      % (pair.name, _fmt(row['input']['psnr'], 2), _fmt(row['input']['ssim'], 4),
                         _fmt(row['psnr'], 2), _fmt(row['ssim'], 4), _fmt(row['psnr_y'], 2),
                         _fmt(row['ssim_y'], 4), seconds))
    mean = {k: _mean([r[k] for r in rows]) for k in METRIC_KEYS}
    mean['seconds'] = _mean([r['seconds'] for r in rows])
    mean['input'] = {k: _mean([r['input'][k] for r in rows]) for k in METRIC_KEYS}
    results = {'images': rows, 'mean': mean, 'checkpoint': derainer.prefix, 'dataset': dataset,
               'count': len(rows)}
    write_results(results, out_dir)
    if verbose:
        print_summary(results, out_dir)
    return results


def write_results(results, out_dir):
    """results.json (schema in README) and results.csv (one row per image, then the mean)."""
    with open(os.path.join(out_dir, 'results.json'), 'w') as handle:
        json.dump(results, handle, indent=2)
    columns = ['name', 'output'] + list(METRIC_KEYS) + ['input_' + k for k in METRIC_KEYS] \
        + ['seconds']
    with open(os.path.join(out_dir, 'results.csv'), 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in results['images'] + [dict(results['mean'], name='mean', output='')]:
            flat = dict(row, **{'input_' + k: row['input'][k] for k in METRIC_KEYS})
            writer.writerow(['' if flat[c] is None else flat[c] for c in columns])


def print_summary(results, out_dir):
    mean, inp = results['mean'], results['mean']['input']
    line = '+--------------------+----------+--------+----------+--------+'
    print(line)
    print('| %-18s | %8s | %6s | %8s | %6s |' % ('%d images' % results['count'], 'PSNR',
                                                'SSIM', 'PSNR-Y', 'SSIM-Y'))
    print(line)
    for label, values in (('rainy input', inp), ('ReMAEN output', mean)):
        print('| %-18s | %8s | %6s | %8s | %6s |' % (
            label, _fmt(values['psnr'], 2), _fmt(values['ssim'], 4), _fmt(values['psnr_y'], 2),
            _fmt(values['ssim_y'], 4)))
    print(line)
    if mean['psnr'] is None:
        print('No ground truth: PSNR/SSIM not available.')
    else:
        print('PSNR/SSIM: paper protocol (BGR channels, range 1, Gaussian SSIM, VALID); '
              'PSNR-Y/SSIM-Y: BT.601 luma of uint8 images (PReNet/Restormer protocol).')
    print('Average time per image: %.3f s over %d images (the first includes warm-up).'
          % (mean['seconds'], results['count']))
    print('Derained images and results.csv/results.json: %s' % out_dir)


def build_derainer(args):
    import utils
    prefix = resolve_checkpoint(args)
    check_settings(os.path.dirname(prefix), args)
    print('Restoring %s' % prefix)
    return Derainer(prefix, model_config(args), utils.session_config(
        args.intra_op_threads, args.inter_op_threads, args.xla), args.tile, args.tile_overlap,
        utils.use_mixed_precision(args.mixed_precision))


def test(args):
    """--is_testing: derain the test set and report PSNR/SSIM in both protocols."""
    folder = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset, '--test_path')
    pairs, _ = dataloader.find_pairs(folder, rainy_half=args.rainy_half, allow_missing_gt=True,
                                     limit=args.testset_size)
    derainer = build_derainer(args)
    try:
        out_dir = os.path.join(args.test_dir, args.test_dataset)
        return derain_pairs(derainer, pairs, out_dir, args.test_dataset)
    finally:
        derainer.close()


def derain_input(args):
    """--input FILE|DIR: derain the user's own images (no ground truth needed)."""
    path = args.input
    if os.path.isfile(path):
        dataloader.read_image(path)  # a clear error for unreadable files, before TF starts
        stem = os.path.splitext(os.path.basename(path))[0]
        pairs = [dataloader.Pair(stem, path, None, None)]
        label = stem
    elif os.path.isdir(path):
        pairs, _ = dataloader.find_pairs(path, rainy_half=args.rainy_half,
                                         allow_missing_gt=True)
        label = os.path.basename(os.path.normpath(path))
    else:
        raise DataError('--input %s does not exist; pass an image file or a folder of images'
                        % path)
    derainer = build_derainer(args)
    try:
        return derain_pairs(derainer, pairs, os.path.join(args.test_dir, label), label)
    finally:
        derainer.close()


# ----------------------------------------------------------------------------- training
class _StopFlag(object):
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


def _sample_strip(rain, derained, clean, residual):
    """rain | derained | clean | residual side by side (uint8, BGR)."""
    from utils import to_uint8
    residual = np.abs(residual)
    residual = residual / max(float(residual.max()), 1e-6)
    return np.concatenate([to_uint8(x) for x in (rain, derained, clean, residual)], axis=1)


def _sample_pairs(args):
    """Test pairs (with ground truth) for training samples; [] with a note if none."""
    try:
        folder = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset,
                                                '--test_path')
        pairs, _ = dataloader.find_pairs(folder, rainy_half=args.rainy_half, verbose=False)
        return pairs[:2]
    except DataError as exc:
        print('note: no training samples will be written (%s)' % exc)
        return []


def _horovod(args):
    """Horovod module when --horovod True (imported lazily; untested here)."""
    if not args.horovod:
        return None
    try:
        import horovod.tensorflow as hvd
    except ImportError:
        raise UsageError('--horovod True needs Horovod: pip install horovod (built with '
                         'TensorFlow support), then run with horovodrun -np K python main.py ...')
    hvd.init()
    return hvd


def _worker_seed(seed, hvd):
    """Crop seed of this process: Horovod workers must not all draw the same crops."""
    if seed is None or hvd is None:
        return seed
    return seed + hvd.rank()


def train(args):
    """--is_training: train (or resume) the network on --train_dataset."""
    import utils
    tf = _tf()
    import model
    hvd = _horovod(args)
    chief = hvd is None or hvd.rank() == 0
    if args.num_gpus > 1 and args.batch_size % args.num_gpus:
        raise UsageError('--batch_size %d does not split evenly over --num_gpus %d'
                         % (args.batch_size, args.num_gpus))
    config = model_config(args)
    folder = default_checkpoint_folder(args)
    data_dir = dataloader.resolve_dataset_dir(args.data_path, args.train_dataset, '--data_path')
    pairs, _ = dataloader.find_pairs(data_dir, rainy_half=args.rainy_half,
                                     limit=args.trainset_size)
    prefix = utils.find_checkpoint(folder)
    if prefix:
        check_settings(folder, args, training=True)
    sample_pairs = _sample_pairs(args) if chief else []
    print_configuration(args, 'training')

    graph = tf.Graph()
    with graph.as_default():
        if args.seed is not None:
            tf.set_random_seed(args.seed)
        shape = [args.batch_size, args.patch_size, args.patch_size, config.input_channels]
        rain = tf.placeholder(tf.float32, shape, name='rain')
        clean = tf.placeholder(tf.float32, shape, name='clean')
        devices = ['/gpu:%d' % i for i in range(args.num_gpus)] if args.num_gpus > 1 else None
        net = model.build_train_graph(
            rain, clean, config, lr=args.lr, beta1=args.beta1, beta2=args.beta2,
            lr_decay_step=args.lr_decay_step, edge_loss_weight=args.edge_loss_weight,
            devices=devices, wrap_optimizer=hvd.DistributedOptimizer if hvd else None,
            mixed_precision=utils.use_mixed_precision(args.mixed_precision))
        clipped = tf.clip_by_value(net.output, 0.0, 1.0)
        psnr = tf.reduce_mean(tf.image.psnr(clipped, clean, max_val=1.0))
        ssim = tf.reduce_mean(tf.image.ssim(clipped, clean, max_val=1.0))
        summaries = tf.summary.merge([
            tf.summary.scalar('loss/total', net.loss), tf.summary.scalar('loss/mse', net.mse_loss),
            tf.summary.scalar('loss/edge', net.edge_loss),
            tf.summary.scalar('metrics/psnr', psnr), tf.summary.scalar('metrics/ssim', ssim),
            tf.summary.scalar('schedule/learning_rate', net.learning_rate)])
        # Training checkpoints hold the whole state (weights, global_step, Adam moments and
        # beta powers) so that a resumed run continues exactly; --export_weights strips it.
        optimizer_state = [v for v in tf.global_variables()
                           if v not in set(net.variables) and v is not net.global_step]
        saver = tf.train.Saver(net.variables + [net.global_step] + optimizer_state,
                               max_to_keep=args.keep_checkpoints)
        sample_in = tf.placeholder(tf.float32, [1, None, None, config.input_channels])
        sample_out, sample_res, _ = model.remaen(sample_in, config, inference=True)
        init = tf.global_variables_initializer()
        restore_fn = (utils.make_restorer(prefix, net.variables, net.global_step,
                                          optional=optimizer_state) if prefix else None)
        broadcast = hvd.broadcast_global_variables(0) if hvd else None
    graph.finalize()

    session_config = utils.session_config(args.intra_op_threads, args.inter_op_threads,
                                          args.xla)
    if hvd:
        session_config.gpu_options.visible_device_list = str(hvd.local_rank())
    sess = tf.Session(graph=graph, config=session_config)
    sess.run(init)
    step = 0
    if prefix:
        step = restore_fn(sess)
        print('Resuming from %s at iteration %d' % (prefix, step))
        if restore_fn.skipped:
            print('note: the checkpoint has no optimizer state (%d Adam variables, e.g. %s): '
                  'Adam restarts from zero moments' % (len(restore_fn.skipped),
                                                       restore_fn.skipped[0]))
    if broadcast is not None:
        sess.run(broadcast)
    print('Parameters: %d in %d variables' % (model.count_parameters(net.variables),
                                             len(net.variables)))
    if step >= args.iterations:
        print('Already trained to iteration %d (>= --iterations %d); nothing to do.'
              % (step, args.iterations))
        sess.close()
        return step
    if chief:
        # train_pairs: the training-set size, reported by reproduce.py (Rain100H caveat).
        utils.save_settings(folder, dict(run_settings(args), train_pairs=len(pairs)))
    writer = tf.summary.FileWriter(os.path.join(args.logs_dir, os.path.basename(folder)),
                                   graph if step == 0 else None) if chief else None
    save_path = os.path.join(folder, utils.CHECKPOINT_PREFIX)
    batcher = dataloader.TrainBatcher(pairs, args.patch_size, args.batch_size, flip=args.flip,
                                      seed=_worker_seed(args.seed, hvd),
                                      memory_budget_mb=args.memory_budget_mb)
    last_saved = step
    started = time.perf_counter()
    first_step = step

    def save(at_step):
        saver.save(sess, save_path, global_step=at_step, write_meta_graph=False)
        return at_step

    try:
        with _StopFlag() as stop, tqdm(total=args.iterations, initial=step, desc='train',
                                       unit='it', file=sys.stdout, dynamic_ncols=True,
                                       disable=not chief) as bar:
            while step < args.iterations and stop.signal is None:
                rain_batch, clean_batch = batcher.next_batch()
                fetches = {'train': net.train_op, 'loss': net.loss, 'psnr': psnr,
                           'lr': net.learning_rate}
                if writer and (step + 1) % args.summary_every == 0:
                    fetches['summary'] = summaries
                values = sess.run(fetches, {rain: rain_batch, clean: clean_batch})
                if not math.isfinite(values['loss']):
                    raise TrainingError(
                        'loss became %s at iteration %d; stopped without saving (last good '
                        'checkpoint: %s); try a lower --lr'
                        % (values['loss'], step + 1, utils.find_checkpoint(folder) or 'none'))
                step += 1
                bar.update(1)
                bar.set_postfix(loss='%.5f' % values['loss'], psnr='%.2f' % values['psnr'],
                                lr='%.0e' % values['lr'])
                if 'summary' in values:
                    writer.add_summary(values['summary'], step)
                if chief and step % args.save_every == 0:
                    last_saved = save(step)
                if chief and sample_pairs and step % args.sample_every == 0:
                    _write_samples(sess, sample_in, sample_out, sample_res, sample_pairs,
                                   os.path.join(args.sample_dir, os.path.basename(folder)), step)
        if chief and step != last_saved:
            last_saved = save(step)
        elapsed = time.perf_counter() - started
        if stop.signal is not None:
            print('Interrupted by %s at iteration %d: checkpoint saved, exiting.'
                  % (signal.Signals(stop.signal).name, step))
        print('Trained iterations %d..%d in %.1f s (%.2f it/s); checkpoint: %s-%d; waited for '
              'data %.2f%% of the time' % (first_step, step, elapsed,
                                           (step - first_step) / max(elapsed, 1e-9), save_path,
                                           last_saved,
                                           100.0 * batcher.wait_seconds / max(elapsed, 1e-9)))
    finally:
        batcher.close()
        if writer:
            writer.close()
        sess.close()
    return step


def _write_samples(sess, images, output, residual, pairs, folder, step):
    import cv2
    os.makedirs(folder, exist_ok=True)
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        out, res = sess.run([output, residual], {images: rain[np.newaxis]})
        cv2.imwrite(os.path.join(folder, '%s_iter%06d.png' % (pair.name, step)),
                    _sample_strip(rain, np.clip(out[0], 0, 1), clean, res[0]))


# ----------------------------------------------------------------------------- export
def export_weights(args):
    """--export_weights DIR: copy the network weights (no Adam slots, no step) to DIR/ReMAEN."""
    import utils
    tf = _tf()
    import model
    prefix = resolve_checkpoint(args)
    check_settings(os.path.dirname(prefix), args)
    with tf.Graph().as_default():
        model.remaen(tf.placeholder(tf.float32, [1, None, None, args.input_channels]),
                     model_config(args))
        variables = model.model_variables()
        with tf.Session(config=utils.session_config()) as sess:
            utils.restore(sess, prefix, variables)
            os.makedirs(args.export_weights, exist_ok=True)
            target = os.path.join(args.export_weights, utils.CHECKPOINT_PREFIX)
            tf.train.Saver(variables).save(sess, target, write_meta_graph=False)
    stored = utils.load_settings(os.path.dirname(prefix)) or run_settings(args)
    utils.save_settings(args.export_weights, stored)
    size = sum(os.path.getsize(os.path.join(args.export_weights, f))
               for f in os.listdir(args.export_weights))
    print('Exported %d variables from %s to %s (%.1f MB)'
          % (len(variables), prefix, target, size / 1e6))


# ----------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run the CLI; returns the process exit code."""
    args = settings.parse_args(argv)
    if not (args.is_training or args.is_testing or args.input or args.export_weights):
        print('Nothing to do: pass --is_training True, --is_testing True, --input PATH or '
              '--export_weights DIR (see --help).', file=sys.stderr)
        return 2
    import utils
    try:
        if args.num_gpus > 1 and args.horovod:
            raise UsageError('use either --num_gpus N (one machine) or --horovod True, '
                             'not both')
        if args.is_training:
            train(args)
        if args.is_testing:
            test(args)
        if args.input:
            derain_input(args)
        if args.export_weights:
            export_weights(args)
    except (DataError, utils.CheckpointError, UsageError, TrainingError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
