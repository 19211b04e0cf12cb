"""Accuracy and cost of tiled inference against one whole-image pass (docs/tiling.md).

One command re-measures how close the default tiled mode stays to a whole-image pass (target:
within 0.05 dB) for both shipped models (rerun it whenever a shipped model changes)::

    python tools/tile_accuracy.py                               # the documented measurement
    python tools/tile_accuracy.py --models light --pairs 1 --scales 2
    python tools/tile_accuracy.py --models light --checkpoint path/to/new_light_model

For each model of ``--models`` (light: ``checkpoints/ReMAEN_light`` on Rain100L-val, heavy:
``checkpoints/ReMAEN_heavy`` on Rain100H-val; ``--checkpoint`` replaces the model's folder) and
each of the first ``--pairs`` pairs (never-trained-on ids 51, 52, ...), it derains the rainy
image whole and tiled in the same process, in these cases:

  x<scale>   rainy and clean both enlarged ``--scales`` times (bicubic), tiled with the tile that
             the automatic choice uses when an image does not fit the default memory budget
             (``tiling.tile_for_budget``: what ``python main.py --input photo.jpg`` does);
  x1         the original size tiled with ``--small_tile`` (forced small tiles).

In the fast mode the SE statistics come, as in ``tiling.plan``, from a pooled sample as large
as the memory budget allows (``--budget_mb``, default 4 GB): the whole image when it fits,
which makes the forced-tile cases exact in their statistics. ``--budget_mb 2000`` makes a 2x
image larger than the budget, as photos larger than the budget are; its statistics are then
each tile's own, or with ``--min_sample_fraction 0.05`` a pooled sample of 10% of the image
followed by one pass (measured, not the default). ``--stats local`` forces each tile's own.

One row per case and image:

  psnr_vs_whole   PSNR of the tiled output against the whole-image output (both clipped to
                  [0, 1]; NOT capped at 100 dB like metrics.psnr), and max|diff| unclipped;
  dpsnr_clean     PSNR(tiled, clean) - PSNR(whole, clean) in dB, paper protocol (the target of
                  the default mode is |d| <= 0.05);
  cost            network pixel evaluations in whole-image passes (``tiling.relative_cost``);
  time_ratio      wall time tiled / whole (on a shared machine only ratios are comparable).

The whole-image reference needs ~4.8 kB per pixel (12 GB for a 4x enlarged 481x321 pair):
``--max_side`` crops larger enlargements. The last line is one JSON object with every row and,
per model and case, the mean and worst dpsnr_clean and the lowest psnr_vs_whole.
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from console import quiet  # noqa: E402
quiet.setup('--verbose' in sys.argv[1:])  # before TensorFlow is imported (by model, tiling)
import checkpointing  # noqa: E402
import metrics  # noqa: E402
import model  # noqa: E402
from inference import tiling  # noqa: E402
import utils  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
DATA = {'light': os.path.join(SHARED_DATA, 'Rain100L-val'),
        'heavy': os.path.join(SHARED_DATA, 'Rain100H-val')}


def build_parser():
    """Command-line flags (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', choices=sorted(DATA), default=['light', 'heavy'],
                        help='shipped models to measure (default light heavy)')
    parser.add_argument('--checkpoint', default=None,
                        help='checkpoint folder or prefix replacing the (single) model of '
                             '--models (default: the shipped folder)')
    parser.add_argument('--light_data', default=DATA['light'],
                        help='pairs (input/, target/) of the light model (default '
                             '../shared/data/Rain100L-val)')
    parser.add_argument('--heavy_data', default=DATA['heavy'],
                        help='pairs of the heavy model (default ../shared/data/Rain100H-val)')
    parser.add_argument('--pairs', type=int, default=2,
                        help='the first N pairs by id (default 2: ids 51 and 52)')
    parser.add_argument('--scales', type=float, nargs='*', default=[2.0, 4.0],
                        help='enlargements tiled with the automatic tile (default 2 4)')
    parser.add_argument('--small_tile', type=int, default=128,
                        help='forced tile at the original size (default 128; 0 = skip)')
    parser.add_argument('--max_side', type=int, default=0,
                        help='crop enlarged pairs to at most this many pixels a side (bounds '
                             'the whole-image pass; default 0 = no crop)')
    parser.add_argument('--mode', choices=tiling.TILE_MODES, default='fast')
    parser.add_argument('--tile_overlap', type=int, default=None,
                        help='last-pass halo (default: tiling.default_overlap for the mode)')
    parser.add_argument('--stats_halo', type=int, default=None,
                        help='fast mode statistics-pass halo (default tiling.FAST_STATS_HALO)')
    parser.add_argument('--refine_passes', type=int, default=0,
                        help='fast mode: extra statistics passes (default 0)')
    parser.add_argument('--stats', choices=['sample', 'local'], default='sample',
                        help="fast mode's SE statistics: 'sample' (as tiling.plan chooses: "
                             'the whole image when it fits --budget_mb, exact; else each tile '
                             'its own, unless --min_sample_fraction lets a partial pooled sample '
                             "be used, then one pass) or 'local' (each tile its own, always)")
    parser.add_argument('--min_sample_fraction', type=float, default=tiling.SAMPLE_MIN_FRACTION,
                        help='least share of the image a pooled sample must cover to be used '
                             '(default tiling.SAMPLE_MIN_FRACTION = 1: whole images only; e.g. '
                             '0.05 measures partial samples)')
    parser.add_argument('--budget_mb', type=float, default=None,
                        help='memory budget sizing the automatic tile and the sample (default '
                             'tiling.DEFAULT_BUDGET_MB)')
    parser.add_argument('--json_out', default=None, help='also write the JSON object here')
    parser.add_argument('--verbose', action='store_true', help="show TensorFlow's messages")
    return parser


