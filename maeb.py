"""Building blocks of ReMAEN: the SE block, the MAEB and the convolutional GRU.

Every block is a pure builder function: it takes tensors and an explicit ``scope`` and
returns tensors. Nothing here creates a session or stores state. Variables are created with
``tf_slim`` so their names are exactly those of the authors' release (``weights``/``biases``
under ``d1``, ``conv_xz``, ``SEBlock/fully_connected`` ...). Weight sharing across the three
recurrent stages is obtained by the caller opening ``derainNet`` with ``tf.AUTO_REUSE``.

All feature maps are NHWC float32 tensors; H and W may be unknown (any image size).
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim

LEAKY_SLOPE = 0.2
# The third value of ``direct_dilation``: explicit zero padding, then a VALID dilated Conv2D.
PADDED = 'padded'


def leaky_relu(x, name=None):
    """LeakyReLU with the paper's slope 0.2. Shape preserved."""
    return tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE, name=name)


def remaen_arg_scope():
    """Conv defaults of the whole network: 3x3, stride 1, SAME, Xavier init, biases, linear.

    Returns:
      An ``arg_scope`` dict for ``slim.conv2d`` (use as ``with slim.arg_scope(...)``).
    """
    with slim.arg_scope([slim.conv2d], stride=1, padding='SAME',
                        activation_fn=None, normalizer_fn=None,
                        weights_initializer=slim.xavier_initializer(),
                        biases_initializer=tf.zeros_initializer()) as sc:
        return sc


def conv(inputs, num_outputs, scope, rate=1, activation_fn=None, direct_dilation=False):
    """3x3 SAME convolution with biases (``<scope>/weights``, ``<scope>/biases``).

    Args:
      inputs: [N, H, W, C_in] float32.
      num_outputs: C_out.
      scope: variable scope name of the layer, e.g. ``'d1'`` or ``'conv_xz'``.
      rate: dilation rate; the same variables serve any rate.
      activation_fn: None (linear) or a function.
      direct_dilation: for rate > 1, one ``Conv2D`` op with ``dilations`` instead of
        ``slim.conv2d``'s SpaceToBatchND -> Conv2D -> BatchToSpaceND. Same variables and
        result; ~15% faster forward on CPU (see BENCHMARKS.md). Its gradient exists with
        oneDNN's CPU kernels and on GPUs but not with TensorFlow's plain CPU kernels
        (``precision.direct_dilation_trainable``). ``PADDED`` ('padded'): the same Conv2D
        with VALID padding on the input zero-padded by ``rate`` pixels on each side
        (``tf.pad``), which equals SAME; ONNX Runtime runs this form for any image size
        (a dilated SAME conv of unknown size it refuses; docs/deploy.md).

    Returns:
      [N, H, W, C_out] float32.
    """
    if direct_dilation and rate > 1:
        net = fused_conv(inputs, num_outputs, [scope], rate, direct_dilation == PADDED)[0]
        return activation_fn(net) if activation_fn is not None else net
    return slim.conv2d(inputs, num_outputs, [3, 3], rate=rate, activation_fn=activation_fn,
                       scope=scope)


def conv_variables(inputs, num_outputs, scope):
    """The variables ``slim.conv2d`` would create for a 3x3 conv in ``scope``.

    Same names, shapes, dtype and initializers (Xavier weights, zero biases), so the fused
    paths below read and write exactly the checkpoint's variables.

    Returns:
      (weights [3, 3, C_in, C_out], biases [C_out]).
    """
    channels = inputs.get_shape().as_list()[-1]
    dtype = inputs.dtype.base_dtype
    with tf.variable_scope(scope):
        weights = slim.model_variable('weights', [3, 3, channels, num_outputs], dtype=dtype,
                                      initializer=slim.xavier_initializer())
        biases = slim.model_variable('biases', [num_outputs], dtype=dtype,
                                     initializer=tf.zeros_initializer())
    return weights, biases


