"""The pairs of a dataset folder as the audit sees them, and the folder a name stands for.

``discovery.find_pairs`` refuses a folder with images that have no partner (training must
not start on such a set); the audit pairs what it can by discovery's rules and lists every
file left over.
"""
import os

from loading import discovery
from loading.discovery import DataError

_TEMPLATES = ('data/train/{}', 'data/test/{}')


def resolve(name, test_first=False):
    """A dataset folder: ``name`` itself, else ``data/train/NAME`` or ``data/test/NAME``.

    Args:
      name: folder path or dataset name.
      test_first: look in data/test before data/train (the ``--against`` set).

    Returns:
      The folder path.

    Raises:
      DataError: no such folder.
    """
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or os.sep in name or name.startswith('.'):
        raise DataError('{} {}; pass the folder holding the dataset'.format(
            name, 'is not a folder' if os.path.exists(path) else 'does not exist'))
    templates = _TEMPLATES[::-1] if test_first else _TEMPLATES
    for template in templates:
        candidate = template.format(name)
        if os.path.isdir(candidate):
            return candidate
    raise DataError('dataset {} not found: it is not a folder and neither {} exists; pass the '
                    'dataset folder'.format(name, ' nor '.join(t.format(name)
                                                               for t in templates)))


def _stem(name):
    return os.path.splitext(name)[0]


def _lenient_subfolders(folder, rain_dir, clean_dir):
    """Pairs of rain_dir/ + clean_dir/ by discovery's rules, keeping the files left over."""
    rain_root, clean_root = os.path.join(folder, rain_dir), os.path.join(folder, clean_dir)
    clean_names = discovery.image_names(clean_root)
    by_stem = {_stem(n): n for n in clean_names}
    by_id = {discovery._id_key(s): n for s, n in by_stem.items()}
    pairs, used, left = [], set(), []
    for name in discovery.image_names(rain_root):
        partner, _ = discovery._partner(_stem(name), by_stem, by_id)
        if partner is None:
            left.append(os.path.join(rain_root, name))
            continue
        used.add(partner)
        pairs.append(discovery.Pair(_stem(name), os.path.join(rain_root, name),
                                    os.path.join(clean_root, partner), None))
    left += [os.path.join(clean_root, n) for n in clean_names if n not in used]
    return pairs, 'paired subfolders {}/ + {}/'.format(rain_dir, clean_dir), left


def _lenient_flat(folder):
    """Pairs of rain-N/norain-N or N_in/N_GT files, keeping the files left over (or None)."""
    names = discovery.image_names(folder)
    for pattern, rain_is_none, layout in (
            (discovery._CANONICAL_RE, True, 'canonical rain-N/norain-N'),
            (discovery._RAIN12_RE, False, 'Rain12 N_in/N_GT')):
        rain, clean, _ = discovery._match_flat(folder, names, pattern, rain_is_none)
        if rain and clean:
            pairs = [discovery.Pair(_stem(rain[i]), os.path.join(folder, rain[i]),
                                    os.path.join(folder, clean[i]), None)
                     for i in sorted(set(rain) & set(clean))]
            left = [os.path.join(folder, side[i]) for side, other in ((rain, clean),
                                                                      (clean, rain))
                    for i in sorted(side) if i not in other]
            return pairs, layout, left
    return None


def lenient_pairs(folder):
    """The pairs that can be matched when ``find_pairs`` refuses a folder, and the rest.

    ``find_pairs`` stops at images without a partner (training must not start on such a
    set); the audit pairs what it can with discovery's rules and lists every file left.

    Args:
      folder: the dataset folder.

    Returns:
      (pairs, layout, unmatched paths), or None when no paired layout is recognised.
    """
    rain_dirs = discovery._subdirs(folder, discovery.RAIN_DIR_NAMES)
    clean_dirs = discovery._subdirs(folder, discovery.CLEAN_DIR_NAMES)
    if len(rain_dirs) == 1 and len(clean_dirs) == 1:
        return _lenient_subfolders(folder, rain_dirs[0], clean_dirs[0])
    return _lenient_flat(folder)


def _unused_images(folder, pairs):
    """Images in the folder and its rainy/clean subfolders that belong to no pair."""
    used = {os.path.abspath(p) for pair in pairs for p in (pair.rain_path, pair.clean_path)
            if p}
    names = discovery.RAIN_DIR_NAMES + discovery.CLEAN_DIR_NAMES
    roots = [folder] + [os.path.join(folder, d) for d in discovery._subdirs(folder, names)]
    return [os.path.join(root, n) for root in roots for n in discovery.image_names(root)
            if os.path.abspath(os.path.join(root, n)) not in used]


def list_pairs(folder, rainy_half=None):
    """The pairs of a dataset as the audit sees them.

    Args:
      folder: an existing dataset folder.
      rainy_half: None or 'left'/'right' (side-by-side pair images).

    Returns:
      dict: ``pairs`` (Pairs with a clean image), ``layout``, ``unmatched`` (paths of images
      that belong to no pair), ``pairing_error`` (why ``find_pairs`` refused the folder, or
      None).

    Raises:
      DataError: the folder holds no pairs at all.
    """
    try:
        pairs, layout = discovery.find_pairs(folder, rainy_half=rainy_half, verbose=False)
        return {'pairs': pairs, 'layout': layout, 'pairing_error': None,
                'unmatched': _unused_images(folder, pairs)}
    except DataError as exc:
        found = lenient_pairs(folder) if not rainy_half else None
        if not found or not found[0]:
            raise
        return {'pairs': found[0], 'layout': found[1], 'pairing_error': str(exc),
                'unmatched': found[2]}
