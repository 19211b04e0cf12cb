"""What the network costs on this machine: counted multiply-adds, a reference conv, a step.

The measuring parts of ``bench.py`` (and of ``reproduce.py``'s training-time estimate and the
tools that time tiles), apart from its phases and driver:

* ``count_flops`` / ``forward_macs``: multiply-adds counted from a graph's ops, never
  hard-coded;
* ``ConvProbe``: the speed of one plain 3x3 32->32 convolution, the unit of every ratio;
* ``train_step_seconds``: the time of one training step (``reproduce.py``'s estimate);
* ``step_breakdown``: where one traced ``session.run`` spends its time (op types, dtypes,
  casts).

The machine's memory and description are ``machine.resources``. TensorFlow, ``model`` and
``utils`` are imported inside the functions.
"""
import time

import numpy as np


CONV_SHAPE = (1, 321, 481, 32)
FLOP_OPS = ('Conv2D', 'DepthwiseConv2dNative', 'MatMul', 'Conv2DBackpropInput',
            'Conv2DBackpropFilter')


def _tf():
    from console import quiet
    return quiet.import_tf()


def count_flops(graph, scope=None):
    """Multiply-adds of the convolutions and matrix products of a graph with static shapes.

    Per op: Conv2D = output elements x kh x kw x C_in; DepthwiseConv2dNative = output
    elements x kh x kw; MatMul = output elements x inner dimension; Conv2DBackpropInput and
    Conv2DBackpropFilter = elements of the output gradient x kh x kw x C_in (the cost of the
    matching forward convolution). Element-wise ops are not counted.

    Args:
      graph: tf.Graph whose counted ops have fully defined shapes.
      scope: count only ops whose name starts with this prefix (e.g. ``'derainNet/'`` for
        the forward pass of a training graph); None = all.

    Returns:
      dict: ``macs`` (int, total), ``by_type`` ({op type: macs}), ``ops`` (count).

    Raises:
      ValueError: a counted op has an unknown shape (build the graph with static shapes).
    """
    by_type, ops = {}, 0
    for op in graph.get_operations():
        if op.type not in FLOP_OPS or (scope and not op.name.startswith(scope)):
            continue
        if op.type == 'MatMul':
            a_shape = op.inputs[0].shape.as_list()
            inner = a_shape[0] if op.get_attr('transpose_a') else a_shape[1]
            out, per_output = op.outputs[0].shape, inner
        elif op.type == 'Conv2DBackpropFilter':
            kh, kw, cin, _ = op.outputs[0].shape.as_list()
            out, per_output = op.inputs[2].shape, kh * kw * cin
        elif op.type == 'Conv2DBackpropInput':
            kh, kw, cin, _ = op.inputs[1].shape.as_list()
            out, per_output = op.inputs[2].shape, kh * kw * cin
        else:
            kh, kw, cin, _ = op.inputs[1].shape.as_list()
            out = op.outputs[0].shape
            per_output = kh * kw * (cin if op.type == 'Conv2D' else 1)
        if not out.is_fully_defined() or per_output is None:
            raise ValueError('op %s (%s) has an unknown shape %s; count FLOPs on a graph '
                             'built with static shapes' % (op.name, op.type, out))
        by_type[op.type] = by_type.get(op.type, 0) + out.num_elements() * per_output
        ops += 1
    return {'macs': sum(by_type.values()), 'by_type': by_type, 'ops': ops}


def forward_macs(config, size, fused=True, inference=True):
    """Multiply-adds of one forward pass of the network on one [H, W] = ``size`` image.

    Counted on ``model.build_inference_graph`` built with a static image size. ``fused`` and
    ``inference`` must be those of the graph that is timed (``inference`` decides whether
    dilated convs are counted as direct ops or on padded phase images).
    """
    tf = _tf()
    import model
    with tf.Graph().as_default() as graph:
        model.build_inference_graph(config, image_size=size, fused=fused,
                                    direct_dilation=inference)
        return count_flops(graph)['macs']


class ConvProbe(object):
    """The reference convolutions, in their own graph and session (same threads settings).

    ``plain()`` / ``dilated()`` return GFLOP/s: median of ``runs`` timed runs after one
    warm-up, 2 FLOPs per multiply-add, on a CONV_SHAPE tensor.
    """

    def __init__(self, session_config, runs=5):
        tf = _tf()
        import tf_slim as slim
        self.runs = runs
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs = tf.placeholder(tf.float32, CONV_SHAPE)
            channels = CONV_SHAPE[-1]
            weights = tf.get_variable('weights', [3, 3, channels, channels])
            biases = tf.get_variable('biases', [channels])
            self.plain_op = tf.nn.bias_add(
                tf.nn.conv2d(self.inputs, weights, 1, 'SAME'), biases).op
            self.dilated_op = slim.conv2d(self.inputs, channels, [3, 3], rate=2,
                                          activation_fn=None, scope='dilated').op
            self.session = tf.Session(config=session_config)
            self.session.run(tf.global_variables_initializer())
        self.feed = {self.inputs: np.random.default_rng(0).random(CONV_SHAPE, np.float32)}
        self.macs = int(np.prod(CONV_SHAPE[:3])) * 9 * channels * channels

    def _rate(self, op):
        self.session.run(op, self.feed)
        times = []
        for _ in range(self.runs):
            start = time.perf_counter()
            self.session.run(op, self.feed)
            times.append(time.perf_counter() - start)
        return 2.0 * self.macs / float(np.median(times)) / 1e9

    def plain(self):
        return self._rate(self.plain_op)

    def dilated(self):
        return self._rate(self.dilated_op)

    def close(self):
        self.session.close()


