"""The automatic choice of tiling (``plan``): whole image or tiles, mode, sample, memory.

``plan`` decides from the image size and the memory budget (``--inference_memory_mb``,
``default_budget_mb``) whether one whole-image pass fits, else the tile size, the fast or exact
mode, the statistics sample and the refinement passes, and says why in one line. The memory
model (``pass_mb``, ``whole_image_mb``, ``tiled_mb``) is measured (docs/tiling.md). Asks
``passes`` for the tiles and halos and ``machine.resources`` for the memory available.
"""
import collections

import model
from inference.tiling.passes import (SAMPLE_MIN_FRACTION, TILE_MODES, default_overlap, halo_crop,
                                     sample_fraction, tile_interiors)
from machine import resources


# ----------------------------------------------------------------------------- automatic choice
# Peak memory of one network pass (the paper's 32 channels, fp32, CPU), measured with
# ``resources.peak_rss_mb`` (docs/tiling.md): 4.1-4.8 kB per pixel of its input, from 321x481
# to 1024x1024, whole images and tile crops alike; proportional to the channels.
PASS_BYTES_PER_PIXEL = 4800
# TensorFlow, both graphs and the weights, before the first image (measured 0.7-0.8 GB).
RUNTIME_MB = 800
# The image and what is made of it while it is derained and saved (float32 input and output,
# their clipped and 8-bit copies, the comparison strip), measured end to end at 12 MP.
IMAGE_BYTES_PER_PIXEL = 100
# Automatic tiling: crops (tile + 2 halos) as large as the budget allows (the larger, the less
# halo to recompute and the closer the fast mode's statistics), up to AUTO_MAX_CROP pixels a
# side (~4.8 GB of activations; crops of 256 to 1024 run at the same speed per pixel as a
# 321x481 whole pass, measured), and tiles of at least MIN_TILE pixels whatever the budget.
AUTO_MAX_CROP = 1024
MIN_TILE = 32
# The default budget: at most DEFAULT_BUDGET_MB, and at most AVAILABLE_FRACTION of the
# memory available when the run starts (other processes may grow meanwhile).
DEFAULT_BUDGET_MB = 4096
AVAILABLE_FRACTION = 0.75
BUDGET_FLAG = '--inference_memory_mb'

# How one image is derained (``plan``):
#   tiled: bool; tile: interior side (0 when not tiled); mode: 'fast' or 'exact';
#   overlap: last-pass halo (pixels); tiles: number of tiles (1 when not tiled);
#   memory_mb: estimated peak of the process; line: one line saying which and why;
#   sample_pixels: the fast mode's pooled statistics sample (``derain_fast``), None otherwise.
#   refine_passes: the fast mode's refinement passes (``derain_fast``); 0 unless each tile
#   uses its own statistics in the first pass.
Plan = collections.namedtuple('Plan', ['tiled', 'tile', 'mode', 'overlap', 'tiles', 'memory_mb',
                                       'line', 'sample_pixels', 'refine_passes'])


def default_budget_mb(available_mb=None):
    """The memory budget when ``--inference_memory_mb`` is not given, in MB.

    Args:
      available_mb: memory available (None = ``resources.available_memory_mb()``,
        measured now).

    Returns:
      float: min(DEFAULT_BUDGET_MB, AVAILABLE_FRACTION * available), DEFAULT_BUDGET_MB when
      the available memory is unknown.
    """
    if available_mb is None:
        available_mb = resources.available_memory_mb()
    if available_mb is None:
        return float(DEFAULT_BUDGET_MB)
    return min(float(DEFAULT_BUDGET_MB), AVAILABLE_FRACTION * available_mb)


def pass_mb(pixels, config=None):
    """Estimated memory of one network pass over ``pixels`` input pixels, in MB (no runtime)."""
    channels = (config or model.ModelConfig()).channels
    return pixels * PASS_BYTES_PER_PIXEL * channels / 32.0 / 2.0 ** 20


def _fixed_mb(height, width):
    """Runtime plus the image's own buffers, in MB."""
    return RUNTIME_MB + height * width * IMAGE_BYTES_PER_PIXEL / 2.0 ** 20


def whole_image_mb(height, width, config=None):
    """Estimated peak memory (MB) of deraining an H x W image in one whole-image pass."""
    return _fixed_mb(height, width) + pass_mb(height * width, config)


def largest_crop_pixels(height, width, tile, halo):
    """Pixels of the largest crop (tile plus halos, cropped at the border) of an H x W image."""
    return max((cy1 - cy0) * (cx1 - cx0) for (cy0, cy1, cx0, cx1), _ in
               (halo_crop(box, halo, height, width)
                for box in tile_interiors(height, width, tile)))


def tiled_mb(height, width, tile, halo, config=None):
    """Estimated peak memory (MB) of deraining an H x W image in tiles (largest crop)."""
    return _fixed_mb(height, width) + pass_mb(largest_crop_pixels(height, width, tile, halo),
                                              config)


def sample_pixels_for_budget(budget_mb, height, width, crop_pixels, config=None):
    """The fast mode's statistics sample: as many pixels as the budget allows.

    At least ``crop_pixels`` (one tile crop, which the plan already needs); the whole image
    when it fits the budget (the statistics are then exact).

    Returns:
      int, pixels.
    """
    room = (budget_mb - _fixed_mb(height, width)) / pass_mb(1, config)
    return int(max(room, crop_pixels))


