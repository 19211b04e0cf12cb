"""Peak memory and time of tiled inference on a large photo, from a few tile runs.

A 12-megapixel photo takes tens of minutes on a 2-core CPU even in the fast mode, so by
default this times only ``--runs`` interior tiles (full-size crops, the most expensive) of
each pass and extrapolates: seconds per crop pixel of each pass, times the crop pixels of all
tiles of that pass (``tiling.relative_cost``'s count). ``--full`` derains the whole image
instead (for smaller sizes; it also checks the estimate). Peak memory is the process's
``ru_maxrss``, i.e. TensorFlow's runtime (~0.65 GB) plus the largest crop's activations.
Only the tile graphs are built, as in ``--tile`` deraining.

Example::

    python tools/tile_budget.py --size 4000x3000 --tile 512 --runs 2   # 12 MP, estimate
    python tools/tile_budget.py --size 1280x960 --tile 512 --full      # measured end to end

The last line is a JSON object with every number.
"""
import argparse
import json
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import quiet  # noqa: E402  (must run before TensorFlow is imported)


def build_parser():
    """Command-line flags (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--image', default=os.path.join(ROOT, 'data', 'real', '1.jpg'),
                        help='photo to enlarge (default data/real/1.jpg)')
    parser.add_argument('--size', default='4000x3000', help='WIDTHxHEIGHT (default 12 MP)')
    parser.add_argument('--checkpoint', default=os.path.join(ROOT, 'checkpoints',
                                                             'ReMAEN_light'))
    parser.add_argument('--tile', type=int, default=512)
    parser.add_argument('--tile_overlap', type=int, default=None,
                        help='last-pass halo (default tiling.default_overlap(mode="fast"))')
    parser.add_argument('--runs', type=int, default=2, help='timed interior tiles per pass')
    parser.add_argument('--full', action='store_true', help='derain the whole image')
    parser.add_argument('--verbose', action='store_true')
    return parser


def max_rss_mb():
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def interior_boxes(height, width, tile, count):
    """Up to ``count`` tiles whose crops are not cut by the border (largest crops first)."""
    import tiling
    boxes = tiling.tile_interiors(height, width, tile)
    inner = [b for b in boxes if b[0] > 0 and b[2] > 0 and b[1] < height and b[3] < width
             and b[1] - b[0] == tile and b[3] - b[2] == tile]
    return (inner or boxes)[:count]


def time_pass(session, tiled, fetch, image, boxes, halo, squeezes):
    """Seconds per crop pixel of ``fetch`` over ``boxes`` (after the runs)."""
    import tiling
    height, width = image.shape[:2]
    pixels = 0
    start = time.perf_counter()
    for _ in tiling._tile_runs(session, tiled, fetch, image, boxes, halo, squeezes,
                               lambda: None):
        pass
    seconds = time.perf_counter() - start
    for box in boxes:
        (cy0, cy1, cx0, cx1), _ = tiling.halo_crop(box, halo, height, width)
        pixels += (cy1 - cy0) * (cx1 - cx0)
    return seconds / pixels, seconds / len(boxes)


def main(argv=None):
    """Measure and print; returns 0."""
    args = build_parser().parse_args(argv)
    quiet.setup(args.verbose)
    tf = quiet.import_tf()
    import cv2
    import numpy as np
    import model
    import tiling
    import utils
    width, height = (int(v) for v in args.size.lower().split('x'))
    photo = cv2.imread(args.image)
    if photo is None:
        raise SystemExit('cannot read %s' % args.image)
    image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    image = image.astype(np.float32) / 255.0
    del photo
    config = model.ModelConfig()
    overlap = (tiling.default_overlap(config, 'fast') if args.tile_overlap is None
               else args.tile_overlap)
    halos = tiling.pass_halos('fast', overlap)
    with tf.Graph().as_default():
        tiled = tiling.build_tiled_graph(config)
        session = tf.Session(config=utils.session_config())
        utils.restore(session, utils.find_checkpoint(args.checkpoint), model.model_variables())
    small = np.full((48, 48, 3), 0.5, np.float32)
    tiling.derain_fast(session, tiled, small, 24, 8)               # set-up of both fetches
    rss_ready = max_rss_mb()
    result = {'size': '%dx%d' % (width, height), 'megapixels': width * height / 1e6,
              'tile': args.tile, 'halos': halos, 'rss_ready_mb': rss_ready,
              'tiles': len(tiling.tile_interiors(height, width, args.tile)),
              'cost_whole_passes': tiling.relative_cost(height, width, args.tile, halos)}
    if args.full:
        start = time.perf_counter()
        tiling.derain_fast(session, tiled, image, args.tile, overlap)
        result['seconds'] = time.perf_counter() - start
    else:
        boxes = interior_boxes(height, width, args.tile, args.runs)
        rate1, tile1 = time_pass(session, tiled, tiled.local_sums, image, boxes, halos[0], ())
        squeezes = [np.zeros([1, config.channels], np.float32)] * len(tiled.squeezes)
        rate2, tile2 = time_pass(session, tiled, tiled.output, image, boxes, halos[1],
                                 squeezes)
        pixels = height * width
        cost1 = tiling.relative_cost(height, width, args.tile, halos[:1])
        cost2 = tiling.relative_cost(height, width, args.tile, halos[1:])
        result.update({'timed_tiles_per_pass': len(boxes), 'pass1_seconds_per_tile': tile1,
                       'pass2_seconds_per_tile': tile2,
                       'microseconds_per_pixel': [rate1 * 1e6, rate2 * 1e6],
                       'estimated_seconds': pixels * (rate1 * cost1 + rate2 * cost2)})
    result['peak_rss_mb'] = max_rss_mb()
    session.close()
    seconds = result.get('seconds', result.get('estimated_seconds'))
    print('%s (%.1f MP), tile %d, halos %s: %d tiles, %.2f whole passes of pixels; %s %.0f s '
          '(%.1f min); peak RSS %.0f MB (%.0f MB before the tiles)'
          % (result['size'], result['megapixels'], args.tile, halos, result['tiles'],
             result['cost_whole_passes'], 'measured' if args.full else 'estimated', seconds,
             seconds / 60.0, result['peak_rss_mb'], rss_ready))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
