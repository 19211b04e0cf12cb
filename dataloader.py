"""Dataset discovery, image reading and background batching for ReMAEN.

Users keep their datasets in the layouts the authors of each benchmark published; nothing has
to be renamed. ``find_pairs`` recognises:

- canonical (the ReMAEN authors'): ``rain-N.png`` + ``norain-N.png`` in one folder, any image
  extension, paired by the numeric id N (``rain-001`` pairs with ``norain-1``);
- paired subfolders with equal file names: rainy side ``rain|rainy|input|data``, clean side
  ``norain|gt|ground_truth|target|label`` (Rain100L/H, MPRNet/Restormer copies, ...); names
  are matched exactly, then by numeric id when the zero padding differs;
- Rain1400 (DDN): ``rainy_image/N_K.jpg`` (K = 1..14) all paired with ``ground_truth/N.jpg``;
- Rain12: ``N_in.png`` + ``N_GT.png``;
- side-by-side pair images (Rain800, Rain1200): one file per pair, selected by
  ``rainy_half='left'|'right'`` (the width must be even; a high-frequency heuristic warns once
  when the setting looks swapped);
- rainy images without ground truth (real-world photos), for testing only
  (``allow_missing_gt=True``): pairs with ``clean_path=None``.

Images are float32 HxWx3 in [0, 1], BGR channel order (as ``cv2.imread`` gives them).
Grayscale images are copied to 3 channels, alpha is dropped and 16-bit images are scaled by
1/65535; each conversion is reported once per process with the first file named.

``TrainBatcher`` decodes every training image once, keeps the set in memory when it fits the
memory budget (stored in the file's own dtype: a uint8 image costs 1 byte per sample; crops are
converted to float32 on the fly) and otherwise reads images lazily from disk for each crop.
A daemon thread fills a queue with ready batches so the training loop rarely waits.

Every user-facing problem (missing folder, no pairs, missing partner, size mismatch, corrupt
file, image smaller than the patch) raises ``DataError`` with a one-line message naming the
path and what to do. This module uses numpy, OpenCV and threads only (no TensorFlow).
"""
import collections
import os
import queue
import re
import struct
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

# Subfolder names of the paired-subfolder layouts (compared case-insensitively).
RAIN_DIR_NAMES = ('rain', 'rainy', 'input', 'data', 'rainy_image')
CLEAN_DIR_NAMES = ('norain', 'gt', 'ground_truth', 'target', 'label')

Pair = collections.namedtuple('Pair', ['name', 'rain_path', 'clean_path', 'half'])
Pair.__doc__ = """One test or training sample.

name: str used for output file names ('rain-001', '51', '901_3'), unique within the set.
rain_path: the rainy image file.
clean_path: the ground-truth file, or None when there is none (real-world photos).
half: None, or 'left'/'right' = which half of rain_path is rainy for side-by-side pair images
  (then clean_path == rain_path and the other half is the clean image).
"""

_CANONICAL_RE = re.compile(r'^(no)?rain[-_ ]?(\d+)$', re.IGNORECASE)
_RAIN12_RE = re.compile(r'^(\d+)_(in|gt)$', re.IGNORECASE)
_MANY_TO_ONE_RE = re.compile(r'^(.+)_(\d+)$')
_LAYOUTS_TRIED = ('canonical rain-N/norain-N, paired subfolders {}/ + {}/, '
                  'Rain1400 rainy_image/N_K + ground_truth/N, Rain12 N_in/N_GT'
                  .format('|'.join(RAIN_DIR_NAMES[:4]), '|'.join(CLEAN_DIR_NAMES)))
_HALF_RATIO = 1.3  # clean half this much "sharper" than the rainy half -> setting looks swapped
_SHOW = 3          # how many file names an error message lists


class DataError(Exception):
    """A problem with the user's data; the message is one line naming the path and the fix."""


class DataWarning(UserWarning):
    """An image was converted on load (grayscale, alpha, 16-bit) or a setting looks wrong."""


_WARNED = set()  # kinds of DataWarning already reported in this process
_WARN_LOCK = threading.Lock()
_HALF_CHECKS = [0]  # side-by-side images checked so far (the heuristic looks at the first few)
_MAX_HALF_CHECKS = 32


def reset_warnings():
    """Forget which conversions were reported (tests; a new dataset in the same process)."""
    _WARNED.clear()
    _HALF_CHECKS[0] = 0


