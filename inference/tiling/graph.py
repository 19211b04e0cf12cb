"""The tiled network's graph: SE squeezes fed from outside, interior sums, receptive field.

``build_tiled_graph`` builds the network once for a tile with its halo (any size), every SE
block squeezing from a placeholder (``maeb.FedSqueeze``) and each SE point's input summed over
the tile's interior; with ``pooled=True`` also the network whose SE blocks squeeze several
sample crops together (``PooledSqueeze``). ``receptive_field_radius`` / ``se_point_radii``
give the halo each pass needs. Asks ``model`` and ``maeb`` for the network.
"""
import collections

import tensorflow.compat.v1 as tf
import tf_slim as slim

import maeb
import model


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
