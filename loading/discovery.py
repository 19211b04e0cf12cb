"""Dataset discovery: the (rainy, clean) pairs of a folder in the layouts authors published.

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
  ``rainy_half='left'|'right'`` (split and checked when the image is read, see ``images``);
- rainy images without ground truth (real-world photos), for testing only
  (``allow_missing_gt=True``): pairs with ``clean_path=None``.

``--input FOLDER`` is not a dataset: ``folder_images`` takes every image directly in the
folder as it is (no layout, names never interpreted, subfolders not searched).

Also home of what the data modules share: ``DataError`` (every user-facing problem, one line
naming the path and what to do), ``IMAGE_EXTENSIONS`` and ``natural_key`` (``synthesize.py``
lists clean photos with both).
"""
import collections
import os
import re

from console.errors import UserError

# File endings taken for images (OpenCV reads them all); synthesize.py lists photos with it.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')

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
_SHOW = 3  # how many file names an error message lists


class DataError(UserError):
    """A problem with the user's data; the message is one line naming the path and the fix."""


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


def _id_key(stem):
    """Stem with every digit run read as a number: 'norain-001' and 'norain-1' are equal."""
    parts = re.split(r'(\d+)', stem)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def natural_key(name):
    """Sort key putting numbers in numeric order: 'rain-2' < 'rain-10', '901_3' < '901_12'.

    Args:
      name: a file name or path.

    Returns:
      A tuple; names equal but for case or zero padding are ordered by the name itself.
    """
    return _id_key(name) + (name,)


def _is_image(name):
    return not name.startswith('.') and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def image_names(folder, names=None):
    """The image files directly in ``folder`` (hidden files left out), in natural order.

    Args:
      folder: the folder.
      names: its listing when already read (default: ``os.listdir(folder)``).

    Returns:
      list of file names (not paths) ending in one of ``IMAGE_EXTENSIONS`` (any case).
    """
    names = os.listdir(folder) if names is None else names
    return sorted((n for n in names if _is_image(n) and os.path.isfile(os.path.join(folder, n))),
                  key=natural_key)


def _stem(name):
    return os.path.splitext(name)[0]


def _listing(names, limit=_SHOW):
    """'a.png, b.png, c.png (and 5 more)'."""
    names = list(names)
    text = ', '.join(names[:limit])
    if len(names) > limit:
        text += ' (and {} more)'.format(len(names) - limit)
    return text


def _missing_partners(names, has, folder, lacks, fix, partner_folder=None):
    """DataError naming the ``has`` images in ``folder`` that lack a ``lacks`` partner."""
    where = ' in {}'.format(partner_folder) if partner_folder else ''
    return DataError('{} {} image(s) in {} have no {} partner{}: {}; add the missing {} images '
                     'or remove these'.format(len(names), has, folder, lacks, where,
                                              _listing(names), fix))


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


def _partner(stem, by_stem, by_id):
    """(clean partner name or None, whether Rain1400 naming N_K -> N found it)."""
    partner = by_stem.get(stem) or by_id.get(_id_key(stem))
    match = None if partner else _MANY_TO_ONE_RE.match(stem)
    if match:
        base = match.group(1)
        partner = by_stem.get(base) or by_id.get(_id_key(base))
        return partner, partner is not None
    return partner, False


def _match_subfolders(folder, rain_dir, clean_dir):
    """Pair the images of two subfolders (equal names, numeric ids, or Rain1400 N_K -> N).

    Returns:
      (pairs, many_to_one): many_to_one tells whether Rain1400 naming (N_K -> N) was used.
    """
    rain_root = os.path.join(folder, rain_dir)
    clean_root = os.path.join(folder, clean_dir)
    rain_names, clean_names = image_names(rain_root), image_names(clean_root)
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
        partner, via_base = _partner(_stem(name), by_stem, by_id)
        many_to_one = many_to_one or via_base
        if partner is None:
            unmatched.append(name)
            continue
        used.add(partner)
        pairs.append(Pair(_stem(name), os.path.join(rain_root, name),
                          os.path.join(clean_root, partner), None))
    if unmatched:
        raise _missing_partners(unmatched, 'rainy', rain_root, 'clean', 'clean', clean_root)
    orphans = sorted(set(clean_names) - used, key=natural_key)
    if orphans:
        raise _missing_partners(orphans, 'clean', clean_root, 'rainy', 'rainy', rain_root)
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
    if missing_clean:
        raise _missing_partners(missing_clean, describe[0], folder, describe[1], 'clean')
    missing_rain = [clean[i] for i in sorted(clean) if i not in rain]
    if missing_rain:
        raise _missing_partners(missing_rain, describe[1], folder, describe[0], 'rainy')
    return [Pair(_stem(rain[i]), os.path.join(folder, rain[i]), os.path.join(folder, clean[i]),
                 None) for i in sorted(rain)]


def _subdirs(folder, wanted):
    names = [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))]
    return sorted(n for n in names if n.lower() in wanted)


def _list_folder(folder):
    """All entries of an existing dataset folder in natural order (DataError otherwise)."""
    if not os.path.exists(folder):
        raise DataError('{} does not exist; put the dataset there or pass another folder'
                        .format(folder))
    if not os.path.isdir(folder):
        raise DataError('{} is not a folder; pass the folder holding the dataset'
                        .format(folder))
    try:
        return sorted(os.listdir(folder), key=natural_key)
    except OSError as exc:
        raise DataError('cannot list {} ({}); check its permissions'
                        .format(folder, exc.strerror or exc))


