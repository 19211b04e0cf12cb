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

Shared rain on different backgrounds (a test set reusing its rain, a training set made from a
test set's rain layers) is found without a search: every pair's rain layer is high-passed on
its unclipped pixels (``rain_feature``), and the layers of every two pairs are correlated as
the images lie, over their common top-left area, in a few matrix products
(``rain_correlations``); at least ``SHARED_RAIN_THRESHOLD`` is shared rain.
"""
import collections
import functools

import cv2
import imagehash
import numpy as np
from PIL import Image

from pictures import gallery
from loading import images

HASH_MAX_DISTANCE = 12    # bits of 64: candidates (same scene: <= 8 measured; others: >= 14)
MATCH_THRESHOLD = 0.6     # band-pass correlation: same scene >= 0.94, others <= 0.32 measured
SAME_RAIN_THRESHOLD = 0.8  # rain layers (rainy - clean) correlating this well: the same rain
THUMB_SIDE = 128          # long side of the grayscale images compared in stage 2
RAIN_SIDE = 256           # long side of the rain layers compared (streaks are thin)
MAX_SHIFT = 3             # pixels of THUMB_SIDE searched in each direction (~11 px at 480)
MAX_LOG_ASPECT = 0.1      # aspect ratios further apart than this (log) never match
# Shared rain (docs/datasets.md has the calibration): a Rain100H-val layer laid on another
# Rain100H-val background correlates 0.52-0.97 (median 0.87) with its own pair's; unrelated
# real layers at most 0.09 (Rain100H-val within itself 0.088, RainTrainH-12 against it 0.087).
SHARED_RAIN_THRESHOLD = 0.3
RAIN_FEATURE_STEP = 2     # the high-passed rain layers are reduced by this factor
RAIN_SIGMA = 2.0          # full-resolution pixels: the layer minus its Gaussian blur
MIN_RAIN_PIXELS = 1000    # unclipped pixels two layers must share to be compared

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
            'max_shift': MAX_SHIFT, 'shared_rain_threshold': SHARED_RAIN_THRESHOLD,
            'rain_feature_step': RAIN_FEATURE_STEP, 'rain_sigma': RAIN_SIGMA}


# ----------------------------------------------------------------------------- shared rain
def rain_feature(rain, clean):
    """The high-passed grey rain layer of a pair on its unclipped pixels, downsampled.

    The layer is rainy minus clean (grey); where a rainy sample is clipped (1) it is only a
    lower bound, so those pixels are left out: the low-pass is a normalised convolution of
    the unclipped pixels only (Gaussian, ``RAIN_SIGMA``), and they stay out after the
    reduction by ``RAIN_FEATURE_STEP`` (area average, the same factor for every size so that
    layers stay aligned; a reduced pixel counts when all its sources are unclipped).

    Args:
      rain, clean: [H, W, 3] float BGR in [0, 1].

    Returns:
      (values [h, w] float32, zero where left out; mask [h, w] bool).
    """
    rain = np.asarray(rain, np.float32)
    clean = np.asarray(clean, np.float32)
    layer = cv2.cvtColor(rain, cv2.COLOR_BGR2GRAY) - cv2.cvtColor(clean, cv2.COLOR_BGR2GRAY)
    mask = (rain < 1.0).all(axis=2).astype(np.float32)
    weight = cv2.GaussianBlur(mask, (0, 0), RAIN_SIGMA)
    low = cv2.GaussianBlur(layer * mask, (0, 0), RAIN_SIGMA) / np.maximum(weight, 1e-3)
    size = (max(1, layer.shape[1] // RAIN_FEATURE_STEP),
            max(1, layer.shape[0] // RAIN_FEATURE_STEP))
    crop = (size[1] * RAIN_FEATURE_STEP, size[0] * RAIN_FEATURE_STEP)
    values = cv2.resize(((layer - low) * mask)[:crop[0], :crop[1]], size,
                        interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask[:crop[0], :crop[1]], size, interpolation=cv2.INTER_AREA) > 0.999
    return np.where(mask, values, 0.0).astype(np.float32), mask


def _flat_group(features, height, width):
    """Stacked [N, height*width] values, squared values and masks of the features' top-left
    height x width areas (float32)."""
    values = np.stack([f[0][:height, :width].ravel() for f in features]).astype(np.float32)
    masks = np.stack([f[1][:height, :width].ravel() for f in features]).astype(np.float32)
    return values, values * values, masks


def rain_correlations(features_a, features_b=None):
    """Correlation of every two pairs' rain layers, aligned as the images are.

    Two layers are compared over their common top-left area (the smaller height and width),
    on the pixels unclipped in both: the Pearson correlation of ``rain_feature`` values.
    Layers of one shape are compared all at once (six matrix products per two shapes).

    Args:
      features_a: list of ``rain_feature`` results (None for a pair that was not read).
      features_b: the same for a second set, or None to compare ``features_a`` with itself.

    Returns:
      [N, M] float64 correlations in [-1, 1]; NaN where fewer than MIN_RAIN_PIXELS pixels
      are shared or a pair is missing (and on the diagonal within one set).
    """
    within = features_b is None
    features_b = features_a if within else features_b
    result = np.full((len(features_a), len(features_b)), np.nan)
    groups_a, groups_b = _by_shape(features_a), _by_shape(features_b)
    for shape_a, rows in groups_a.items():
        for shape_b, cols in groups_b.items():
            height, width = min(shape_a[0], shape_b[0]), min(shape_a[1], shape_b[1])
            a, a2, ma = _flat_group([features_a[i] for i in rows], height, width)
            b, b2, mb = _flat_group([features_b[j] for j in cols], height, width)
            count = ma @ mb.T
            sum_a, sum_b, sum_ab = a @ mb.T, ma @ b.T, a @ b.T
            sum_a2, sum_b2 = a2 @ mb.T, ma @ b2.T
            with np.errstate(invalid='ignore', divide='ignore'):
                n = count.astype(np.float64)
                cov = sum_ab - sum_a * sum_b / n
                var = (sum_a2 - sum_a ** 2 / n) * (sum_b2 - sum_b ** 2 / n)
                corr = np.where((count >= MIN_RAIN_PIXELS) & (var > 0),
                                cov / np.sqrt(np.maximum(var, 1e-30)), np.nan)
            result[np.ix_(rows, cols)] = np.clip(corr, -1.0, 1.0)
    if within:
        np.fill_diagonal(result, np.nan)
    return result


def _by_shape(features):
    """{(h, w): [indices]} of the features that exist."""
    groups = collections.OrderedDict()
    for index, feature in enumerate(features):
        if feature is not None:
            groups.setdefault(feature[0].shape, []).append(index)
    return groups
