"""Peak memory and time of tiled inference on a large photo, from a few tile runs.

A 12-megapixel photo takes tens of minutes on a 2-core CPU even in the fast mode, so by
default this runs ONE tile of each crop shape of each pass (a grid has at most 3 x 3 shapes:
first, middle and last row/column) and multiplies each time by the number of tiles of that
shape. ``--runs N`` times only the N most frequent shapes and estimates the others from the
time per pixel. ``--full`` derains the whole image instead (for smaller sizes; it also checks
the estimate). Peak memory is the process's peak resident size (``profiling.peak_rss_mb``):
TensorFlow's runtime and the image (~0.8-1 GB) plus the crops' activations; every crop shape
has run once, as in a full run.
Only the tile graphs are built, as in ``--tile`` deraining.

Example::

    python tools/tile_budget.py --size 4000x3000 --tile 512             # 12 MP, estimate
    python tools/tile_budget.py --size 1280x960 --tile 512 --full      # measured end to end

The last line is a JSON object with every number.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import quiet  # noqa: E402  (must run before TensorFlow is imported)
import profiling  # noqa: E402


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
    parser.add_argument('--runs', type=int, default=0,
                        help='timed crop shapes per pass (0 = all, at most 9)')
    parser.add_argument('--full', action='store_true', help='derain the whole image')
    parser.add_argument('--verbose', action='store_true')
    return parser


def crop_shapes(height, width, tile, halo):
    """Group the tiles by crop shape: {(crop_h, crop_w): [boxes]} (at most 9 shapes in 2D)."""
    import tiling
    groups = {}
    for box in tiling.tile_interiors(height, width, tile):
        (cy0, cy1, cx0, cx1), _ = tiling.halo_crop(box, halo, height, width)
        groups.setdefault((cy1 - cy0, cx1 - cx0), []).append(box)
    return groups


def time_pass(session, tiled, fetch, image, tile, halo, squeezes, max_shapes=0):
    """Estimated seconds of one pass: one timed run per crop shape, times its tile count.

    Shapes beyond ``max_shapes`` (0 = none) are estimated from the mean time per pixel of the
    timed ones (the most frequent shapes are timed first).

    Returns:
      (estimated seconds of the pass, timed runs, seconds per pixel of the timed runs).
    """
    import tiling
    height, width = image.shape[:2]
    groups = sorted(crop_shapes(height, width, tile, halo).items(),
                    key=lambda item: -len(item[1]))
    timed = groups[:max_shapes] if max_shapes else groups
    seconds, timed_seconds, timed_pixels = 0.0, 0.0, 0
    for (rows, cols), boxes in timed:
        start = time.perf_counter()
        for _ in tiling._tile_runs(session, tiled, fetch, image, boxes[:1], halo, squeezes,
                                   lambda: None):
            pass
        spent = time.perf_counter() - start
        seconds += spent * len(boxes)
        timed_seconds += spent
        timed_pixels += rows * cols
    rate = timed_seconds / timed_pixels
    for (rows, cols), boxes in groups[len(timed):]:
        seconds += rate * rows * cols * len(boxes)
    return seconds, len(timed), rate


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
    rss_ready = profiling.peak_rss_mb()
    result = {'size': '%dx%d' % (width, height), 'megapixels': width * height / 1e6,
              'tile': args.tile, 'halos': halos, 'rss_ready_mb': rss_ready,
              'tiles': len(tiling.tile_interiors(height, width, args.tile)),
              'cost_whole_passes': tiling.relative_cost(height, width, args.tile, halos)}
    if args.full:
        start = time.perf_counter()
        tiling.derain_fast(session, tiled, image, args.tile, overlap)
        result['seconds'] = time.perf_counter() - start
    else:
        squeezes = [np.zeros([1, config.channels], np.float32)] * len(tiled.squeezes)
        passes = [time_pass(session, tiled, tiled.local_sums, image, args.tile, halos[0], (),
                            args.runs),
                  time_pass(session, tiled, tiled.output, image, args.tile, halos[1],
                            squeezes, args.runs)]
        result.update({'timed_runs': sum(p[1] for p in passes),
                       'pass_seconds': [p[0] for p in passes],
                       'microseconds_per_pixel': [p[2] * 1e6 for p in passes],
                       'estimated_seconds': sum(p[0] for p in passes)})
    result['peak_rss_mb'] = profiling.peak_rss_mb()
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