def _warn_once(kind, message):
    """Issue ``message`` as a DataWarning the first time ``kind`` is seen in this process."""
    with _WARN_LOCK:  # images may be decoded in several threads
        if kind in _WARNED:
            return
        _WARNED.add(kind)
    warnings.warn(message, DataWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Discovery

def resolve_dataset_dir(path_template, dataset=None, flag='--data_path'):
    """Turn a folder template such as ``'data/train/{}'`` into an existing folder.

    Args:
      path_template: a folder, optionally containing ``'{}'`` which is replaced by ``dataset``.
        Relative paths are relative to the current working directory.
      dataset: dataset name (e.g. 'Rain100L'); needed when the template contains '{}'.
      flag: the command-line option named in the error hint ('--data_path' or '--test_path').

    Returns:
      The folder path (as formatted, '~' expanded).

    Raises:
      DataError: the folder does not exist, is a file, or the template needs a dataset name.
    """
    if '{}' in path_template:
        if not dataset:
            raise DataError('{} contains {{}} but no dataset name was given; pass the dataset '
                            'name or a plain folder with {} DIR'.format(path_template, flag))
        path = path_template.replace('{}', dataset)
    else:
        path = path_template
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise DataError('{} does not exist; put the dataset there or pass {} DIR'
                        .format(path, flag))
    if not os.path.isdir(path):
        raise DataError('{} is not a folder; pass the folder holding the dataset with {} DIR'
                        .format(path, flag))
    return path


def natural_key(name):
    """Sort key putting numbers in numeric order: 'rain-2' < 'rain-10', '901_3' < '901_12'."""
    parts = re.split(r'(\d+)', name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def _is_image(name):
    return not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _stem(name):
    return os.path.splitext(name)[0]


def _id_key(stem):
    """Stem with every digit run read as a number: 'norain-001' and 'norain-1' are equal."""
    parts = re.split(r'(\d+)', stem)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def _listing(names, limit=_SHOW):
    """'a.png, b.png, c.png (and 5 more)'."""
    names = list(names)
    text = ', '.join(names[:limit])
    if len(names) > limit:
        text += ' (and {} more)'.format(len(names) - limit)
    return text


def _index_unique(folder, names, key):
    """Map key(stem) -> file name; two files with the same key are ambiguous (DataError)."""
    index = {}
    for name in sorted(names, key=natural_key):
        k = key(_stem(name))
        if k in index:
            raise DataError('{} and {} in {} have the same id; remove or rename one of them'
                            .format(index[k], name, folder))
        index[k] = name
    return index


def _match_subfolders(folder, rain_dir, clean_dir):
    """Pair the images of two subfolders (equal names, numeric ids, or Rain1400 N_K -> N).

    Returns:
      (pairs, many_to_one): many_to_one tells whether Rain1400 naming (N_K -> N) was used.
    """
    rain_root = os.path.join(folder, rain_dir)
    clean_root = os.path.join(folder, clean_dir)
    rain_names = [n for n in os.listdir(rain_root) if _is_image(n)
                  and os.path.isfile(os.path.join(rain_root, n))]
    clean_names = [n for n in os.listdir(clean_root) if _is_image(n)
                   and os.path.isfile(os.path.join(clean_root, n))]
    if not rain_names or not clean_names:
        empty = rain_root if not rain_names else clean_root
        raise DataError('{} holds no images (extensions {}); put the {} images there'
                        .format(empty, ' '.join(IMAGE_EXTENSIONS),
                                'rainy' if not rain_names else 'clean'))
    by_stem = _index_unique(clean_root, clean_names, lambda s: s)
    by_id = {_id_key(s): n for s, n in by_stem.items()}
    _index_unique(rain_root, rain_names, lambda s: s)
    pairs, used, unmatched, many_to_one = [], set(), [], False
    for name in rain_names:
        stem = _stem(name)
        partner = by_stem.get(stem) or by_id.get(_id_key(stem))
        if partner is None:
            match = _MANY_TO_ONE_RE.match(stem)
            if match:
                base = match.group(1)
                partner = by_stem.get(base) or by_id.get(_id_key(base))
                many_to_one = many_to_one or partner is not None
        if partner is None:
            unmatched.append(name)
            continue
        used.add(partner)
        pairs.append(Pair(stem, os.path.join(rain_root, name),
                          os.path.join(clean_root, partner), None))
    if unmatched:
        unmatched.sort(key=natural_key)
        raise DataError('{} rainy image(s) in {} have no clean partner in {}: {}; add the '
                        'missing clean images or remove these'
                        .format(len(unmatched), rain_root, clean_root, _listing(unmatched)))
    orphans = sorted(set(clean_names) - used, key=natural_key)
    if orphans:
        raise DataError('{} clean image(s) in {} have no rainy partner in {}: {}; add the '
                        'missing rainy images or remove these'
                        .format(len(orphans), clean_root, rain_root, _listing(orphans)))
    return pairs, many_to_one


def _match_flat(folder, names, pattern, rain_tag_is_none):
    """Pair files of one folder whose stems match ``pattern`` (groups: tag, number).

    Args:
      rain_tag_is_none: True when the rainy files are those whose tag group is None
        (canonical 'rain-N' vs 'norain-N'); otherwise the tag 'in' marks rainy files (Rain12).

    Returns:
      (rain, clean, ignored): id -> file name maps of both sides, and the names that do not
      match the pattern.
    """
    rain, clean, ignored = {}, {}, []
    for name in names:
        match = pattern.match(_stem(name))
        if not match:
            ignored.append(name)
            continue
        if rain_tag_is_none:
            tag, number = match.group(1), int(match.group(2))
            is_rain = tag is None
        else:
            number, tag = int(match.group(1)), match.group(2)
            is_rain = tag.lower() == 'in'
        side = rain if is_rain else clean
        if number in side:
            raise DataError('{} and {} in {} have the same id {}; remove or rename one of them'
                            .format(side[number], name, folder, number))
        side[number] = name
    return rain, clean, ignored


def _flat_pairs(folder, rain, clean, describe, allow_missing_gt):
    """Pairs from id -> name maps of one folder; raises on partners missing on either side."""
    if not clean and allow_missing_gt:
        return [Pair(_stem(rain[i]), os.path.join(folder, rain[i]), None, None)
                for i in sorted(rain)]
    missing_clean = [rain[i] for i in sorted(rain) if i not in clean]
    missing_rain = [clean[i] for i in sorted(clean) if i not in rain]
    if missing_clean:
        raise DataError('{} {} image(s) in {} have no {} partner: {}; add the missing clean '
                        'images or remove these'.format(len(missing_clean), describe[0], folder,
                                                        describe[1], _listing(missing_clean)))
    if missing_rain:
        raise DataError('{} {} image(s) in {} have no {} partner: {}; add the missing rainy '
                        'images or remove these'.format(len(missing_rain), describe[1], folder,
                                                        describe[0], _listing(missing_rain)))
    return [Pair(_stem(rain[i]), os.path.join(folder, rain[i]), os.path.join(folder, clean[i]),
                 None) for i in sorted(rain)]


def _subdirs(folder, wanted):
    names = [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))]
    return sorted(n for n in names if n.lower() in wanted)


