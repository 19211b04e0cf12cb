"""Restore, derain, measure and write results: the library behind testing and ``--input``.

    derainer = inference.Derainer(prefix, model.ModelConfig())
    results = inference.derain_pairs(derainer, pairs, 'results/Demo', 'Demo')
    derainer.close()

``derain_pairs`` writes, for every image, the derained PNG, a comparison strip
``compare/<name>.jpg`` (rainy | derained | clean), and at the end ``results.json``,
``results.csv`` and ``index.html`` (a static gallery sorted by gain). Per-stage metrics are
measured on the per-stage outputs of the network (``model.build_inference_graph``).
Errors a user can fix are raised as ``errors.UsageError``/``DataError``/``CheckpointError``.
"""
import csv
import json
import os
import sys
import time

import numpy as np

import dataloader
import metrics
from errors import UsageError

METRIC_KEYS = ('psnr', 'ssim', 'psnr_y', 'ssim_y')
TILE_MODES = ('exact', 'fast')


# ----------------------------------------------------------------------------- checkpoints
def resolve_checkpoint(where):
    """Checkpoint prefix from a folder, prefix or ``.index`` path; CheckpointError if none.

    Args:
      where: str, as given by ``--checkpoint`` or the default folder of the flags.
    """
    import utils
    prefix = utils.find_checkpoint(where)
    if prefix is None:
        raise utils.CheckpointError(
            'no checkpoint found at %s; train first (--is_training True with the same '
            '--train_dataset/--batch_size) or pass --checkpoint PATH (a folder such as the '
            "authors' checkpoint/ReMAEN_Rain100L_32/ or a prefix)" % where)
    return prefix


def check_settings(folder, config, edge_loss_weight=None):
    """Refuse a checkpoint whose stored network settings differ from ``config``.

    Args:
      folder: checkpoint folder (may lack remaen_settings.json, e.g. the authors' release:
        then only the variable check of ``utils.restore`` applies).
      config: model.ModelConfig the caller wants to build.
      edge_loss_weight: when resuming training, the loss weight (it must not change either);
        None skips that check.

    Raises:
      UsageError listing the differences.
    """
    import utils
    stored = utils.load_settings(folder)
    if not stored:
        return
    diffs = _config_from_settings(folder, stored).differences(config)
    if edge_loss_weight is not None and stored.get('edge_loss_weight') != edge_loss_weight:
        diffs.append('edge_loss_weight: %r vs %r' % (stored.get('edge_loss_weight'),
                                                    edge_loss_weight))
    if diffs:
        raise UsageError('checkpoint %s was trained with other settings (checkpoint vs flags: '
                         '%s); pass the same flags or another --checkpoint'
                         % (folder, '; '.join(diffs)))


def stored_config(folder, default=None):
    """The ModelConfig stored next to a checkpoint, else ``default`` (None = the paper's)."""
    import utils
    from model import ModelConfig
    stored = utils.load_settings(folder)
    if stored and 'model' in stored:
        return _config_from_settings(folder, stored)
    return default or ModelConfig()


def _config_from_settings(folder, stored):
    """The ModelConfig of a loaded settings dict (UsageError for one this version cannot
    build, e.g. a 1-channel model of an earlier version)."""
    from model import ModelConfig
    try:
        return ModelConfig.from_dict(stored.get('model', {}))
    except ValueError as exc:
        raise UsageError('checkpoint %s: %s; use another --checkpoint' % (folder, exc))


