"""Image decoding: files -> float32 BGR arrays in [0, 1], pairs split and checked.

Images are float32 HxWx3 in [0, 1], BGR channel order (as ``cv2.imread`` gives them).
Grayscale images are copied to 3 channels, alpha is dropped and 16-bit images are scaled by
1/65535; each conversion is reported once per process with the first file named.
Side-by-side pair images (Rain800, Rain1200) are split into their halves here; a
high-frequency heuristic warns once when the rainy-half setting looks swapped.

``decode`` keeps the stored sample type (a uint8 image costs 1 byte per sample) so that
``batching.TrainBatcher`` can hold a training set compactly; ``to_float`` converts later.
``image_size`` reads the size from the file header without decoding (the batcher's memory
estimate and its up-front checks for sets read lazily from disk).
"""
import os
import struct
import threading
import warnings

import cv2
import numpy as np

from discovery import DataError

_HALF_RATIO = 1.3       # clean half this much "sharper" than the rainy half -> looks swapped
_MAX_HALF_CHECKS = 32   # side-by-side images the heuristic looks at (the first ones)
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


class DataWarning(UserWarning):
    """An image was converted on load (grayscale, alpha, 16-bit) or a setting looks wrong."""


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


def _read_unchanged(path):
    """The image as stored (any channels and sample type); DataError when missing/corrupt."""
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
    return image


def _three_channels(path, image):
    """Drop alpha, copy gray to 3 channels (each reported once); DataError for other shapes."""
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
    return image


def decode(path):
    """Decode an image as stored, in 3 channels.

    Args:
      path: image file (any OpenCV format).

    Returns:
      (raw, scale): raw is an [H, W, 3] BGR array of uint8, uint16 or float32 (clipped to
      [0, 1]); dividing by ``scale`` (255, 65535 or 1) maps it to [0, 1].

    Raises:
      DataError: missing, unreadable or corrupt file, unsupported shape or sample type.
    """
    image = _three_channels(path, _read_unchanged(path))
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
