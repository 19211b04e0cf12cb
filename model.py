"""The ReMAEN network, its loss and its training graph.

Structure (``derainNet``, all weights shared by the recurrent stages)::

    estimate_0 = rainy image
    for stage s = 1..S:
        ReMAEN/extracting_path:  MAEB1 -> convGRU1 -> MAEB2 -> convGRU2 -> ... -> convGRU4
        ReMAEN/responding_path:  conv5(GRU4) + MAEB3 -> convGRU5 -> conv6 + MAEB2 -> convGRU6
                                 -> conv7 + MAEB1 -> convGRU7
        RMG:                     Conv -> SEBlock -> LeakyReLU -> Conv_1  = residual_s
        estimate_s = estimate_{s-1} - residual_s      (GRU states carried to stage s+1)

Images are BGR (as OpenCV reads them) float32 in [0, 1], NHWC, any height and width.
"""
import collections
import dataclasses

import tensorflow.compat.v1 as tf
import tf_slim as slim

from maeb import (attentive_gru, conv, leaky_relu, maeb, remaen_arg_scope, row_mean_squeeze,
                  se_block)

NUM_GRUS = 7
# Laplacian used by the edge loss (plain data; turned into a tensor only when a graph is built).
EDGE_KERNEL = ((-1.0, -1.0, -1.0),
               (-1.0, 8.0, -1.0),
               (-1.0, -1.0, -1.0))
# tf.image.rgb_to_grayscale weights, in the order TF applies them to channels 0, 1, 2.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
# Image channels: BGR. The data, the edge loss (GRAY_WEIGHTS) and the metrics are 3-channel.
IMAGE_CHANNELS = 3


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture settings. The defaults are the paper's model (138 variables).

    Attributes:
      stages: number of recurrent stages (3 in the paper).
      channels: feature channels (32).
      dilations: dilation rates of the MAEB branches ((1, 2, 3)).
      shared_attention: one SE block shared by the GRUs of a path (True) or one per GRU.
      skip_connections: add MAEB outputs into the responding path (symmetric skips).
    """
    stages: int = 3
    channels: int = 32
    dilations: tuple = (1, 2, 3)
    shared_attention: bool = True
    skip_connections: bool = True

    def __post_init__(self):
        object.__setattr__(self, 'dilations', tuple(int(d) for d in self.dilations))
        if self.stages < 1:
            raise ValueError('stages must be >= 1, got %d' % self.stages)
        if self.channels < 4 or self.channels % 4:
            raise ValueError('channels must be a positive multiple of 4, got %d' % self.channels)
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError('dilations must be positive integers, got %r' % (self.dilations,))

    def to_dict(self):
        """JSON-ready dict of the settings (stored next to checkpoints)."""
        out = dataclasses.asdict(self)
        out['dilations'] = list(self.dilations)
        return out

    @classmethod
    def from_dict(cls, values):
        """Inverse of ``to_dict``; unknown keys are ignored.

        Raises:
          ValueError: ``values`` has ``input_channels`` other than 3 (settings of an earlier
            version, which had that flag; images are always BGR now).
        """
        channels = values.get('input_channels', IMAGE_CHANNELS)
        if channels != IMAGE_CHANNELS:
            raise ValueError('input_channels=%r: only %d-channel (BGR) models are supported'
                             % (channels, IMAGE_CHANNELS))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def differences(self, other):
        """List of ``'name: mine vs other'`` strings for the settings that differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return ['%s: %r vs %r' % (k, mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]]

    def suffix(self):
        """Checkpoint-folder suffix: '' for the paper's model, else one tag per change."""
        default = ModelConfig()
        tags = []
        if self.stages != default.stages:
            tags.append('s%d' % self.stages)
        if self.channels != default.channels:
            tags.append('c%d' % self.channels)
        if self.dilations != default.dilations:
            # 'd123' for (1, 2, 3); with a rate >= 10 the rates are dashed: 'd1-12' != 'd11-2'.
            separator = '-' if max(self.dilations) >= 10 else ''
            tags.append('d' + separator.join(str(d) for d in self.dilations))
        if not self.shared_attention:
            tags.append('noshare')
        if not self.skip_connections:
            tags.append('noskip')
        return ''.join('_' + t for t in tags)