def find_pairs(folder, rainy_half=None, allow_missing_gt=False, limit=None, verbose=True):
    """Discover the (rainy, clean) pairs of a dataset folder in any supported layout.

    Args:
      folder: the dataset folder.
      rainy_half: None, or 'left'/'right': the folder holds side-by-side pair images and this
        half of each is the rainy one (Rain800, Rain1200).
      allow_missing_gt: accept a folder of rainy images without ground truth (testing and
        deraining only): plain images, or only the rainy side of a layout, give pairs with
        clean_path None.
      limit: None/0 = all pairs; otherwise keep the first `limit` pairs in sorted order (a
        one-line note is printed when fewer are found).
      verbose: print "Found N pairs in FOLDER (layout: ...)".

    Returns:
      (pairs, layout): list of Pair sorted by numeric id (then K for Rain1400), and a short
      description of the layout found.

    Raises:
      DataError: missing folder, no pairs, partners missing, ambiguous ids or layouts.
    """
    if rainy_half not in (None, 'left', 'right'):
        raise DataError("rainy half must be 'left' or 'right', got {!r}; fix --rainy_half"
                        .format(rainy_half))
    if limit is not None and limit < 0:
        raise ValueError('limit must be None or >= 0, got %r' % (limit,))
    if not os.path.exists(folder):
        raise DataError('{} does not exist; put the dataset there or pass another folder'
                        .format(folder))
    if not os.path.isdir(folder):
        raise DataError('{} is not a folder; pass the folder holding the dataset'
                        .format(folder))
    try:
        entries = sorted(os.listdir(folder), key=natural_key)
    except OSError as exc:
        raise DataError('cannot list {} ({}); check its permissions'
                        .format(folder, exc.strerror or exc))
    images = [n for n in entries if _is_image(n) and os.path.isfile(os.path.join(folder, n))]
    rain_dirs = _subdirs(folder, RAIN_DIR_NAMES)
    clean_dirs = _subdirs(folder, CLEAN_DIR_NAMES)
    for dirs, side in ((rain_dirs, 'rainy'), (clean_dirs, 'clean')):
        if len(dirs) > 1:
            raise DataError('{} has several {} subfolders ({}); keep only one of them'
                            .format(folder, side, ', '.join(d + '/' for d in dirs)))

    found = []  # (layout, pairs, ignored image names)
    if rain_dirs and clean_dirs:
        pairs, many_to_one = _match_subfolders(folder, rain_dirs[0], clean_dirs[0])
        if many_to_one:
            layout = 'Rain1400 many-to-one {}/N_K -> {}/N'.format(rain_dirs[0], clean_dirs[0])
        else:
            layout = 'paired subfolders {}/ + {}/'.format(rain_dirs[0], clean_dirs[0])
        found.append((layout, pairs, []))
    rain, clean, ignored = _match_flat(folder, images, _CANONICAL_RE, True)
    if rain or clean:
        pairs = _flat_pairs(folder, rain, clean, ('rain-N', 'norain-N'), allow_missing_gt)
        layout = ('canonical rain-N/norain-N' if clean
                  else 'rain-N images without ground truth')
        found.append((layout, pairs, ignored))
    rain, clean, ignored12 = _match_flat(folder, images, _RAIN12_RE, False)
    if rain or clean:
        pairs = _flat_pairs(folder, rain, clean, ('N_in', 'N_GT'), allow_missing_gt)
        found.append(('Rain12 N_in/N_GT' if clean else 'N_in images without ground truth',
                      pairs, ignored12))
    if len(found) > 1:
        raise DataError('{} mixes several layouts ({}); keep one dataset per folder'
                        .format(folder, '; '.join(f[0] for f in found)))

    if found and rainy_half:
        raise DataError("{} has the layout '{}' but --rainy_half {} asks for side-by-side "
                        'pair images; drop --rainy_half for this folder'
                        .format(folder, found[0][0], rainy_half))
    if not found and rainy_half and images:
        pairs = [Pair(_stem(n), os.path.join(folder, n), os.path.join(folder, n), rainy_half)
                 for n in images]
        found.append(("side-by-side pairs, rainy half '{}'".format(rainy_half), pairs, []))
    if not found and allow_missing_gt:
        if rain_dirs and not clean_dirs:
            sub = os.path.join(folder, rain_dirs[0])
            subimages = [n for n in os.listdir(sub)
                         if _is_image(n) and os.path.isfile(os.path.join(sub, n))]
            pairs = [Pair(_stem(n), os.path.join(sub, n), None, None) for n in subimages]
            layout = 'rainy images in {}/ without ground truth'.format(rain_dirs[0])
        else:
            pairs = [Pair(_stem(n), os.path.join(folder, n), None, None) for n in images]
            layout = 'rainy images without ground truth'
        if pairs:
            found.append((layout, pairs, []))
    if not found:
        raise DataError(_no_pairs_message(folder, entries, rain_dirs, clean_dirs, rainy_half,
                                          allow_missing_gt))

    layout, pairs, ignored = found[0]
    pairs = _unique_names(sorted(pairs, key=lambda p: (natural_key(p.name),
                                                      natural_key(p.rain_path))))
    total = len(pairs)
    if limit:
        pairs = pairs[:limit]
    if verbose:
        what = 'pairs' if pairs[0].clean_path is not None else 'rainy images'
        line = 'Found {} {} in {} (layout: {})'.format(total, what, folder, layout)
        if ignored:
            line += '; ignored {} other image(s): {}'.format(len(ignored), _listing(ignored))
        if limit and limit < total:
            line += '; using the first {}'.format(limit)
        print(line)
        if limit and limit > total:
            print('note: asked for {}, found {} in {}; using all {}'
                  .format(limit, total, folder, total))
    return pairs, layout


