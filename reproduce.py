"""Reproduce the paper's table: (train and) test ReMAEN on every benchmark, write a report.

    python reproduce.py                      # test the checkpoints that exist, write the report
    python reproduce.py --train              # first train the missing ones (paper settings)
    python reproduce.py --train --dry_run    # only show the plan and the time estimate
    python reproduce.py --extra MyRain --rainy_half Rain800=right Rain1200=left

For each dataset (Rain100L, Rain100H, Rain800, Rain1200, Rain1400 and any extra name) whose
test folder and checkpoint exist, the test set is derained with main.py's own library
(``inference.build_derainer`` + ``inference.derain_pairs``: whole images, output clipped
to [0, 1], results.json/csv and the derained PNGs in ``<test_dir>/<dataset>``) and PSNR/SSIM are
collected in both protocols. ``REPRODUCTION.md`` and ``REPRODUCTION.json`` (in ``--out_dir``)
put them next to the paper's numbers (``paper.PAPER_TABLE``); datasets that could not be run
are listed with the reason. This module is the command line; the work is the ``reproduction``
package's (``plan``: what can run and its cost; ``report``: the tables).

With ``--train``, missing (or unfinished) checkpoints are trained first by calling
``training.train`` with the paper's flags, after printing an estimate of the training time
(seconds per iteration measured on this machine with the same graph, times the iterations).
"""
import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import settings  # noqa: E402
from console import errors  # noqa: E402
from reproduction import paper  # noqa: E402
from reproduction.plan import (needs_training, plan_dataset, print_estimate,  # noqa: E402
                               test_dataset, train_dataset)
from reproduction.report import build_report, render_markdown, write_report  # noqa: E402


# ----------------------------------------------------------------------------- flags
def _assignment(value):
    """argparse type for ``NAME=VALUE``."""
    name, sep, rest = value.partition('=')
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError('expected DATASET=VALUE, got %r' % value)
    return name, rest


def _half_assignment(value):
    name, half = _assignment(value)
    if half not in ('left', 'right'):
        raise argparse.ArgumentTypeError("expected DATASET=left or DATASET=right, got %r"
                                         % value)
    return name, half


