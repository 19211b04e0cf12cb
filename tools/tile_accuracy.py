"""Accuracy and cost of tiled inference against one whole-image pass (docs/tiling.md).

For each demo pair (rainy and clean both enlarged ``--scale`` times with bicubic
interpolation, so that several tiles are needed) and each ``--tiles`` size, it runs the
network once on the whole image and once tiled (``--mode``, default fast) in the same process
and prints one table row:

  psnr_vs_whole   PSNR of the tiled output against the whole-image output (both clipped to
                  [0, 1]; NOT capped at 100 dB like metrics.psnr), and max|diff| unclipped;
  dpsnr_clean     PSNR(tiled, clean) - PSNR(whole, clean), in dB (the target is |d| <= 0.1);
  cost            network pixel evaluations in whole-image passes (``tiling.relative_cost``,
                  deterministic);
  time_ratio      measured wall time tiled / whole (the machine may be shared: ratios, not
                  seconds, are comparable).

The last line is one JSON object with every row and the means per tile size. Example::

    python tools/tile_accuracy.py                       # 5 Demo pairs x2, tiles 256 and 512
    python tools/tile_accuracy.py --limit 1 --tiles 512 --scale 1
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import quiet  # noqa: E402  (must run before TensorFlow is imported)


def build_parser():
    """Command-line flags (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', default=os.path.join(ROOT, 'checkpoints',
                                                             'ReMAEN_light'),
                        help='checkpoint folder or prefix (default: the shipped light model)')
    parser.add_argument('--data', default=os.path.join(ROOT, 'data', 'test', 'Demo'),
                        help='folder with input/ and target/ pairs (default: data/test/Demo)')
    parser.add_argument('--scale', type=float, default=2.0,
                        help='enlarge rainy and clean images by this factor (default 2)')
    parser.add_argument('--tiles', type=int, nargs='+', default=[256, 512],
                        help='tile sizes to measure (default 256 512)')
    parser.add_argument('--mode', choices=['fast', 'exact'], default='fast')
    parser.add_argument('--tile_overlap', type=int, default=None,
                        help='halo (default: tiling.default_overlap for the mode)')
    parser.add_argument('--stats_halo', type=int, default=None,
                        help='fast mode pass-1 halo (default tiling.FAST_STATS_HALO)')
    parser.add_argument('--refine_passes', type=int, default=0,
                        help='fast mode: extra statistics passes (default 0)')
    parser.add_argument('--limit', type=int, default=0, help='use the first N pairs only')
    parser.add_argument('--verbose', action='store_true', help="show TensorFlow's messages")
    return parser


def load_pairs(data, scale, limit=0):
    """[(name, rainy, clean)] BGR float32 in [0, 1], both resized by ``scale`` (bicubic)."""
    import cv2
    import numpy as np
    names = sorted(os.listdir(os.path.join(data, 'input')))[:limit or None]
    pairs = []
    for name in names:
        images = []
        for part in ('input', 'target'):
            image = cv2.imread(os.path.join(data, part, name))
            if image is None:
                raise SystemExit('cannot read %s' % os.path.join(data, part, name))
            image = image.astype(np.float32) / 255.0
            if scale != 1:
                size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
                image = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), 0, 1)
            images.append(image)
        pairs.append((os.path.splitext(name)[0], images[0], images[1]))
    return pairs


def build_session(tf, checkpoint, config):
    """One tf.Graph with the whole-image graph and the tile graphs; weights restored.

    Returns:
      (session, inference graph, tiled graph).
    """
    import model
    import tiling
    import utils
    graph = tf.Graph()
    with graph.as_default():
        infer = model.build_inference_graph(config)
        tiled = tiling.build_tiled_graph(config)
        session = tf.Session(graph=graph, config=utils.session_config())
        utils.restore(session, utils.find_checkpoint(checkpoint), model.model_variables())
    return session, infer, tiled


def warm_up(session, infer, tiled, mode, overlap):
    """Run every fetch once on a small image, so that no timing includes graph set-up."""
    import numpy as np
    import tiling
    image = np.full((48, 48, 3), 0.5, np.float32)
    session.run(infer.end_points['output'], {infer.images: image[np.newaxis]})
    tiling.derain_tiled(session, tiled, image, 24, min(overlap, 8), mode=mode)