def _unique_names(pairs):
    """Make names unique (e.g. '1.jpg' and '1.png' of a GT-less folder): append the extension."""
    counts = collections.Counter(p.name for p in pairs)
    if all(c == 1 for c in counts.values()):
        return pairs
    return [p._replace(name=p.name + '_' + os.path.splitext(p.rain_path)[1].lstrip('.').lower())
            if counts[p.name] > 1 else p for p in pairs]


def _no_pairs_message(folder, entries, rain_dirs, clean_dirs, rainy_half, allow_missing_gt):
    files = [n for n in entries if not os.path.isdir(os.path.join(folder, n))]
    dirs = [n + '/' for n in entries if os.path.isdir(os.path.join(folder, n))]
    if not entries:
        seen = 'the folder is empty'
    else:
        seen = 'saw {} file(s){}'.format(len(files), ': ' + _listing(files) if files else '')
        if dirs:
            seen += ' and {} folder(s): {}'.format(len(dirs), _listing(dirs))
    tried = _LAYOUTS_TRIED + (", side-by-side ('{}' half rainy)".format(rainy_half)
                              if rainy_half else '')
    if rain_dirs and not clean_dirs:
        hint = ('{}/ has no clean partner folder; add one named {}'
                .format(rain_dirs[0], '|'.join(CLEAN_DIR_NAMES)))
    elif clean_dirs and not rain_dirs:
        hint = ('{}/ has no rainy partner folder; add one named {}'
                .format(clean_dirs[0], '|'.join(RAIN_DIR_NAMES)))
    elif allow_missing_gt:
        hint = 'put the images (extensions {}) in this folder'.format(' '.join(IMAGE_EXTENSIONS))
    else:
        hint = ('arrange the images in one of these layouts (side-by-side files need '
                '--rainy_half; rainy photos without ground truth can be derained with --input)')
    return 'no image pairs found in {}: tried {}; {}; {}'.format(folder, tried, seen, hint)


