"""The check training runs at start: training backgrounds shared with the test set.

``training_warning`` compares the clean images of the training set with those of the test
set (``backgrounds.match_backgrounds``), caches the answer in ``<logs>/dataset_audit.json`` by
file names, sizes and dates, and prints one ``warning:`` line per shared test background (the
first ``WARN_LINES``), pointing at ``python audit.py`` for the whole report.
"""
import collections
import hashlib
import json
import os

from auditing import audit_report, audit_scan, backgrounds
from loading import discovery


WARN_LINES = 10           # shared test backgrounds listed by training_warning
CACHE_NAME = 'dataset_audit.json'
PROGRESS_PAIRS = 1000     # training_warning shows progress above this many pairs


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
