"""The benchmark's results: the fields of its JSON line, the summaries and the printed table.

``RESULT_FIELDS``, ``BF16_FIELDS`` and ``LARGE_PHOTO_FIELDS`` name the numbers of the final
JSON line; ``summarize`` turns the phases' dicts into them (ratios to the reference
convolution), ``bf16_summary`` / ``large_photo_summary`` / ``runtimes_summary`` do the same for
the optional comparisons, and the ``print_*`` functions write the table people read.
"""
import datetime
import json

import numpy as np

from benchmarks.phases import large_photo_size
from machine import precision
from benchmarks.profiling import CONV_SHAPE


# The fields of the final JSON line (all numbers; the test checks them).
RESULT_FIELDS = (
    'conv_gflops', 'dilated_conv_gflops', 'macs_per_pixel',
    'infer_s', 'infer_gflops', 'infer_ratio', 'peak_rss_mb_infer',
    'infer_large_s', 'infer_large_gflops', 'infer_large_ratio', 'peak_rss_mb_infer_large',
    'train_step_s', 'train_gflops', 'train_ratio', 'feed_fraction', 'peak_rss_mb_train',
    'train_command_s', 'train_command_ratio',
    'baseline_rss_mb')
# The fp32-vs-bf16 fields: a bool and three numbers, null where bf16 is not supported.
BF16_FIELDS = ('bf16_supported', 'infer_speedup_bf16', 'train_speedup_bf16', 'bf16_psnr_delta',
               'train_command_s_bf16', 'train_command_ratio_bf16')
# The large-photo phase: its numbers (null with --large_photo False), the photo it enlarges.
LARGE_PHOTO_FIELDS = ('large_photo_s', 'large_photo_ratio', 'peak_rss_mb_large_photo')


def large_photo_summary(photo, infer, args):
    """The LARGE_PHOTO_FIELDS (None when the phase did not run) and the photo's size and
    choice; the ratio divides seconds per pixel by those of the ``--size`` inference."""
    if photo is None:
        return dict({key: None for key in LARGE_PHOTO_FIELDS}, large_photo_size=None,
                    large_photo_choice=None)
    pixels = float(np.prod(large_photo_size(args)))
    reference = float(np.median(infer['seconds'])) / float(np.prod(args.size))
    return {'large_photo_s': photo['seconds'], 'peak_rss_mb_large_photo': photo['peak_rss_mb'],
            'large_photo_ratio': photo['seconds'] / pixels / reference,
            'large_photo_size': photo['size'], 'large_photo_choice': photo['choice']}


def print_large_photo(results, args):
    """One line: the large photo's seconds, per-pixel ratio, peak memory and choice."""
    if results['large_photo_s'] is None:
        print('large photo: not measured (--large_photo False)')
        return
    print('large photo %s, main.py --input with default flags: %.1f s, %.2fx the seconds per '
          'pixel of the %dx%d inference, peak %.0f MB; %s'
          % ((results['large_photo_size'], results['large_photo_s'],
              results['large_photo_ratio']) + tuple(args.size)
             + (results['peak_rss_mb_large_photo'], results['large_photo_choice'])))


def runtimes_summary(result):
    """``runtime_s``, ``runtime_ratio`` (TF graph seconds / runtime seconds), ``export_mb``."""
    if result is None:
        return {}
    seconds = result['seconds']
    return {'runtime_s': seconds, 'export_mb': result['export_mb'],
            'runtime_ratio': {name: seconds['tf_graph'] / value
                              for name, value in seconds.items()}}


def print_runtimes(results, args):
    """The runtime comparison's lines (nothing without ``--runtimes``)."""
    if 'runtime_s' not in results:
        return
    print('exported model, one %dx%d image (median of %d runs; ratio = TF graph time / this '
          'time):' % (args.size[0], args.size[1], args.runtimes_repeats))
    for name, seconds in results['runtime_s'].items():
        size = results['export_mb'].get(name)
        print('  %-10s %7.3f s  x%.2f%s' % (name, seconds, results['runtime_ratio'][name],
                                           '' if size is None else '  (%.1f MB)' % size))


