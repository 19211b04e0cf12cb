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

This module is the command line, its terminal report and the check training runs. The
library behind it: ``audit_pairs`` (the pairs of a folder), ``audit_scan`` (reading and
comparing sets: the findings), ``backgrounds`` (how clean backgrounds are matched) and
``audit_report`` (writing audit.json and audit.html).

``training_warning`` is the check training runs at start: training set against test set,
cached by file sizes and dates, one ``warning:`` line per shared test background.
"""
import argparse
import collections
import hashlib
import json
import os
import sys

import audit_pairs
import audit_report
import audit_scan
import backgrounds
import discovery
import errors
# The library's main names stay importable from here (audit.scan, audit.orient, ...).
from audit_scan import audit_dataset, scan  # noqa: F401
from backgrounds import (HASH_MAX_DISTANCE, MATCH_THRESHOLD, aligned_similarity,  # noqa: F401
                         inverse, match_backgrounds, orient, phashes, popcount)
from discovery import DataError

DEFAULT_OUT = os.path.join('results', 'audit')
SHOW = 20                 # findings listed per section in the terminal (all in audit.json)
WARN_LINES = 10           # shared test backgrounds listed by training_warning
CACHE_NAME = 'dataset_audit.json'
PROGRESS_PAIRS = 1000     # training_warning shows progress above this many pairs
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


# ----------------------------------------------------------------------------- training
def _fingerprint(pairs_by_set):
    """A digest of file names, sizes and modification times, and the matching settings."""
    rows = [backgrounds.settings_json()]
    for pairs in pairs_by_set:
        for pair in pairs:
            stat = os.stat(pair.clean_path)
            rows.append([pair.name, os.path.abspath(pair.clean_path), stat.st_size,
                         stat.st_mtime_ns, pair.half])
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def shared_with_test(train_pairs, test_pairs, show_progress=False):
    """The training pairs whose clean background is also a test pair's.

    Args:
      train_pairs, test_pairs: Pairs with clean images (unreadable ones are skipped).
      show_progress: progress lines while the clean images are read.

    Returns:
      list of [train name, test name, test background file, its half or None], sorted by
      test then training name.
    """
    train, test = [audit_scan.scan(name, pairs, backgrounds_only=True,
                                   show_progress=show_progress)['backgrounds']
                   for name, pairs in (('training set', train_pairs), ('test set', test_pairs))]
    found = []
    for match in backgrounds.match_backgrounds(train, test):
        test_bg = test[0][match['j']]
        found += [[p.name, test_bg.pairs[0].name, test_bg.path, test_bg.half]
                  for p in train[0][match['i']].pairs]
    return sorted(found, key=lambda row: (discovery.natural_key(row[1]),
                                          discovery.natural_key(row[0])))


def _cached_shared(train_pairs, test_pairs, cache_dir):
    """``shared_with_test`` from cache_dir/CACHE_NAME when the files did not change."""
    key = _fingerprint([train_pairs, test_pairs])
    path = os.path.join(cache_dir, CACHE_NAME)
    try:
        with open(path) as handle:
            cached = json.load(handle)
        if cached.get('key') == key:
            return cached['shared']
    except (OSError, ValueError, AttributeError):
        pass
    shared = shared_with_test(train_pairs, test_pairs,
                              show_progress=len(train_pairs) + len(test_pairs) > PROGRESS_PAIRS)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        audit_report.write_text(path, json.dumps({'key': key, 'shared': shared}) + '\n')
    except OSError:
        pass  # no cache: the next run checks again
    return shared


def short_id(name):
    """'58' for the pair 'rain-58' (or '58_in'); other pair names as they are."""
    for pattern in (discovery._CANONICAL_RE, discovery._RAIN12_RE):
        match = pattern.match(name)
        if match:
            return match.group(2) if pattern is discovery._CANONICAL_RE else match.group(1)
    return name


def warning_lines(shared, test_name, limit=WARN_LINES, command='audit.py'):
    """One ``warning:`` line per shared test background (at most ``limit``, then a summary).

    Pairs are named by id: ``58~9`` is training pair 58 (``rain-58``) and test pair 9.

    Args:
      shared: rows of ``shared_with_test``.
      test_name: the test set's name.
      limit: test backgrounds listed.
      command: the audit command named in the summary line.

    Returns:
      list of str.
    """
    groups = collections.OrderedDict()
    for train_name, test_pair, path, half in shared:
        groups.setdefault((path, half), []).append('%s~%s' % (short_id(train_name),
                                                               short_id(test_pair)))
    lines = []
    for names in list(groups.values())[:limit]:
        subject = ('1 training pair shares its' if len(names) == 1
                   else '%d training pairs share their' % len(names))
        lines.append('warning: %s clean background with the test set %s: %s'
                     % (subject, test_name, ', '.join(names)))
    if len(groups) > limit:
        lines.append('warning: %d more test backgrounds of %s are shared with the training set; '
                     'see %s' % (len(groups) - limit, test_name, command))
    return lines


def training_warning(train_path, test_path, test_name, cache_dir, log=print, rainy_half=None):
    """The check training runs at start: training backgrounds shared with the test set.

    Cached in ``cache_dir/dataset_audit.json`` by file names, sizes and modification times,
    so a resumed run does not pay twice. Never raises for data problems: training goes on.

    Args:
      train_path: the training set folder (as ``discovery.find_pairs`` reads it).
      test_path: the test set folder (pairs without ground truth are skipped).
      test_name: the test set's name in the lines.
      cache_dir: folder for the cache file (the run's logs folder); created when missing.
      log: callable taking one line.
      rainy_half: None or 'left'/'right' (side-by-side pair images), as ``--rainy_half``.

    Returns:
      the lines logged (list of str; empty when nothing is shared).
    """
    try:
        train_pairs, _ = discovery.find_pairs(train_path, rainy_half=rainy_half,
                                              verbose=False)
        test_pairs, _ = discovery.find_pairs(test_path, rainy_half=rainy_half,
                                             allow_missing_gt=True, verbose=False)
        test_pairs = [p for p in test_pairs if p.clean_path is not None]
        shared = _cached_shared(train_pairs, test_pairs, cache_dir) if test_pairs else []
    except Exception as exc:  # noqa: BLE001  (a check must never stop training)
        lines = ['note: the shared-background check was skipped (%s)' % exc]
    else:
        lines = warning_lines(shared, test_name, command='python audit.py %s --against %s'
                              % (train_path, test_path))
    for line in lines:
        log(line)
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