def fused_conv(inputs, num_outputs, scopes, rate=1, padded=False):
    """Several 3x3 SAME convs of the SAME input computed as one wider ``Conv2D`` op.

    The variables of each scope are those of ``conv(inputs, num_outputs, scope)``; their
    weights and biases are concatenated along the output channels at graph time, so one
    ``Conv2D`` with ``len(scopes) * num_outputs`` outputs replaces ``len(scopes)`` small
    ones (better use of the CPU's matrix kernels, fewer ops; same numbers up to float
    summation order). With one scope it is that conv as a single op.

    Args:
      inputs: [N, H, W, C_in] float32.
      num_outputs: C_out of each conv.
      scopes: variable scopes, e.g. ``['conv_xr', 'conv_xz', 'conv_xn']``.
      rate: dilation rate, passed to ``Conv2D`` directly (see ``conv``).
      padded: pad the input by ``rate`` zeros on each side and convolve VALID (the same
        numbers as SAME; see ``conv``'s ``PADDED``).

    Returns:
      list of len(scopes) tensors [N, H, W, C_out], linear (no activation).
    """
    pairs = [conv_variables(inputs, num_outputs, scope) for scope in scopes]
    weights = tf.concat([w for w, _ in pairs], axis=3) if len(pairs) > 1 else pairs[0][0]
    biases = tf.concat([b for _, b in pairs], axis=0) if len(pairs) > 1 else pairs[0][1]
    padding = 'SAME'
    if padded:
        # A 3x3 kernel dilated by r spans 2r + 1 pixels: SAME pads r on every side.
        inputs = tf.pad(inputs, [[0, 0], [rate, rate], [rate, rate], [0, 0]])
        padding = 'VALID'
    net = tf.nn.bias_add(tf.nn.conv2d(inputs, weights, [1, 1, 1, 1], padding,
                                      dilations=[1, rate, rate, 1]), biases)
    return tf.split(net, len(scopes), axis=3) if len(scopes) > 1 else [net]


def _gate_convs(inputs, num_outputs, scopes, fused):
    """The linear convs ``scopes`` of one GRU input: one ``fused_conv``, or one conv each."""
    if fused:
        return fused_conv(inputs, num_outputs, scopes)
    return [conv(inputs, num_outputs, scope) for scope in scopes]


def global_mean_squeeze(inputs):
    """The paper's squeeze: [N, H, W, C] -> [N, C], the mean over H and W."""
    return tf.reduce_mean(inputs, axis=[1, 2])


def row_mean_squeeze(inputs):
    """The paper's squeeze computed as the mean of the row means: [N, H, W, C] -> [N, C].

    The same value as ``global_mean_squeeze`` in exact arithmetic, but in float32 each sum
    has W or H terms instead of H x W: on a 321x481 image its relative error is ~2e-7
    instead of TensorFlow's ~3e-6 for one mean of 154,401 terms, and ONNX Runtime and
    LiteRT compute it as closely (their one-shot means differ more). The network
    amplifies these errors to ~1e-4 in the output (docs/deploy.md), so the exports use it.
    """
    return tf.reduce_mean(tf.reduce_mean(inputs, axis=2), axis=1)


class FedSqueeze(object):
    """A ``squeeze_fn`` whose means are fed instead of computed (exact tiled inference).

    Pass it as ``slim.arg_scope([maeb.se_block], squeeze_fn=FedSqueeze())`` while a graph
    is built: every ``se_block`` call then takes its [N, C] squeeze from a new placeholder
    (dtype of its input) instead of the global mean. No variable is created or renamed.

    Attributes:
      squeezes: the [None, C] placeholders, in call order.
    """

    def __init__(self):
        self.squeezes = []

    def __call__(self, inputs):
        squeeze = tf.placeholder(inputs.dtype.base_dtype,
                                 [None, inputs.get_shape().as_list()[-1]],
                                 name='squeeze_%d' % len(self.squeezes))
        self.squeezes.append(squeeze)
        return squeeze


@slim.add_arg_scope
def se_block(inputs, reduction=4, scope='SEBlock', squeeze_fn=None, outputs_collections=None):
    """Squeeze-and-excitation channel attention.

    Global average pool -> fully connected to C/reduction (ReLU) -> fully connected to C
    (sigmoid) -> channel-wise product with the input. Variables:
    ``<scope>/fully_connected/{weights,biases}`` and ``<scope>/fully_connected_1/...``.

    Args:
      inputs: [N, H, W, C] float32 with C known statically.
      reduction: channel reduction factor of the bottleneck (4 in the paper: 32 -> 8).
      scope: variable scope; calling twice with the same scope under AUTO_REUSE shares it.
      squeeze_fn: [N, H, W, C] -> [N, C]; None = ``global_mean_squeeze`` (the paper).
        Tiled inference passes a ``FedSqueeze`` through ``slim.arg_scope``.
      outputs_collections: a graph collection name to which ``inputs`` is added (the
        network records its SE inputs this way, see ``model.remaen``'s end points).

    Returns:
      [N, H, W, C] float32, the input rescaled by per-channel weights in (0, 1).
    """
    channels = inputs.get_shape().as_list()[-1]
    if outputs_collections:
        tf.add_to_collection(outputs_collections, inputs)
    with tf.variable_scope(scope, values=[inputs]):
        squeeze = (squeeze_fn or global_mean_squeeze)(inputs)                  # [N, C]
        excite = slim.fully_connected(squeeze, channels // reduction, activation_fn=tf.nn.relu,
                                      scope='fully_connected')               # [N, C/r]
        excite = slim.fully_connected(excite, channels, activation_fn=tf.nn.sigmoid,
                                      scope='fully_connected_1')             # [N, C]
        return inputs * excite[:, tf.newaxis, tf.newaxis, :]