# ----------------------------------------------------------------------------------------------
# Reading images

def _decode(path):
    """Decode an image as stored: (HxWx3 array of uint8/uint16/float32, BGR; scale).

    Dividing by ``scale`` maps the values to [0, 1]. Conversions are reported once per kind.
    """
    if not os.path.isfile(path):
        raise DataError('image {} does not exist; restore it or remove it from the dataset'
                        .format(path))
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (cv2.error, OSError, ValueError):
        image = None
    if image is None or image.size == 0:
        raise DataError('cannot read image {} (unreadable or corrupt file); replace it or '
                        'remove it from the dataset'.format(path))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (2, 4):
        _warn_once('alpha', '{}: alpha channel dropped (further images with alpha are not '
                            'reported)'.format(path))
        image = image[:, :, :3] if image.shape[2] == 4 else image[:, :, 0]
    if image.ndim == 2:
        _warn_once('gray', '{}: grayscale image copied to 3 channels (further grayscale '
                           'images are not reported)'.format(path))
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError('image {} has shape {}, not an RGB/gray image; convert it to 8-bit '
                        'PNG or JPEG'.format(path, image.shape))
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        _warn_once('16bit', '{}: 16-bit image scaled by 1/65535 (further 16-bit images are not '
                            'reported)'.format(path))
        scale = 65535.0
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        scale = 1.0
    else:
        raise DataError('image {} has unsupported sample type {}; convert it to 8-bit PNG or '
                        'JPEG'.format(path, image.dtype))
    return np.ascontiguousarray(image), scale


def _to_float(raw, scale, out=None):
    """Stored samples -> float32 in [0, 1] (the same arithmetic for whole images and crops)."""
    return np.divide(raw, np.float32(scale), out=out, dtype=np.float32, casting='unsafe')


def read_image(path):
    """Read an image file as float32 BGR in [0, 1].

    Args:
      path: image file (any OpenCV format; gray, alpha and 16-bit are converted with a warning).

    Returns:
      float32 array [H, W, 3], BGR channel order, values in [0, 1].

    Raises:
      DataError: missing, unreadable or corrupt file, unsupported sample type.
    """
    raw, scale = _decode(path)
    return _to_float(raw, scale)


def _odd_width_error(pair, width, height):
    return DataError('{} is {}x{}: a side-by-side pair image needs an even width (two equal '
                     'halves); check the file or drop --rainy_half'
                     .format(pair.rain_path, width, height))


def _split_halves(pair, image):
    """Side-by-side image -> (rainy half, clean half) views; the width must be even."""
    width = image.shape[1]
    if width % 2:
        raise _odd_width_error(pair, width, image.shape[0])
    left, right = image[:, :width // 2], image[:, width // 2:]
    return (left, right) if pair.half == 'left' else (right, left)


def _hf_energy(image):
    """Mean absolute Laplacian of the grayscale image (scale-free across dtypes via float)."""
    gray = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_BGR2GRAY)
    return float(np.mean(np.abs(cv2.Laplacian(gray, cv2.CV_32F))))


def _check_halves(pair, rain, clean):
    """Warn once when the half set as clean looks much rainier (sharper) than the rainy half."""
    if 'half' in _WARNED or _HALF_CHECKS[0] >= _MAX_HALF_CHECKS:
        return
    _HALF_CHECKS[0] += 1
    e_rain, e_clean = _hf_energy(rain), _hf_energy(clean)
    if e_clean > _HALF_RATIO * e_rain and e_clean > 0:
        other = 'right' if pair.half == 'left' else 'left'
        _warn_once('half', "{}: the {} half (used as clean) has {:.1f}x the high-frequency "
                           "energy of the {} half (used as rainy); rain adds fine streaks, so "
                           "check --rainy_half (now '{}')"
                   .format(pair.rain_path, other, e_clean / max(e_rain, 1e-12), pair.half,
                           pair.half))


def _size_error(pair, rain, clean):
    return DataError("size mismatch in pair '{}': {} is {}x{} but {} is {}x{}; rain and clean "
                     'images must be aligned and of the same size'
                     .format(pair.name, pair.rain_path, rain[1], rain[0], pair.clean_path,
                             clean[1], clean[0]))