def pair_names(data, count):
    """The first ``count`` pair names of ``data/input`` in numeric order of their ids."""
    names = [os.path.splitext(n)[0] for n in os.listdir(os.path.join(data, 'input'))]
    return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))[:count]


def load_image(data, part, name, scale, max_side=0):
    """BGR float32 [H, W, 3] in [0, 1] of ``data/part/name.png``, enlarged and cropped."""
    path = os.path.join(data, part, name + '.png')
    image = cv2.imread(path)
    if image is None:
        raise SystemExit('cannot read %s' % path)
    image = image.astype(np.float32) / 255.0
    if scale != 1:
        size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
        image = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    if max_side:
        image = image[:max_side, :max_side]
    return image


def build_session(prefix, config, pooled=False):
    """One tf.Graph with the whole-image graph and the tile graphs; weights restored.

    ``pooled``: also the pooled network (``tiling.build_tiled_graph``), for partial samples.

    Returns:
      (session, inference graph, tiled graph).
    """
    tf = quiet.import_tf()
    graph = tf.Graph()
    with graph.as_default():
        infer = model.build_inference_graph(config)
        tiled = tiling.build_tiled_graph(config, pooled=pooled)
        session = tf.Session(graph=graph, config=utils.session_config())
        checkpointing.restore(session, prefix, model.model_variables())
    return session, infer, tiled


def uncapped_psnr(image, reference):
    """PSNR in dB of two [H, W, C] arrays clipped to [0, 1]; inf when equal (no 100 dB cap)."""
    diff = np.clip(image, 0, 1).astype(np.float64) - np.clip(reference, 0, 1)
    mse = float(np.mean(diff * diff))
    return float('inf') if mse == 0 else 10.0 * np.log10(1.0 / mse)


