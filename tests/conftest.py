"""Shared test setup: project root on sys.path, quiet TensorFlow in TF1 graph mode."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
MANIFEST = os.path.join(SHARED, 'reference', 'remaen_variables.txt')


def read_manifest():
    """``{name: shape}`` of the authors' 138 variables (the ground truth)."""
    with open(MANIFEST) as handle:
        rows = [line.split() for line in handle if line.strip() and not line.startswith('#')]
    return {name: tuple(int(s) for s in shape.split(',')) for name, shape in rows}


def variable_shapes():
    """``{name: shape}`` of the network variables in the default graph."""
    import model
    return {v.op.name: tuple(v.get_shape().as_list()) for v in model.model_variables()}


def randomize_biases(sess, seed):
    """Small random biases (the initializer's zeros would keep the residual tiny)."""
    import numpy as np
    import model
    rng = np.random.default_rng(seed)
    for variable in model.model_variables():
        if variable.op.name.endswith('biases'):
            value = rng.uniform(-0.1, 0.1, variable.get_shape().as_list()).astype(np.float32)
            sess.run(variable.initializer, {variable.initial_value: value})


def fast_session_config():
    """Graph rewrites off: the first run of a big graph (or of many fetches) is much cheaper."""
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = tf.OptimizerOptions.L0
    return config
