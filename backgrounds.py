"""Clean backgrounds that show the same scene: hashing, candidate search, verification.

The audit (``audit.py``) matches backgrounds in two stages (docs/datasets.md has the
measurements):

1. Candidates: ``imagehash.phash`` (64-bit DCT perceptual hash) of each clean image, in all
   8 orientations (rotations and flips); two images are candidates when one orientation of
   the first is at most ``HASH_MAX_DISTANCE`` bits from the second.
2. Verification: the first image is put in the second's orientation and size (grayscale,
   long side ``THUMB_SIDE``), both are band-passed (fine structure only, so two scenes with
   the same layout, e.g. two savanna horizons, do not correlate) and the normalised
   correlation is maximised over shifts of up to ``MAX_SHIFT`` pixels
   (``cv2.matchTemplate``). A score of at least ``MATCH_THRESHOLD`` is a match: the same
   scene even when cropped by a pixel or two, re-encoded, resized, transposed or flipped.

The rain layers (rainy minus clean) of two matched pairs are compared the same way
(``rain_layer``): at least ``SAME_RAIN_THRESHOLD`` means the same rain too.
"""
import collections
import functools

import cv2
import imagehash
import numpy as np
from PIL import Image

import gallery
import images

HASH_MAX_DISTANCE = 12    # bits of 64: candidates (same scene: <= 8 measured; others: >= 14)
MATCH_THRESHOLD = 0.6     # band-pass correlation: same scene >= 0.94, others <= 0.32 measured
SAME_RAIN_THRESHOLD = 0.8  # rain layers (rainy - clean) correlating this well: the same rain
THUMB_SIDE = 128          # long side of the grayscale images compared in stage 2
RAIN_SIDE = 256           # long side of the rain layers compared (streaks are thin)
MAX_SHIFT = 3             # pixels of THUMB_SIDE searched in each direction (~11 px at 480)
MAX_LOG_ASPECT = 0.1      # aspect ratios further apart than this (log) never match

# The 8 orientations (dihedral group): k rotations by 90 degrees counter-clockwise
# (np.rot90), then a left-right flip when k >= 4.
TRANSFORMS = ('as is', 'rotated 90 ccw', 'rotated 180', 'rotated 90 cw', 'flipped left-right',
              'transposed (anti-diagonal)', 'flipped upside down', 'transposed')

Background = collections.namedtuple('Background', ['path', 'half', 'pairs', 'hashes', 'thumb'])
Background.__doc__ = """One clean image of a set (several pairs may share the file).

path: the image file.
half: None, or 'left'/'right': the clean half of a side-by-side pair image.
pairs: the Pairs whose clean image it is (list; the first is loaded when needed).
hashes: [8] uint64, the phash of each orientation (``TRANSFORMS`` order).
thumb: uint8 grayscale, long side THUMB_SIDE.
"""


# ----------------------------------------------------------------------------- signatures
def orient(image, k):
    """Orientation ``k`` (index into ``TRANSFORMS``) of an image.

    Args:
      image: [H, W] or [H, W, C] array.
      k: int in 0..7.

    Returns:
      A view: rotated k % 4 times by 90 degrees counter-clockwise, then flipped left-right
      when k >= 4.
    """
    out = np.rot90(image, k % 4)
    return out[:, ::-1] if k >= 4 else out


def inverse(k):
    """The orientation that undoes ``k``: orient(orient(x, k), inverse(k)) == x."""
    return (4 - k) % 4 if k < 4 else k


def gray_u8(image):
    """[H, W, 3] float BGR in [0, 1] -> [H, W] uint8 luma."""
    gray = cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_BGR2GRAY)
    return gallery.to_uint8(gray)


def shrink(image, side):
    """Resize (area average) so that the long side is ``side`` pixels (never enlarges)."""
    height, width = image.shape[:2]
    scale = min(1.0, side / float(max(height, width)))
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def phashes(gray):
    """The 64-bit ``imagehash.phash`` of each of the 8 orientations of an image.

    The image is reduced (area average) to phash's own 32x32 input size once; the
    orientations of that reduction are exact permutations of it, so one reduction serves
    all 8 hashes.

    Args:
      gray: [H, W] uint8.

    Returns:
      [8] uint64, in ``TRANSFORMS`` order.
    """
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA)
    bits = [imagehash.phash(Image.fromarray(np.ascontiguousarray(orient(small, k)))).hash
            for k in range(8)]
    return np.packbits(np.array(bits).reshape(8, 64), axis=1).view('>u8')[:, 0].astype(
        np.uint64)


def popcount(values):
    """Number of set bits of each uint64 (numpy's bitwise_count where available)."""
    if hasattr(np, 'bitwise_count'):
        return np.bitwise_count(values)
    as_bytes = np.ascontiguousarray(values).view(np.uint8).reshape(values.shape + (8,))
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)


def _bandpass(image):
    """Fine structure of a float32 image: Gaussian sigma 0.8 minus Gaussian sigma 3."""
    image = np.asarray(image, np.float32)
    return cv2.GaussianBlur(image, (0, 0), 0.8) - cv2.GaussianBlur(image, (0, 0), 3.0)