def build_parser():
    """The argument parser of ``reproduce.py``.

    Returns:
      argparse.ArgumentParser.
    """
    usual = ' '.join('%s=%s' % item for item in sorted(paper.USUAL_RAINY_HALF.items()))
    parser = argparse.ArgumentParser(
        prog='reproduce.py',
        description='Reproduce the ReMAEN paper table: test (and with --train first train) '
                    'ReMAEN on Rain100L, Rain100H, Rain800, Rain1200 and Rain1400, then write '
                    'REPRODUCTION.md/.json with the paper\'s numbers, ours and the difference. '
                    'Datasets without test data or checkpoint are reported as "not run" with '
                    'the reason.',
        epilog='Examples:\n'
               '  python reproduce.py                        # report on what exists\n'
               '  python reproduce.py --train                # train what is missing, then '
               'report\n'
               '  python reproduce.py --train --dry_run      # plan and time estimate only\n'
               '  python reproduce.py --datasets Rain100L --checkpoint '
               'Rain100L=checkpoint/ReMAEN_Rain100L_32\n'
               '  python reproduce.py --rainy_half %s\n\n'
               'Data layout: <test_path>/<dataset> and <data_path>/<dataset> as in main.py (any '
               'layout main.py accepts).\nCheckpoints: <checkpoint_dir>/ReMAEN_<dataset>_'
               '<batch_size>/ (the paper trains one model per dataset).\n--rainy_half: only for '
               'side-by-side pair images; usual values: %s\n(ID-CGAN\'s Rain800 is clean|rainy, '
               'DID-MDN\'s Rain1200 is rainy|clean; the loader warns when it looks swapped).'
               % (usual, usual),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sets = parser.add_argument_group('datasets')
    sets.add_argument('--datasets', nargs='+', default=list(paper.DATASETS), metavar='NAME',
                      help='datasets to run (default: the paper\'s %s)'
                           % ' '.join(paper.DATASETS))
    sets.add_argument('--extra', nargs='+', default=[], metavar='NAME',
                      help='more dataset names to run after --datasets (no paper value)')
    sets.add_argument('--rainy_half', nargs='+', type=_half_assignment, default=[],
                      metavar='DATASET=left|right',
                      help='side-by-side pair images: which half is rainy, per dataset '
                           '(usual: %s; not needed for rain-N/norain-N copies)' % usual)
    sets.add_argument('--checkpoint', nargs='+', type=_assignment, default=[],
                      metavar='DATASET=PATH',
                      help='explicit checkpoint folder or prefix per dataset (e.g. the '
                           "authors' Rain100L=checkpoint/ReMAEN_Rain100L_32); never trained")
    paths = parser.add_argument_group('folders (as in main.py)')
    paths.add_argument('--data_path', default='data/train/{}',
                       help="training data; '{}' = dataset name (default data/train/{})")
    paths.add_argument('--test_path', default='data/test/{}',
                       help="test data; '{}' = dataset name (default data/test/{})")
    paths.add_argument('--validation_path', default='../shared/data/{}-val',
                       help="validation pairs used (and labelled as such) when a dataset has "
                            "no test data at --test_path; '' = never (default "
                            "../shared/data/{}-val, e.g. Rain100L test ids 51-100)")
    paths.add_argument('--checkpoint_dir', default='checkpoints',
                       help='root of the checkpoint folders (default checkpoints)')
    paths.add_argument('--test_dir', default='results',
                       help='derained images and results.json go to <test_dir>/<dataset> '
                            '(default results)')
    paths.add_argument('--logs_dir', default='logs', help='TensorBoard logs (default logs)')
    paths.add_argument('--sample_dir', default='samples',
                       help='training samples (default samples)')
    paths.add_argument('--out_dir', default='.',
                       help='where REPRODUCTION.md and REPRODUCTION.json go (default: the '
                            'current folder)')
    train = parser.add_argument_group('training (paper settings)')
    train.add_argument('--train', type=settings.str2bool, nargs='?', const=True, default=False,
                       help='train missing or unfinished checkpoints first (default False)')
    train.add_argument('--iterations', type=settings.positive_int, default=40000,
                       help='training iterations per dataset (default 40000, lr x0.1 from '
                            '30000)')
    train.add_argument('--batch_size', type=settings.positive_int, default=32,
                       help='batch size; also names the checkpoint folders (default 32)')
    train.add_argument('--patch_size', type=settings.positive_int, default=64,
                       help='training crop side (default 64)')
    train.add_argument('--num_gpus', type=settings.positive_int, default=1,
                       help='data-parallel towers (default 1)')
    train.add_argument('--seed', type=int, default=None, help='random seed (default none)')
    train.add_argument('--estimate_steps', type=int, default=5,
                       help='training steps timed (after one warm-up) for the time estimate; '
                            '0 = no estimate (default 5)')
    train.add_argument('--seconds_per_iteration', type=float, default=None,
                       help='use this figure for the estimate instead of measuring')
    train.add_argument('--dry_run', type=settings.str2bool, nargs='?', const=True,
                       default=False,
                       help='show the plan (and with --train the time estimate), then stop')
    return parser


def parse_args(argv=None):
    """Parse ``argv`` (None = sys.argv[1:]); per-dataset lists become dicts."""
    args = build_parser().parse_args(argv)
    args.rainy_half = dict(args.rainy_half)
    args.checkpoint = dict(args.checkpoint)
    names = []
    for name in list(args.datasets) + list(args.extra):
        if name not in names:
            names.append(name)
    args.names = names
    return args


# ----------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run reproduce.py; returns the exit code (0 ok, 1 a training failed, 2 bad flags or
    another user error; the others of ``errors.run``, docs/errors.md)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    return errors.run(lambda: reproduce(args, argv))


def reproduce(args, argv):
    """Plan, train what is missing, test, and write the report; returns the exit code."""
    plans = [plan_dataset(args, name) for name in args.names]
    print('== ReMAEN reproduction: %d dataset(s)' % len(plans))
    for info in plans:
        state = info['test_reason'] or '%d %s pairs' % (len(info['pairs']), info['test_set'])
        if info['test_set'] == 'validation' and not info['test_reason']:
            state += ' (%s; no test data at %s)' % (info['test_folder'],
                                                    args.test_path.replace('{}', info['dataset']))
        ckpt = info['prefix'] or 'no checkpoint at %s' % info['checkpoint_where']
        print('  %-12s %s; %s' % (info['dataset'], state, ckpt))
    training, failed = None, False
    todo = [info for info in plans if args.train and needs_training(info, args)]
    if args.train:
        for info in plans:
            if not needs_training(info, args) and info['prefix'] is None \
                    and not info['explicit_checkpoint']:
                print('  not training %s: %s' % (info['dataset'],
                                                 info['test_reason'] or info['train_reason']))
    if todo:
        training = print_estimate(todo, args)
    if args.dry_run:
        print('Dry run: nothing trained or tested.')
        return 0
    for info in todo:
        info['train_failure'] = train_dataset(args, info)
        failed = failed or bool(info['train_failure'])
    if todo:  # new checkpoints (--checkpoint may point at one of them too)
        for info in plans:
            refreshed = plan_dataset(args, info['dataset'])
            info.update(prefix=refreshed['prefix'], step=refreshed['step'])
    derainers = {}
    try:
        rows = [test_dataset(args, info, derainers) for info in plans]
    finally:
        for derainer in derainers.values():
            derainer.close()
    report = build_report(rows, args, argv, training)
    md_path, json_path = write_report(report, args.out_dir)
    print('\n' + render_markdown(report))
    print('Report: %s and %s' % (md_path, json_path))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
