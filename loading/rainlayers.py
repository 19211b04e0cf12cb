"""Real rain layers: heavy-rain training pairs from the rain of paired data (``--rain_layers``).

Rain100H's rain is additive with clipping, ``rainy = min(clean + S, 1)`` (measured on its
pairs: ``rainy - clean`` is never negative, grey, and its mean does not depend on the
background's brightness below 0.5). So a pair gives a rain layer S = rainy - clean that can be
laid onto any clean image: ``rainy' = min(background + S, 1)`` (``composite``).

Where the pair's rainy sample is clipped (it is 1), S is only known to be >= 1 - clean: a
right-censored value. The rain is grey, so a pixel clipped in some channels takes S from its
unclipped ones (``grey_layer``); a pixel clipped in all three is filled with the conditional
mean ``E[S | S >= bound]`` of the layer's own S (``fill_clipped``, mode ``'mean'``), estimated
with the Kaplan-Meier estimator from the layer's exact and censored pixels together
(``censored_means``). The lower bound (``'bound'``) and a saturated 1 (``'saturate'``) are kept
as measured alternatives (``tools/rain_layer_fill.py``; docs/synthetic-rain.md has the
numbers).

A layer folder is any paired layout ``discovery.find_pairs`` reads. ``load_layers`` decodes and
checks it (equal sizes, rainy not darker than clean beyond ``DARKER_LEVELS`` on more than
``DARKER_FRACTION`` of the samples, at least one patch in size) and keeps it in memory as
stored (1 byte per sample for 8-bit files). ``LayerSet.draw`` and ``LayerSet.rain_for`` are
what ``batching.TrainBatcher`` asks for each crop; the layer folder's own clean images are
backgrounds too (``background_pairs``). No TensorFlow here.
"""
import collections
import hashlib
import os

import numpy as np

from checkpointing.settings_file import differing_settings
from loading import images
from loading.batching import crop_at
from loading.discovery import DataError, Pair, find_pairs, resolve_dataset_dir

LAYER_KEYS = ('rain_layers', 'rain_layers_digest')  # what a resume compares (check_resume)

LEVELS = 256             # S and the censoring bounds are tabulated in steps of 1/255
DARKER_LEVELS = 8        # a rainy sample more than 8/255 below its clean one is "darker"
DARKER_FRACTION = 0.05   # a layer pair with more darker samples than this is refused
FILL_MODES = ('mean', 'bound', 'saturate')

RainLayer = collections.namedtuple('RainLayer', ['pair', 'rain', 'clean', 'scale', 'means'])
RainLayer.__doc__ = """One rain layer, kept as stored.

pair: the discovery.Pair it comes from.
rain, clean: [H, W, 3] raw arrays (``images.decode``: uint8, uint16 or float32).
scale: dividing by it maps a raw value to [0, 1] (255 for 8-bit files).
means: [LEVELS] float32, ``censored_means`` of the layer: E[S | S >= t / 255].
"""


# ----------------------------------------------------------------------------- the layer
def rain_layer(rain, clean):
    """The rain layer of a pair and where it is only a lower bound.

    Args:
      rain: [H, W, 3] float rainy image in [0, 1].
      clean: [H, W, 3] float clean image in [0, 1], same shape.

    Returns:
      (S, clipped): S = max(rain - clean, 0) as float32 in [0, 1]; clipped: bool [H, W, 3],
      True where the rainy sample is 1 (there the true S is only known to be >= 1 - clean).
    """
    rain = np.asarray(rain, np.float32)
    clean = np.asarray(clean, np.float32)
    return np.maximum(rain - clean, 0.0), rain >= 1.0


def _levels(values):
    """Floats in [0, 1] -> int levels 0..LEVELS-1 (steps of 1/255)."""
    return np.clip(np.rint(np.asarray(values, np.float32) * (LEVELS - 1)), 0,
                   LEVELS - 1).astype(np.int64)