def remaen_stage(estimate, states, config, fused=True, direct_dilation=False):
    """One recurrent stage: predict the rain residual of the current estimate.

    Args:
      estimate: [N, H, W, 3] float32, current derained estimate.
      states: list of 7 GRU states ([N, H, W, channels]) from the previous stage, or Nones.
      config: ModelConfig.
      fused, direct_dilation: execution options, see ``remaen``.

    Returns:
      residual: [N, H, W, 3] float32 (the rain layer to subtract).
      new_states: list of 7 tensors [N, H, W, channels].
    """
    ch, shared = config.channels, config.shared_attention
    new_states = [None] * NUM_GRUS
    with tf.variable_scope('ReMAEN'):
        with tf.variable_scope('extracting_path'):
            net, maeb_outputs = estimate, []
            for k in range(4):
                block = maeb(net, ch, config.dilations, 'MAEB%d' % (k + 1), direct_dilation)
                maeb_outputs.append(block)
                # The GRUs of this path share one SEBlock (scope 'extracting_path/SEBlock').
                net = attentive_gru(block, states[k], ch, 'convGRU%d' % (k + 1), shared, fused)
                new_states[k] = net
        with tf.variable_scope('responding_path'):
            # Symmetric skips: GRU5 <- MAEB3, GRU6 <- MAEB2, GRU7 <- MAEB1.
            for k, skip in zip((4, 5, 6), maeb_outputs[2::-1]):
                net = conv(net, ch, 'conv%d' % (k + 1), activation_fn=tf.nn.relu)
                if config.skip_connections:
                    net = net + skip
                net = attentive_gru(net, states[k], ch, 'convGRU%d' % (k + 1), shared, fused)
                new_states[k] = net
    with tf.variable_scope('RMG'):
        net = conv(net, ch, 'Conv')
        net = leaky_relu(se_block(net, scope='SEBlock'))
        residual = conv(net, IMAGE_CHANNELS, 'Conv_1')
    return residual, new_states


def _float32_variables(getter, name, *args, **kwargs):
    """Custom getter for mixed precision: float32 variables, read as float16 copies."""
    dtype = kwargs.get('dtype')
    if dtype != tf.float16:
        return getter(name, *args, **kwargs)
    kwargs['dtype'] = tf.float32
    return tf.cast(getter(name, *args, **kwargs), tf.float16)


PRECISIONS = ('fp32', 'bf16', 'fp16')