def _load_raw_pair(pair, decode=_decode, check_half=True):
    """(rain raw, rain scale, clean raw or None, clean scale or None) of a pair, sizes checked."""
    if pair.half is not None:
        image, scale = decode(pair.rain_path)
        rain, clean = _split_halves(pair, image)
        if check_half:
            _check_halves(pair, rain, clean)
        return rain, scale, clean, scale
    rain, rain_scale = decode(pair.rain_path)
    if pair.clean_path is None:
        return rain, rain_scale, None, None
    clean, clean_scale = decode(pair.clean_path)
    if rain.shape[:2] != clean.shape[:2]:
        raise _size_error(pair, rain.shape, clean.shape)
    return rain, rain_scale, clean, clean_scale


def load_pair(pair):
    """Read a pair as float32 BGR images in [0, 1].

    Args:
      pair: a Pair (side-by-side files are split; the half setting is checked).

    Returns:
      (rain [H, W, 3], clean [H, W, 3] or None when the pair has no ground truth).

    Raises:
      DataError: unreadable file, sizes differ, odd width of a side-by-side image.
    """
    rain, rain_scale, clean, clean_scale = _load_raw_pair(pair)
    return (_to_float(rain, rain_scale),
            None if clean is None else _to_float(clean, clean_scale))


# ----------------------------------------------------------------------------------------------
# Training crops and batches

def random_crop(rain, clean, patch_size, rng, flip=False):
    """The same random square crop of a rain and a clean image.

    Every offset 0..H-P (rows) and 0..W-P (columns) is reachable; an image exactly the patch
    size gives the whole image. Draws three uniform numbers from ``rng`` (row, column, flip
    coin), so a seeded rng gives a deterministic sequence.

    Args:
      rain: [H, W, C] array.
      clean: [H, W, C] array of the same H, W, or None.
      patch_size: P, side of the crop.
      rng: numpy.random.Generator.
      flip: mirror both crops horizontally with probability 1/2.

    Returns:
      (rain_patch [P, P, C], clean_patch [P, P, C] or None): views of the inputs.

    Raises:
      ValueError: the image is smaller than P or the two sizes differ.
    """
    return crop_at(rain, clean, patch_size, rng.random(3), flip)


def crop_at(rain, clean, patch_size, draws, flip=False):
    """The crop of ``random_crop`` for given uniform draws ``(u_row, u_col, u_flip)`` in [0, 1).

    The row offset is floor(u_row * (H - P + 1)), i.e. uniform over 0..H-P; likewise columns;
    the crops are mirrored when ``flip`` and u_flip < 0.5.
    """
    height, width = rain.shape[:2]
    if clean is not None and clean.shape[:2] != (height, width):
        raise ValueError('rain %s and clean %s sizes differ' % (rain.shape, clean.shape))
    if height < patch_size or width < patch_size:
        raise ValueError('image %dx%d is smaller than the patch size %d'
                         % (width, height, patch_size))
    top = min(int(draws[0] * (height - patch_size + 1)), height - patch_size)
    left = min(int(draws[1] * (width - patch_size + 1)), width - patch_size)
    rain = rain[top:top + patch_size, left:left + patch_size]
    if clean is not None:
        clean = clean[top:top + patch_size, left:left + patch_size]
    if flip and draws[2] < 0.5:
        rain = rain[:, ::-1]
        clean = None if clean is None else clean[:, ::-1]
    return rain, clean


def image_size(path):
    """(height, width, bytes per sample) from the file header of PNG/JPEG/BMP, else None.

    Used to budget memory and validate sizes without decoding. Never raises.
    """
    try:
        with open(path, 'rb') as handle:
            head = handle.read(32)
            if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
                width, height = struct.unpack('>II', head[16:24])
                return height, width, 2 if head[24] == 16 else 1
            if head[:2] == b'BM' and len(head) >= 26:
                width, height = struct.unpack('<ii', head[18:26])
                return abs(height), width, 1
            if head[:2] == b'\xff\xd8':
                handle.seek(2)
                while True:
                    marker = handle.read(2)
                    if len(marker) < 2 or marker[0] != 0xFF:
                        return None
                    while marker[1] == 0xFF:  # fill bytes
                        marker = marker[1:] + handle.read(1)
                    code = marker[1]
                    if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
                        continue
                    length = struct.unpack('>H', handle.read(2))[0]
                    if code in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB,
                                0xCD, 0xCE, 0xCF):
                        precision, height, width = struct.unpack('>BHH', handle.read(5))
                        return height, width, 2 if precision > 8 else 1
                    handle.seek(length - 2, os.SEEK_CUR)
    except (OSError, struct.error, IndexError):
        return None
    return None