def grey_layer(layer, clipped, clean):
    """One grey S per pixel, and the pixels where it is only a lower bound.

    The rain is grey (its three channels are equal on every unclipped pixel of RainTrainH-12),
    so a pixel clipped in some channels only takes S from its unclipped ones (not below the
    clipped channels' bounds 1 - clean); a pixel clipped in all three is censored, S >= the
    largest 1 - clean of its channels.

    Args:
      layer: [H, W, 3] float S (``rain_layer``).
      clipped: bool [H, W, 3].
      clean: [H, W, 3] float clean image of the pair, in [0, 1].

    Returns:
      (values [H, W] float32 in [0, 1]: S, or its lower bound where censored;
      censored [H, W] bool).
    """
    unclipped = ~clipped
    count = unclipped.sum(axis=-1)
    known = np.where(unclipped, layer, 0.0).sum(axis=-1) / np.maximum(count, 1)
    bound = np.where(clipped, 1.0 - np.asarray(clean, np.float32), 0.0).max(axis=-1)
    return np.maximum(known, bound).astype(np.float32), count == 0


def censored_means(values, censored):
    """E[S | S >= t] of a layer for every level t, from exact and censored pixels.

    A censored pixel says only S >= its value (its rainy image is clipped in every channel);
    the Kaplan-Meier estimator combines both kinds into one distribution of S over the levels
    0..255 (the mass left after the largest exact value is put at 1).

    Args:
      values: [...] float S, or its lower bound where censored (``grey_layer``).
      censored: bool, same shape.

    Returns:
      [LEVELS] float32 in [0, 1]: entry t is E[S | S >= t / 255], never below t / 255.
    """
    exact = np.bincount(_levels(values[~censored]), minlength=LEVELS)
    bounds = np.bincount(_levels(values[censored]), minlength=LEVELS)
    # At risk at level s: exact values >= s and censoring bounds >= s (ties: censored last).
    at_risk = np.cumsum(exact[::-1])[::-1] + np.cumsum(bounds[::-1])[::-1]
    hazard = np.where(at_risk > 0, exact / np.maximum(at_risk, 1), 0.0)
    survival = np.cumprod(1.0 - hazard)                    # P(S > s)
    mass = np.concatenate([[1.0 - survival[0]], survival[:-1] - survival[1:]])
    mass[-1] += survival[-1]
    levels = np.arange(LEVELS) / float(LEVELS - 1)
    tail = np.cumsum(mass[::-1])[::-1]
    tail_sum = np.cumsum((mass * levels)[::-1])[::-1]
    means = np.where(tail > 1e-12, tail_sum / np.maximum(tail, 1e-12), 1.0)
    return np.maximum(means, levels).astype(np.float32)


def fill_clipped(layer, clipped, clean, means, mode='mean'):
    """The layer with its clipped samples filled, ready to lay on another background.

    Clipped channels of a pixel with an unclipped one take its grey S (``grey_layer``); a
    pixel clipped in all channels gets, by ``mode``: 'mean', E[S | S >= bound] (``means``);
    'bound', the lower bound itself; 'saturate', 1 (the composite is white there).

    Args:
      layer: [H, W, 3] float32 S in [0, 1] (``rain_layer``).
      clipped: bool [H, W, 3].
      clean: [H, W, 3] float clean image of the layer's pair, in [0, 1].
      means: [LEVELS] ``censored_means`` of the layer (used by mode 'mean').
      mode: one of FILL_MODES.

    Returns:
      [H, W, 3] float32 in [0, 1]; equal to ``layer`` where not clipped.
    """
    if mode not in FILL_MODES:
        raise ValueError('mode must be one of %s, got %r' % (FILL_MODES, mode))
    if not clipped.any():
        return layer
    values, censored = grey_layer(layer, clipped, clean)
    if mode == 'mean':
        values[censored] = np.maximum(means[_levels(values[censored])], values[censored])
    elif mode == 'saturate':
        values[censored] = 1.0
    return np.where(clipped, values[..., None], layer).astype(np.float32)