def remaen(inputs, config=None, *, scope='derainNet', reuse=None, fused=True,
           direct_dilation=False, precision='fp32', row_means=False):
    """Build the full recurrent network (the graph factory's one network builder).

    All stages share every weight (the stage loop reuses the variables of stage 1).
    ``reuse`` is the usual tf-slim argument: None creates the variables (an error if they
    exist), True or ``tf.AUTO_REUSE`` shares those of an earlier call (another tower, the
    sample or evaluation graph next to the training graph).

    The execution options (keyword-only) change the ops, never the variables (always the
    manifest's names, shapes and float32 dtype) nor, beyond float rounding, the numbers.

    Args:
      inputs: [N, H, W, 3] float32 rainy images, BGR in [0, 1]; H and W may be
        unknown.
      config: ModelConfig (None = the paper's model).
      scope: outer variable scope (``'derainNet'`` for checkpoint compatibility).
      reuse: None, True or ``tf.AUTO_REUSE`` (see above).
      fused: GRU convs that read the same tensor run as one wider conv (``maeb.fused_conv``;
        default). False builds one ``slim.conv2d`` per variable, the reference graph.
      direct_dilation: dilated convs as single ``Conv2D`` ops instead of SpaceToBatchND ->
        Conv2D -> BatchToSpaceND (faster). Differentiable with oneDNN's CPU kernels and on
        GPUs, not with TensorFlow's plain CPU kernels (``precision.direct_dilation_trainable``
        tells which a session has).
        ``'padded'`` (``maeb.PADDED``): the same single ops on an explicitly zero-padded
        input with VALID padding, the form ONNX Runtime runs for any image size (exports,
        ``deploy/``).
      precision: 'fp32' (default) or 'bf16' build the float32 graph (bf16 on CPUs is a
        session rewrite, see ``machine/precision.py``); 'fp16' computes in float16 with float32
        variables (GPU tensor cores), the outputs cast back to float32.
      row_means: the SE blocks' means as means of row means (``maeb.row_mean_squeeze``:
        closer to exact in float32, and computed alike by ONNX Runtime and LiteRT; the
        exports, ``deploy/``). Not with a fed squeeze (tiling's ``FedSqueeze``), which it
        would replace.

    Returns:
      output: [N, H, W, C] float32, the final derained estimate (not clipped).
      end_points: OrderedDict with ``'stage<s>/output'`` and ``'stage<s>/residual'`` for
        s = 1..S, ``'output'``, ``'residual'`` (the last stage's), and the input feature map
        of every SE block in call order as ``'se_input/<k>'`` (k = 0..12 S - 1; read them
        with ``se_inputs``). ``output == inputs - sum of the stage residuals``.
    """
    if precision not in PRECISIONS:
        raise ValueError('precision must be one of %s, got %r' % (PRECISIONS, precision))
    config = config or ModelConfig()
    half = precision == 'fp16'
    end_points = collections.OrderedDict()
    states = [None] * NUM_GRUS
    estimate = tf.cast(inputs, tf.float16) if half else inputs
    getter = _float32_variables if half else None
    _check_reuse(scope, reuse)
    se_collection = tf.get_default_graph().unique_name('remaen_se_inputs', mark_as_used=True)
    se_options = dict(outputs_collections=se_collection)
    if row_means:
        se_options['squeeze_fn'] = row_mean_squeeze
    # Inside, variables are shared on purpose (AUTO_REUSE): all stages share every weight,
    # the dilation branches of a MAEB share d1/d2, the GRUs of a path share one SE block.
    with tf.variable_scope(scope, values=[inputs], reuse=tf.AUTO_REUSE, custom_getter=getter), \
            slim.arg_scope(remaen_arg_scope()), \
            slim.arg_scope([se_block], **se_options):
        for stage in range(1, config.stages + 1):
            with tf.name_scope('stage%d' % stage):
                residual, states = remaen_stage(estimate, states, config, fused,
                                                direct_dilation)
                estimate = estimate - residual
            if half:
                residual = tf.cast(residual, tf.float32)
                output = tf.cast(estimate, tf.float32)
            else:
                output = estimate
            end_points['stage%d/residual' % stage] = residual
            end_points['stage%d/output' % stage] = output
    output = end_points['stage%d/output' % config.stages]
    end_points['output'] = output
    end_points['residual'] = residual
    for k, tensor in enumerate(tf.get_collection(se_collection)):
        end_points['se_input/%d' % k] = tensor
    return output, end_points


def _check_reuse(scope, reuse):
    """tf-slim's ``reuse`` contract for the network's outer scope.

    None: the variables must not exist yet; True: they must exist; AUTO_REUSE: either.
    """
    prefix = '/'.join(p for p in (tf.get_variable_scope().name, scope) if p) + '/'
    exists = bool(tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope=prefix))
    if reuse is None and exists:
        raise ValueError('the variables of %s exist already in this graph; pass reuse=True '
                         'or tf.AUTO_REUSE to share them' % prefix)
    if reuse is True and not exists:
        raise ValueError('reuse=True but %s has no variables in this graph yet' % prefix)


def stage_outputs(end_points):
    """The per-stage outputs of ``remaen``'s end points, stage 1 first."""
    return [v for k, v in end_points.items() if k.startswith('stage') and k.endswith('/output')]


def se_inputs(end_points):
    """The input feature maps of the SE blocks, in call order (12 per stage)."""
    return [v for k, v in end_points.items() if k.startswith('se_input/')]


InferenceGraph = collections.namedtuple('InferenceGraph',
                                        ['images', 'output', 'stage_outputs', 'end_points'])


