"""Dataset audit: what a deraining data set holds, before you train or test on it.

    python audit.py ../shared/data/Rain100L-val
    python audit.py ../shared/data/RainTrainL --against ../shared/data/Rain100L-val

Each DATASET is a folder in any layout ``discovery`` reads, or a name looked up as
``data/train/NAME`` then ``data/test/NAME`` (``--against`` looks in ``data/test`` first).
Per dataset the audit reports the pairs, layout and image sizes, unreadable and unmatched
files, the rain level (the rainy input's PSNR/SSIM against its clean image, paper protocol),
clean backgrounds repeated within the set, rainy images repeated pixel for pixel and shared
rain (rain layers that correlate on different backgrounds). Between sets (each DATASET against
``--against``, or every two DATASETs) it reports shared clean backgrounds, identical rainy
images and shared rain. It writes ``audit.json`` (every finding with both
paths and a similarity score) and ``audit.html`` (thumbnails side by side, works offline)
to ``--out`` (default ``results/audit/``).

This module is the command line and its terminal report. The library behind it is the
``auditing`` package: ``audit_pairs`` (the pairs of a folder), ``audit_scan`` (reading and
comparing sets: the findings), ``backgrounds`` (how clean backgrounds are matched),
``audit_report`` (writing audit.json and audit.html) and ``warning`` (the check training runs
at start).
"""
import argparse
import os
import sys

from auditing import audit_pairs, audit_report, audit_scan, backgrounds
# The library's main names stay importable from here (audit.scan, audit.orient, ...).
from auditing.audit_scan import audit_dataset, scan  # noqa: F401
from auditing.backgrounds import (HASH_MAX_DISTANCE, MATCH_THRESHOLD,  # noqa: F401
                                  aligned_similarity, inverse, match_backgrounds, orient,
                                  phashes, popcount)
from console import errors
from loading import discovery
from loading.discovery import DataError

DEFAULT_OUT = os.path.join('results', 'audit')
SHOW = 20                 # findings listed per section in the terminal (all in audit.json)
RAIN_TITLE = ('shared rain (rain layers correlating >= %g on different backgrounds)'
              % backgrounds.SHARED_RAIN_THRESHOLD)


# ----------------------------------------------------------------------------- report
def _range(stats, digits, unit=''):
    if not stats:
        return 'n/a'
    return '{m:.{d}f}{u} ({lo:.{d}f} to {hi:.{d}f}, {n} pairs)'.format(
        m=stats['mean'], d=digits, u=unit, lo=stats['min'], hi=stats['max'], n=stats['count'])


def _finding_line(finding):
    """One line of the report, e.g. '    58 ~ 9  similarity 0.97, flipped left-right'."""
    a, b = finding['a'], finding['b']
    names = '%s ~ %s' % (','.join(a['pairs'][:3]), ','.join(b['pairs'][:3]))
    if a['set'] != b['set']:
        names = '%s/%s ~ %s/%s' % (a['set'], ','.join(a['pairs'][:3]), b['set'],
                                   ','.join(b['pairs'][:3]))
    extra = [] if finding['k'] == 0 else [finding['transform']]
    if finding.get('same_rain'):
        extra.append('same rain too')
    return '    %s  similarity %.2f%s' % (names, finding['similarity'],
                                          ''.join(', ' + e for e in extra))


def _findings_lines(title, findings):
    """'  <title>: none' or a count and up to SHOW finding lines."""
    if not findings:
        return ['  %s: none' % title]
    lines = ['  %s: %d' % (title, len(findings))]
    lines += [_finding_line(f) for f in findings[:SHOW]]
    if len(findings) > SHOW:
        lines.append('    ... and %d more in audit.json' % (len(findings) - SHOW))
    return lines


def _listed(paths):
    return 'none' if not paths else '%d (%s)' % (len(paths), discovery._listing(paths))