def train_step_seconds(batch_size, patch_size, num_gpus=1, steps=5):
    """Time training steps of the paper's network on random data (one warm-up step first).

    Builds the same training graph as ``training.train`` (``model.build_train_graph`` with the
    paper's settings and ``num_gpus`` towers); data loading and checkpoint saving are not
    included (training.train reports how long it waited for data).

    Args:
      batch_size, patch_size: training batch shape (paper: 32 of 64x64).
      num_gpus: towers on /gpu:0..N-1 (soft placement on machines with fewer).
      steps: timed steps (>= 1).

    Returns:
      Seconds per iteration (float).
    """
    tf = _tf()
    import model
    import utils
    graph = tf.Graph()
    with graph.as_default():
        shape = [batch_size, patch_size, patch_size, 3]
        rain = tf.placeholder(tf.float32, shape)
        clean = tf.placeholder(tf.float32, shape)
        devices = ['/gpu:%d' % i for i in range(num_gpus)] if num_gpus > 1 else None
        net = model.build_train_graph(rain, clean, devices=devices)
        init = tf.global_variables_initializer()
    graph.finalize()
    rng = np.random.default_rng(0)
    feed = {rain: rng.random(shape, dtype=np.float32),
            clean: rng.random(shape, dtype=np.float32)}
    with tf.Session(graph=graph, config=utils.session_config()) as sess:
        sess.run(init)
        sess.run(net.train_op, feed)
        start = time.perf_counter()
        for _ in range(max(1, steps)):
            sess.run(net.train_op, feed)
        return (time.perf_counter() - start) / max(1, steps)


def _op_dtype(node):
    """The dtype name a node computes in (its ``T`` attribute; Casts: the target), or ''."""
    tf = _tf()
    for key in ('T', 'DstT'):
        if key in node.attr and node.attr[key].type:
            return tf.as_dtype(node.attr[key].type).name
    return ''


def step_breakdown(session, fetches, feed_dict, top=None):
    """Where one ``session.run`` spends its time: op types, their dtypes, the casts.

    Runs ``fetches`` once with a full trace (TensorFlow's step stats) and the partition
    graphs the session really executed (after grappler and oneDNN's rewrites: the op types
    are those of the kernels that ran, e.g. ``_MklNativeConv2DBackpropFilter``). Op times are
    each kernel's own start-to-end time, summed per op type; with several threads they may
    overlap, so ``op_seconds`` can exceed the wall time.

    Args:
      session: tf.Session.
      fetches: what to run (e.g. a training op).
      feed_dict: its feed.
      top: keep only the ``top`` most expensive op types (None = all).

    Returns:
      dict: ``wall_s`` (the traced run), ``op_seconds`` (sum over ops), ``ops`` (list of
      ``[op type, dtype, seconds, count]``, most expensive first; dtype '' when the op has
      none, 'mixed' when nodes of one type differ), ``casts`` ([count, seconds]) and
      ``bfloat16_ops`` (nodes computing in bfloat16).
    """
    tf = _tf()
    metadata = tf.RunMetadata()
    options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE,
                            output_partition_graphs=True)
    start = time.perf_counter()
    session.run(fetches, feed_dict, options=options, run_metadata=metadata)
    wall = time.perf_counter() - start
    nodes = {node.name: node for graph in metadata.partition_graphs for node in graph.node}
    seconds, counts, dtypes = {}, {}, {}
    for device in metadata.step_stats.dev_stats:
        for stats in device.node_stats:
            node = nodes.get(stats.node_name)
            if node is None:
                continue
            took = (stats.op_end_rel_micros - stats.op_start_rel_micros) / 1e6
            seconds[node.op] = seconds.get(node.op, 0.0) + took
            counts[node.op] = counts.get(node.op, 0) + 1
            dtypes.setdefault(node.op, set()).add(_op_dtype(node))
    ops = sorted(([op, dtypes[op].pop() if len(dtypes[op]) == 1 else 'mixed', seconds[op],
                   counts[op]] for op in seconds), key=lambda row: -row[2])
    return {'wall_s': wall, 'op_seconds': sum(seconds.values()),
            'ops': ops[:top] if top else ops,
            'casts': [counts.get('Cast', 0), seconds.get('Cast', 0.0)],
            'bfloat16_ops': sum(1 for node in nodes.values()
                                if _op_dtype(node) == 'bfloat16' and node.op != 'Cast')}