def composite(background, layer):
    """Additive rain with clipping: min(background + layer, 1).

    Args:
      background: [..., 3] float clean image in [0, 1].
      layer: float rain layer of the same shape, >= 0 (``fill_clipped``).

    Returns:
      float32 rainy image in [0, 1].
    """
    return np.minimum(np.asarray(background, np.float32) + layer, 1.0)


# ----------------------------------------------------------------------------- checks
def darker_fraction(rain, clean):
    """The fraction of samples where the rainy image is darker than the clean one by more
    than DARKER_LEVELS / 255, and the largest such difference (floats in [0, 1])."""
    difference = np.asarray(clean, np.float32) - np.asarray(rain, np.float32)
    return (float(np.mean(difference > DARKER_LEVELS / 255.0)),
            float(max(difference.max(), 0.0)))


def _check_pair(flag, pair, rain, clean):
    """DataError when a layer pair's rainy image is darker than its clean one."""
    fraction, worst = darker_fraction(rain, clean)
    if fraction > DARKER_FRACTION:
        raise DataError(
            '{} {}: the rainy image {} is darker than its clean image {} in {:.1%} of its '
            'samples (by up to {:.0f}/255; at most {:.0%} may be more than {}/255 darker): '
            'rain layers are rainy - clean >= 0, so check that the pair is not swapped or '
            'remove it'.format(flag, os.path.dirname(pair.rain_path), pair.rain_path,
                               pair.clean_path, fraction, worst * 255, DARKER_FRACTION,
                               DARKER_LEVELS))


def _check_size(flag, pair, shape, patch_size):
    height, width = shape[:2]
    if patch_size and (height < patch_size or width < patch_size):
        raise DataError('{} {}: {} is {}x{}, smaller than the training patch {}x{}; remove it '
                        'or use a smaller --patch_size'.format(
                            flag, os.path.dirname(pair.rain_path), pair.rain_path, width,
                            height, patch_size, patch_size))


def load_layer(pair, flag='--rain_layers', patch_size=None):
    """Decode and check one layer pair. Returns a RainLayer.

    Raises:
      DataError: unreadable file, sizes differ, rainy darker than clean, smaller than the
        patch; the message names ``flag``, the file and what to do.
    """
    try:
        rain, rain_scale, clean, clean_scale = images.load_raw_pair(pair, check_half=False)
    except DataError as exc:
        raise DataError('{} {}: {}'.format(flag, os.path.dirname(pair.rain_path), exc))
    if rain_scale != clean_scale:
        raise DataError('{} {}: {} and {} have different bit depths; save both as 8-bit PNG'
                        .format(flag, os.path.dirname(pair.rain_path), pair.rain_path,
                                pair.clean_path))
    _check_size(flag, pair, rain.shape, patch_size)
    rain_f, clean_f = images.to_float(rain, rain_scale), images.to_float(clean, clean_scale)
    _check_pair(flag, pair, rain_f, clean_f)
    values, censored = grey_layer(*rain_layer(rain_f, clean_f), clean_f)
    return RainLayer(pair, rain, clean, rain_scale, censored_means(values, censored))


