"""Image decoding: files -> float32 BGR arrays in [0, 1], pairs split and checked.

Images are float32 HxWx3 in [0, 1], BGR channel order (as ``cv2.imread`` gives them).
Grayscale images are copied to 3 channels, alpha is dropped and 16-bit images are scaled by
1/65535; each conversion is reported once per process with the first file named.
Side-by-side pair images (Rain800, Rain1200) are split into their halves here; a
high-frequency heuristic warns once when the rainy-half setting looks swapped.

``decode`` keeps the stored sample type (a uint8 image costs 1 byte per sample) so that
``batching.TrainBatcher`` can hold a training set compactly; ``to_float`` converts later.
``image_size`` reads the size from the file header without decoding (the batcher's memory
estimate and its up-front checks for sets read lazily from disk); ``check_pairs`` checks
that every file of a set is readable and is an image before any work starts.

Photos are decoded as viewers show them: the EXIF orientation of a phone photo is applied
(OpenCV does it unless asked for the file "unchanged"), so outputs are upright.
``write_image`` encodes with OpenCV and writes with Python's file I/O, atomically, so any
file name works (OpenCV's own writer crashes on names that are not valid UTF-8) and a
failed write raises an ``OSError`` with its cause (e.g. a full disk); ``atomic_write`` does
the same for text files (results.json, results.csv, index.html).
"""
import contextlib
import os
import struct
import threading
import warnings

import cv2
import numpy as np

from loading.discovery import DataError

_HALF_RATIO = 1.3       # clean half this much "sharper" than the rainy half -> looks swapped
_MAX_HALF_CHECKS = 32   # side-by-side images the heuristic looks at (the first ones)
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
# Any depth (8/16-bit, float) and 1 or 3 channels (alpha dropped), with the EXIF orientation
# applied; IMREAD_UNCHANGED would keep alpha but ignore the orientation.
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
# The first bytes of the formats of IMAGE_EXTENSIONS (TIFF both byte orders; WebP at 8).
_SIGNATURES = ((0, b'\x89PNG\r\n\x1a\n'), (0, b'\xff\xd8\xff'), (0, b'BM'), (0, b'II*\x00'),
               (0, b'MM\x00*'), (8, b'WEBP'), (0, b'P1'), (0, b'P2'), (0, b'P3'), (0, b'P4'),
               (0, b'P5'), (0, b'P6'), (0, b'P7'))
_PNG_ALPHA_TYPES = (4, 6)      # gray + alpha, RGBA (IHDR colour type)


class DataWarning(UserWarning):
    """An image was converted on load (grayscale, alpha, 16-bit) or a setting looks wrong.

    The CLI shows it as one ``note:`` line, without Python's file and source line
    (``cli_note``; ``quiet.setup``)."""
    cli_note = True


_WARNED = set()        # kinds of DataWarning already reported in this process
_HALF_CHECKS = [0]     # side-by-side images checked so far (the heuristic looks at the first)
_WARN_LOCK = threading.Lock()  # images may be decoded in several threads


def reset_warnings():
    """Forget which conversions were reported (tests; a new dataset in the same process)."""
    with _WARN_LOCK:
        _WARNED.clear()
        _HALF_CHECKS[0] = 0


def _warn_once(kind, message):
    """Issue ``message`` as a DataWarning the first time ``kind`` is seen in this process."""
    with _WARN_LOCK:
        if kind in _WARNED:
            return
        _WARNED.add(kind)
    warnings.warn(message, DataWarning, stacklevel=3)


def _first_half_checks():
    """Whether the swapped-halves heuristic still runs (counts the check when it does)."""
    with _WARN_LOCK:
        if 'half' in _WARNED or _HALF_CHECKS[0] >= _MAX_HALF_CHECKS:
            return False
        _HALF_CHECKS[0] += 1
        return True


def _read_oriented(path):
    """The image as a viewer shows it (``_DECODE_FLAGS``) and whether the file had alpha.

    Raises:
      DataError: missing, unreadable or corrupt file.
    """
    if not os.path.isfile(path):
        raise DataError('image {} does not exist; restore it or remove it from the dataset'
                        .format(path))
    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for non-ASCII paths
        image = cv2.imdecode(data, _DECODE_FLAGS) if data.size else None
    except (cv2.error, OSError, ValueError):
        image, data = None, None
    if image is None or image.size == 0:
        raise DataError('cannot read image {} (unreadable or corrupt file); replace it or '
                        'remove it'.format(path))
    header = bytes(data[:26])
    alpha = header[:8] == _SIGNATURES[0][1] and header[25:26] and header[25] in _PNG_ALPHA_TYPES
    return image, bool(alpha)


