"""Tiled inference: derain images too large for one pass, in bounded memory (``plan``).

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
import collections

import numpy as np
import tensorflow.compat.v1 as tf
import tf_slim as slim

import maeb
import model
import profiling

# What ``derain_tiled`` needs from the graph (all tensors of one graph):
#   images: [1, None, None, C_in] float32 placeholder, the tile with its halo.
#   interior: [4] int32 placeholder (top, left, height, width) of the interior in the crop.
#   squeezes: K placeholders [1, channels] float32, the SE means in call order.
#   sums: K tensors [1, channels] float32, interior sum of each SE point's input (squeezes fed).
#   output: [1, height, width, C_in] float32, the network output on the interior (unclipped).
#   local_sums: K tensors [1, channels] float32, the same interior sums from the plain network
#     run on the crop alone (each SE block squeezes with the crop's own mean; nothing fed).
#   samples: [N, None, None, C_in] float32 placeholder, N sample crops of one size whose
#     interiors (the same ``interior`` in each) are squeezed TOGETHER (``PooledSqueeze``);
#     None unless built with ``pooled=True``.
#   sample_means: K tensors [1, channels] float32, the SE means of the network run on
#     ``samples``: every SE block squeezes the mean over all N interiors (None likewise).
TiledGraph = collections.namedtuple('TiledGraph', ['images', 'interior', 'squeezes', 'sums',
                                                   'output', 'local_sums', 'samples',
                                                   'sample_means'])


class PooledSqueeze(object):
    """A ``squeeze_fn`` pooling a batch of crops: one mean over all their interiors.

    Every ``se_block`` squeezes the mean of its input over the ``interior`` of every crop of
    the batch together ([1, C], repeated for the N crops), so the N crops behave as ONE image
    made of their interiors: the SE means of deep layers are computed from features that saw
    the pooled means of the earlier layers, as in one whole-image pass (unlike crops that
    each squeeze themselves).

    Args:
      interior: [4] int32 tensor (top, left, height, width), the same in every crop.

    Attributes:
      means: the [1, C] means, in call order.
    """

    def __init__(self, interior):
        self.interior, self.means = interior, []

    def __call__(self, inputs):
        mean = tf.reduce_mean(_interior(inputs, self.interior), axis=[0, 1, 2], keepdims=True)
        mean = tf.reshape(mean, [1, inputs.get_shape().as_list()[-1]])
        self.means.append(mean)
        return tf.tile(mean, tf.stack([tf.shape(inputs)[0], 1]))      # [N, C], C static


# ----------------------------------------------------------------------------- receptive field
def _gru_radius(x, h):
    """Radius of a conv GRU output given those of its input x and state h (None = stage 1).

    Stage 1: ``sigmoid(conv(x)) * tanh(conv(x))`` -> x + 1. Later stages: ``r`` and ``z``
    are one conv of x and h (+1); ``conv_hn(r * h)`` adds a second conv (+2), so
    ``h' = (1 - z) h + z n`` reaches max(x, h) + 2.
    """
    return x + 1 if h is None else max(x, h) + 2


def _radius_walk(config):
    """Follow ``model.remaen_stage`` and return the radii of every SE input and the output.

    The radius of a tensor is the largest Chebyshev distance (max(|dy|, |dx|)) between one
    of its pixels and an input pixel it depends on, with all SE squeezes held fixed. A 3x3
    conv of dilation d adds d; pointwise ops (activations, SE rescaling by a fed squeeze,
    sums) take the max of their operands. Per stage: each MAEB adds 2 * max(dilations) (its
    two convs ``d1``, ``d2`` at the largest rate); the GRUs follow ``_gru_radius`` and their
    states are carried to the next stage; ``conv5``-``conv7`` add 1 (the skip from a MAEB is
    always nearer); the RMG adds 2 (``Conv`` and ``Conv_1``).

    Returns:
      (point_radii, output_radius): a list with the radius of each SE block's input in call
      order (MAEB1, GRU1, MAEB2, GRU2, MAEB3, GRU3, MAEB4, GRU4, GRU5, GRU6, GRU7, RMG per
      stage) and the radius of the final output.
    """
    maeb_reach = 2 * max(config.dilations)
    estimate, states, points = 0, [None] * model.NUM_GRUS, []
    for _ in range(config.stages):
        net, blocks = estimate, []
        for k in range(4):                                    # extracting path
            net += maeb_reach
            blocks.append(net)
            points.append(net)                                # MAEB SE input
            net = states[k] = _gru_radius(net, states[k])
            points.append(net)                                # GRU SE input (state)
        for k, skip in zip((4, 5, 6), blocks[2::-1]):         # responding path
            net += 1
            if config.skip_connections:
                net = max(net, skip)
            net = states[k] = _gru_radius(net, states[k])
            points.append(net)
        points.append(net + 1)                                # RMG: SE after Conv
        estimate = max(estimate, net + 2)                     # estimate - residual
    return points, estimate


def receptive_field_radius(config=None):
    """Receptive-field radius R of the network with its SE squeezes held fixed.

    A halo of R pixels around a tile makes tiled inference exact. In closed form,
    ``R = S * (8 D + 19) - 7`` for S stages and D = max(dilations): stage 1 reaches
    4 * (2D + 1) + 3 * (1 + 1) + 2 = 8D + 12; every later stage adds 4 * (2D + 2) + 3 * (1 + 2)
    + 2 = 8D + 19 (its GRUs have two convs in series). Paper model (S = 3, D = 3): R = 122.

    Args:
      config: ModelConfig (None = the paper's model).

    Returns:
      int, R in pixels.
    """
    return _radius_walk(config or model.ModelConfig())[1]


def se_point_radii(config=None):
    """Radius of the input of each SE block in call order (see ``_radius_walk``).

    Args:
      config: ModelConfig (None = the paper's model).

    Returns:
      list of K ints (K = 12 * stages).
    """
    return _radius_walk(config or model.ModelConfig())[0]


# ----------------------------------------------------------------------------- graph
def _interior(tensor, interior):
    """Crop [N, H, W, C] to the interior (top, left, height, width) -> [N, h, w, C]."""
    begin = tf.stack([0, interior[0], interior[1], 0])
    size = tf.stack([-1, interior[2], interior[3], -1])
    return tf.slice(tensor, begin, size)


def build_tiled_graph(config=None, scope='derainNet', pooled=False):
    """Build the tile graphs in the default graph (reusing ``scope``'s variables if present).

    Networks sharing the variables and the ``interior`` placeholder: on ``images``, one with
    every SE squeeze fed (``squeezes``; ``sums`` and ``output``) and the plain network whose
    SE blocks squeeze the crop itself (``local_sums``: the first fast mode's statistics, and
    run on a whole image the exact means); with ``pooled``, also the pooled network on the
    batch ``samples`` (``sample_means``, a partial sample's statistics; ~2,500 ops and ~1.5 s
    more at start-up, so only built when asked for). TensorFlow only runs what a fetch needs.

    Args:
      config: ModelConfig (None = the paper's model).
      scope: the network's variable scope (``'derainNet'``, as in checkpoints).
      pooled: also build the pooled network (partial samples in ``sample_squeezes``).

    Returns:
      TiledGraph (``samples`` and ``sample_means`` None without ``pooled``); restore the
      network weights (``model.model_variables()``) before use.
    """
    config = config or model.ModelConfig()
    with tf.name_scope('tiled'):
        images = tf.placeholder(tf.float32, [1, None, None, model.IMAGE_CHANNELS], name='tile')
        interior = tf.placeholder(tf.int32, [4], name='interior')
    fed = maeb.FedSqueeze()
    with slim.arg_scope([maeb.se_block], squeeze_fn=fed):
        output, end_points = model.remaen(images, config, scope=scope, reuse=tf.AUTO_REUSE,
                                          direct_dilation=True)
    _, local_points = model.remaen(images, config, scope=scope, reuse=tf.AUTO_REUSE,
                                   direct_dilation=True)
    samples = sample_means = None
    if pooled:
        with tf.name_scope('tiled'):
            samples = tf.placeholder(tf.float32, [None, None, None, model.IMAGE_CHANNELS],
                                     name='samples')
        squeeze = PooledSqueeze(interior)
        with slim.arg_scope([maeb.se_block], squeeze_fn=squeeze):
            model.remaen(samples, config, scope=scope, reuse=tf.AUTO_REUSE,
                         direct_dilation=True)
        sample_means = squeeze.means
    with tf.name_scope('tiled'):
        sums = _interior_sums(end_points, interior)
        local_sums = _interior_sums(local_points, interior)
        output = _interior(output, interior)
    return TiledGraph(images, interior, fed.squeezes, sums, output, local_sums, samples,
                      sample_means)


def _interior_sums(end_points, interior):
    """The K [1, C] sums of the SE inputs of ``remaen``'s end points over the interior."""
    return [tf.reduce_sum(_interior(x, interior), axis=[1, 2])
            for x in model.se_inputs(end_points)]


# ----------------------------------------------------------------------------- tiles
def tile_interiors(height, width, tile):
    """Split an image into interiors of at most ``tile`` x ``tile`` pixels, of equal sizes.

    ``ceil(height / tile)`` rows and ``ceil(width / tile)`` columns of near-equal size (they
    differ by at most one pixel): no thin remainder tile, whose halo would cost more than
    its interior.

    Returns:
      list of (y0, y1, x0, x1) half-open boxes covering the image exactly once, row by row.
    """
    if tile < 1:
        raise ValueError('tile must be >= 1, got %d' % tile)
    rows, cols = _even_split(height, tile), _even_split(width, tile)
    return [(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols]


def _even_split(length, tile):
    """[(start, stop)]: ``ceil(length / tile)`` consecutive ranges of near-equal length."""
    count = -(-length // tile)
    edges = [length * k // count for k in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def halo_crop(box, halo, height, width):
    """The crop of the image around an interior, and the interior inside that crop.

    The halo is cropped at the image border (no padding), so border tiles see the same SAME
    zero padding as the whole image.

    Args:
      box: (y0, y1, x0, x1) interior in image coordinates.
      halo: pixels added on each side.
      height, width: image size.

    Returns:
      (crop, interior): crop = (cy0, cy1, cx0, cx1) in the image; interior = [top, left,
      height, width] of the box inside the crop (the ``interior`` feed).
    """
    y0, y1, x0, x1 = box
    cy0, cy1 = max(0, y0 - halo), min(height, y1 + halo)
    cx0, cx1 = max(0, x0 - halo), min(width, x1 + halo)
    return (cy0, cy1, cx0, cx1), [y0 - cy0, x0 - cx0, y1 - y0, x1 - x0]


# The statistics sample: at most SAMPLE_CROPS crops (more, smaller crops spread the sample
# over more of the image; each pays its halo), interiors of at least SAMPLE_MIN_INTERIOR.
SAMPLE_CROPS = 16
SAMPLE_MIN_INTERIOR = 64
# The plan uses a sample only when it covers at least this share of the image; below it the
# statistics pass runs every tile with its own means. 1.0: only the whole image (exact means).
# Partial samples, then one pass, measured on 2x pairs with a 10% sample (docs/tiling.md):
# 3.6-4.5 dB closer to the whole-image output than each-tile-its-own for the heavy model, but
# 17 dB further for the light model on one pair; no partial sample is better for both.
SAMPLE_MIN_FRACTION = 1.0


def sample_crops(height, width, pixels, halo, count=SAMPLE_CROPS):
    """Equal crops spread evenly over an image, of at most ``pixels`` pixels together.

    The whole image when it has at most ``pixels`` pixels (the statistics are then exact).
    Otherwise a grid of up to ``count`` crops of one size, each inside the image, centred in
    equal cells of the image; the interior of a crop is the crop without ``halo`` pixels on
    each side (along a side that spans the whole image, the whole side).

    Args:
      height, width: image size.
      pixels: sample size bound (crop pixels, halos included).
      halo: pixels between a crop's edge and its interior (at most a quarter of the crop's
        side, when ``pixels`` are too few for one crop with the full halo).
      count: most crops.

    Returns:
      (crops, interior): crops = list of (cy0, cy1, cx0, cx1) of one size; interior = [top,
      left, height, width] inside each crop (the ``interior`` feed).
    """
    if height * width <= pixels:
        return [(0, height, 0, width)], [0, 0, height, width]
    least = 2 * halo + SAMPLE_MIN_INTERIOR
    side = max(int((pixels / float(count)) ** 0.5), min(least, int(pixels ** 0.5)))
    halo = min(halo, side // 4)                   # a crop too small for both: half interior
    crop_h = min(height, side)
    crop_w = min(width, max(side, pixels // (count * crop_h)))
    number = int(max(1, min(count, pixels // (crop_h * crop_w))))
    rows = 1 if crop_h == height else int(min(number, max(1, round(
        (number * height / float(width)) ** 0.5))))
    cols = 1 if crop_w == width else max(1, number // rows)
    if crop_w == width:
        rows = number

    def starts(length, crop, cells):
        return [min(length - crop, max(0, int(round((k + 0.5) * length / cells - crop / 2.0))))
                for k in range(cells)]

    crops = [(y, y + crop_h, x, x + crop_w) for y in starts(height, crop_h, rows)
             for x in starts(width, crop_w, cols)]
    top = 0 if crop_h == height else halo
    left = 0 if crop_w == width else halo
    return crops, [top, left, crop_h - 2 * top, crop_w - 2 * left]


def sample_fraction(height, width, pixels, halo=None):
    """The share of the image that the interiors of ``sample_crops`` cover (1.0: all)."""
    crops, (_, _, inner_h, inner_w) = sample_crops(
        height, width, pixels, FAST_STATS_HALO if halo is None else halo)
    return len(crops) * inner_h * inner_w / float(height * width)


def sample_squeezes(session, graph, image, pixels, halo=None):
    """The K SE means of one image from a pooled sample of crops (``sample_crops``).

    Exact (the whole-image pass's means, up to float rounding) when the image has at most
    ``pixels`` pixels: one run of the plain network on the image, its interior sums divided
    by H * W); otherwise the means of one run of the pooled network (``build_tiled_graph``
    with ``pooled=True``) on the sample crops as one image (``PooledSqueeze``): an estimate
    from a part of the image, consistent through the K SE blocks.

    Args:
      session, graph: see ``derain_tiled``.
      image: [H, W, C_in] float32 in [0, 1].
      pixels: sample size bound (its memory is that of one pass over ``pixels`` pixels).
      halo: crop halo; None = FAST_STATS_HALO.

    Returns:
      list of K [1, C] float32 arrays.
    """
    halo = FAST_STATS_HALO if halo is None else halo
    height, width = image.shape[:2]
    crops, interior = sample_crops(height, width, pixels, halo)
    if len(crops) == 1 and interior == [0, 0, height, width]:
        # The whole image: the plain network's sums over it (no pooled network needed).
        sums = session.run(graph.local_sums, {graph.images: image[np.newaxis],
                                              graph.interior: interior})
        return [_mean_of_sums([part], height, width) for part in sums]
    if graph.sample_means is None:
        raise ValueError('a partial sample (%d of %d pixels) needs the pooled network: '
                         'build_tiled_graph(..., pooled=True)' % (pixels, height * width))
    batch = np.stack([image[y0:y1, x0:x1] for y0, y1, x0, x1 in crops])
    means = session.run(graph.sample_means, {graph.samples: batch, graph.interior: interior})
    return [np.asarray(m, np.float32) for m in means]


def _feed(graph, image, box, halo, squeezes):
    """feed_dict for one tile: its crop, its interior and the squeezes known so far."""
    height, width = image.shape[:2]
    (cy0, cy1, cx0, cx1), interior = halo_crop(box, halo, height, width)
    feed = {graph.images: image[np.newaxis, cy0:cy1, cx0:cx1], graph.interior: interior}
    feed.update(zip(graph.squeezes, squeezes))
    return feed


TILE_MODES = ('exact', 'fast')
# Fast mode halos, measured (docs/tiling.md): the last pass with the exact global means and a
# halo of 32 differs from the whole image by <= 5e-4 (8: up to 0.11, visible seams); the
# statistics pass with the same halo of 32 instead of 16 brings the heavy model's output
# 2-14 dB closer (its SE means must be within ~1%), for ~0.1 pass more, and both passes then
# run the same crops (the memory plan counts one crop).
FAST_OVERLAP = 32
FAST_STATS_HALO = 32


def default_overlap(config=None, mode='exact'):
    """The halo ``--tile_overlap`` defaults to: R for 'exact', min(R, FAST_OVERLAP) for 'fast'.

    Args:
      config: ModelConfig (None = the paper's model).
      mode: 'exact' or 'fast'.

    Returns:
      int, pixels.
    """
    radius = receptive_field_radius(config)
    return radius if mode == 'exact' else min(radius, FAST_OVERLAP)


def pass_halos(mode, overlap, point_radii=None, stats_halo=None, config=None,
               refine_passes=0, passes=None):
    """The halo of each pass over the tiles, as ``derain_tiled`` uses them.

    Args:
      mode: 'exact' (K + 1 passes) or 'fast' (2 + refine_passes passes).
      overlap, point_radii: see ``derain_tiled``; stats_halo, refine_passes: see
        ``derain_fast``.
      config: ModelConfig giving K when ``point_radii`` is None (None = the paper's model).
      passes: fast mode's statistics passes over the tiles (``statistics_passes``); None =
        1 + refine_passes.

    Returns:
      list of ints, one halo per pass over the tiles (the fast mode's pooled sample run is
      not a pass over the tiles: ``sample_cost``).
    """
    if mode == 'fast':
        stats_halo = min(overlap, FAST_STATS_HALO) if stats_halo is None else stats_halo
        passes = 1 + refine_passes if passes is None else passes
        return [stats_halo] * passes + [overlap]
    if point_radii is None:
        point_radii = [overlap] * len(se_point_radii(config))
    return [min(overlap, radius) for radius in point_radii] + [overlap]


def relative_cost(height, width, tile, halos):
    """Pixels the network evaluates, in whole-image passes (deterministic cost measure).

    Every pass counts as the full network on each crop pixel: exact for the fast mode (its
    statistics pass runs up to the last SE block, nearly all of the network), an upper bound
    for the exact mode, whose pass k stops at SE point k.

    Args:
      height, width: image size.
      tile: interior side.
      halos: the halo of each pass (``pass_halos``).

    Returns:
      float: sum over passes and tiles of the crop areas, divided by height * width.
    """
    total = 0
    for halo in halos:
        for box in tile_interiors(height, width, tile):
            (cy0, cy1, cx0, cx1), _ = halo_crop(box, halo, height, width)
            total += (cy1 - cy0) * (cx1 - cx0)
    return total / float(height * width)


def sample_cost(height, width, sample_pixels, halo=FAST_STATS_HALO):
    """The pooled sample run of the fast mode in whole-image passes (0 without a sample)."""
    if sample_pixels is None:
        return 0.0
    crops, _ = sample_crops(height, width, sample_pixels, halo)
    return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in crops) / float(height * width)


def _tile_runs(session, graph, fetch, image, boxes, halo, squeezes, tick):
    """Run ``fetch`` on every tile; yields (box, value) after each run and calls ``tick()``."""
    for box in boxes:
        value = session.run(fetch, _feed(graph, image, box, halo, squeezes))
        tick()
        yield box, value


def _mean_of_sums(parts, height, width):
    """Global [1, C] float32 means from per-tile interior sums (accumulated in float64)."""
    total = None
    for part in parts:
        part = np.asarray(part, np.float64)
        total = part if total is None else total + part
    return (total / (height * width)).astype(np.float32)


def derain_tiled(session, graph, image, tile, overlap, point_radii=None, mode='exact',
                 progress=None, refine_passes=0, sample_pixels=None):
    """Derain one image tile by tile, in memory bounded by one (tile + 2 overlap)^2 crop.

    ``mode='exact'``: equal to one whole-image pass (< 1e-4) when ``overlap >= R``, at a cost
    of about K/2 + 1 whole passes (see the module docstring). ``mode='fast'``: two runs per
    tile (``derain_fast``), close to the whole-image pass but not equal (docs/tiling.md).

    Args:
      session: tf.Session of ``graph``'s tf.Graph with the weights restored.
      graph: TiledGraph from ``build_tiled_graph``.
      image: [H, W, C_in] float32 BGR in [0, 1].
      tile: interior side in pixels (>= 1).
      overlap: halo in pixels around each interior (R = ``receptive_field_radius`` is exact).
      point_radii: optional ``se_point_radii(config)``: exact pass k then uses the smaller halo
        min(overlap, radius of point k) (same result, less work). None = ``overlap`` always.
        The fast mode ignores it.
      mode: 'exact' or 'fast'.
      progress: optional callable ``progress(done, total)``, called after each tile run
        (``total`` = (K + 1) * tiles in exact mode; fast mode: see ``derain_fast``).
      refine_passes, sample_pixels: fast mode only, see ``derain_fast``.

    Returns:
      [H, W, C_in] float32, the derained image (NOT clipped, like the network's output).
    """
    if mode not in TILE_MODES:
        raise ValueError('mode must be one of %s, got %r' % (TILE_MODES, mode))
    if mode == 'fast':
        return derain_fast(session, graph, image, tile, overlap, progress=progress,
                           refine_passes=refine_passes, sample_pixels=sample_pixels)
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    _check_overlap(overlap)
    if point_radii is not None and len(point_radii) != len(graph.squeezes):
        raise ValueError('%d point radii for %d SE points' % (len(point_radii),
                                                               len(graph.squeezes)))
    boxes = tile_interiors(height, width, tile)
    tick = _Ticker(progress, (len(graph.sums) + 1) * len(boxes))
    squeezes = []
    for k, point_sum in enumerate(graph.sums):
        halo = overlap if point_radii is None else min(overlap, point_radii[k])
        runs = _tile_runs(session, graph, point_sum, image, boxes, halo, squeezes, tick)
        squeezes.append(_mean_of_sums((part for _, part in runs), height, width))
    return _stitch(session, graph, image, boxes, overlap, squeezes, tick)


def derain_fast(session, graph, image, tile, overlap, stats_halo=None, progress=None,
                refine_passes=0, sample_pixels=None):
    """Fast tiled mode: SE means for all K points at once, then one pass over the tiles.

    Statistics, with ``sample_pixels`` (the default plan's way):

    - the image has at most ``sample_pixels`` pixels (tiles were forced on an image that fits
      the memory budget): one pooled run on the whole image gives the exact K means
      (``sample_squeezes``); no statistics pass over the tiles;
    - else a pooled run on a sample of crops (``sample_crops``, at most ``sample_pixels``)
      estimates them, and one statistics pass runs every crop (halo ``stats_halo``) with
      those means fed: the interior sums of all K SE inputs, added over the tiles and
      divided by H * W, are the means used.

    With ``sample_pixels`` None (the plan's choice when the sample the budget allows would
    cover less than SAMPLE_MIN_FRACTION of the image, e.g. a 12 MP photo under 4 GB): the
    statistics pass runs the plain network on each crop, every SE block squeezing that
    crop's own means.

    Each optional refinement pass runs every crop again with the means fed and recomputes
    them from its sums. The last pass runs each crop (halo ``overlap``) with the K means fed
    and stitches the interiors, as the exact mode's last pass does. Accuracy: docs/tiling.md.

    Args:
      session, graph, image, tile: see ``derain_tiled``.
      overlap: halo of the last pass in pixels (>= 0; ``default_overlap(config, 'fast')``).
      stats_halo: halo of the sample crops and of the statistics passes; None =
        min(overlap, FAST_STATS_HALO).
      progress: optional ``progress(done, total)`` after each run (the pooled sample run
        counts as one; total = sample + (statistics passes + 1) * tiles).
      refine_passes: extra statistics passes (default 0).
      sample_pixels: pixels of the pooled sample (its memory is one pass over that many
        pixels; ``sample_pixels_for_budget``); None = no sample (see above).

    Returns:
      [H, W, C_in] float32, the derained image (not clipped).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    _check_overlap(overlap)
    stats_halo = pass_halos('fast', overlap, stats_halo=stats_halo)[0]
    _check_overlap(stats_halo)
    if refine_passes < 0:
        raise ValueError('refine_passes must be >= 0, got %d' % refine_passes)
    boxes = tile_interiors(height, width, tile)
    passes = statistics_passes(height, width, sample_pixels, refine_passes)
    tick = _Ticker(progress, (sample_pixels is not None) + (passes + 1) * len(boxes))
    fetch, squeezes = graph.local_sums, ()
    if sample_pixels is not None:
        squeezes = sample_squeezes(session, graph, image, sample_pixels, stats_halo)
        fetch = graph.sums
        tick()
    for _ in range(passes):
        parts = [part for _, part in _tile_runs(session, graph, fetch, image, boxes,
                                               stats_halo, squeezes, tick)]
        squeezes = [_mean_of_sums(point, height, width) for point in zip(*parts)]
        fetch = graph.sums
    return _stitch(session, graph, image, boxes, overlap, squeezes, tick)


def statistics_passes(height, width, sample_pixels, refine_passes=0):
    """Statistics passes over the tiles of the fast mode (0 when the sample is the image)."""
    exact = sample_pixels is not None and height * width <= sample_pixels
    return refine_passes + (0 if exact else 1)


def _stitch(session, graph, image, boxes, halo, squeezes, tick):
    """The last pass: every tile with all K squeezes fed, interiors stitched -> [H, W, C]."""
    output = np.full(image.shape, np.nan, np.float32)         # a missed pixel would show
    for (y0, y1, x0, x1), value in _tile_runs(session, graph, graph.output, image, boxes, halo,
                                              squeezes, tick):
        output[y0:y1, x0:x1] = value[0]
    return output


def _check_overlap(overlap):
    if overlap < 0:
        raise ValueError('tile overlap must be >= 0, got %d' % overlap)


class _Ticker(object):
    """Counts tile runs and reports ``progress(done, total)`` after each (no-op if None)."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


# ----------------------------------------------------------------------------- automatic choice
# Peak memory of one network pass (the paper's 32 channels, fp32, CPU), measured with
# ``profiling.peak_rss_mb`` (docs/tiling.md): 4.1-4.8 kB per pixel of its input, from 321x481
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
      available_mb: memory available (None = ``profiling.available_memory_mb()``,
        measured now).

    Returns:
      float: min(DEFAULT_BUDGET_MB, AVAILABLE_FRACTION * available), DEFAULT_BUDGET_MB when
      the available memory is unknown.
    """
    if available_mb is None:
        available_mb = profiling.available_memory_mb()
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