class Measure(object):
    """Whole-image and tiled runs of one restored model.

    Args:
      session, infer, tiled: from ``build_session``.
      config: ModelConfig of the model.
      args: parsed flags (mode, tile_overlap, stats_halo, refine_passes).
    """

    def __init__(self, session, infer, tiled, config, args):
        self.session, self.infer, self.tiled = session, infer, tiled
        self.config, self.args = config, args
        self.overlap = (tiling.default_overlap(config, args.mode) if args.tile_overlap is None
                        else args.tile_overlap)
        self.budget = tiling.DEFAULT_BUDGET_MB if args.budget_mb is None else args.budget_mb

    def sample_pixels(self, height, width, tile):
        """The fast mode's pooled sample for this image as ``tiling.plan`` chooses it (None:
        'local' statistics)."""
        if self.args.mode != 'fast' or self.args.stats == 'local':
            return None
        crop = tiling.largest_crop_pixels(height, width, tile, self.overlap)
        return tiling.choose_sample(self.budget, height, width, crop, self.config,
                                    self.args.min_sample_fraction)[0]

    def halos(self, height, width, tile):
        """The halo of each pass over the tiles (``tiling.pass_halos``)."""
        passes = tiling.statistics_passes(height, width, self.sample_pixels(height, width, tile),
                                          self.args.refine_passes)
        return tiling.pass_halos(self.args.mode, self.overlap, tiling.se_point_radii(self.config),
                                 self.args.stats_halo, self.config, self.args.refine_passes,
                                 passes if self.args.mode == 'fast' else None)

    def whole(self, rain):
        """(output [H, W, 3] unclipped, seconds) of one whole-image pass."""
        start = time.perf_counter()
        out = self.session.run(self.infer.end_points['output'],
                               {self.infer.images: rain[np.newaxis]})[0]
        return out, time.perf_counter() - start

    def tiles(self, rain, tile):
        """(output [H, W, 3] unclipped, seconds, tile runs) of one tiled run."""
        runs = []
        start = time.perf_counter()
        if self.args.mode == 'fast':
            out = tiling.derain_fast(
                self.session, self.tiled, rain, tile, self.overlap, self.args.stats_halo,
                progress=lambda done, total: runs.append(done),
                refine_passes=self.args.refine_passes,
                sample_pixels=self.sample_pixels(rain.shape[0], rain.shape[1], tile))
        else:
            out = tiling.derain_tiled(
                self.session, self.tiled, rain, tile, self.overlap,
                tiling.se_point_radii(self.config),
                progress=lambda done, total: runs.append(done))
        return out, time.perf_counter() - start, len(runs)

    def auto_tile(self, height, width):
        """The tile of the automatic choice under the default budget (``DEFAULT_BUDGET_MB``)."""
        return tiling.tile_for_budget(self.budget, height, width, self.overlap, self.config)

    def row(self, rain, clean, tile):
        """One table row (dict) comparing the tiled run with the whole-image pass."""
        whole, whole_seconds = self.whole(rain)
        tiled, seconds, runs = self.tiles(rain, tile)
        height, width = rain.shape[:2]
        whole_psnr = metrics.psnr(np.clip(whole, 0, 1), clean)
        halos, sample = self.halos(height, width, tile), self.sample_pixels(height, width, tile)
        return {'size': '%dx%d' % (width, height), 'tile': tile, 'halos': halos,
                'sample_pixels': sample,
                'tiles': len(tiling.tile_interiors(height, width, tile)),
                'tile_runs': runs, 'psnr_vs_whole': uncapped_psnr(tiled, whole),
                'max_abs_diff': float(np.abs(tiled - whole).max()), 'psnr_whole': whole_psnr,
                'dpsnr_clean': metrics.psnr(np.clip(tiled, 0, 1), clean) - whole_psnr,
                'cost': (tiling.relative_cost(height, width, tile, halos)
                         + tiling.sample_cost(height, width, sample, self.args.stats_halo
                                              or tiling.FAST_STATS_HALO)),
                'time_ratio': seconds / whole_seconds, 'whole_seconds': whole_seconds,
                'tiled_seconds': seconds}


def cases(args):
    """[(label, scale, tile or None = automatic)] measured for every pair."""
    out = [('x%g' % scale, scale, None) for scale in args.scales]
    if args.small_tile:
        out.append(('x1', 1.0, args.small_tile))
    return out