def bf16_summary(runs):
    """The BF16_FIELDS of the result from ``run_bf16_phases``'s dict (None = not run).

    Returns:
      dict: ``bf16_supported`` (this CPU's flags), the speedups (fp32 median time / bf16
      median time), the largest |PSNR difference| (dB), the bf16 training command's seconds
      per iteration and their ratio to the bf16 bench step; all but the first None when
      ``runs`` is None.
    """
    summary = dict.fromkeys(BF16_FIELDS)
    summary['bf16_supported'] = precision.bf16_supported()
    if runs is None:
        return summary
    for phase in ('infer', 'train'):
        times = {name: float(np.median(run['seconds'])) for name, run in runs[phase].items()}
        summary['%s_speedup_bf16' % phase] = times['fp32'] / times['bf16']
    fp32, bf16 = runs['quality']['fp32']['psnr'], runs['quality']['bf16']['psnr']
    summary['bf16_psnr_delta'] = float(np.max(np.abs(np.subtract(bf16, fp32))))
    summary['train_command_s_bf16'] = runs['command']['bf16']['seconds']
    summary['train_command_ratio_bf16'] = (summary['train_command_s_bf16']
                                           / float(np.median(runs['train']['bf16']['seconds'])))
    return summary


def print_bf16(summary, runs, reason, args):
    """One line: the fp32-vs-bf16 numbers, or why there are none."""
    if runs is None:
        print('bf16: not measured: %s; infer_speedup_bf16, train_speedup_bf16 and '
              'bf16_psnr_delta are null' % reason)
        return
    seconds = {phase: {name: float(np.median(run['seconds'])) for name, run in
                       runs[phase].items()} for phase in ('infer', 'train')}
    quality = runs['quality']['fp32']
    print('bf16 vs fp32: inference %dx%d %.3f -> %.3f s (%.2fx), train step %.3f -> %.3f s '
          '(%.2fx), largest |PSNR difference| %.4f dB over %d pairs (%s)'
          % (tuple(args.size) + (seconds['infer']['fp32'], seconds['infer']['bf16'],
                                 summary['infer_speedup_bf16'], seconds['train']['fp32'],
                                 seconds['train']['bf16'], summary['train_speedup_bf16'],
                                 summary['bf16_psnr_delta'], len(quality['psnr']),
                                 quality['checkpoint'])))


def print_bf16_training(summary, runs):
    """The bf16 training command's time and the bf16 step's breakdown (when measured)."""
    if runs is None:
        return
    print('bf16 training command: %.3f s per iteration = %.2f x the bf16 bench step'
          % (summary['train_command_s_bf16'], summary['train_command_ratio_bf16']))
    print_breakdown('bf16', runs['train']['bf16']['breakdown'])


def _infer_summary(result, pixels):
    seconds = float(np.median(result['seconds']))
    gflops = 2.0 * result['macs'] / seconds / 1e9
    conv = float(np.mean(result['conv_gflops']))
    return seconds, gflops, gflops / conv


def summarize(infer, large, train, command, args):
    """The final result dict from the phase results."""
    height, width = args.size
    infer_s, infer_gflops, infer_ratio = _infer_summary(infer, height * width)
    large_s, large_gflops, large_ratio = _infer_summary(large, np.prod(args.large_size))
    train_s = float(np.median(train['seconds']))
    train_flops = 3 * 2.0 * train['forward_macs']
    train_gflops = train_flops / train_s / 1e9
    conv_all = infer['conv_gflops'] + large['conv_gflops'] + train['conv_gflops']
    return {
        'conv_gflops': float(np.median(conv_all)),
        'dilated_conv_gflops': float(np.median([infer['dilated_conv_gflops'],
                                                large['dilated_conv_gflops']])),
        'macs_per_pixel': infer['macs'] / float(height * width),
        'infer_s': infer_s, 'infer_gflops': infer_gflops, 'infer_ratio': infer_ratio,
        'peak_rss_mb_infer': infer['peak_rss_mb'],
        'infer_large_s': large_s, 'infer_large_gflops': large_gflops,
        'infer_large_ratio': large_ratio, 'peak_rss_mb_infer_large': large['peak_rss_mb'],
        'train_step_s': train_s, 'train_gflops': train_gflops,
        'train_ratio': train_gflops / float(np.mean(train['conv_gflops'])),
        'feed_fraction': float(np.sum(train['wait']) / np.sum(train['seconds'])),
        'peak_rss_mb_train': train['peak_rss_mb'],
        'train_command_s': command['seconds'],
        'train_command_ratio': command['seconds'] / train_s,
        'train_top_ops': [[op, dtype, round(seconds, 4), count] for op, dtype, seconds, count
                          in train['breakdown']['ops']],
        'train_casts': train['breakdown']['casts'],
        'baseline_rss_mb': infer['baseline_rss_mb'],
    }


