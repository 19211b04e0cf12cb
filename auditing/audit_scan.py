"""Reading the sets and comparing them: the audit's findings.

``scan`` reads every pair of a set once (sizes, unreadable pairs, rain level, pixel digests
of the rainy images, clean backgrounds, high-passed rain layers); ``compare_sets`` turns
background matches (``backgrounds``) and equal digests into findings, ``shared_rain`` the
rain layers that correlate on different backgrounds; ``run_audit`` audits sets on their own
and against each other.
"""
import collections
import hashlib
import os

import numpy as np

from auditing import audit_pairs
from auditing import backgrounds
from loading import discovery
from loading import images
import metrics
from loading.discovery import DataError
from console.progress import Progress

DEFAULT_SSIM_PAIRS = 200  # SSIM (the slow metric) on this many evenly spaced pairs


def _label(folder):
    return os.path.basename(os.path.normpath(folder)) or folder


def affected(findings, side):
    """Names of the pairs on one side ('a' or 'b') of findings, in natural order."""
    return sorted({n for f in findings for n in f[side]['pairs']}, key=discovery.natural_key)


def _side(label, background):
    return {'set': label, 'pairs': [p.name for p in background.pairs],
            'path': background.path, 'half': background.half}


def background_finding(kind, label_a, back_a, label_b, back_b, match):
    """A JSON-ready finding for one background match (rain layers compared too).

    Args:
      kind: 'repeated background' or 'shared background'.
      label_a, back_a: set name and Background of the first image.
      label_b, back_b: the same for the second.
      match: a dict from ``backgrounds.match_backgrounds``.

    Returns:
      dict with ``kind``, ``a``, ``b`` (set, pair names, path), ``similarity``,
      ``hash_distance``, ``transform`` (how A is turned to show B), ``rain_similarity``
      and ``same_rain`` (the rainy images repeat too, not only the background).
    """
    try:
        rain_score = backgrounds.aligned_similarity(
            backgrounds.rain_layer(back_a.pairs[0]), backgrounds.rain_layer(back_b.pairs[0]),
            match['k'])
    except DataError:
        rain_score = None
    return {'kind': kind, 'a': _side(label_a, back_a), 'b': _side(label_b, back_b),
            'similarity': match['similarity'], 'hash_distance': match['hash_distance'],
            'transform': backgrounds.TRANSFORMS[match['k']], 'k': match['k'],
            'rain_similarity': None if rain_score is None else round(rain_score, 4),
            'same_rain': (rain_score is not None
                          and rain_score >= backgrounds.SAME_RAIN_THRESHOLD)}


def identical_rainy(entries_a, entries_b=None):
    """Rainy images with identical pixels (any file format or name).

    Args:
      entries_a: list of (digest, pair) of set A.
      entries_b: the same for set B, or None to look within A.

    Returns:
      list of (pair of A, pair of B) with equal digests (within A: each later copy with
      the first one).
    """
    first = {}
    found = []
    for digest, pair in entries_a:
        if entries_b is None and digest in first:
            found.append((first[digest], pair))
        first.setdefault(digest, pair)
    for digest, pair in entries_b or ():
        if digest in first:
            found.append((first[digest], pair))
    return found