class _Failure(object):
    """An exception raised in the worker thread, handed to the consumer through the queue."""

    def __init__(self, exc):
        self.exc = exc


class TrainBatcher(object):
    """Random training batches produced by a background daemon thread.

    Each batch holds ``batch_size`` crops, each from a uniformly drawn training pair, the same
    crop in the rain and the clean image, optionally mirrored. Images are decoded once and kept
    in memory (in their stored dtype) when the set fits ``memory_budget_mb``. Otherwise images
    are read from disk when a crop needs them (decoded in parallel threads; as many as fit the
    budget are kept after their first use). With ``seed`` given the batch sequence is
    deterministic and identical in both modes: per batch the worker draws the B pair indices,
    then B x 3 uniform numbers (row, column, flip; see ``crop_at``).

    Attributes:
      wait_seconds: total time next_batch spent blocked waiting for the worker.
      batches_served: number of batches returned by next_batch.
      in_memory: whether the whole decoded set is held in memory.
      nbytes: bytes of decoded images held in memory.
    """

    def __init__(self, pairs, patch_size, batch_size, flip=False, seed=None,
                 memory_budget_mb=2048, prefetch=8, verbose=True, decode_threads=None):
        """Validate and (when it fits) decode the training set, then start the worker.

        Args:
          pairs: list of Pair with ground truth.
          patch_size: side P of the square crops.
          batch_size: crops per batch B.
          flip: random horizontal flips (off in the paper).
          seed: int seed of the crop sampler, or None for a random one.
          memory_budget_mb: keep the decoded images in memory when they need at most this many
            MB (stored dtype: 1 byte per sample for 8-bit images); 0 = always read from disk.
          prefetch: number of ready batches the queue holds.
          verbose: print the mode and show a progress bar while decoding.
          decode_threads: threads decoding images (default min(8, CPU count)).

        Raises:
          DataError: no pairs, pairs without ground truth, unreadable images, size mismatches,
            images smaller than the patch.
        """
        if patch_size < 1 or batch_size < 1 or prefetch < 1:
            raise ValueError('patch_size, batch_size and prefetch must be >= 1')
        self.pairs = list(pairs)
        if not self.pairs:
            raise DataError('no training pairs were given; check the training folder')
        for pair in self.pairs:
            if pair.clean_path is None:
                raise DataError('training needs ground truth but {} has no clean partner; use a '
                                'folder of rain/clean pairs for training'.format(pair.rain_path))
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.seed = seed
        self.wait_seconds = 0.0
        self.batches_served = 0
        self.nbytes = 0
        self.in_memory = False
        self._verbose = verbose
        self._budget = max(float(memory_budget_mb), 0.0) * 2 ** 20
        self._decoded = {}        # path -> (raw, scale); filled up to the budget
        self._lock = threading.Lock()
        self._entries = None      # raw pair entries when the whole set is in memory
        self._error = None
        self._closed = False
        self._pool = ThreadPoolExecutor(decode_threads or min(8, os.cpu_count() or 1),
                                        thread_name_prefix='TrainBatcher-decode')
        try:
            estimate = self._estimate_bytes()
            if estimate <= self._budget:
                self._decode_all()
            else:
                self._validate_headers()
                if verbose:
                    print('Training set: {} pairs, ~{:.0f} MB decoded > memory budget {:.0f} '
                          'MB: reading images from disk when needed (slower)'
                          .format(len(self.pairs), estimate / 2 ** 20, self._budget / 2 ** 20))
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        if self.in_memory:
            self._pool.shutdown(wait=False)
            self._pool = None

        self._queue = queue.Queue(maxsize=int(prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='TrainBatcher', daemon=True)
        self._thread.start()

    # -- set-up ------------------------------------------------------------------------------

    def _paths(self):
        """Unique files to decode (Rain1400 ground truths and side-by-side files count once)."""
        paths = collections.OrderedDict()
        for pair in self.pairs:
            paths[pair.rain_path] = None
            paths[pair.clean_path] = None
        return list(paths)

    def _estimate_bytes(self):
        """Bytes the decoded set needs (headers; unknown formats estimated from known ones)."""
        sizes = [image_size(p) for p in self._paths()]
        known = [h * w * 3 * b for h, w, b in (s for s in sizes if s)]
        unknown = sum(1 for s in sizes if s is None)
        if unknown and not known:
            raw, _ = _decode(self._paths()[0])
            known = [raw.nbytes]
        mean = sum(known) / float(len(known))
        return sum(known) + unknown * mean

    def _decode_cached(self, path):
        """Decode ``path`` once; keep it while the memory budget allows. Thread-safe."""
        hit = self._decoded.get(path)
        if hit is not None:
            return hit
        entry = _decode(path)
        with self._lock:
            if path not in self._decoded and self.nbytes + entry[0].nbytes <= self._budget:
                self._decoded[path] = entry
                self.nbytes += entry[0].nbytes
        return entry

    def _load_entry(self, index, check_half=False):
        """(rain raw, rain scale, clean raw, clean scale) of pair ``index``, validated."""
        pair = self.pairs[index]
        entry = _load_raw_pair(pair, decode=self._decode_cached, check_half=check_half)
        self._check_patch(pair, entry[0].shape)
        return entry

    def _decode_all(self):
        """Decode and validate every pair (in parallel); in memory if all fit the budget."""
        entries = list(tqdm(self._pool.map(lambda i: self._load_entry(i, check_half=True),
                                           range(len(self.pairs))),
                            total=len(self.pairs), desc='Decoding training images',
                            unit='pair', disable=not self._verbose, leave=False))
        self.in_memory = all(p in self._decoded for p in self._paths())
        if self.in_memory:
            self._entries = entries
        if self._verbose:
            if self.in_memory:
                print('Training set: {} pairs, {:.0f} MB decoded, kept in memory'
                      .format(len(self.pairs), self.nbytes / 2 ** 20))
            else:
                print('Training set: {} pairs exceed the memory budget {:.0f} MB: keeping '
                      '{:.0f} MB in memory, reading the rest from disk when needed (slower)'
                      .format(len(self.pairs), self._budget / 2 ** 20, self.nbytes / 2 ** 20))

    def _check_patch(self, pair, shape):
        height, width = shape[:2]
        if height < self.patch_size or width < self.patch_size:
            what = ('the {} half of {}'.format(pair.half, pair.rain_path) if pair.half
                    else pair.rain_path)
            raise DataError('{} is {}x{}, smaller than the training patch {}x{}; remove it from '
                            'the training set or use a smaller --patch_size'
                            .format(what, width, height, self.patch_size, self.patch_size))

    def _validate_headers(self):
        """Lazy mode: check sizes from file headers where the format allows it."""
        for pair in self.pairs:
            rain = image_size(pair.rain_path)
            if rain is None:
                continue
            if pair.half is not None:
                if rain[1] % 2:
                    raise _odd_width_error(pair, rain[1], rain[0])
                self._check_patch(pair, (rain[0], rain[1] // 2))
                continue
            clean = image_size(pair.clean_path)
            if clean is not None and clean[:2] != rain[:2]:
                raise _size_error(pair, rain, clean)
            self._check_patch(pair, rain)

    # -- worker ------------------------------------------------------------------------------

    def _make_batch(self, rng):
        indices = rng.integers(len(self.pairs), size=self.batch_size)
        draws = rng.random((self.batch_size, 3))
        if self._entries is not None:
            entries = self._entries
        else:
            wanted = sorted(set(int(i) for i in indices))
            entries = dict(zip(wanted, self._pool.map(self._load_entry, wanted)))
        shape = (self.batch_size, self.patch_size, self.patch_size, 3)
        rain_batch = np.empty(shape, np.float32)
        clean_batch = np.empty(shape, np.float32)
        for i, index in enumerate(indices):
            rain, rain_scale, clean, clean_scale = entries[int(index)]
            rain, clean = crop_at(rain, clean, self.patch_size, draws[i], self.flip)
            _to_float(rain, rain_scale, out=rain_batch[i])
            _to_float(clean, clean_scale, out=clean_batch[i])
        return rain_batch, clean_batch

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self):
        rng = np.random.default_rng(self.seed)  # owned by this thread only
        try:
            while not self._stop.is_set():
                self._put(self._make_batch(rng))
        except BaseException as exc:  # handed to the consumer, re-raised in next_batch
            self._put(_Failure(exc))

    # -- consumer ----------------------------------------------------------------------------

    def next_batch(self):
        """The next batch.

        Returns:
          (rain, clean): float32 arrays [B, P, P, 3], BGR, values in [0, 1].

        Raises:
          The worker's exception (e.g. DataError for a corrupt file read lazily);
          RuntimeError after close().
        """
        if self._closed:
            raise RuntimeError('TrainBatcher is closed')
        if self._error is not None:
            raise self._error
        start = time.perf_counter()
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    self._error = RuntimeError('the TrainBatcher worker thread stopped')
                    raise self._error
        self.wait_seconds += time.perf_counter() - start
        if isinstance(item, _Failure):
            self._error = item.exc
            raise item.exc
        self.batches_served += 1
        return item

    def close(self):
        """Stop the worker thread and the decode threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def alive(self):
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