def print_breakdown(compute, breakdown):
    """Lines: where one traced training step in ``compute`` precision spent its time."""
    print('one traced %s training step: %.2f s wall, %.2f s of op time, %d nodes in bfloat16, '
          '%d casts taking %.3f s; op types by time:'
          % (compute, breakdown['wall_s'], breakdown['op_seconds'], breakdown['bfloat16_ops'],
             breakdown['casts'][0], breakdown['casts'][1]))
    for op, dtype, seconds, count in breakdown['ops']:
        print('  %-34s %-9s %7.3f s %5.1f%%  x%d' % (op, dtype or '-', seconds,
                                                   100.0 * seconds / breakdown['op_seconds'],
                                                   count))


def print_table(results, infer, large, train, args):
    size = '%dx%d' % tuple(args.size)
    large_size = '%dx%d' % tuple(args.large_size)
    batch = '%dx%dx%d' % (args.batch_size, args.patch_size, args.patch_size)
    line = '+-------------------------------+-----------+-----------+--------+-----------+'
    print(line)
    print('| %-29s | %9s | %9s | %6s | %9s |' % ('measurement', 'seconds', 'GFLOP/s',
                                                 'ratio', 'peak MB'))
    print(line)
    rows = [('plain conv 3x3 32->32', 2e-9 * np.prod(CONV_SHAPE[:3]) * 9 * 32 * 32
             / results['conv_gflops'], results['conv_gflops'], 1.0, None),
            ('dilated conv (rate 2, slim)', None, results['dilated_conv_gflops'],
             results['dilated_conv_gflops'] / results['conv_gflops'], None),
            ('inference %s' % size, results['infer_s'], results['infer_gflops'],
             results['infer_ratio'], results['peak_rss_mb_infer']),
            ('inference %s' % large_size, results['infer_large_s'],
             results['infer_large_gflops'], results['infer_large_ratio'],
             results['peak_rss_mb_infer_large']),
            ('train step %s' % batch, results['train_step_s'], results['train_gflops'],
             results['train_ratio'], results['peak_rss_mb_train'])]
    for label, seconds, gflops, ratio, peak in rows:
        print('| %-29s | %9s | %9.2f | %6.3f | %9s |' % (
            label, '-' if seconds is None else '%.3f' % seconds, gflops, ratio,
            '-' if peak is None else '%.0f' % peak))
    print(line)
    print('multiply-adds per pixel (graph count): %.0f; training graph count / forward = '
          '%.2f (3 assumed)' % (results['macs_per_pixel'],
                                train['graph_macs'] / float(train['forward_macs'])))
    print('feed fraction %.4f (batcher wait / step time; data: %s)'
          % (results['feed_fraction'], train['data']))
    print('plain conv GFLOP/s around each phase: %s'
          % ' '.join('%.1f' % v for v in infer['conv_gflops'] + large['conv_gflops']
                     + train['conv_gflops']))
    print('training command (main.py --is_training, same batch and precision): %.3f s per '
          'iteration = %.2f x the bench step (direct dilated convs: %s)'
          % (results['train_command_s'], results['train_command_ratio'],
             train['direct_dilation']))
    print_breakdown(args.precision, train['breakdown'])
    print('timed runs: %s %s, %s %s, train %s (s); baseline RSS %.0f MB'
          % (size, ' '.join('%.2f' % v for v in infer['seconds']), large_size,
             ' '.join('%.2f' % v for v in large['seconds']),
             ' '.join('%.2f' % v for v in train['seconds']), results['baseline_rss_mb']))


def _report_runtimes_only(args, runtimes, cpu, cores, tf_version):
    """``--runtimes only``: the comparison's lines and its JSON line. Returns 0."""
    results = runtimes_summary(runtimes)
    print_runtimes(results, args)
    results.update({'date': datetime.date.today().isoformat(), 'cpu': cpu, 'cores': cores,
                    'tensorflow': tf_version, 'size': '%dx%d' % tuple(args.size)})
    if args.json_out:
        with open(args.json_out, 'w') as handle:
            json.dump(results, handle, indent=2)
    print(json.dumps(results, sort_keys=True))
    return 0