def maeb(inputs, channels=32, rates=(1, 2, 3), scope='MAEB', direct_dilation=False):
    """Multi-scale Aggregation and Enhancement Block.

    For each dilation rate r: conv ``d1`` (rate r) -> LeakyReLU -> conv ``d2`` (rate r) ->
    LeakyReLU. The branches are summed and enhanced by the block's own SE block.

    Weight sharing: the SAME two convolutions ``d1``/``d2`` (one set of weights) serve every
    rate; only the dilation differs between branches.

    Args:
      inputs: [N, H, W, C_in] float32 (C_in = 3 for MAEB1, else ``channels``).
      channels: feature channels (32).
      rates: dilation rates of the branches, (1, 2, 3) in the paper; a single rate gives the
        single-scale ablation.
      scope: ``'MAEB1'`` .. ``'MAEB4'``.
      direct_dilation: see ``conv``.

    Returns:
      [N, H, W, channels] float32.
    """
    with tf.variable_scope(scope, values=[inputs]):
        branches = []
        for rate in rates:
            net = leaky_relu(conv(inputs, channels, 'd1', rate, None, direct_dilation))
            net = leaky_relu(conv(net, channels, 'd2', rate, None, direct_dilation))
            branches.append(net)
        net = tf.add_n(branches) if len(branches) > 1 else branches[0]
        return se_block(net, scope='SEBlock')


def conv_gru(x, h, channels=32, scope='convGRU', fused=True):
    """Convolutional GRU cell (the variables only; attention is applied by the caller).

    First stage (``h`` is None): ``h' = sigmoid(conv_xz(x)) * tanh(conv_xn(x))``.
    Later stages::

        r  = sigmoid(conv_hr(h) + conv_xr(x))
        z  = sigmoid(conv_hz(h) + conv_xz(x))
        n  = tanh(conv_xn(x) + conv_hn(r * h))
        h' = (1 - z) * h + z * n

    Args:
      x: [N, H, W, channels] float32 input.
      h: [N, H, W, channels] float32 state from the previous stage, or None in stage 1.
      channels: feature channels.
      scope: ``'convGRU1'`` .. ``'convGRU7'``.
      fused: compute the convs that read the same tensor as one wider conv
        (``fused_conv``: [xz, xn] in stage 1, [hr, hz] and [xr, xz, xn] later; 4 convs
        instead of 6). False = one ``slim.conv2d`` per variable (the reference graph).

    Returns:
      [N, H, W, channels] float32, the new (pre-attention) state.
    """
    with tf.variable_scope(scope, values=[x] if h is None else [x, h]):
        if h is None:
            xz, xn = _gate_convs(x, channels, ['conv_xz', 'conv_xn'], fused)
            return tf.sigmoid(xz) * tf.tanh(xn)
        hr, hz = _gate_convs(h, channels, ['conv_hr', 'conv_hz'], fused)
        xr, xz, xn = _gate_convs(x, channels, ['conv_xr', 'conv_xz', 'conv_xn'], fused)
        r = tf.sigmoid(hr + xr)
        z = tf.sigmoid(hz + xz)
        n = tf.tanh(xn + conv(r * h, channels, 'conv_hn'))
        return (1.0 - z) * h + z * n


def attentive_gru(x, h, channels=32, scope='convGRU', shared_attention=True, fused=True):
    """Conv GRU followed by channel attention and LeakyReLU, as in the paper.

    The SE block sits OUTSIDE the GRU's own scope. With ``shared_attention`` (the paper) its
    scope is the enclosing path, so ONE SE block (``<path>/SEBlock``) is shared by all GRUs of
    that path. Without it (ablation), each GRU gets its own ``<scope>/SEBlock``.

    Args:
      x: [N, H, W, channels] float32.
      h: previous-stage output of this same GRU ([N, H, W, channels]) or None.
      channels: feature channels.
      scope: GRU scope (``'convGRU1'`` ...).
      shared_attention: share one SE block per path (True = paper).
      fused: see ``conv_gru``.

    Returns:
      [N, H, W, channels] float32: the GRU output, also the state for the next stage.
    """
    state = conv_gru(x, h, channels, scope=scope, fused=fused)
    se_scope = 'SEBlock' if shared_attention else scope + '/SEBlock'
    return leaky_relu(se_block(state, scope=se_scope))
