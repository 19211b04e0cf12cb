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
are listed with the reason.

With ``--train``, missing (or unfinished) checkpoints are trained first by calling
``training.train`` with the paper's flags, after printing an estimate of the training time
(seconds per iteration measured on this machine with the same graph, times the iterations).
"""
import argparse
import datetime
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import checkpoints  # noqa: E402
import errors  # noqa: E402
import inference  # noqa: E402
import paper  # noqa: E402
import profiling  # noqa: E402
import settings  # noqa: E402
from dataloader import DataError  # noqa: E402

PROTOCOLS = (
    ('paper', 'psnr', 'ssim',
     'paper protocol: BGR channels in [0, 1], Gaussian SSIM (11x11, sigma 1.5, VALID)'),
    ('Y', 'psnr_y', 'ssim_y',
     'Y protocol: BT.601 luma of the uint8 images (PReNet/MPRNet/Restormer); no paper value'),
)


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


def _relative(path):
    """Path relative to the current folder when it lies below it (shorter report cells)."""
    if path is None:
        return None
    rel = os.path.relpath(path)
    return path if rel.startswith('..') else rel


# ----------------------------------------------------------------------------- plan
def main_flags(args, dataset):
    """main.py flags shared by training and testing of ``dataset`` (paper network and loss)."""
    flags = ['--train_dataset', dataset, '--test_dataset', dataset,
             '--batch_size', str(args.batch_size), '--patch_size', str(args.patch_size),
             '--iterations', str(args.iterations), '--num_gpus', str(args.num_gpus),
             '--data_path', args.data_path, '--test_path', args.test_path,
             '--checkpoint_dir', args.checkpoint_dir, '--test_dir', args.test_dir,
             '--logs_dir', args.logs_dir, '--sample_dir', args.sample_dir]
    if dataset in args.rainy_half:
        flags += ['--rainy_half', args.rainy_half[dataset]]
    if args.seed is not None:
        flags += ['--seed', str(args.seed)]
    if dataset in args.checkpoint:
        flags += ['--checkpoint', args.checkpoint[dataset]]
    return flags


def checkpoint_step(prefix):
    """The ``global_step`` stored in a checkpoint, or None (e.g. the authors' release)."""
    return checkpoints.stored_step(prefix)


def _dataset_hint(dataset, message):
    if dataset in paper.USUAL_RAINY_HALF:
        message += ('; side-by-side %s pair images need --rainy_half %s=%s (usual value)'
                    % (dataset, dataset, paper.USUAL_RAINY_HALF[dataset]))
    return message


def plan_dataset(args, dataset):
    """What exists for ``dataset``: test pairs, checkpoint, training data.

    Returns:
      dict with ``dataset``, ``test_folder``, ``pairs`` (list or None), ``test_reason``,
      ``checkpoint_where``, ``prefix`` (or None), ``step``, ``train_folder``, ``train_reason``,
      ``explicit_checkpoint``.
    """
    import dataloader
    half = args.rainy_half.get(dataset)
    info = {'dataset': dataset, 'rainy_half': half, 'pairs': None, 'test_reason': None,
            'train_reason': None, 'explicit_checkpoint': dataset in args.checkpoint}
    info['test_folder'] = args.test_path.replace('{}', dataset)
    info['test_set'] = 'test'
    validation = args.validation_path.replace('{}', dataset) if args.validation_path else None
    if not os.path.isdir(info['test_folder']) and validation and os.path.isdir(validation):
        info['test_folder'], info['test_set'] = validation, 'validation'
    if not os.path.isdir(info['test_folder']):
        info['test_reason'] = 'no test data at %s' % info['test_folder']
    else:
        try:
            info['pairs'], info['layout'] = dataloader.find_pairs(
                info['test_folder'], rainy_half=half, verbose=False)
        except DataError as exc:
            info['test_reason'] = _dataset_hint(
                dataset, 'no usable test pairs in %s (%s)' % (info['test_folder'], exc))
    info['checkpoint_where'] = args.checkpoint.get(dataset) or checkpoints.checkpoint_folder(
        args.checkpoint_dir, dataset, args.batch_size)
    info['prefix'] = checkpoints.find(info['checkpoint_where'])
    info['step'] = None
    if info['prefix']:
        try:
            info['step'] = checkpoint_step(info['prefix'])
        except checkpoints.CheckpointError:
            pass  # reported when testing
    info['train_folder'] = args.data_path.replace('{}', dataset)
    if not os.path.isdir(info['train_folder']):
        info['train_reason'] = 'no training data at %s' % info['train_folder']
    return info


def needs_training(info, args):
    """True when ``--train`` should train ``info['dataset']`` (missing or unfinished)."""
    if info['explicit_checkpoint'] or info['test_reason'] or info['train_reason']:
        return False
    if info['prefix'] is None:
        return True
    return info['step'] is not None and info['step'] < args.iterations


def _duration(seconds):
    if seconds < 120:
        return '%.0f s' % seconds
    if seconds < 7200:
        return '%.0f min' % (seconds / 60.0)
    return '%.1f h' % (seconds / 3600.0)


def print_estimate(todo, args):
    """Print the training plan with the estimated time; returns the estimate dict."""
    if args.seconds_per_iteration is not None:
        per_it, how = args.seconds_per_iteration, 'given by --seconds_per_iteration'
    elif args.estimate_steps > 0:
        print('Measuring the training speed (%d steps of batch %d, %dx%d, %d GPU tower(s))...'
              % (args.estimate_steps, args.batch_size, args.patch_size, args.patch_size,
                 args.num_gpus))
        per_it = profiling.train_step_seconds(args.batch_size, args.patch_size,
                                              args.num_gpus, args.estimate_steps)
        how = 'measured here over %d steps, %s' % (args.estimate_steps,
                                                   profiling.device_description())
    else:
        per_it, how = None, 'not estimated (--estimate_steps 0)'
    print('Training plan (paper settings: batch %d of %dx%d, %d iterations, lr 1e-3 -> 1e-4 '
          'at 30000); %s:' % (args.batch_size, args.patch_size, args.patch_size,
                              args.iterations, how))
    total, rows = 0.0, {}
    for info in todo:
        start = info['step'] or 0
        left = args.iterations - start
        seconds = None if per_it is None else left * per_it
        rows[info['dataset']] = {'from_step': start, 'iterations': left, 'seconds': seconds}
        total += seconds or 0.0
        print('  %-12s %6d -> %d  (%d iterations)  %s'
              % (info['dataset'], start, args.iterations, left,
                 '' if seconds is None else '~' + _duration(seconds)))
    if per_it is not None:
        print('  %.3f s/iteration; total ~%s (plus graph building, data loading and testing)'
              % (per_it, _duration(total)))
    return {'seconds_per_iteration': per_it, 'how': how, 'datasets': rows,
            'total_seconds': total if per_it is not None else None}


def _main_args(args, dataset, mode):
    """Parsed main.py flags of ``dataset`` (``mode``: '--is_training' or '--is_testing'),
    with the precision resolved as main.py does."""
    import precision
    main_args = settings.parse_args([mode, 'True'] + main_flags(args, dataset))
    main_args.precision = precision.from_args(main_args)
    return main_args


def train_dataset(args, info):
    """Train ``info['dataset']`` with the paper flags; None or the failure reason."""
    import training
    argv = ['--is_training', 'True'] + main_flags(args, info['dataset'])
    print('\n== training %s: python main.py %s' % (info['dataset'], ' '.join(argv)))
    try:
        training.train(_main_args(args, info['dataset'], '--is_training'))
    except errors.user_errors() as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 'training failed: %s' % exc
    return None


# ----------------------------------------------------------------------------- testing
def test_dataset(args, info, derainers=None):
    """Test one dataset with main.py's code; returns the report row (dict).

    Args:
      args: parsed reproduce.py flags.
      info: ``plan_dataset`` dict (after training).
      derainers: optional dict prefix -> main.Derainer, reused by datasets that share a
        checkpoint (the caller closes them).
    """
    dataset = info['dataset']
    sizes = paper.DATASET_SIZES.get(dataset)
    row = {'dataset': dataset, 'status': 'not run', 'reason': None,
           'paper': paper.paper_result(dataset), 'paper_test_pairs': sizes[1] if sizes else None,
           'test_folder': info['test_folder'], 'test_set': info['test_set'], 'test_pairs': None,
           'checkpoint': _relative(info['prefix']) if info['prefix'] else None,
           'checkpoint_step': info['step'], 'rainy_half': info['rainy_half'],
           'date': None, 'ours': None, 'input': None, 'difference': None, 'results': None}
    if info['pairs'] is not None:
        row['test_pairs'] = len(info['pairs'])
    if info['test_reason']:
        row['reason'] = info['test_reason']
        return row
    if info['prefix'] is None:
        row['reason'] = 'no checkpoint at %s' % info['checkpoint_where']
        if info.get('train_failure'):
            row['reason'] += ' (%s)' % info['train_failure']
        elif info['train_reason'] and not info['explicit_checkpoint']:
            row['reason'] += ' (and %s to train one)' % info['train_reason']
        return row
    missing_gt = [p.name for p in info['pairs'] if p.clean_path is None]
    if missing_gt:
        row['reason'] = 'no ground truth for %d test image(s) in %s' % (
            len(missing_gt), info['test_folder'])
        return row
    main_args = _main_args(args, dataset, '--is_testing')
    print('\n== testing %s with %s' % (dataset, info['prefix']))
    derainers = {} if derainers is None else derainers
    try:
        derainer = derainers.get(info['prefix'])
        if derainer is None:
            derainer = derainers[info['prefix']] = inference.build_derainer(main_args)
        else:
            checkpoints.check_settings(os.path.dirname(info['prefix']),
                                       settings.model_config(main_args))
        out_dir = os.path.join(args.test_dir, dataset)
        results = inference.derain_pairs(derainer, info['pairs'], out_dir, dataset)
    except errors.user_errors() as exc:
        row['reason'] = 'error: %s' % exc
        return row
    row['checkpoint'] = _relative(results['checkpoint'])
    mean = results['mean']
    row.update(status='ok', test_pairs=results['count'],
               date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d'),
               results=_relative(os.path.join(out_dir, 'results.json')),
               ours={k: mean[k] for k in inference.METRIC_KEYS},
               input={k: mean['input'][k] for k in inference.METRIC_KEYS},
               seconds_per_image=mean['seconds'])
    if row['paper']:
        row['difference'] = {k: row['ours'][k] - row['paper'][k] for k in ('psnr', 'ssim')}
    folder = os.path.dirname(results['checkpoint'])
    stored = checkpoints.load_settings(folder) or {}
    row['train_pairs'] = stored.get('train_pairs')
    row['training'] = _training(checkpoints.model_card(folder), stored, info['step'])
    return row


def _training(card, stored, step):
    """``{'iterations', 'schedule'}`` of the checkpoint tested: a shipped model's card, else
    its step and stored learning-rate settings; None when neither tells."""
    if card and card.get('iterations'):
        return {'iterations': card['iterations'], 'schedule': card.get('schedule')}
    if step is None:
        return None
    schedule = (checkpoints.schedule_text(stored['lr'], stored['lr_decay_step'], step)
                if 'lr' in stored and 'lr_decay_step' in stored else None)
    return {'iterations': step, 'schedule': schedule}


# ----------------------------------------------------------------------------- report
def _pair(psnr, ssim, digits=3):
    return '%.2f/%.*f' % (psnr, digits, ssim)


def _diff(values):
    return '%+.2f/%+.4f' % (values['psnr'], values['ssim'])


def _code(text):
    return '`%s`' % text


def _checkpoint_cell(row):
    if not row['checkpoint']:
        return '—'
    training = row.get('training')
    if training:
        text = '{:,} iterations'.format(training['iterations'])
        if training['schedule']:
            text += '; ' + training['schedule']
    else:
        step = row['checkpoint_step']
        text = 'step %d' % step if step is not None else 'no step stored'
    return '%s (%s)' % (_code(row['checkpoint']), text)


def _pairs_cell(row):
    if row['test_pairs'] is None:
        return '—'
    text = '%d' % row['test_pairs']
    if row['test_set'] == 'validation':
        text += ' validation'
    if row['paper_test_pairs'] is not None:
        text += ' (paper %d)' % row['paper_test_pairs']
        if row['test_pairs'] != row['paper_test_pairs']:
            text += ' ⚠'
    return text


def _rain100h_note(rows):
    row = next((r for r in rows if r['dataset'] == 'Rain100H'), None)
    text = ('**Rain100H training set.** 546 of Rain100H\'s 1,800 training images share their '
            'backgrounds with its test images; PReNet and later papers train on the other '
            '1,254 ("RainTrainH"). The ReMAEN README lists 1,800. ')
    if row is None or row['status'] != 'ok':
        return text + 'Rain100H was not run here.'
    count = row.get('train_pairs')
    if count is None:
        return text + ('The checkpoint used does not record its training-set size: state '
                       'which set it was trained on when quoting this number.')
    return text + 'The checkpoint used was trained on %d pairs: %s.' % (
        count, paper.RAIN100H_TRAIN_SIZES.get(count, 'neither of the usual sets'))


def render_markdown(report):
    """REPRODUCTION.md text from the report dict (see ``build_report``)."""
    rows = report['datasets']
    names = [r['dataset'] for r in rows]
    lines = ['# ReMAEN: reproduction of the paper\'s table', '',
             'Generated %s by `%s`.' % (report['generated'], report['command']), '',
             'Our numbers come from `main.py`\'s test code (`inference.derain_pairs`): whole '
             'test images in one pass, output clipped to [0, 1] and saved as 8-bit PNG (rounded), '
             'paper-protocol metrics on the float output, Y-protocol metrics on the saved uint8 '
             'images. Paper values: `paper.PAPER_TABLE` (SPEC.md).', '',
             '## Paper table with this reproduction (PSNR/SSIM, paper protocol)', '',
             '| Method | ' + ' | '.join(names) + ' |',
             '|---|' + '---|' * len(names)]
    for method, values in paper.PAPER_TABLE.items():
        cells = [_pair(*values[n]) if n in values else '—' for n in names]
        lines.append('| %s | %s |' % (method, ' | '.join(cells)))
    ours, diffs = [], []
    for row in rows:
        if row['status'] == 'ok':
            ours.append('**%s**%s' % (_pair(row['ours']['psnr'], row['ours']['ssim'], 4),
                                      ' (validation)' if row['test_set'] == 'validation'
                                      else ''))
            diffs.append(_diff(row['difference']) if row['difference'] else 'no paper value')
        else:
            ours.append('not run')
            diffs.append('—')
    lines += ['| **ReMAEN, this reproduction** | %s |' % ' | '.join(ours),
              '| Difference (ours − paper) | %s |' % ' | '.join(diffs), '',
              '## Per dataset and protocol', '',
              '| Dataset | Protocol | Paper PSNR/SSIM | Ours PSNR/SSIM | Difference | '
              'Test pairs found | Checkpoint | Date |',
              '|---|---|---|---|---|---|---|---|']
    for row in rows:
        if row['status'] != 'ok':
            paper_cell = _pair(row['paper']['psnr'], row['paper']['ssim']) if row['paper'] \
                else 'no paper value'
            lines.append('| %s | — | %s | not run: %s | — | %s | %s | — |' % (
                row['dataset'], paper_cell, row['reason'].replace('|', '\\|'),
                _pairs_cell(row), _checkpoint_cell(row)))
            continue
        for label, psnr_key, ssim_key, _ in PROTOCOLS:
            if label == 'paper':
                paper_cell = _pair(row['paper']['psnr'], row['paper']['ssim']) \
                    if row['paper'] else 'no paper value'
                diff = _diff(row['difference']) if row['difference'] else '—'
            else:
                paper_cell, diff = 'no paper value (paper used the RGB protocol)', '—'
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
                row['dataset'], label, paper_cell,
                _pair(row['ours'][psnr_key], row['ours'][ssim_key], 4), diff,
                _pairs_cell(row), _checkpoint_cell(row), row['date']))
    lines += ['', '## Notes', '']
    lines += ['- **%s**: %s.' % (label, text) for label, _, _, text in PROTOCOLS]
    lines.append('- The Y-protocol numbers have no counterpart in the paper (which used the RGB '
                 'protocol); they are given for comparison with later papers only.')
    for row in rows:
        if row['status'] == 'ok' and row['test_set'] == 'validation':
            lines.append('- **%s on validation pairs**: no test data at `--test_path`, so its '
                         'row comes from the %d validation pairs in `%s` (never trained on), '
                         'not from the paper\'s test set: a proxy for the paper\'s number, '
                         'not a reproduction of it.'
                         % (row['dataset'], row['test_pairs'], _relative(row['test_folder'])))
    lines.append('- ' + _rain100h_note(rows))
    lines.append('- "Test pairs found" is the number of (rainy, clean) pairs found in the test '
                 'folder; ⚠ marks a count different from the paper\'s test set.')
    halves = ['%s=%s' % (r['dataset'], r['rainy_half']) for r in rows if r['rainy_half']]
    lines.append('- Side-by-side pairs (`--rainy_half`): %s; usual values %s.' % (
        ', '.join(halves) or 'none used',
        ', '.join('%s=%s' % item for item in sorted(paper.USUAL_RAINY_HALF.items()))))
    if report.get('training'):
        lines.append('- Training time estimate: %s s/iteration (%s).' % (
            '%.3f' % report['training']['seconds_per_iteration']
            if report['training']['seconds_per_iteration'] is not None else 'n/a',
            report['training']['how']))
    missing = [r for r in rows if r['status'] != 'ok']
    if missing:
        lines.append('- Not run: %s. Put the test data at `--test_path`, the checkpoints at '
                     '`--checkpoint_dir` (or pass `--checkpoint DATASET=PATH`), or train them '
                     'with `python reproduce.py --train`.'
                     % ', '.join(r['dataset'] for r in missing))
    lines.append('')
    return '\n'.join(lines)


def build_report(rows, args, argv, training=None):
    """The dict written to REPRODUCTION.json."""
    return {
        'generated': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        'command': ' '.join(['python reproduce.py'] + list(argv)),
        'protocols': {label: {'psnr': p, 'ssim': s, 'description': text}
                      for label, p, s, text in PROTOCOLS},
        'paper_table': {m: {d: {'psnr': v[0], 'ssim': v[1]} for d, v in values.items()}
                        for m, values in paper.PAPER_TABLE.items()},
        'settings': {'batch_size': args.batch_size, 'iterations': args.iterations,
                     'checkpoint_dir': args.checkpoint_dir, 'test_path': args.test_path,
                     'validation_path': args.validation_path,
                     'data_path': args.data_path, 'test_dir': args.test_dir},
        'training': training,
        'datasets': rows,
    }


def write_report(report, out_dir):
    """Write REPRODUCTION.md and REPRODUCTION.json into ``out_dir``; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, 'REPRODUCTION.md')
    json_path = os.path.join(out_dir, 'REPRODUCTION.json')
    with open(json_path, 'w') as handle:
        json.dump(report, handle, indent=2)
    with open(md_path, 'w') as handle:
        handle.write(render_markdown(report))
    return md_path, json_path


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
