"""Tiled inference: derain images too large for one pass, in bounded memory (``plan``).

Modules: ``graph`` (the tiled network), ``passes`` (tiles, sample, the exact and fast loops),
``budget`` (the automatic choice and its memory model). The names below are the package's
interface; import them from here (``from inference import tiling``).

Why plain tiling is not enough: every layer of ReMAEN is local (3x3 convs, dilations up to
``max(dilations)``, pointwise gates) EXCEPT the squeeze of each SE block, a mean over the
WHOLE image. Tiles with their own means give a visibly different result. Two modes:

``exact`` (equal to one whole-image pass up to float rounding, < 1e-4):

1. One graph is built for a "tile with halo" of any size, with a ``maeb.FedSqueeze`` as
   the SE blocks' ``squeeze_fn`` (through ``slim.arg_scope``): every SE block takes its
   squeeze [1, C] from a placeholder; its input feature map is one of the network's end
   points (``model.se_inputs``). There are K such SE points in call order (12 per stage
   with the paper's model: MAEB1-4, the 7 GRU outputs through the path-shared SE blocks and
   the RMG; K is read from the graph, never hard-coded). Per point k the graph also gives
   the SUM of its input over the tile's interior (the tile without its halo).
2. Multi-pass: for k = 1..K every tile is run up to point k only (TensorFlow prunes the rest
   of the graph), with the squeezes of points < k fed from the earlier passes; summing the
   interior sums of all tiles and dividing by H * W gives the exact global mean of point k.
   A last pass, with all K squeezes fed, computes the output tiles and stitches their
   interiors.
3. With the squeezes fed, the network is local with a receptive-field radius R
   (``receptive_field_radius``); a halo of R pixels around each interior makes every interior
   pixel see exactly what it sees in the whole image. Halos are CROPPED at the image border
   (never padded with content): a border tile then gets the same SAME zero padding as the
   whole image. Pass k only needs the radius of point k (``se_point_radii``), which is used
   as its halo (cheaper early passes).

   Cost: roughly K/2 + 1 whole passes (K = 36 for the paper's 3 stages: ~19 passes) times
   the halo overhead ((tile + 2 R) / tile)^2 (less at the borders).

``fast`` (``derain_fast``; the automatic choice's mode):

1. Statistics from a pooled sample (``sample_crops``, ``PooledSqueeze``): crops spread over
   the image, as many pixels as the memory budget allows, run as ONE batch whose SE blocks
   squeeze all their interiors together, so the K means come out consistent from the first
   SE block to the last. When the image itself fits the budget (tiles forced with
   ``--tile``), the sample is the image: one run of the plain network on it gives the exact
   means (and the pooled network is not built).
2. Otherwise one statistics pass: every tile (halo ``FAST_STATS_HALO``) with the sample's
   means fed; the interior sums of the K SE inputs, added over the tiles, give the means
   used (optional refinement passes repeat this).
3. The exact mode's last pass with those K means fed and a halo ``FAST_OVERLAP`` (the
   measured effective reach: far below R, the gradient support, see docs/tiling.md).

   Cost: the sample (up to one budget-sized pass) plus 1-2 runs per tile
   (``relative_cost`` + ``sample_cost``).

   ``plan`` uses the sample only when it is the whole image (SAMPLE_MIN_FRACTION): partial
   samples, measured, helped the heavy model and hurt the light one. Otherwise the
   statistics pass runs every tile with its own means (the first fast mode; a 12 MP photo
   under the 4 GB budget: 2.38 whole passes). Accuracy: docs/tiling.md.

Memory is bounded by one (tile + 2 * halo)^2 crop in both modes, and in the fast mode by the
sample, which ``plan`` sizes to the memory budget. A ``--tile_overlap``
smaller than R makes the exact mode approximate (the halo is then too small).
"""
from inference.tiling.budget import (AUTO_MAX_CROP, AVAILABLE_FRACTION, BUDGET_FLAG,
                                     DEFAULT_BUDGET_MB, MIN_TILE, PASS_BYTES_PER_PIXEL, Plan,
                                     choose_sample, default_budget_mb, largest_crop_pixels, pass_mb,
                                     plan, sample_pixels_for_budget, tile_for_budget, tiled_mb,
                                     whole_image_mb)
from inference.tiling.graph import (PooledSqueeze, TiledGraph, build_tiled_graph,
                                    receptive_field_radius, se_point_radii)
from inference.tiling.passes import (FAST_OVERLAP, FAST_STATS_HALO, SAMPLE_CROPS,
                                     SAMPLE_MIN_FRACTION, SAMPLE_MIN_INTERIOR, TILE_MODES,
                                     default_overlap, derain_fast, derain_tiled, halo_crop,
                                     pass_halos, relative_cost, sample_cost, sample_crops,
                                     sample_fraction, sample_squeezes, statistics_passes,
                                     tile_interiors)

__all__ = [
    'AUTO_MAX_CROP', 'AVAILABLE_FRACTION', 'BUDGET_FLAG', 'DEFAULT_BUDGET_MB', 'FAST_OVERLAP',
    'FAST_STATS_HALO', 'MIN_TILE', 'PASS_BYTES_PER_PIXEL', 'Plan', 'PooledSqueeze',
    'SAMPLE_CROPS', 'SAMPLE_MIN_FRACTION', 'SAMPLE_MIN_INTERIOR', 'TILE_MODES', 'TiledGraph',
    'build_tiled_graph', 'choose_sample', 'default_budget_mb', 'default_overlap', 'derain_fast',
    'derain_tiled', 'halo_crop', 'largest_crop_pixels', 'pass_halos', 'pass_mb', 'plan',
    'receptive_field_radius', 'relative_cost', 'sample_cost', 'sample_crops', 'sample_fraction',
    'sample_pixels_for_budget', 'sample_squeezes', 'se_point_radii', 'statistics_passes',
    'tile_for_budget', 'tile_interiors', 'tiled_mb', 'whole_image_mb',
]