# ----------------------------------------------------------------------------- derainer
class Derainer(object):
    """A restored network that derains images of any size with one graph.

    Args:
      prefix: checkpoint prefix.
      config: ModelConfig.
      session_config: tf.ConfigProto (None = ``utils.session_config()``).
      tile: 0 for whole-image passes, else the tile side in pixels: images with a side
        larger than ``tile`` go through ``tiling`` (bounded memory); smaller ones get one
        whole-image pass.
      tile_overlap: halo of each tile in pixels; None = the receptive-field radius
        (``tiling.receptive_field_radius``). A smaller value is approximate.
      tile_mode: 'exact' (equal to a whole-image pass up to float rounding, ~K/2 + 1 passes)
        or 'fast' (about 2 passes, approximate SE statistics; see docs/tiling.md).
      precision: 'fp32', 'bf16' or 'fp16' (see ``model.remaen``; bf16 acts through
        ``session_config``).
      progress: optional callable ``progress(done, total)`` called after each tile run.

    Calling it with an HxWx3 float32 BGR image in [0, 1] returns the derained image,
    HxWx3 float32 clipped to [0, 1]; ``derain(image, stages=True)`` also returns the
    per-stage outputs (a list, stage 1 first; None entries for tiled images, whose
    intermediate stages are not computed as whole images).
    """

    def __init__(self, prefix, config, session_config=None, tile=0, tile_overlap=None,
                 tile_mode='exact', precision='fp32', progress=None):
        import model
        import quiet
        import tiling
        import utils
        tf = quiet.import_tf()
        if tile_mode not in TILE_MODES:
            raise UsageError('--tile_mode must be one of %s, got %r'
                             % ('|'.join(TILE_MODES), tile_mode))
        self.config, self.tile, self.tile_mode, self.progress = config, tile, tile_mode, progress
        self.tile_overlap, self.tiled, self.point_radii = None, None, None
        if tile:
            self.tile_overlap = self._check_tiling(config, tile, tile_overlap)
            self.point_radii = tiling.se_point_radii(config)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.net = model.build_inference_graph(config, precision=precision)
            if tile:
                # Same graph, same variables: one restore serves both.
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
        return self.session.run(self.net.output, {self.net.images: image[np.newaxis]})[0]

    def run_stages(self, image):
        """Whole-image pass returning every stage's clipped output, stage 1 first."""
        values = self.session.run(self.net.stage_outputs, {self.net.images: image[np.newaxis]})
        return [v[0] for v in values]

    def uses_tiles(self, image):
        """True when ``image`` ([H, W, C]) goes through the tiled path."""
        return self.tiled is not None and max(image.shape[:2]) > self.tile

    def derain(self, image, stages=False):
        """Derain one image; with ``stages`` also return the per-stage outputs (see class)."""
        if self.uses_tiles(image):
            import tiling
            output = np.clip(tiling.derain_tiled(
                self.session, self.tiled, image, self.tile, self.tile_overlap,
                self.point_radii, mode=self.tile_mode, progress=self.progress), 0.0, 1.0)
            per_stage = [None] * (self.config.stages - 1) + [output]
        else:
            per_stage = self.run_stages(image)
            output = per_stage[-1]
        return (output, per_stage) if stages else output

    def __call__(self, image):
        return self.derain(image)

    def close(self):
        self.session.close()


# ----------------------------------------------------------------------------- measuring
class Measurer(object):
    """Both metric protocols of one output, tolerant of images too small for SSIM.

    SSIM's 11x11 Gaussian window needs images of at least 11x11 pixels; for smaller ones
    PSNR is measured, SSIM is None and one note is printed per run.
    """

    def __init__(self, log=print):
        self.log, self.noted = log, False

    def __call__(self, output, clean):
        """Dict of the four metrics (python floats, SSIMs None for tiny images)."""
        height, width = clean.shape[:2]
        if min(height, width) >= metrics.SSIM_WIN_SIZE:
            return metrics.evaluate(output, clean)
        if not self.noted:
            self.log('note: images smaller than %dx%d pixels (e.g. %dx%d) get PSNR only; '
                     'their SSIM is null' % (metrics.SSIM_WIN_SIZE, metrics.SSIM_WIN_SIZE,
                                             width, height))
            self.noted = True
        return {'psnr': metrics.psnr(output, clean), 'ssim': None,
                'psnr_y': metrics.psnr_y(output, clean), 'ssim_y': None}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(value, digits):
    return '   n/a' if value is None else ('%.*f' % (digits, value))