def measure_pair(session, infer, tiled, rain, clean, tiles, args):
    """Whole-image pass and one tiled run per tile size. Returns a list of row dicts."""
    import numpy as np
    import metrics
    import tiling
    start = time.perf_counter()
    whole = session.run(infer.end_points['output'], {infer.images: rain[np.newaxis]})[0]
    whole_seconds = time.perf_counter() - start
    height, width = rain.shape[:2]
    whole_psnr = metrics.psnr(np.clip(whole, 0, 1), clean)
    overlap = (tiling.default_overlap(mode=args.mode) if args.tile_overlap is None
               else args.tile_overlap)
    radii = tiling.se_point_radii()
    rows = []
    for tile in tiles:
        runs = []
        start = time.perf_counter()
        if args.mode == 'fast':
            out = tiling.derain_fast(session, tiled, rain, tile, overlap, args.stats_halo,
                                     progress=lambda done, total: runs.append(done),
                                     refine_passes=args.refine_passes)
        else:
            out = tiling.derain_tiled(session, tiled, rain, tile, overlap, radii,
                                      progress=lambda done, total: runs.append(done))
        seconds = time.perf_counter() - start
        halos = tiling.pass_halos(args.mode, overlap, radii, args.stats_halo,
                                  refine_passes=args.refine_passes)
        rows.append({
            'tile': tile, 'size': '%dx%d' % (width, height), 'overlap': overlap,
            'halos': halos, 'tile_runs': len(runs),
            'psnr_vs_whole': uncapped_psnr(out, whole),
            'max_abs_diff': float(np.abs(out - whole).max()),
            'psnr_whole': whole_psnr,
            'dpsnr_clean': metrics.psnr(np.clip(out, 0, 1), clean) - whole_psnr,
            'cost': tiling.relative_cost(height, width, tile, halos),
            'time_ratio': seconds / whole_seconds,
            'whole_seconds': whole_seconds, 'tiled_seconds': seconds})
    return rows


def uncapped_psnr(image, reference):
    """PSNR in dB of two [H, W, C] arrays clipped to [0, 1]; inf when equal (no 100 dB cap)."""
    import numpy as np
    diff = np.clip(image, 0, 1).astype(np.float64) - np.clip(reference, 0, 1)
    mse = float(np.mean(diff * diff))
    return float('inf') if mse == 0 else 10.0 * np.log10(1.0 / mse)


def summarize(rows):
    """Per tile size: the mean of each number over the images."""
    keys = ('psnr_vs_whole', 'max_abs_diff', 'dpsnr_clean', 'cost', 'time_ratio')
    means = {}
    for tile in sorted({r['tile'] for r in rows}):
        mine = [r for r in rows if r['tile'] == tile]
        means[str(tile)] = {k: sum(r[k] for r in mine) / len(mine) for k in keys}
        # The change of largest magnitude (either sign), and the farthest from the whole pass.
        means[str(tile)]['worst_dpsnr_clean'] = max((r['dpsnr_clean'] for r in mine), key=abs)
        means[str(tile)]['min_psnr_vs_whole'] = min(r['psnr_vs_whole'] for r in mine)
    return means


def print_table(rows, means):
    """The rows and the per-tile means as a fixed-width table."""
    header = '%-6s %-9s %5s %14s %11s %11s %6s %6s %6s' % (
        'image', 'size', 'tile', 'psnr_vs_whole', 'max|diff|', 'dpsnr_clean', 'runs', 'cost',
        'time')
    print(header)
    print('-' * len(header))
    for r in rows:
        print('%-6s %-9s %5d %14.2f %11.2e %+11.4f %6d %6.2f %6.2f' % (
            r['image'], r['size'], r['tile'], r['psnr_vs_whole'], r['max_abs_diff'],
            r['dpsnr_clean'], r['tile_runs'], r['cost'], r['time_ratio']))
    for tile, m in means.items():
        print('%-6s %-9s %5s %14.2f %11.2e %+11.4f %6s %6.2f %6.2f' % (
            'mean', '', tile, m['psnr_vs_whole'], m['max_abs_diff'], m['dpsnr_clean'], '',
            m['cost'], m['time_ratio']))


def main(argv=None):
    """Measure and print; returns 0."""
    args = build_parser().parse_args(argv)
    quiet.setup(args.verbose)
    tf = quiet.import_tf()
    import model
    config = model.ModelConfig()
    pairs = load_pairs(args.data, args.scale, args.limit)
    session, infer, tiled = build_session(tf, args.checkpoint, config)
    import tiling
    overlap = (tiling.default_overlap(config, args.mode) if args.tile_overlap is None
               else args.tile_overlap)
    warm_up(session, infer, tiled, args.mode, overlap)
    rows = []
    for name, rain, clean in pairs:
        for row in measure_pair(session, infer, tiled, rain, clean, args.tiles, args):
            row['image'] = name
            rows.append(row)
            print('%s tile %d: %.2f dB vs whole, %+.4f dB to clean, time x%.2f'
                  % (name, row['tile'], row['psnr_vs_whole'], row['dpsnr_clean'],
                     row['time_ratio']), flush=True)
    means = summarize(rows)
    print_table(rows, means)
    print(json.dumps({'mode': args.mode, 'checkpoint': args.checkpoint, 'scale': args.scale,
                      'refine_passes': args.refine_passes,
                      'rows': rows, 'means': means}, sort_keys=True))
    session.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
