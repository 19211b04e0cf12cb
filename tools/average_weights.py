"""Average the weights of several checkpoints of one run into a weights-only checkpoint.

    python tools/average_weights.py /tmp/avg checkpoints/ReMAEN_Rain100L_32 --steps 6100-7000
    python tools/average_weights.py /tmp/avg checkpoints/ReMAEN_Rain100L_32 --steps 8700-9600 \
        --every 100
    python tools/average_weights.py /tmp/avg run/ReMAEN-5100 run/ReMAEN-5200 run/ReMAEN-5300
    python main.py --is_testing True --checkpoint /tmp/avg --test_dataset Rain100L-val ...

Each SOURCE is a checkpoint prefix or a training folder; a folder stands for all its
``ReMAEN-<step>`` checkpoints (e.g. those ``--keep_every`` kept), ``--steps A-B`` keeps those
with A <= step <= B and ``--every N`` those whose step is a multiple of N (a training folder
also holds its newest, rotating checkpoints, e.g. ReMAEN-9575 beside the kept ReMAEN-9500 and
ReMAEN-9600: ``--every 100`` leaves it out). The element-wise mean of the network's 138
weights (``checkpointing.mean_weights``, summed in float64; Polyak averaging, as BasicSR's EMA
models or SWA) is written to OUT like ``--export_weights`` (no Adam state, no step), with the
first source folder's settings and the list of averaged checkpoints in
``remaen_settings.json`` (``checkpointing.export_mean_weights``, as ``tools/ship_model.py``;
every source must have the first one's network settings). Test it with ``--checkpoint OUT``;
ship it with ``tools/ship_model.py NAME <the same prefixes>``.
OUT must not hold training checkpoints.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import checkpointing  # noqa: E402
from console import errors  # noqa: E402
from console import quiet  # noqa: E402
import settings  # noqa: E402


def step_range(text):
    """argparse type: 'A-B' (0 <= A <= B) -> (A, B)."""
    match = re.fullmatch(r'\s*(\d+)\s*-\s*(\d+)\s*', text)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise argparse.ArgumentTypeError('expected FIRST-LAST iterations with FIRST <= LAST, '
                                         'e.g. 6100-7000, got %r' % text)
    return int(match.group(1)), int(match.group(2))


def build_parser():
    """The tool's flags."""
    parser = argparse.ArgumentParser(prog='tools/average_weights.py',
                                     description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('out', help='folder for the averaged weights (OUT/ReMAEN)')
    parser.add_argument('source', nargs='+',
                        help='checkpoint prefixes, or training folders (all their '
                             'ReMAEN-<step> checkpoints)')
    parser.add_argument('--steps', type=step_range, default=None, metavar='FIRST-LAST',
                        help='only checkpoints with FIRST <= iteration <= LAST, e.g. 6100-7000 '
                             '(default: all)')
    parser.add_argument('--every', type=settings.positive_int, default=None, metavar='N',
                        help='only checkpoints whose iteration is a multiple of N, e.g. 100 '
                             'for those --keep_every 100 kept (default: all)')
    return parser


def run(args):
    prefixes = checkpointing.select_prefixes(args.source, args.steps, args.every)
    quiet.setup()
    quiet.import_tf()  # the first TensorFlow import, with its start-up noise silenced
    target, count, size = checkpointing.export_mean_weights(
        prefixes, args.out, [os.path.relpath(p) for p in prefixes])
    print('Averaged %d checkpoints (%s) into %s: %d variables, %.1f MB'
          % (len(prefixes), ', '.join(os.path.basename(p) for p in prefixes), target, count,
             size / 1e6))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return errors.run(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
