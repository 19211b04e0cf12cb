"""Exact tiled inference (``--tile``): derain images too large for one pass, bounded memory.

Why plain tiling is not enough: every layer of ReMAEN is local (3x3 convs, dilations up to
``max(dilations)``, pointwise gates) EXCEPT the squeeze of each SE block, a mean over the
WHOLE image. Tiles with their own means give a visibly different result. The scheme here is
exact (equal to one whole-image pass up to float rounding, < 1e-4):

1. One graph is built for a "tile with halo" of any size, with ``maeb.squeeze_override``:
   every SE block takes its squeeze [1, C] from a placeholder and its input feature map is
   recorded. There are K such SE points in call order (12 per stage with the paper's model:
   MAEB1-4, the 7 GRU outputs through the path-shared SE blocks and the RMG; K is read from
   the graph, never hard-coded). Per point k the graph also gives the SUM of its input over
   the tile's interior (the tile without its halo).
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

Cost: memory is bounded by one (tile + 2 * overlap)^2 crop; compute is roughly K/2 + 1 whole
passes (K = 36 for the paper's 3 stages: ~19 passes) times the halo overhead
((tile + 2 R) / tile)^2 (less at the borders). Use it only for images that do not fit.
A ``--tile_overlap`` smaller than R is allowed but approximate (the halo is then too small).
"""
import collections

import numpy as np
import tensorflow.compat.v1 as tf

import maeb
import model

# What ``derain_tiled`` needs from the graph (all tensors of one graph):
#   images: [1, None, None, C_in] float32 placeholder, the tile with its halo.
#   interior: [4] int32 placeholder (top, left, height, width) of the interior in the crop.
#   squeezes: K placeholders [1, channels] float32, the SE means in call order.
#   sums: K tensors [1, channels] float32, interior sum of each SE point's input.
#   output: [1, height, width, C_in] float32, the network output on the interior (unclipped).
TiledGraph = collections.namedtuple('TiledGraph',
                                    ['images', 'interior', 'squeezes', 'sums', 'output'])


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


def build_tiled_graph(config=None, scope='derainNet'):
    """Build the tile graph in the default graph (reusing ``scope``'s variables if present).

    Args:
      config: ModelConfig (None = the paper's model).
      scope: the network's variable scope (``'derainNet'``, as in checkpoints).

    Returns:
      TiledGraph; restore the network weights (``model.model_variables()``) before use.
    """
    config = config or model.ModelConfig()
    with tf.name_scope('tiled'):
        images = tf.placeholder(tf.float32, [1, None, None, config.input_channels], name='tile')
        interior = tf.placeholder(tf.int32, [4], name='interior')
    with maeb.squeeze_override() as hooks:
        output, _, _ = model.remaen(images, config, scope=scope, inference=True)
    with tf.name_scope('tiled'):
        sums = [tf.reduce_sum(_interior(x, interior), axis=[1, 2]) for x in hooks.inputs]
        output = _interior(output, interior)
    return TiledGraph(images, interior, hooks.squeezes, sums, output)


# ----------------------------------------------------------------------------- tiles
def tile_interiors(height, width, tile):
    """Split an image into interiors of at most ``tile`` x ``tile`` pixels.

    Returns:
      list of (y0, y1, x0, x1) half-open boxes covering the image exactly once.
    """
    if tile < 1:
        raise ValueError('tile must be >= 1, got %d' % tile)
    rows = [(y, min(y + tile, height)) for y in range(0, height, tile)]
    cols = [(x, min(x + tile, width)) for x in range(0, width, tile)]
    return [(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols]


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


def _feed(graph, image, box, halo, squeezes):
    """feed_dict for one tile: its crop, its interior and the squeezes known so far."""
    height, width = image.shape[:2]
    (cy0, cy1, cx0, cx1), interior = halo_crop(box, halo, height, width)
    feed = {graph.images: image[np.newaxis, cy0:cy1, cx0:cx1], graph.interior: interior}
    feed.update(zip(graph.squeezes, squeezes))
    return feed


def derain_tiled(session, graph, image, tile, overlap, point_radii=None):
    """Derain one image tile by tile; equal to one whole-image pass when ``overlap >= R``.

    Args:
      session: tf.Session of ``graph``'s tf.Graph with the weights restored.
      graph: TiledGraph from ``build_tiled_graph``.
      image: [H, W, C_in] float32 BGR in [0, 1].
      tile: interior side in pixels (>= 1).
      overlap: halo in pixels around each interior (R = ``receptive_field_radius`` is exact).
      point_radii: optional ``se_point_radii(config)``: pass k then uses the smaller halo
        min(overlap, radius of point k) (same result, less work). None = ``overlap`` always.

    Returns:
      [H, W, C_in] float32, the derained image (NOT clipped, like the network's output).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    if overlap < 0:
        raise ValueError('tile overlap must be >= 0, got %d' % overlap)
    if point_radii is not None and len(point_radii) != len(graph.squeezes):
        raise ValueError('%d point radii for %d SE points' % (len(point_radii),
                                                               len(graph.squeezes)))
    boxes = tile_interiors(height, width, tile)
    squeezes = []
    for k, point_sum in enumerate(graph.sums):
        halo = overlap if point_radii is None else min(overlap, point_radii[k])
        total = 0.0
        for box in boxes:
            part = session.run(point_sum, _feed(graph, image, box, halo, squeezes))
            total = total + part.astype(np.float64)
        squeezes.append((total / (height * width)).astype(np.float32))
    output = np.empty(image.shape, np.float32)
    for y0, y1, x0, x1 in boxes:
        feed = _feed(graph, image, (y0, y1, x0, x1), overlap, squeezes)
        output[y0:y1, x0:x1] = session.run(graph.output, feed)[0]
    return output