def dataset_lines(data):
    """The terminal report of one set (list of str)."""
    scan_ = data['scan']
    sizes = ', '.join('%s: %d' % item for item in scan_['sizes'].most_common())
    lines = ['%s: %d pairs in %s (layout: %s)' % (data['label'], data['pairs'],
                                                   data['folder'], data['layout'])]
    if data['pairing_error']:
        lines.append('  pairing problem: %s' % data['pairing_error'])
    lines += ['  sizes: %s' % (sizes or 'none readable'),
              '  unmatched files: %s' % _listed(data['unmatched']),
              '  unreadable pairs: %s' % ('none' if not scan_['problems'] else '%d: %s' % (
                  len(scan_['problems']), '; '.join(p['error'] for p in scan_['problems'][:3]))),
              '  rain level (rainy input vs clean, paper protocol): PSNR %s, SSIM %s'
              % (_range(scan_['psnr'], 2, ' dB'), _range(scan_['ssim'], 4))]
    lines += _findings_lines('repeated backgrounds', data['repeated_backgrounds'])
    lines += _findings_lines('identical rainy images', data['identical_rainy'])
    lines += _findings_lines(RAIN_TITLE, data['shared_rain'])
    return lines


def comparison_lines(comparison, datasets):
    """The terminal report of one comparison of two sets (list of str)."""
    label_a, label_b = comparison['sets']
    count = {d['label']: d['pairs'] for d in datasets}
    shared = comparison['shared_backgrounds']
    lines = ['%s against %s:' % (label_a, label_b)]
    if shared:
        lines.append('  %d of %d %s pairs and %d of %d %s pairs share a clean background'
                     % (len(audit_scan.affected(shared, 'a')), count[label_a], label_a,
                        len(audit_scan.affected(shared, 'b')), count[label_b], label_b))
    lines += _findings_lines('shared backgrounds', shared)
    lines += _findings_lines('identical rainy images', comparison['identical_rainy'])
    lines += _findings_lines(RAIN_TITLE, comparison['shared_rain'])
    return lines


def report_lines(result):
    """The whole terminal report (list of str)."""
    lines = []
    for data in result['datasets']:
        lines += dataset_lines(data)
    for comparison in result['comparisons']:
        lines += comparison_lines(comparison, result['datasets'])
    return lines


# ----------------------------------------------------------------------------- CLI
def build_parser():
    """The audit's command-line flags."""
    parser = argparse.ArgumentParser(
        prog='audit.py', description='Audit deraining datasets: pairs, sizes, rain level, '
        'repeated and shared clean backgrounds, identical rainy images, shared rain.')
    parser.add_argument('datasets', nargs='+', metavar='DATASET',
                        help='dataset folder (any layout) or name under data/train|test')
    parser.add_argument('--against', metavar='TEST_DATASET', default=None,
                        help='test set: report the backgrounds each DATASET shares with it')
    parser.add_argument('--out', metavar='DIR', default=DEFAULT_OUT,
                        help='folder for audit.json, audit.html and thumbnails '
                             '(default %(default)s)')
    parser.add_argument('--rainy_half', choices=('left', 'right'), default=None,
                        help='side-by-side pair images: the rainy half')
    parser.add_argument('--ssim_pairs', type=int, default=audit_scan.DEFAULT_SSIM_PAIRS,
                        help='SSIM on this many evenly spaced pairs per set, 0 = all '
                             '(default %(default)s; PSNR always on all)')
    return parser


def run_command(args):
    """Audit the sets the flags name, print the report and write the outputs."""
    if args.ssim_pairs < 0:
        raise errors.UsageError('--ssim_pairs must be 0 (all) or positive, got %d'
                                % args.ssim_pairs)
    folders = [audit_pairs.resolve(name) for name in args.datasets]
    against = audit_pairs.resolve(args.against, test_first=True) if args.against else None
    result = audit_scan.run_audit(folders, against, args.rainy_half, args.ssim_pairs)
    lines = report_lines(result)
    print('\n'.join(lines))
    json_path, html_path = audit_report.write_outputs(args.out, result, lines)
    print('Wrote %s and %s' % (json_path, html_path))


def main(argv=None):
    """Run the audit; returns the exit code (2 with one ``error:`` line for user errors)."""
    args = build_parser().parse_args(argv)
    try:
        run_command(args)
    except (errors.UsageError, DataError) as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