def _three_channels(path, image, alpha=False):
    """Copy gray to 3 channels, note a dropped alpha (each reported once); DataError for other
    shapes."""
    if alpha:
        _warn_once('alpha', '{}: alpha channel dropped (further images with alpha are not '
                            'reported)'.format(path))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[:, :, :3] if image.shape[2] == 4 else image[:, :, 0]
    if image.ndim == 2:
        _warn_once('gray', '{}: grayscale image copied to 3 channels (further grayscale '
                           'images are not reported)'.format(path))
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError('image {} has shape {}, not an RGB/gray image; convert it to 8-bit '
                        'PNG or JPEG'.format(path, image.shape))
    return image


def decode(path):
    """Decode an image as stored (in its EXIF orientation), in 3 channels.

    Args:
      path: image file (any OpenCV format).

    Returns:
      (raw, scale): raw is an [H, W, 3] BGR array of uint8, uint16 or float32 (clipped to
      [0, 1]); dividing by ``scale`` (255, 65535 or 1) maps it to [0, 1].

    Raises:
      DataError: missing, unreadable or corrupt file, unsupported shape or sample type.
    """
    image = _three_channels(path, *_read_oriented(path))
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        _warn_once('16bit', '{}: 16-bit image scaled by 1/65535 (further 16-bit images are '
                            'not reported)'.format(path))
        scale = 65535.0
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        scale = 1.0
    else:
        raise DataError('image {} has unsupported sample type {}; convert it to 8-bit PNG or '
                        'JPEG'.format(path, image.dtype))
    return np.ascontiguousarray(image), scale


def to_float(raw, scale, out=None):
    """Stored samples -> float32 in [0, 1] (the same arithmetic for whole images and crops).

    Args:
      raw: array of any shape from ``decode`` (or a crop of it).
      scale: its scale from ``decode``.
      out: optional float32 array of raw's shape to write into.

    Returns:
      float32 array raw / scale (``out`` when given).
    """
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
    raw, scale = decode(path)
    return to_float(raw, scale)


def _odd_width_error(pair, width, height):
    return DataError('{} is {}x{}: a side-by-side pair image needs an even width (two equal '
                     'halves); check the file or drop --rainy_half'
                     .format(pair.rain_path, width, height))


def _size_error(pair, rain, clean):
    return DataError("size mismatch in pair '{}': {} is {}x{} but {} is {}x{}; rain and clean "
                     'images must be aligned and of the same size'
                     .format(pair.name, pair.rain_path, rain[1], rain[0], pair.clean_path,
                             clean[1], clean[0]))


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
    if not _first_half_checks():
        return
    e_rain, e_clean = _hf_energy(rain), _hf_energy(clean)
    if e_clean > _HALF_RATIO * e_rain and e_clean > 0:
        other = 'right' if pair.half == 'left' else 'left'
        _warn_once('half', "{}: the {} half (used as clean) has {:.1f}x the high-frequency "
                           "energy of the {} half (used as rainy); rain adds fine streaks, so "
                           "check --rainy_half (now '{}')"
                   .format(pair.rain_path, other, e_clean / max(e_rain, 1e-12), pair.half,
                           pair.half))


def load_raw_pair(pair, decode_fn=None, check_half=True):
    """A pair as stored (see ``decode``), split and with its sizes checked.

    Args:
      pair: a ``discovery.Pair``.
      decode_fn: the decoder, ``decode`` by default (the batcher passes a caching one).
      check_half: run the swapped-halves heuristic on side-by-side images.

    Returns:
      (rain raw, rain scale, clean raw or None, clean scale or None).

    Raises:
      DataError: unreadable file, sizes differ, odd width of a side-by-side image.
    """
    decode_fn = decode_fn or decode
    if pair.half is not None:
        image, scale = decode_fn(pair.rain_path)
        rain, clean = _split_halves(pair, image)
        if check_half:
            _check_halves(pair, rain, clean)
        return rain, scale, clean, scale
    rain, rain_scale = decode_fn(pair.rain_path)
    if pair.clean_path is None:
        return rain, rain_scale, None, None
    clean, clean_scale = decode_fn(pair.clean_path)
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
    rain, rain_scale, clean, clean_scale = load_raw_pair(pair)
    return (to_float(rain, rain_scale),
            None if clean is None else to_float(clean, clean_scale))