# ----------------------------------------------------------------------------- the set
class LayerSet(object):
    """The rain layers of a folder, in memory, and the random layer crops of a batch.

    Attributes:
      folder: the layer folder.
      layers: list of RainLayer.
      mode: how clipped samples are filled (``fill_clipped``).
      nbytes: bytes of decoded images held.
    """

    def __init__(self, folder, layers, mode='mean'):
        if not layers:
            raise ValueError('a LayerSet needs at least one layer')
        if mode not in FILL_MODES:
            raise ValueError('mode must be one of %s, got %r' % (FILL_MODES, mode))
        self.folder = folder
        self.layers = list(layers)
        self.mode = mode
        self.nbytes = sum(one.rain.nbytes + one.clean.nbytes for one in self.layers)
        self.digest = content_digest(self.layers)

    def __len__(self):
        return len(self.layers)

    def draw(self, rng, count):
        """The random layer choices of ``count`` crops, drawn from ``rng`` in this order.

        Returns:
          (indices [count] int in 0..len-1, draws [count, 3] uniform in [0, 1): row, column
          and flip of each layer crop, see ``batching.crop_at``).
        """
        return rng.integers(len(self.layers), size=count), rng.random((count, 3))

    def crop(self, index, patch_size, draws):
        """Layer ``index`` cropped at ``draws`` (always flipped when draws[2] < 0.5; never
        rotated: streak direction matters), its clipped samples filled.

        Returns:
          [P, P, 3] float32 rain layer in [0, 1].
        """
        layer = self.layers[int(index)]
        rain, clean = crop_at(layer.rain, layer.clean, patch_size, draws, flip=True)
        rain = images.to_float(rain, layer.scale)
        clean = images.to_float(clean, layer.scale)
        values, clipped = rain_layer(rain, clean)
        return fill_clipped(values, clipped, clean, layer.means, self.mode)

    def rain_for(self, background, index, draws):
        """The rainy crop of a clean background crop: ``composite`` with a layer crop.

        Args:
          background: [P, P, 3] float clean crop in [0, 1].
          index, draws: one row of ``draw``.

        Returns:
          [P, P, 3] float32 rainy crop in [0, 1].
        """
        return composite(background, self.crop(index, background.shape[0], draws))

    def settings(self):
        """What ``remaen_settings.json`` records of the layers (a resume must match it): the
        folder (for people), the digest of its images (for the checks: the same layers at
        another path, a clone elsewhere or a copy, are the same layers), count and fill."""
        return {'rain_layers': os.path.abspath(self.folder), 'rain_layers_digest': self.digest,
                'rain_layer_pairs': len(self), 'rain_layer_fill': self.mode}


def content_digest(layers):
    """SHA-256 (hex) of the layers' decoded images, in the folder's pair order: rainy then
    clean, each with its shape and dtype; file names and places do not enter it."""
    digest = hashlib.sha256()
    for layer in layers:
        for raw in (layer.rain, layer.clean):
            raw = np.ascontiguousarray(raw)
            digest.update(('%s %s;' % (raw.dtype.str, raw.shape)).encode('ascii'))
            digest.update(raw.tobytes())
    return digest.hexdigest()


def load_layers(folder, patch_size=None, rainy_half=None, flag='--rain_layers', verbose=True,
                mode='mean'):
    """Read and check a layer folder (any paired layout). Returns a LayerSet.

    Args:
      folder: the folder of (rainy, clean) pairs whose rain is used.
      patch_size: refuse layers smaller than this (None: no check).
      rainy_half: None or 'left'/'right' for side-by-side pair images.
      flag: the flag named in error messages.
      verbose: print one line with the count and memory.
      mode: how clipped samples are filled (``FILL_MODES``).

    Raises:
      DataError (one line naming ``flag``, the file and what to do): missing folder, no pairs,
      unpaired files, sizes differ, a rainy image darker than its clean one, a layer smaller
      than the patch, unreadable files.
    """
    folder = resolve_dataset_dir(folder, None, flag)
    try:
        pairs, layout = find_pairs(folder, rainy_half=rainy_half, verbose=False)
    except DataError as exc:
        raise DataError('{} {}: {}'.format(flag, folder, exc))
    layers = LayerSet(folder, [load_layer(p, flag, patch_size) for p in pairs], mode)
    if verbose:
        print('Rain layers: {} pairs in {} (layout: {}), {:.0f} MB in memory; clipped '
              'samples filled with E[S | S >= 1 - clean]'.format(
                  len(layers), folder, layout, layers.nbytes / 2 ** 20)
              if mode == 'mean' else 'Rain layers: {} pairs in {} (fill: {})'.format(
                  len(layers), folder, mode))
    return layers