def measure_model(name, args):
    """Every row of one model (list of dicts), printed as they come."""
    folder = args.checkpoint or checkpointing.shipped_model_folder(name)
    prefix = checkpointing.resolve(folder)
    config = checkpointing.stored_config(os.path.dirname(prefix))
    session, infer, tiled = build_session(prefix, config,
                                          pooled=args.min_sample_fraction < 1)
    measure = Measure(session, infer, tiled, config, args)
    warm = np.full((48, 48, 3), 0.5, np.float32)
    measure.whole(warm)
    measure.tiles(warm, 24)
    data = args.light_data if name == 'light' else args.heavy_data
    rows = []
    for image in pair_names(data, args.pairs):
        for label, scale, tile in cases(args):
            side = args.max_side if scale != 1 else 0
            rain = load_image(data, 'input', image, scale, side)
            clean = load_image(data, 'target', image, scale, side)
            row = measure.row(rain, clean, tile or measure.auto_tile(*rain.shape[:2]))
            row.update({'model': name, 'checkpoint': prefix, 'image': image, 'case': label})
            rows.append(row)
            print('%s %s %s %s tile %d: %.2f dB vs whole, %+.4f dB to clean, time x%.2f'
                  % (name, image, label, row['size'], row['tile'], row['psnr_vs_whole'],
                     row['dpsnr_clean'], row['time_ratio']), flush=True)
    session.close()
    return rows


def summarize(rows):
    """Per 'model case': mean and worst (largest |d|) dpsnr_clean, lowest psnr_vs_whole."""
    out = {}
    for key in sorted({(r['model'], r['case']) for r in rows}):
        mine = [r for r in rows if (r['model'], r['case']) == key]
        out[' '.join(key)] = {
            'rows': len(mine),
            'mean_dpsnr_clean': sum(r['dpsnr_clean'] for r in mine) / len(mine),
            'worst_dpsnr_clean': max((r['dpsnr_clean'] for r in mine), key=abs),
            'min_psnr_vs_whole': min(r['psnr_vs_whole'] for r in mine),
            'max_abs_diff': max(r['max_abs_diff'] for r in mine),
            'mean_cost': sum(r['cost'] for r in mine) / len(mine),
            'mean_time_ratio': sum(r['time_ratio'] for r in mine) / len(mine)}
    return out


def print_table(rows, summary):
    """The rows and the per-case summary as fixed-width tables."""
    header = '%-6s %-6s %-4s %-10s %5s %5s %14s %10s %12s %5s %5s' % (
        'model', 'image', 'case', 'size', 'tile', 'tiles', 'psnr_vs_whole', 'max|diff|',
        'dpsnr_clean', 'cost', 'time')
    print(header)
    print('-' * len(header))
    for r in rows:
        print('%-6s %-6s %-4s %-10s %5d %5d %14.2f %10.2e %+12.4f %5.2f %5.2f' % (
            r['model'], r['image'], r['case'], r['size'], r['tile'], r['tiles'],
            r['psnr_vs_whole'], r['max_abs_diff'], r['dpsnr_clean'], r['cost'],
            r['time_ratio']))
    print('%-12s %6s %12s %12s %14s %5s %5s' % ('model case', 'images', 'mean dpsnr',
                                                 'worst dpsnr', 'min vs whole', 'cost', 'time'))
    for key, s in summary.items():
        print('%-12s %6d %+12.4f %+12.4f %14.2f %5.2f %5.2f' % (
            key, s['rows'], s['mean_dpsnr_clean'], s['worst_dpsnr_clean'],
            s['min_psnr_vs_whole'], s['mean_cost'], s['mean_time_ratio']))


def main(argv=None):
    """Measure and print; returns 0."""
    args = build_parser().parse_args(argv)
    if args.checkpoint and len(args.models) != 1:
        raise SystemExit('--checkpoint replaces one model: pass --models light or heavy')
    rows = []
    for name in args.models:
        rows += measure_model(name, args)
    summary = summarize(rows)
    print_table(rows, summary)
    result = {'mode': args.mode, 'scales': args.scales, 'small_tile': args.small_tile,
              'refine_passes': args.refine_passes, 'stats': args.stats,
              'budget_mb': args.budget_mb or tiling.DEFAULT_BUDGET_MB, 'rows': rows,
              'summary': summary}
    if args.json_out:
        with open(args.json_out, 'w') as handle:
            json.dump(result, handle, indent=1, sort_keys=True)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
