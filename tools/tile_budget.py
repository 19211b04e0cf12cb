"""Peak memory and time of tiled inference on a large photo, from a few tile runs.

A 12-megapixel photo takes minutes on a 2-core CPU, so by default this runs ONE tile of each
of the ``--runs`` most frequent crop shapes of each pass of the fast mode, multiplies each
time by the number of tiles of that shape and estimates the other shapes from the time per
pixel of the timed ones. ``--full`` derains the whole image instead (it also checks the
estimate). The tile is the one the automatic choice picks (``tiling.plan`` under
``--budget_mb``, default ``tiling.DEFAULT_BUDGET_MB``) unless ``--tile`` is given. Peak memory
is the process's peak resident size (``resources.peak_rss_mb``): TensorFlow's runtime and the
image (~0.8-1 GB) plus the crops' activations; the largest crop has run, as in a full run.
Only the tile graphs are built. ``python bench.py`` measures the same end to end
(``large_photo_*``: ``main.py --input`` with default flags).

Example::

    python tools/tile_budget.py --size 4000x3000                 # 12 MP, automatic tile
    python tools/tile_budget.py --size 1280x960 --full           # measured end to end

The last line is a JSON object with every number.
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
from console import errors  # noqa: E402
from loading import images  # noqa: E402
import model  # noqa: E402
from machine import resources  # noqa: E402
from inference import tiling  # noqa: E402
import utils  # noqa: E402


def image_size(text):
    """argparse type of --size: 'WIDTHxHEIGHT' -> (width, height), both positive."""
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not WIDTHxHEIGHT, e.g. 4000x3000' % text)
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError('%r: both sides must be positive' % text)
    return width, height


def build_parser():
    """Command-line flags (see the module docstring)."""
    parser = argparse.ArgumentParser(prog='tools/tile_budget.py',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--image', default=os.path.join(ROOT, 'data', 'real', '1.jpg'),
                        help='photo to enlarge (default data/real/1.jpg)')
    parser.add_argument('--size', type=image_size, default='4000x3000',
                        help='WIDTHxHEIGHT (default 12 MP)')
    parser.add_argument('--checkpoint', default=os.path.join(ROOT, 'checkpoints',
                                                             'ReMAEN_light'))
    parser.add_argument('--tile', type=int, default=0,
                        help='tile side (default 0: the automatic choice under --budget_mb)')
    parser.add_argument('--budget_mb', type=float, default=tiling.DEFAULT_BUDGET_MB,
                        help='memory budget of the automatic choice (default %d)'
                             % tiling.DEFAULT_BUDGET_MB)
    parser.add_argument('--tile_overlap', type=int, default=None,
                        help='last-pass halo (default tiling.default_overlap(mode="fast"))')
    parser.add_argument('--runs', type=int, default=6,
                        help='timed crop shapes per pass (default 6; 0 = all)')
    parser.add_argument('--full', action='store_true', help='derain the whole image')
    parser.add_argument('--verbose', action='store_true')
    return parser


def crop_shapes(height, width, tile, halo):
    """Group the tiles by crop shape: {(crop_h, crop_w): [boxes]}."""
    groups = {}
    for box in tiling.tile_interiors(height, width, tile):
        (cy0, cy1, cx0, cx1), _ = tiling.halo_crop(box, halo, height, width)
        groups.setdefault((cy1 - cy0, cx1 - cx0), []).append(box)
    return groups


def time_pass(session, tiled, fetch, image, tile, halo, squeezes, max_shapes=0):
    """Estimated seconds of one pass: one timed run per crop shape, times its tile count.

    The ``max_shapes`` most frequent shapes (0 = all) and the largest one (the peak memory)
    are timed; the others are estimated from the mean time per pixel of the timed ones.

    Returns:
      (estimated seconds of the pass, timed runs, seconds per pixel of the timed runs).
    """
    height, width = image.shape[:2]
    groups = sorted(crop_shapes(height, width, tile, halo).items(),
                    key=lambda item: -len(item[1]))
    timed = groups[:max_shapes] if max_shapes else groups
    largest = max(groups, key=lambda item: item[0][0] * item[0][1])
    if largest not in timed:
        timed.append(largest)
    seconds, timed_seconds, timed_pixels = 0.0, 0.0, 0
    for (rows, cols), boxes in timed:
        start = time.perf_counter()
        for _ in tiling.passes._tile_runs(session, tiled, fetch, image, boxes[:1], halo, squeezes,
                                   lambda: None):
            pass
        spent = time.perf_counter() - start
        seconds += spent * len(boxes)
        timed_seconds += spent
        timed_pixels += rows * cols
    rate = timed_seconds / timed_pixels
    for (rows, cols), boxes in groups:
        if ((rows, cols), boxes) not in timed:
            seconds += rate * rows * cols * len(boxes)
    return seconds, len(timed), rate


def load_photo(path, width, height):
    """The photo at ``path`` enlarged (bicubic) to width x height: [H, W, 3] float32 in [0, 1]."""
    photo = images.read_image(path)
    return np.clip(cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def restored_tiles(checkpoint, config):
    """(session, tiled graph) of the tile graphs only, weights restored, both fetches set up."""
    tf = quiet.import_tf()
    with tf.Graph().as_default():
        tiled = tiling.build_tiled_graph(config)
        session = tf.Session(config=utils.session_config())
        checkpointing.restore(session, checkpointing.resolve(checkpoint), model.model_variables())
    tiling.derain_fast(session, tiled, np.full((48, 48, 3), 0.5, np.float32), 24, 8)
    return session, tiled


def main(argv=None):
    """Measure and print; returns the exit code (faults: one ``error:`` line)."""
    args = build_parser().parse_args(argv)
    return errors.run(lambda: run(args), verbose=args.verbose)


def run(args):
    """Measure and print; returns 0."""
    width, height = args.size
    image = load_photo(args.image, width, height)
    config = model.ModelConfig()
    plan = tiling.plan(height, width, args.budget_mb, config, args.tile or None,
                       overlap=args.tile_overlap)
    tile = plan.tile or max(height, width)
    passes = tiling.statistics_passes(height, width, plan.sample_pixels)
    halos = tiling.pass_halos('fast', plan.overlap, passes=passes)
    session, tiled = restored_tiles(args.checkpoint, config)
    rss_ready = resources.peak_rss_mb()
    result = {'size': '%dx%d' % (width, height), 'megapixels': width * height / 1e6,
              'tile': tile, 'halos': halos, 'rss_ready_mb': rss_ready, 'choice': plan.line,
              'estimated_mb': plan.memory_mb, 'tiles': plan.tiles,
              'sample_pixels': plan.sample_pixels,
              'cost_whole_passes': (tiling.relative_cost(height, width, tile, halos)
                                    + tiling.sample_cost(height, width, plan.sample_pixels))}
    if args.full:
        start = time.perf_counter()
        tiling.derain_fast(session, tiled, image, tile, plan.overlap,
                           sample_pixels=plan.sample_pixels)
        result['seconds'] = time.perf_counter() - start
    else:
        squeezes = [np.zeros([1, config.channels], np.float32)] * len(tiled.squeezes)
        # A statistics pass costs what the plain network's pass costs (the pooled sample,
        # at most one budget-sized run, is not timed).
        timed = [time_pass(session, tiled, tiled.local_sums, image, tile, halos[0], (),
                           args.runs)] if passes else []
        timed += [time_pass(session, tiled, tiled.output, image, tile, halos[-1], squeezes,
                            args.runs)]
        result.update({'timed_runs': sum(p[1] for p in timed),
                       'pass_seconds': [p[0] for p in timed],
                       'microseconds_per_pixel': [p[2] * 1e6 for p in timed],
                       'estimated_seconds': sum(p[0] for p in timed)})
    result['peak_rss_mb'] = resources.peak_rss_mb()
    session.close()
    seconds = result.get('seconds', result.get('estimated_seconds'))
    print('%s (%.1f MP), tile %d, halos %s: %d tiles, %.2f whole passes of pixels; %s %.0f s '
          '(%.1f min); peak RSS %.0f MB (%.0f MB before the tiles, %.0f MB estimated)'
          % (result['size'], result['megapixels'], tile, halos, result['tiles'],
             result['cost_whole_passes'], 'measured' if args.full else 'estimated', seconds,
             seconds / 60.0, result['peak_rss_mb'], rss_ready, plan.memory_mb))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