def _none_metrics():
    return {k: None for k in METRIC_KEYS}


def _safe_output_path(out_dir, name, pair):
    path = os.path.join(out_dir, name + '.png')
    inputs = {os.path.realpath(p) for p in (pair.rain_path, pair.clean_path) if p}
    if os.path.realpath(path) in inputs:
        raise UsageError('output %s would overwrite an input image; choose another --test_dir'
                         % path)
    return path


def check_output_dir(out_dir):
    """UsageError now if ``out_dir`` could not be created or written later (creates nothing).

    The nearest existing ancestor must be a writable folder.
    """
    path = os.path.abspath(out_dir)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise UsageError('cannot create the output folder %s (%s is not a folder); choose '
                         'another --test_dir' % (out_dir, path))
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError('cannot create the output folder %s (%s is not writable); choose '
                         'another --test_dir' % (out_dir, path))


def make_output_dir(out_dir):
    """Create ``out_dir`` (and ``compare/``); UsageError naming it when that is impossible."""
    for folder in (out_dir, os.path.join(out_dir, 'compare')):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise UsageError('cannot create the output folder %s (%s); choose another '
                             '--test_dir' % (folder, exc.strerror or exc))
        if not os.access(folder, os.W_OK):
            raise UsageError('the output folder %s is not writable; choose another --test_dir'
                             % folder)


def _caption(label, values):
    if values is None or values.get('psnr') is None:
        return label
    ssim = values.get('ssim')
    return '%s  %.2f dB / %s' % (label, values['psnr'], '-' if ssim is None else '%.4f' % ssim)


def _write_compare(out_dir, name, rain, derained, clean, row):
    import gallery
    labels = [_caption('rainy', row['input'] if clean is not None else None),
              _caption('derained', row if clean is not None else None)]
    if clean is not None:
        labels.append('clean')
    path = os.path.join(out_dir, 'compare', name + '.jpg')
    gallery.write_compare(path, gallery.compare_strip(rain, derained, clean, labels))
    return path


def derain_pairs(derainer, pairs, out_dir, dataset, verbose=True, visuals=True):
    """Derain every pair, save outputs, measure both protocols per stage, write results.

    Args:
      derainer: Derainer.
      pairs: list of dataloader.Pair (clean_path may be None: metrics are then null).
      out_dir: folder for the derained PNGs, compare/ strips and the results files.
      dataset: label written in the results.
      verbose: print one line per image and the summary table.
      visuals: write ``compare/<name>.jpg`` and ``index.html``.

    Returns:
      The results dict (as written to results.json): ``images`` (one entry per pair with
      the four metrics of the output, ``input`` (the rainy image's), ``stages`` (per stage,
      stage 1 first; the last equals the output's), ``seconds``, ``output``, ``compare``),
      ``mean`` (the same averaged), ``checkpoint``, ``dataset``, ``count``.
    """
    import cv2
    from progress import Progress
    from utils import to_uint8
    make_output_dir(out_dir)
    measure = Measurer()
    rows = []
    with Progress(len(pairs), 'derain', unit='img', enabled=verbose) as bar:
        for pair in pairs:
            rain, clean = dataloader.load_pair(pair)
            start = time.perf_counter()
            derained, per_stage = derainer.derain(rain, stages=True)
            seconds = time.perf_counter() - start
            path = _safe_output_path(out_dir, pair.name, pair)
            if not cv2.imwrite(path, to_uint8(derained)):
                raise UsageError('cannot write %s; check that --test_dir is writable' % path)
            row = {'name': pair.name, 'output': path, 'seconds': seconds}
            if clean is not None:
                # Paper protocol on the float output clipped to [0, 1] (SPEC); the Y protocol
                # rounds it to uint8 first, which is exactly the saved PNG.
                row.update(measure(derained, clean))
                row['input'] = measure(rain, clean)
                row['stages'] = [measure(s, clean) if s is not None else _none_metrics()
                                 for s in per_stage[:-1]] + [{k: row[k] for k in METRIC_KEYS}]
            else:
                row.update(_none_metrics())
                row['input'] = _none_metrics()
                row['stages'] = [_none_metrics() for _ in per_stage]
            row['compare'] = (_write_compare(out_dir, pair.name, rain, derained, clean, row)
                              if visuals else None)
            rows.append(row)
            if verbose:
                bar.write(_row_line(row, clean is not None))
            bar.update(1)
    results = {'images': rows, 'mean': _means(rows), 'checkpoint': derainer.prefix,
               'dataset': dataset, 'count': len(rows)}
    write_results(results, out_dir)
    if visuals:
        import gallery
        gallery.write_index(out_dir, rows, 'ReMAEN on %s' % dataset)
    if verbose:
        print_summary(results, out_dir)
    return results