def aligned_similarity(image_a, image_b, k):
    """Similarity of ``orient(image_a, k)`` and ``image_b`` after aligning size and shift.

    Args:
      image_a, image_b: [H, W] grayscale arrays (any numeric type, same value scale).
      k: orientation of image_a that faces image_b.

    Returns:
      float in [-1, 1]: the maximum normalised correlation of the band-passed images over
      shifts of up to MAX_SHIFT pixels; 0 when the aspect ratios differ (more than a few
      pixels of crop) or the images are too small, 1 for two identical flat images.
    """
    a = np.ascontiguousarray(orient(image_a, k), np.float32)
    b = np.asarray(image_b, np.float32)
    (ha, wa), (hb, wb) = a.shape, b.shape
    if abs(np.log((wa / float(ha)) / (wb / float(hb)))) > MAX_LOG_ASPECT:
        return 0.0
    if min(hb, wb) <= 4 * MAX_SHIFT:
        return 0.0
    a = cv2.resize(a, (wb, hb), interpolation=cv2.INTER_LINEAR)
    band_a, band_b = _bandpass(a), _bandpass(b)
    template = band_a[MAX_SHIFT:-MAX_SHIFT, MAX_SHIFT:-MAX_SHIFT]
    if template.std() < 1e-3 or band_b.std() < 1e-3:   # no structure to correlate
        return 1.0 if np.abs(a - b).max() <= 2.0 else 0.0
    scores = cv2.matchTemplate(band_b, template, cv2.TM_CCOEFF_NORMED)
    return float(np.nan_to_num(scores).max())


def _clean_half(pair):
    """None, or the clean half ('left'/'right') of a side-by-side pair image."""
    return None if pair.half is None else ('right' if pair.half == 'left' else 'left')


def add_background(found, pair, clean):
    """Record a pair's clean image: a new Background, or one more pair of a known one.

    Args:
      found: OrderedDict (clean file, half) -> Background, updated.
      pair: a Pair.
      clean: its clean image, [H, W, 3] float BGR in [0, 1] (only hashes and a small
        thumbnail are kept).
    """
    key = (pair.clean_path, _clean_half(pair))
    if key in found:
        found[key].pairs.append(pair)
        return
    gray = gray_u8(clean)
    found[key] = Background(key[0], key[1], [pair], phashes(gray), shrink(gray, THUMB_SIDE))


def background_set(found):
    """(list of Background, [N, 8] uint64 hashes) of ``add_background``'s dict."""
    items = list(found.values())
    table = (np.stack([b.hashes for b in items]) if items
             else np.zeros((0, 8), np.uint64))
    return items, table


# ----------------------------------------------------------------------------- matching
def candidates(hashes_a, hashes_b, within, chunk=512):
    """Pairs whose perceptual hashes are close in some orientation (stage 1).

    Args:
      hashes_a: [N, 8] uint64 (all orientations of set A).
      hashes_b: [M, 8] uint64 (set B; only its orientation 0 is used).
      within: A and B are the same set: only i < j is returned.
      chunk: rows of A compared at once (memory: about 10 * chunk * M bytes).

    Returns:
      list of (i, j, k, distance): orientation k of A[i] is ``distance`` bits from B[j],
      the smallest over k, at most HASH_MAX_DISTANCE.
    """
    found = []
    for start in range(0, len(hashes_a), chunk):
        rows = hashes_a[start:start + chunk]
        best = np.full((len(rows), len(hashes_b)), 255, np.uint8)
        best_k = np.zeros(best.shape, np.uint8)
        for k in range(8):
            dist = popcount(rows[:, k, None] ^ hashes_b[None, :, 0])
            closer = dist < best
            best[closer], best_k[closer] = dist[closer], k
        if within:
            best[np.arange(len(hashes_b))[None, :]
                 <= (start + np.arange(len(rows)))[:, None]] = 255
        for i, j in zip(*np.nonzero(best <= HASH_MAX_DISTANCE)):
            found.append((start + int(i), int(j), int(best_k[i, j]), int(best[i, j])))
    return found


def match_backgrounds(set_a, set_b=None):
    """Clean images of A that show the same scene as clean images of B (both stages).

    Args:
      set_a: (list of Background, [N, 8] hashes) from ``background_set``.
      set_b: the same for B, or None to match A against itself.

    Returns:
      list of dicts ``{'i', 'j', 'k', 'hash_distance', 'similarity'}``, one per match:
      ``orient(A[i], k)`` shows B[j]; similarity >= MATCH_THRESHOLD.
    """
    within = set_b is None
    set_b = set_a if within else set_b
    matches = []
    for i, j, k, distance in candidates(set_a[1], set_b[1], within):
        score = aligned_similarity(set_a[0][i].thumb, set_b[0][j].thumb, k)
        if score >= MATCH_THRESHOLD:
            matches.append({'i': i, 'j': j, 'k': k, 'hash_distance': distance,
                            'similarity': round(score, 4)})
    return matches


@functools.lru_cache(maxsize=64)
def rain_layer(pair):
    """Grayscale rain layer (rainy minus clean) of a pair, long side RAIN_SIDE, float32."""
    rain, clean = images.load_pair(pair)
    layer = cv2.cvtColor(rain, cv2.COLOR_BGR2GRAY) - cv2.cvtColor(clean, cv2.COLOR_BGR2GRAY)
    return shrink(layer, RAIN_SIDE)


def settings_json():
    """The matching method and thresholds, as stored in audit.json and the cache."""
    return {'hash': 'imagehash %s phash, 64 bits, 8 orientations' % imagehash.__version__,
            'hash_max_distance': HASH_MAX_DISTANCE, 'match_threshold': MATCH_THRESHOLD,
            'same_rain_threshold': SAME_RAIN_THRESHOLD, 'thumb_side': THUMB_SIDE,
            'max_shift': MAX_SHIFT}