def _paired_layouts(folder, images, rain_dirs, clean_dirs, allow_missing_gt):
    """Every layout with ground truth found in ``folder``: [(layout, pairs, ignored names)]."""
    found = []
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
    rain, clean, ignored = _match_flat(folder, images, _RAIN12_RE, False)
    if rain or clean:
        pairs = _flat_pairs(folder, rain, clean, ('N_in', 'N_GT'), allow_missing_gt)
        found.append(('Rain12 N_in/N_GT' if clean else 'N_in images without ground truth',
                      pairs, ignored))
    return found


def _plain_images(folder, images, rain_dirs, clean_dirs, rainy_half, allow_missing_gt):
    """(layout, pairs, []) of side-by-side or GT-less images, or None when neither applies."""
    if rainy_half and images:
        pairs = [Pair(_stem(n), os.path.join(folder, n), os.path.join(folder, n), rainy_half)
                 for n in images]
        return "side-by-side pairs, rainy half '{}'".format(rainy_half), pairs, []
    if not allow_missing_gt:
        return None
    if rain_dirs and not clean_dirs:
        sub = os.path.join(folder, rain_dirs[0])
        pairs = [Pair(_stem(n), os.path.join(sub, n), None, None) for n in image_names(sub)]
        layout = 'rainy images in {}/ without ground truth'.format(rain_dirs[0])
    else:
        pairs = [Pair(_stem(n), os.path.join(folder, n), None, None) for n in images]
        layout = 'rainy images without ground truth'
    return (layout, pairs, []) if pairs else None


def _print_found(folder, layout, pairs, total, ignored, limit):
    """Print "Found N pairs in FOLDER (layout: ...)" and notes on ignored files and limit."""
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
    entries = _list_folder(folder)
    images = image_names(folder, entries)
    rain_dirs = _subdirs(folder, RAIN_DIR_NAMES)
    clean_dirs = _subdirs(folder, CLEAN_DIR_NAMES)
    for dirs, side in ((rain_dirs, 'rainy'), (clean_dirs, 'clean')):
        if len(dirs) > 1:
            raise DataError('{} has several {} subfolders ({}); keep only one of them'
                            .format(folder, side, ', '.join(d + '/' for d in dirs)))
    found = _paired_layouts(folder, images, rain_dirs, clean_dirs, allow_missing_gt)
    if len(found) > 1:
        raise DataError('{} mixes several layouts ({}); keep one dataset per folder'
                        .format(folder, '; '.join(f[0] for f in found)))
    if found and rainy_half:
        raise DataError("{} has the layout '{}' but --rainy_half {} asks for side-by-side "
                        'pair images; drop --rainy_half for this folder'
                        .format(folder, found[0][0], rainy_half))
    if not found:
        found = [_plain_images(folder, images, rain_dirs, clean_dirs, rainy_half,
                               allow_missing_gt)]
    if found[0] is None:
        raise DataError(_no_pairs_message(folder, entries, rain_dirs, clean_dirs, rainy_half,
                                          allow_missing_gt))
    layout, pairs, ignored = found[0]
    pairs = _unique_names(sorted(pairs, key=lambda p: (natural_key(p.name),
                                                      natural_key(p.rain_path))))
    total = len(pairs)
    if limit:
        pairs = pairs[:limit]
    if verbose:
        _print_found(folder, layout, pairs, total, ignored, limit)
    return pairs, layout


def folder_images(folder, verbose=True):
    """Every image directly in ``folder``, as photos to derain (``--input FOLDER``).

    No dataset layout is applied: 'rain-1.jpg' and 'norain-1.jpg' are two photos, and a
    subfolder (even one named 'data/' or 'rain/') is not searched; a note lists the skipped
    subfolders.

    Args:
      folder: an existing folder.
      verbose: print "Found N images in FOLDER" (and the note).

    Returns:
      list of Pair without ground truth (clean_path None), in natural order; names are the
      file stems, made unique with the extension when two files differ only by it.

    Raises:
      DataError: the folder cannot be listed or holds no images.
    """
    entries = _list_folder(folder)
    names = image_names(folder, entries)
    subfolders = [n + '/' for n in entries if os.path.isdir(os.path.join(folder, n))]
    if not names:
        raise DataError('no images in {} (extensions {}){}; pass a folder of photos or one '
                        'photo'.format(folder, ' '.join(IMAGE_EXTENSIONS),
                                       '; subfolders are not searched: ' + _listing(subfolders)
                                       if subfolders else ''))
    pairs = _unique_names([Pair(_stem(n), os.path.join(folder, n), None, None)
                           for n in names])
    if verbose:
        print('Found {} image(s) in {}'.format(len(pairs), folder))
        if subfolders:
            print('note: subfolders are not searched ({}); pass one with --input to derain '
                  'its images'.format(_listing(subfolders)))
    return pairs


def _unique_names(pairs):
    """Make names unique (e.g. '1.jpg' and '1.png' of a GT-less folder): append the extension."""
    counts = collections.Counter(p.name for p in pairs)
    if all(c == 1 for c in counts.values()):
        return pairs
    return [p._replace(name=p.name + '_' + os.path.splitext(p.rain_path)[1].lstrip('.').lower())
            if counts[p.name] > 1 else p for p in pairs]


def _no_pairs_message(folder, entries, rain_dirs, clean_dirs, rainy_half, allow_missing_gt):
    """The one-line DataError text: the layouts tried, what the folder holds, the fix."""
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