def _row_line(row, has_gt):
    if not has_gt:
        return '%-14s derained in %.2f s -> %s' % (row['name'], row['seconds'], row['output'])
    return ('%-14s input %s dB / %s  ->  output %s dB / %s  (Y: %s dB / %s)  %.2f s'
            % (row['name'], _fmt(row['input']['psnr'], 2), _fmt(row['input']['ssim'], 4),
               _fmt(row['psnr'], 2), _fmt(row['ssim'], 4), _fmt(row['psnr_y'], 2),
               _fmt(row['ssim_y'], 4), row['seconds']))


def _means(rows):
    mean = {k: _mean([r[k] for r in rows]) for k in METRIC_KEYS}
    mean['seconds'] = _mean([r['seconds'] for r in rows])
    mean['input'] = {k: _mean([r['input'][k] for r in rows]) for k in METRIC_KEYS}
    stages = max((len(r['stages']) for r in rows), default=0)
    mean['stages'] = [{k: _mean([r['stages'][s][k] for r in rows if len(r['stages']) > s])
                       for k in METRIC_KEYS} for s in range(stages)]
    return mean


def write_results(results, out_dir):
    """results.json (schema in docs/evaluation.md) and results.csv (one row per image + mean).

    Both are written to a temporary file first and renamed, so a failed write never leaves
    a truncated file in place of a good one.
    """
    _atomic_write(os.path.join(out_dir, 'results.json'),
                  lambda handle: json.dump(results, handle, indent=2))
    columns = ['name', 'output'] + list(METRIC_KEYS) + ['input_' + k for k in METRIC_KEYS] \
        + ['seconds']

    def write_csv(handle):
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in results['images'] + [dict(results['mean'], name='mean', output='')]:
            flat = dict(row, **{'input_' + k: row['input'][k] for k in METRIC_KEYS})
            writer.writerow(['' if flat[c] is None else flat[c] for c in columns])
    _atomic_write(os.path.join(out_dir, 'results.csv'), write_csv)


def _atomic_write(path, write):
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w', newline='') as handle:
            write(handle)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError('cannot write %s (%s); check that --test_dir is writable'
                         % (path, exc.strerror or exc))


def print_summary(results, out_dir, stream=None):
    """The table of means (rainy input, each stage, output) in both protocols."""
    stream = stream or sys.stdout
    mean, inp = results['mean'], results['mean']['input']
    out = lambda text: print(text, file=stream)  # noqa: E731
    if mean['psnr'] is None:
        out('%d image(s) derained; no ground truth, so PSNR/SSIM are not available.'
            % results['count'])
    else:
        line = '+--------------------+----------+--------+----------+--------+'
        out(line)
        out('| %-18s | %8s | %6s | %8s | %6s |' % ('%d images' % results['count'], 'PSNR',
                                                    'SSIM', 'PSNR-Y', 'SSIM-Y'))
        out(line)
        labelled = [('rainy input', inp)]
        stages = mean.get('stages') or []
        labelled += [('stage %d' % (s + 1), v) for s, v in enumerate(stages[:-1])]
        labelled.append(('ReMAEN output', mean))
        for label, values in labelled:
            out('| %-18s | %8s | %6s | %8s | %6s |' % (
                label, _fmt(values['psnr'], 2), _fmt(values['ssim'], 4),
                _fmt(values['psnr_y'], 2), _fmt(values['ssim_y'], 4)))
        out(line)
        out('PSNR/SSIM: paper protocol (BGR channels, range 1, Gaussian SSIM, VALID); '
            'PSNR-Y/SSIM-Y: BT.601 luma of uint8 images (PReNet/Restormer protocol).')
    out('Average time per image: %.3f s over %d images (the first includes warm-up).'
        % (mean['seconds'], results['count']))
    out('Derained images, results.csv/results.json and index.html: %s' % out_dir)


