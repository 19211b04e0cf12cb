"""What ``reproduce.py`` can do with what exists: each dataset's plan, its cost, the runs.

``plan_dataset`` finds a dataset's test folder and checkpoint (and says why not),
``needs_training`` / ``print_estimate`` decide what ``--train`` would train and how long it
would take (seconds per iteration measured here, ``benchmarks.profiling``), ``train_dataset``
calls ``training.train`` with the paper's flags and ``test_dataset`` derains the test set with
``inference`` in both protocols.
"""
import datetime
import os
import sys

import checkpointing
from benchmarks import profiling
import inference
import settings
from console import errors
from dataloader import DataError
from machine import resources
from reproduction import paper


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
    return checkpointing.stored_step(prefix)


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
    info['checkpoint_where'] = args.checkpoint.get(dataset) or checkpointing.checkpoint_folder(
        args.checkpoint_dir, dataset, args.batch_size)
    info['prefix'] = checkpointing.find(info['checkpoint_where'])
    info['step'] = None
    if info['prefix']:
        try:
            info['step'] = checkpoint_step(info['prefix'])
        except checkpointing.CheckpointError:
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
                                                   resources.device_description())
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
    from machine import precision
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
            checkpointing.check_settings(os.path.dirname(info['prefix']),
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
    stored = checkpointing.load_settings(folder) or {}
    row['train_pairs'] = stored.get('train_pairs')
    row['training'] = _training(checkpointing.model_card(folder), stored, info['step'])
    return row


def _training(card, stored, step):
    """``{'iterations', 'schedule'}`` of the checkpoint tested: a shipped model's card, else
    its step and stored learning-rate settings; None when neither tells."""
    if card and card.get('iterations'):
        return {'iterations': card['iterations'], 'schedule': card.get('schedule')}
    if step is None:
        return None
    schedule = (checkpointing.schedule_text(stored['lr'], stored['lr_decay_step'], step)
                if 'lr' in stored and 'lr_decay_step' in stored else None)
    return {'iterations': step, 'schedule': schedule}