def build_inference_graph(config=None, *, image_size=None, reuse=tf.AUTO_REUSE, fused=True,
                          direct_dilation=True, precision='fp32', row_means=False):
    """The graph that derains one image of any size (testing, deraining, samples, curves).

    Builds, in the default graph, a [1, None, None, C] float32 placeholder and the network on
    it. Restore the weights (``model_variables()``) before running it.

    Args:
      config: ModelConfig (None = the paper's model).
      image_size: (H, W) for a placeholder of static shape (e.g. to count FLOPs); None =
        any size.
      reuse: see ``remaen``; the default shares the variables of a training graph built in
        the same tf.Graph (training samples and curves).
      fused, direct_dilation, precision, row_means: see ``remaen`` (direct dilation on by
        default: nothing here is differentiated).

    Returns:
      InferenceGraph: ``images`` the placeholder (BGR in [0, 1]), ``output`` [1, H, W, C]
      clipped to [0, 1], ``stage_outputs`` one such clipped tensor per stage (stage 1
      first; the last is ``output``), ``end_points`` the network's (unclipped).
    """
    config = config or ModelConfig()
    height, width = image_size or (None, None)
    images = tf.placeholder(tf.float32, [1, height, width, IMAGE_CHANNELS], name='rain')
    _, end_points = remaen(images, config, reuse=reuse, fused=fused,
                           direct_dilation=direct_dilation, precision=precision,
                           row_means=row_means)
    stages = [tf.clip_by_value(t, 0.0, 1.0) for t in stage_outputs(end_points)]
    return InferenceGraph(images, stages[-1], stages, end_points)


def model_variables(scope='derainNet'):
    """The trainable variables of the network (what is optimised and saved)."""
    return tf.trainable_variables(scope=scope + '/')


def count_parameters(variables):
    """Total number of scalars in a list of variables (static shapes)."""
    return sum(int(v.get_shape().num_elements()) for v in variables)


# ----------------------------------------------------------------------------- loss
def edge_map(images):
    """ReLU(Laplacian(gray(images))), the edge representation of the edge loss.

    The grayscale conversion is ``tf.image.rgb_to_grayscale``, i.e. weights 0.2989, 0.5870,
    0.1140 for channels 0, 1, 2. Our tensors are BGR, so blue gets the "red" weight: this
    quirk of the authors' code is kept on purpose (the released checkpoints were trained so).

    Args:
      images: [N, H, W, 3] float32.

    Returns:
      [N, H, W, 1] float32, non-negative.
    """
    gray = tf.image.rgb_to_grayscale(images)
    kernel = tf.reshape(tf.constant(EDGE_KERNEL, tf.float32), [3, 3, 1, 1])
    return tf.nn.relu(tf.nn.conv2d(gray, kernel, strides=[1, 1, 1, 1], padding='SAME'))


def remaen_loss(output, clean, edge_loss_weight=0.1):
    """Paper loss: MSE(output, clean) + w * MSE(edge_map(output), edge_map(clean)).

    Args:
      output: [N, H, W, 3] float32 network output.
      clean: [N, H, W, 3] float32 ground truth in [0, 1].
      edge_loss_weight: w (0.1 in the paper; 0 disables the edge term).

    Returns:
      (total, mse, edge) scalar float32 tensors.
    """
    mse = tf.reduce_mean(tf.square(output - clean))
    if edge_loss_weight:
        edge = tf.reduce_mean(tf.square(edge_map(output) - edge_map(clean)))
    else:
        edge = tf.constant(0.0)
    return mse + edge_loss_weight * edge, mse, edge


# ----------------------------------------------------------------------------- training graph
TrainGraph = collections.namedtuple('TrainGraph', [
    'output', 'loss', 'mse_loss', 'edge_loss', 'train_op', 'global_step', 'learning_rate',
    'variables', 'end_points'])


def learning_rate_schedule(global_step, lr=1e-3, decay_step=30000, decay_rate=0.1):
    """``lr`` before ``decay_step`` completed iterations, ``lr * decay_rate`` from then on."""
    step = tf.cast(global_step, tf.int64)
    return tf.where(step >= decay_step, tf.constant(lr * decay_rate, tf.float32),
                    tf.constant(lr, tf.float32), name='learning_rate')


def _variables_on(ps_device, device):
    """Device function: variables on ``ps_device``, every other op on ``device``."""
    def place(op):
        node = op if isinstance(op, tf.NodeDef) else op.node_def
        return ps_device if node.op in ('Variable', 'VariableV2', 'VarHandleOp') else device
    return place


