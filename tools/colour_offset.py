"""How much of a test's error is a global colour offset: per-channel offsets, PSNR without them.

    python tools/colour_offset.py results/Rain100L                  # one results folder
    python tools/colour_offset.py /tmp/val3000/Rain100L-val /tmp/val5000/Rain100L-val
    python tools/colour_offset.py results/Rain100L --per_image

Every argument is a results folder written by ``python main.py --is_testing True`` (its
results.json names the test set as ``source``). For each image the tool reads the saved
output PNG and the clean image of the test set and measures the image's colour offset,
``metrics.channel_offset``: per channel, the mean of output − clean. One row per folder:

  offset B G R     the mean over the images of each channel's offset, in 8-bit levels
                   (a network that brightens every image by 2 levels shows +2 +2 +2)
  |offset|         the mean over the images and channels of its absolute value (offsets of
                   opposite signs in different images do not cancel here)
  PSNR             paper protocol, from the saved 8-bit PNG (results.json measures the float
                   output: about 0.01 dB apart)
  PSNR w/o offset  the same after subtracting each image's three offsets from it: the PSNR
                   the outputs would have without their global colour shift
  gain             the difference: the dB that the offsets cost

The offsets come from the ground truth, so the last columns are a diagnosis (how much of a
gap is a brightness or white-balance shift rather than rain left in or detail lost), never a
result to report. docs/training.md uses it on the Rain100L campaign's checkpoints.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dataloader  # noqa: E402
from console import errors  # noqa: E402
from loading import images  # noqa: E402
import inference  # noqa: E402
import metrics  # noqa: E402


def build_parser():
    """The tool's flags."""
    parser = argparse.ArgumentParser(prog='tools/colour_offset.py', description=__doc__.split(
        '\n')[0])
    parser.add_argument('folders', nargs='+', metavar='RESULTS_FOLDER',
                        help='folders written by --is_testing (holding results.json)')
    parser.add_argument('--per_image', action='store_true',
                        help='also one row per image')
    return parser


def _results(folder):
    """results.json of ``folder`` as a dict; one error line when it is not a results folder."""
    path = os.path.join(folder, 'results.json')
    try:
        with open(path, encoding='utf-8') as handle:
            results = json.load(handle)
    except (OSError, ValueError) as exc:
        raise errors.UsageError('%s: no readable results.json (%s): give a folder written by '
                                '`python main.py --is_testing True` (results/<test_dataset>)'
                                % (folder, exc.__class__.__name__)) from None
    if not isinstance(results, dict) or not results.get('source') or not results.get('images'):
        raise errors.UsageError('%s: results.json names no test set or no image: give a folder '
                                'written by `python main.py --is_testing True`' % folder)
    return results


def measure_image(output, clean):
    """Offset [3] (BGR, [0, 1] units), PSNR and PSNR without the offset of one image pair."""
    offset = metrics.channel_offset(output, clean)
    return {'offset': offset, 'psnr': metrics.psnr(output, clean),
            'psnr_without_offset': metrics.psnr(output - offset, clean)}


def measure_folder(folder):
    """Per-image measurements of one results folder: a list of dicts with ``name`` added.

    Raises:
      UsageError: not a results folder, or it holds images without ground truth.
      DataError: an output PNG or a clean image is missing or unreadable.
    """
    results = _results(folder)
    found = dataloader.find_pairs(results['source'], allow_missing_gt=True, verbose=False)[0]
    pairs = dict(zip(inference.output_names(found), found))
    rows = []
    for row in results['images']:
        pair = pairs.get(row.get('name'))
        if pair is None or pair.clean_path is None:
            raise errors.UsageError('%s: image %r has no clean image in %s: the tool needs a '
                                    'test set with ground truth'
                                    % (folder, row.get('name'), results['source']))
        output = images.read_image(row['output'])
        clean = images.load_pair(pair)[1]
        rows.append(dict(measure_image(output, clean), name=row['name']))
    return rows


def summarise(rows):
    """Means over the images: offset [3] and |offset| in 8-bit levels, the PSNRs in dB."""
    offsets = np.array([row['offset'] for row in rows]) * 255.0
    psnr = float(np.mean([row['psnr'] for row in rows]))
    without = float(np.mean([row['psnr_without_offset'] for row in rows]))
    return {'offset': offsets.mean(axis=0), 'abs_offset': float(np.abs(offsets).mean()),
            'psnr': psnr, 'psnr_without_offset': without, 'gain': without - psnr,
            'count': len(rows)}


def _line(label, offset, abs_offset, psnr, without):
    return '%-44s %+6.2f %+6.2f %+6.2f %8.2f %8.2f %9.2f %6.2f' % (
        label, offset[0], offset[1], offset[2], abs_offset, psnr, without, without - psnr)


def run(args):
    for number, folder in enumerate(args.folders):
        rows = measure_folder(folder)
        if number == 0:
            print('%-44s %6s %6s %6s %8s %8s %9s %6s' % (
                'results folder (images); offsets in 8-bit levels', 'B', 'G', 'R', '|offset|',
                'PSNR', 'w/o offset', 'gain'))
        if args.per_image:
            for row in rows:
                offset = row['offset'] * 255.0
                print(_line('  ' + row['name'], offset, float(np.abs(offset).mean()),
                            row['psnr'], row['psnr_without_offset']))
        mean = summarise(rows)
        print(_line('%s (%d)' % (folder.rstrip('/'), mean['count']), mean['offset'],
                    mean['abs_offset'], mean['psnr'], mean['psnr_without_offset']))
    return errors.EXIT_OK


def main(argv=None):
    """Parse, measure, print; returns the exit code (faults: one ``error:`` line)."""
    args = build_parser().parse_args(argv)
    return errors.run(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