def background_pairs(pairs, layers=None):
    """The clean backgrounds of training with rain layers, as pairs for the TrainBatcher.

    The training pairs' clean images, then the layer folder's own clean images (each file
    once). A background pair names its clean file on both sides (the rainy side is never
    used: the batcher lays a layer on the clean crop), so it is decoded once; side-by-side
    pairs are kept as they are.

    Args:
      pairs: the training Pairs (with clean images).
      layers: a LayerSet, or None.

    Returns:
      list of Pair.
    """
    found, seen = [], set()
    for pair in list(pairs) + ([layer.pair for layer in layers.layers] if layers else []):
        if pair.clean_path is None:
            raise DataError('training needs clean backgrounds but {} has no clean partner'
                            .format(pair.rain_path))
        key = (os.path.realpath(pair.clean_path), pair.half)
        if key in seen:
            continue
        seen.add(key)
        found.append(pair if pair.half else Pair(pair.name, pair.clean_path, pair.clean_path,
                                                 None))
    return found


def check_resume(stored, layers, folder):
    """DataError when a resumed checkpoint folder was trained with other rain layers: other
    images (``rain_layers_digest``; the folder may have moved), or, for settings written
    before the digest, another folder.

    Args:
      stored: the folder's ``remaen_settings.json`` (dict) or None.
      layers: the run's LayerSet or None.
      folder: the checkpoint folder (named in the message).
    """
    if not stored:
        return
    current = layers.settings() if layers else {}
    if not differing_settings({k: stored[k] for k in LAYER_KEYS if k in stored},
                              {k: current[k] for k in LAYER_KEYS if k in current}, ignored=()):
        return
    before, now = stored.get('rain_layers'), current.get('rain_layers')
    if before and before == now:
        raise DataError('checkpoint folder {} was trained with other images in --rain_layers '
                        '{} (their digest differs); restore them to resume, or pass another '
                        '--train_dataset to train in another folder'.format(folder, now))
    raise DataError('checkpoint folder {} was trained with --rain_layers {}, this run passes '
                    '{}; pass the same layers to resume, or another --train_dataset to '
                    'train in another folder'.format(folder, before or '(none)',
                                                     now or '(none)'))


def sample_pair(background, layers, rng, size=None):
    """One composited pair to look at: a background crop and its rain from a random layer.

    Args:
      background: [H, W, 3] float clean image in [0, 1].
      layers: a LayerSet.
      rng: numpy Generator; draws the layer, then the background window (row, column, a
        third number unused: backgrounds are not flipped), then the layer window (row,
        column, flip).
      size: side of a square crop; None = the largest window both images hold.

    Returns:
      (rainy, clean): float32 [h, w, 3] in [0, 1].
    """
    layer = layers.layers[int(rng.integers(len(layers)))]
    height = min(background.shape[0], layer.rain.shape[0])
    width = min(background.shape[1], layer.rain.shape[1])
    if size:
        height = width = min(size, height, width)
    back_draws, layer_draws = rng.random(3), rng.random(3)
    clean = np.asarray(_window(background, height, width, back_draws, False), np.float32)
    rain_f, clean_f = [images.to_float(_window(raw, height, width, layer_draws, True),
                                       layer.scale) for raw in (layer.rain, layer.clean)]
    values, clipped = rain_layer(rain_f, clean_f)
    return composite(clean, fill_clipped(values, clipped, clean_f, layer.means,
                                         layers.mode)), clean


def _window(image, height, width, draws, flip):
    """The height x width window of ``image`` at uniform ``draws`` (row, column, flip), as
    ``batching.crop_at`` places a square one."""
    rows, cols = image.shape[:2]
    top = min(int(draws[0] * (rows - height + 1)), rows - height)
    left = min(int(draws[1] * (cols - width + 1)), cols - width)
    window = image[top:top + height, left:left + width]
    return window[:, ::-1] if flip and draws[2] < 0.5 else window