def _jpeg_size(handle):
    """(height, width, bytes per sample) from the JPEG frame header after SOI, else None."""
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
        if code in _JPEG_FRAMES:
            precision, height, width = struct.unpack('>BHH', handle.read(5))
            return height, width, 2 if precision > 8 else 1
        handle.seek(length - 2, os.SEEK_CUR)


def image_size(path):
    """The image size from the file header of PNG/JPEG/BMP, without decoding. Never raises.

    Args:
      path: image file.

    Returns:
      (height, width, bytes per sample), or None for other formats and unreadable headers.
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
                return _jpeg_size(handle)
    except (OSError, struct.error, IndexError):
        return None
    return None


def pair_size(pair):
    """Size of a pair's rainy image from the file headers, both sides checked; no decoding.

    Args:
      pair: a ``discovery.Pair``.

    Returns:
      (height, width) of the rainy image (of its half for side-by-side images), or None when
      the header of its format cannot be read.

    Raises:
      DataError: odd width of a side-by-side image, rain and clean sizes differ.
    """
    rain = image_size(pair.rain_path)
    if rain is None:
        return None
    if pair.half is not None:
        if rain[1] % 2:
            raise _odd_width_error(pair, rain[1], rain[0])
        return rain[0], rain[1] // 2
    clean = None if pair.clean_path is None else image_size(pair.clean_path)
    if clean is not None and clean[:2] != rain[:2]:
        raise _size_error(pair, rain, clean)
    return rain[:2]


def check_file(path):
    """Check that ``path`` can be opened and starts like an image, without decoding it.

    Args:
      path: image file.

    Raises:
      DataError: unreadable, or not one of the formats of ``discovery.IMAGE_EXTENSIONS``.
    """
    try:
        with open(path, 'rb') as handle:
            head = handle.read(16)
    except OSError as exc:
        raise DataError('cannot read {} ({}); check its permissions or remove it'
                        .format(path, exc.strerror or exc))
    if not any(head[at:at + len(magic)] == magic for at, magic in _SIGNATURES):
        raise DataError('{} is not an image (not PNG, JPEG, BMP, TIFF, WebP or PPM/PGM '
                        'inside{}); replace it or remove it'
                        .format(path, ', it is empty' if not head else ''))


def check_pairs(pairs):
    """Check every file of ``pairs`` (readable, an image, pair sizes) before work starts.

    Args:
      pairs: list of ``discovery.Pair``.

    Raises:
      DataError naming the first bad file.
    """
    for pair in pairs:
        for path in {pair.rain_path, pair.clean_path} - {None}:
            check_file(path)
        pair_size(pair)


def atomic_write(path, write, binary=False):
    """Write a file through a temporary name, so a failed write never leaves half a file.

    Args:
      path: the file (any name Python can open).
      write: callable ``write(handle)`` filling the open file.
      binary: open in binary mode; else text, UTF-8, characters that cannot be encoded
        written as backslash escapes, no newline translation (what ``csv`` wants).

    Raises:
      OSError of the failed step (e.g. ENOSPC) naming ``path``, the temporary file removed.
    """
    tmp = path + '.tmp'
    text = {} if binary else {'encoding': 'utf-8', 'errors': 'backslashreplace', 'newline': ''}
    try:
        with open(tmp, 'wb' if binary else 'w', **text) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, path) from exc  # the file, not tmp or none
        raise


def write_image(path, image, params=()):
    """Encode ``image`` in the format of ``path``'s extension and write it atomically.

    Args:
      path: output file ('.png', '.jpg', ...); any name, also one that is not valid UTF-8.
      image: uint8 (or uint16 for PNG) [H, W, 3] BGR array.
      params: OpenCV encoder parameters, e.g. ``(cv2.IMWRITE_JPEG_QUALITY, 90)``.

    Returns:
      ``path``.

    Raises:
      OSError when the file cannot be written; ValueError when OpenCV cannot encode it.
    """
    extension = os.path.splitext(path)[1] or '.png'
    ok, encoded = cv2.imencode(extension, image, list(params))
    if not ok:
        raise ValueError('OpenCV cannot encode an image as %s' % extension)
    atomic_write(path, lambda handle: handle.write(encoded.tobytes()), binary=True)
    return path