def pixel_digest(raw):
    """A digest of an image's pixels (shape, type and samples), equal for equal images."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((raw.shape, raw.dtype.str)).encode())
    digest.update(np.ascontiguousarray(raw).tobytes())
    return digest.hexdigest()


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {'mean': float(np.mean(values)), 'min': float(np.min(values)),
            'max': float(np.max(values)), 'count': len(values)}


def _ssim_every(count, ssim_pairs):
    """Step between the pairs whose SSIM is computed (1 = all)."""
    return 1 if not ssim_pairs or count <= ssim_pairs else int(np.ceil(count / ssim_pairs))


def _read(pair, clean_only=False):
    """(rainy raw, rainy float, clean float) of a pair; DataError when it cannot be read.

    With ``clean_only`` the rainy file is not decoded (None, None, clean float).
    """
    if clean_only and pair.half is None:
        clean, scale = images.decode(pair.clean_path)
        return None, None, images.to_float(clean, scale)
    rain, rain_scale, clean, clean_scale = images.load_raw_pair(pair)
    return rain, images.to_float(rain, rain_scale), images.to_float(clean, clean_scale)


def scan(label, pairs, ssim_pairs=DEFAULT_SSIM_PAIRS, backgrounds_only=False,
         show_progress=True):
    """Read every pair of a set once: sizes, problems, rain level, digests, backgrounds.

    Args:
      label: the set's name (progress label).
      pairs: Pairs with clean images.
      ssim_pairs: SSIM on at most this many evenly spaced pairs (0 = all); PSNR on all.
      backgrounds_only: read only the clean images, for the backgrounds (then sizes,
        digests and the rain level stay empty).
      show_progress: progress bar / lines on stdout.

    Returns:
      dict: ``sizes`` (Counter 'WxH' -> pairs), ``problems`` (list of {pair, error}),
      ``psnr`` and ``ssim`` (stats dicts or None), ``digests`` (list of (digest, pair)),
      ``backgrounds`` (from ``backgrounds.background_set``), ``rain`` ((pairs, their
      ``backgrounds.rain_feature`` with float16 values): what ``shared_rain`` compares).
    """
    sizes, problems, psnrs, ssims, digests = collections.Counter(), [], [], [], []
    rain_pairs, rain_features = [], []
    found = collections.OrderedDict()
    every = _ssim_every(len(pairs), ssim_pairs)
    with Progress(len(pairs), 'audit ' + label, unit='pair', enabled=show_progress) as bar:
        for index, pair in enumerate(pairs):
            bar.update(1)
            try:
                raw, rain, clean = _read(pair, clean_only=backgrounds_only)
            except DataError as exc:
                problems.append({'pair': pair.name, 'error': str(exc)})
                continue
            backgrounds.add_background(found, pair, clean)
            if backgrounds_only:
                continue
            sizes['%dx%d' % (clean.shape[1], clean.shape[0])] += 1
            digests.append((pixel_digest(raw), pair))
            values, mask = backgrounds.rain_feature(rain, clean)
            rain_pairs.append(pair)
            rain_features.append((values.astype(np.float16), mask))
            psnrs.append(metrics.psnr(rain, clean))
            if index % every == 0 and min(clean.shape[:2]) >= metrics.SSIM_WIN_SIZE:
                ssims.append(metrics.ssim(rain, clean))
    return {'sizes': sizes, 'problems': problems, 'psnr': _stats(psnrs),
            'ssim': _stats(ssims), 'digests': digests,
            'backgrounds': backgrounds.background_set(found),
            'rain': (rain_pairs, rain_features)}


def _rainy_finding(kind, label_a, pair_a, label_b, pair_b):
    return {'kind': kind,
            'a': {'set': label_a, 'pairs': [pair_a.name], 'path': pair_a.rain_path,
                  'half': pair_a.half},
            'b': {'set': label_b, 'pairs': [pair_b.name], 'path': pair_b.rain_path,
                  'half': pair_b.half},
            'similarity': 1.0, 'transform': backgrounds.TRANSFORMS[0], 'k': 0}


def compare_sets(data_a, data_b=None):
    """Background and rainy-image findings within one set or between two.

    Args:
      data_a: dict with ``label`` and ``scan`` (from ``scan``).
      data_b: the same for the second set, or None (within ``data_a``).

    Returns:
      (background findings, identical rainy findings): lists of finding dicts.
    """
    within = data_b is None
    data_b = data_a if within else data_b
    kind = 'repeated background' if within else 'shared background'
    backs_a, backs_b = data_a['scan']['backgrounds'], data_b['scan']['backgrounds']
    found = [background_finding(kind, data_a['label'], backs_a[0][m['i']], data_b['label'],
                                backs_b[0][m['j']], m)
             for m in backgrounds.match_backgrounds(backs_a, None if within else backs_b)]
    copies = identical_rainy(data_a['scan']['digests'],
                             None if within else data_b['scan']['digests'])
    rainy = [_rainy_finding('identical rainy', data_a['label'], a, data_b['label'], b)
             for a, b in copies]
    return found, rainy


def _rain_side(label, pair):
    return {'set': label, 'pairs': [pair.name], 'path': pair.rain_path, 'half': pair.half}


def shared_rain(data_a, background_findings, data_b=None):
    """Pairs whose rain layers correlate (``backgrounds.rain_correlations``, aligned as the
    images are) at least ``backgrounds.SHARED_RAIN_THRESHOLD`` on different backgrounds.

    Args:
      data_a: dict with ``label`` and ``scan`` (from ``scan``).
      background_findings: the background findings between the same sets
        (``compare_sets``): pairs showing the same scene are left out (reported there, with
        ``same_rain``), as are pairs of one clean file.
      data_b: the second set, or None (within ``data_a``).

    Returns:
      list of finding dicts (kind 'shared rain', similarity = the correlation), highest
      first.
    """
    within = data_b is None
    data_b = data_a if within else data_b
    pairs_a, features_a = data_a['scan']['rain']
    pairs_b, features_b = data_b['scan']['rain']
    if not pairs_a or not pairs_b:
        return []
    corr = backgrounds.rain_correlations(features_a, None if within else features_b)
    same = {(a, b) for f in background_findings for a in f['a']['pairs']
            for b in f['b']['pairs']}
    found = []
    rows, cols = np.nonzero(np.nan_to_num(corr, nan=-1.0) >= backgrounds.SHARED_RAIN_THRESHOLD)
    for i, j in zip(rows, cols):
        pair_a, pair_b = pairs_a[i], pairs_b[j]
        if ((within and j <= i) or (pair_a.name, pair_b.name) in same
                or (within and (pair_b.name, pair_a.name) in same)
                or (within and pair_a.clean_path == pair_b.clean_path)):
            continue
        found.append({'kind': 'shared rain', 'a': _rain_side(data_a['label'], pair_a),
                      'b': _rain_side(data_b['label'], pair_b),
                      'similarity': round(float(corr[i, j]), 4),
                      'transform': backgrounds.TRANSFORMS[0], 'k': 0})
    return sorted(found, key=lambda f: -f['similarity'])


def audit_dataset(folder, rainy_half=None, ssim_pairs=DEFAULT_SSIM_PAIRS, label=None):
    """Audit one set on its own.

    Args:
      folder: the dataset folder.
      rainy_half: None or 'left'/'right'.
      ssim_pairs: see ``scan``.
      label: the set's name (default: the folder's name).

    Returns:
      dict: ``label``, ``folder``, ``layout``, ``pairs`` (count), ``pairing_error``,
      ``unmatched``, ``scan`` (from ``scan``), ``repeated_backgrounds``,
      ``identical_rainy`` and ``shared_rain`` (findings within the set).

    Raises:
      DataError: the folder holds no pairs.
    """
    listing = audit_pairs.list_pairs(folder, rainy_half)
    data = {'label': label or _label(folder), 'folder': folder, 'layout': listing['layout'],
            'pairs': len(listing['pairs']), 'pairing_error': listing['pairing_error'],
            'unmatched': listing['unmatched']}
    data['scan'] = scan(data['label'], listing['pairs'], ssim_pairs)
    data['repeated_backgrounds'], data['identical_rainy'] = compare_sets(data)
    data['shared_rain'] = shared_rain(data, data['repeated_backgrounds'])
    return data


def _unique_labels(folders):
    """Folder names, with ' (2)', ' (3)' appended to repeated names."""
    seen, labels = collections.Counter(), []
    for folder in folders:
        label = _label(folder)
        seen[label] += 1
        labels.append(label if seen[label] == 1 else '%s (%d)' % (label, seen[label]))
    return labels


def run_audit(folders, against=None, rainy_half=None, ssim_pairs=DEFAULT_SSIM_PAIRS):
    """Audit sets on their own and against each other.

    Args:
      folders: dataset folders.
      against: a test set folder: each of ``folders`` is compared with it; None = every
        two of ``folders`` are compared.
      rainy_half, ssim_pairs: see ``audit_dataset``.

    Returns:
      dict: ``datasets`` (from ``audit_dataset``, ``against`` last) and ``comparisons``
      (``{'sets': [A, B], 'shared_backgrounds': [...], 'identical_rainy': [...],
      'shared_rain': [...], 'pairs_sharing_a_background': {A: [names], B: [names]}}``).
    """
    all_folders = list(folders) + ([against] if against else [])
    datasets = [audit_dataset(f, rainy_half, ssim_pairs, label)
                for f, label in zip(all_folders, _unique_labels(all_folders))]
    if against:
        couples = [(d, datasets[-1]) for d in datasets[:-1]]
    else:
        couples = [(a, b) for n, a in enumerate(datasets) for b in datasets[n + 1:]]
    comparisons = []
    for a, b in couples:
        shared, rainy = compare_sets(a, b)
        comparisons.append({'sets': [a['label'], b['label']], 'shared_backgrounds': shared,
                            'identical_rainy': rainy, 'shared_rain': shared_rain(a, shared, b),
                            'pairs_sharing_a_background': {a['label']: affected(shared, 'a'),
                                                           b['label']: affected(shared, 'b')}})
    return {'datasets': datasets, 'comparisons': comparisons}