# ----------------------------------------------------------------------------- from flags
# Folders of the shipped models (weights only, with remaen_settings.json), by --model name.
SHIPPED_MODELS = {'light': os.path.join('checkpoints', 'ReMAEN_light'),
                  'heavy': os.path.join('checkpoints', 'ReMAEN_heavy')}
DEFAULT_SHIPPED_MODEL = 'light'
# Flags that name a checkpoint: without any of them, --input uses the shipped default model.
CHECKPOINT_FLAGS = ('checkpoint', 'model', 'train_dataset', 'batch_size', 'checkpoint_dir')
NETWORK_FLAGS = ('channel_dim', 'stages', 'dilations', 'shared_attention',
                 'skip_connections')


def shipped_model_folder(name):
    """Absolute folder of a shipped model (relative to this file, so any cwd works)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), SHIPPED_MODELS[name])


def checkpoint_location(args):
    """Where the checkpoint of parsed flags is: ``--checkpoint``, ``--model``, or the default
    folder of ``--train_dataset``/``--batch_size``; ``--input`` without any checkpoint flag
    uses the shipped light model (and says so). Testing never falls back silently."""
    import settings
    given = getattr(args, 'given', set())
    if args.checkpoint:
        return args.checkpoint
    if getattr(args, 'model', None):
        return shipped_model_folder(args.model)
    if args.input and not args.is_testing and not (set(CHECKPOINT_FLAGS) & given):
        where = shipped_model_folder(DEFAULT_SHIPPED_MODEL)
        print('Using the shipped %s-rain model %s (--model heavy for heavy rain, or '
              '--checkpoint PATH)' % (DEFAULT_SHIPPED_MODEL, os.path.relpath(where)))
        return where
    return settings.default_checkpoint_folder(args)


def resolve_checkpoint_of(args):
    """Checkpoint prefix of parsed flags (``checkpoint_location``); CheckpointError if none."""
    return resolve_checkpoint(checkpoint_location(args))


def build_derainer(args, progress=None):
    """The Derainer of parsed flags: checkpoint resolved and checked against the flags.

    A shipped model (``--model``, or ``--input`` alone) without network flags uses the
    architecture stored next to it; any other checkpoint must match the network flags.
    ``args.precision`` must be resolved (``precision.from_args``).
    """
    import settings
    import utils
    prefix = resolve_checkpoint_of(args)
    folder = os.path.dirname(prefix)
    given = getattr(args, 'given', set())
    shipped = os.path.dirname(os.path.abspath(prefix)) in {
        os.path.abspath(shipped_model_folder(name)) for name in SHIPPED_MODELS}
    if shipped and not set(NETWORK_FLAGS) & given:
        config = stored_config(folder, settings.model_config(args))
    else:
        config = settings.model_config(args)
        check_settings(folder, config)
    print('Restoring %s' % prefix)
    return Derainer(
        prefix, config, utils.session_config(args.intra_op_threads, args.inter_op_threads,
                                             args.xla, precision=args.precision),
        tile=args.tile, tile_overlap=args.tile_overlap, tile_mode=args.tile_mode,
        precision=args.precision, progress=progress)