def choose_sample(budget_mb, height, width, crop_pixels, config=None,
                  min_fraction=SAMPLE_MIN_FRACTION):
    """The fast mode's statistics for an H x W image tiled in crops of ``crop_pixels``.

    Args:
      budget_mb, height, width, crop_pixels, config: see ``sample_pixels_for_budget``.
      min_fraction: the least share of the image a sample must cover to be used (default
        SAMPLE_MIN_FRACTION: the whole image only; lower it to measure partial samples).

    Returns:
      (sample_pixels, share): the pooled sample ``sample_pixels_for_budget`` and the share of
      the image its interiors cover (``sample_fraction``); sample_pixels is None when that
      share is below ``min_fraction`` (the statistics pass then runs each tile with its own
      means).
    """
    sample = sample_pixels_for_budget(budget_mb, height, width, crop_pixels, config)
    share = sample_fraction(height, width, sample)
    return (sample if share >= min_fraction else None), share


def tile_for_budget(budget_mb, height, width, halo, config=None):
    """The largest tile interior whose crops keep an H x W image within ``budget_mb``.

    The crop side (tile + 2 halo) is at most AUTO_MAX_CROP; the tile is at least MIN_TILE
    even when the budget is smaller than that needs (``plan`` says so).

    Returns:
      int, the tile side in pixels.
    """
    room = (budget_mb - _fixed_mb(height, width)) * 2.0 ** 20
    side = int((max(room, 0.0) / (pass_mb(1, config) * 2.0 ** 20)) ** 0.5)
    return max(MIN_TILE, min(side, AUTO_MAX_CROP) - 2 * halo)


def _gb(megabytes):
    return '%.1f GB' % (megabytes / 1024.0)


def plan(height, width, budget_mb, config=None, tile=None, mode='fast', overlap=None,
         refine_passes=0):
    """Whole-image pass or tiles for an H x W image, and one line saying which and why.

    Automatic (``tile`` None): one whole-image pass (exact, fastest) when its estimated peak
    memory fits ``budget_mb``, else tiles in ``mode`` sized by ``tile_for_budget``. A given
    ``tile`` forces tiles of that side for images larger than one tile; 0 forces whole images.

    Args:
      height, width: image size in pixels.
      budget_mb: memory budget of the process in MB (``default_budget_mb``).
      config: ModelConfig (None = the paper's model).
      tile: None (automatic), 0 (whole) or the tile side in pixels.
      mode: tiled mode, 'fast' or 'exact'.
      overlap: last-pass halo; None = ``default_overlap(config, mode)``.
      refine_passes: fast mode, images whose statistics come from a first pass with each
        tile's own: refinement passes after it (``derain_fast``); the plan keeps them
        (``Plan.refine_passes``, 0 for every other plan) and its line names them.

    Returns:
      Plan.
    """
    if mode not in TILE_MODES:
        raise ValueError('mode must be one of %s, got %r' % (TILE_MODES, mode))
    if refine_passes < 0:
        raise ValueError('refine_passes must be >= 0, got %d' % refine_passes)
    overlap = default_overlap(config, mode) if overlap is None else overlap
    whole_mb = whole_image_mb(height, width, config)
    if tile is None:
        if whole_mb <= budget_mb:
            return _whole_plan(mode, overlap, whole_mb, 'Whole-image passes: images up to '
                               '%.1f MP fit the %s memory budget (%s); larger ones are tiled'
                               % (_whole_megapixels(budget_mb, config), _gb(budget_mb),
                                  BUDGET_FLAG), budget_mb)
        tile = tile_for_budget(budget_mb, height, width, overlap, config)
        why = ('a whole-image pass would need ~%s, over the %s memory budget (%s)'
               % (_gb(whole_mb), _gb(budget_mb), BUDGET_FLAG))
    elif tile == 0 or max(height, width) <= tile:
        return _whole_plan(mode, overlap, whole_mb, 'Whole-image passes (--tile %d)' % tile,
                           budget_mb)
    else:
        why = '--tile %d' % tile
    boxes = tile_interiors(height, width, tile)
    memory = tiled_mb(height, width, tile, overlap, config)
    sample, refine = None, 0
    if mode == 'fast':
        crop = largest_crop_pixels(height, width, tile, overlap)
        sample, share = choose_sample(budget_mb, height, width, crop, config)
        if share >= 1.0:
            why += '; SE statistics from the whole image (exact)'
        elif sample is not None:
            why += ('; SE statistics from a sample of %.0f%% of the image, then one pass'
                    % (100 * share))
        else:
            why += ('; SE statistics from a first pass in which each tile uses its own (exact '
                    'ones need the image within the budget)')
            refine = refine_passes
            if refine:
                why += ', then %d refinement pass%s' % (refine, 'es' if refine > 1 else '')
        if sample is not None:
            memory = max(memory, _fixed_mb(height, width)
                         + pass_mb(min(sample, height * width), config))
    line = ('%dx%d: tiled, %s mode, %d tiles of up to %dx%d (~%s): %s'
            % (width, height, mode, len(boxes), boxes[0][3] - boxes[0][2],
               boxes[0][1] - boxes[0][0], _gb(memory), why))
    return Plan(True, tile, mode, overlap, len(boxes), memory,
                line + _over_budget_note(memory, budget_mb), sample, refine)


def _whole_plan(mode, overlap, memory, line, budget_mb):
    return Plan(False, 0, mode, overlap, 1, memory, line + _over_budget_note(memory, budget_mb),
                None, 0)


def _over_budget_note(memory, budget_mb):
    """'' or a note that the estimate exceeds the budget (forced or smallest tiles)."""
    if memory <= budget_mb:
        return ''
    return '; note: this needs ~%s, more than the %s budget' % (_gb(memory), _gb(budget_mb))


def _whole_megapixels(budget_mb, config=None):
    """Largest image (megapixels) whose whole-image pass fits ``budget_mb``."""
    per_pixel = IMAGE_BYTES_PER_PIXEL + pass_mb(1, config) * 2.0 ** 20
    return max(0.0, (budget_mb - RUNTIME_MB) * 2.0 ** 20 / per_pixel / 1e6)