def _average_gradients(tower_grads):
    """Mean of per-tower (grad, var) lists (the TF1 multi-tower pattern)."""
    averaged = []
    for grads_and_vars in zip(*tower_grads):
        grads = [g for g, _ in grads_and_vars]
        averaged.append((tf.add_n(grads) / float(len(grads)), grads_and_vars[0][1]))
    return averaged


def build_train_graph(rain, clean, config=None, lr=1e-3, beta1=0.9, beta2=0.999,
                      lr_decay_step=30000, lr_decay_rate=0.1, edge_loss_weight=0.1,
                      devices=None, wrap_optimizer=None, fused=True, precision='fp32',
                      direct_dilation=False):
    """Network, loss, Adam and the global step for training.

    Args:
      rain: [B, P, P, 3] float32 rainy patches in [0, 1] (placeholder or pipeline tensor).
      clean: [B, P, P, 3] float32 clean patches.
      config: ModelConfig (None = paper).
      lr, beta1, beta2: Adam settings (paper: 1e-3, 0.9, 0.999).
      lr_decay_step, lr_decay_rate: lr is multiplied by ``lr_decay_rate`` once
        ``global_step >= lr_decay_step`` (paper: 30000, 0.1).
      edge_loss_weight: weight of the edge term (paper: 0.1).
      devices: None for one tower on the default device, or a list of device names
        (e.g. ['/gpu:0', '/gpu:1']): the batch is split evenly across them, gradients are
        averaged and variables live on the CPU.
      wrap_optimizer: optional callable applied to the Adam optimizer (e.g. Horovod's
        ``hvd.DistributedOptimizer``).
      fused: see ``remaen``.
      direct_dilation: dilated convs as single ``Conv2D`` ops (see ``remaen``). Their
        gradients exist with oneDNN's CPU kernels and on GPUs, not with TensorFlow's plain
        CPU kernels: ask ``precision.direct_dilation_trainable`` first.
      precision: see ``remaen``; 'fp16' also adds dynamic loss scaling
        (``tf.train.experimental.MixedPrecisionLossScaleOptimizer``); for GPUs.

    Returns:
      TrainGraph. ``output``/``end_points`` are the whole batch's (towers concatenated);
      losses are the mean over towers; ``variables`` are the optimised ``derainNet`` ones.
    """
    global_step = tf.train.get_or_create_global_step()
    learning_rate = learning_rate_schedule(global_step, lr, lr_decay_step, lr_decay_rate)
    optimizer = tf.train.AdamOptimizer(learning_rate, beta1=beta1, beta2=beta2)
    if precision == 'fp16':
        optimizer = tf.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, 'dynamic')
    if wrap_optimizer is not None:
        optimizer = wrap_optimizer(optimizer)
    options = dict(fused=fused, precision=precision, direct_dilation=direct_dilation)
    if not devices:
        output, end_points = remaen(rain, config, **options)
        loss, mse, edge = remaen_loss(output, clean, edge_loss_weight)
        variables = model_variables()
        train_op = optimizer.minimize(loss, global_step=global_step, var_list=variables)
        return TrainGraph(output, loss, mse, edge, train_op, global_step, learning_rate,
                          variables, end_points)

    batch = rain.get_shape().as_list()[0]
    if batch is not None and batch % len(devices):
        raise ValueError('batch size %d does not split evenly over %d devices'
                         % (batch, len(devices)))
    rains, cleans = tf.split(rain, len(devices)), tf.split(clean, len(devices))
    outputs, losses, tower_grads, end_points = [], [], [], None
    for i, device in enumerate(devices):
        with tf.device(_variables_on('/cpu:0', device)), tf.name_scope('tower_%d' % i):
            output, points = remaen(rains[i], config, reuse=tf.AUTO_REUSE, **options)
            losses.append(remaen_loss(output, cleans[i], edge_loss_weight))
            variables = model_variables()
            tower_grads.append(optimizer.compute_gradients(losses[-1][0], var_list=variables))
            outputs.append(output)
            end_points = end_points or points
    grads = _average_gradients(tower_grads)
    train_op = optimizer.apply_gradients(grads, global_step=global_step)
    loss, mse, edge = [tf.add_n(list(t)) / float(len(devices)) for t in zip(*losses)]
    return TrainGraph(tf.concat(outputs, 0), loss, mse, edge, train_op, global_step,
                      learning_rate, model_variables(), end_points)
