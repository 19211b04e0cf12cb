"""Execution options (fused GRU convs, direct dilations, mixed precision) and bench.py.

The optimised graphs must hold exactly the manifest's variables and compute the reference
graph's numbers (fused=False: one slim.conv2d per variable) to within 1e-5.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import ROOT, fast_session_config, randomize_biases, read_manifest, variable_shapes
import model
import utils

tf.disable_v2_behavior()
SIZE = 24








def conv_count(graph, prefix):
    return sum(1 for op in graph.get_operations()
               if op.type == 'Conv2D' and op.name.startswith(prefix))


@pytest.fixture(scope='module')
def forward_outputs():
    """Outputs of the reference and optimised inference graphs on the same weights."""
    rng = np.random.default_rng(0)
    image = rng.random((1, SIZE, SIZE + 8, 3), dtype=np.float32)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(3)
        images = tf.placeholder(tf.float32, [1, None, None, 3])
        with tf.name_scope('reference'):
            reference, _, _ = model.remaen(images, fused=False)
        shapes = variable_shapes()
        with tf.name_scope('optimised'):
            optimised, _, _ = model.remaen(images, fused=True, inference=True)
        with tf.name_scope('half'):
            half, _, half_points = model.remaen(images, mixed_precision=True)
        after = variable_shapes()
        dtypes = {v.dtype.base_dtype for v in model.model_variables()}
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            randomize_biases(sess, 3)
            values = sess.run({'reference': reference, 'optimised': optimised, 'half': half},
                              {images: image})
    return dict(values, image=image, shapes=shapes, after=after, dtypes=dtypes, graph=graph,
                half_dtype=half.dtype, half_stage_dtype=half_points['stage1/output'].dtype)


def test_options_keep_the_manifest_variables(forward_outputs):
    assert forward_outputs['shapes'] == read_manifest()
    # The optimised and float16 graphs reuse them: nothing added, all float32.
    assert forward_outputs['after'] == read_manifest()
    assert forward_outputs['dtypes'] == {tf.float32}


def test_fused_graph_has_fewer_convs_and_direct_dilations(forward_outputs):
    graph = forward_outputs['graph']
    reference = conv_count(graph, 'reference/')
    optimised = conv_count(graph, 'optimised/')
    # Per stage: 4 MAEBs x 2 convs x 3 rates, conv5-7, RMG 2; GRUs 7 x 2 (stage 1), 7 x 6.
    assert reference == 3 * (24 + 3 + 2) + 7 * (2 + 6 + 6)
    # Fused GRUs: 1 conv in stage 1, 3 later ([hr, hz], [xr, xz, xn], hn).
    assert optimised == 3 * (24 + 3 + 2) + 7 * (1 + 3 + 3)
    space_to_batch = [op for op in graph.get_operations() if op.type == 'SpaceToBatchND']
    assert space_to_batch and all(op.name.startswith('reference/') or op.name.startswith('half/')
                                  for op in space_to_batch)
    dilated = [op for op in graph.get_operations() if op.type == 'Conv2D'
               and op.name.startswith('optimised/') and op.get_attr('dilations')[1] > 1]
    assert len(dilated) == 3 * 4 * 2 * 2  # rates 2 and 3 of d1, d2 in 4 MAEBs, 3 stages


def test_optimised_output_equals_reference(forward_outputs):
    reference, image = forward_outputs['reference'], forward_outputs['image']
    assert np.abs(reference - image).max() > 0.05  # a non-trivial network
    np.testing.assert_allclose(forward_outputs['optimised'], reference, rtol=0, atol=1e-5)


def test_mixed_precision_is_float16_compute_close_to_float32(forward_outputs):
    assert forward_outputs['half_dtype'] == tf.float32
    assert forward_outputs['half_stage_dtype'] == tf.float32
    difference = np.abs(forward_outputs['half'] - forward_outputs['reference']).max()
    # float16 has an 11-bit mantissa: close, but not the float32 numbers.
    assert 1e-6 < difference < 2e-2




def test_fused_training_gradients_equal_reference():
    rng = np.random.default_rng(1)
    rain = rng.random((1, 16, 16, 3), dtype=np.float32)
    clean = np.clip(rain - 0.2 * rng.random(rain.shape, dtype=np.float32), 0, 1)
    with tf.Graph().as_default():
        tf.set_random_seed(4)
        gradients = {}
        for fused in (False, True):   # the same variables (AUTO_REUSE), two graphs of ops
            with tf.name_scope('fused' if fused else 'reference'):
                output, _, _ = model.remaen(tf.constant(rain), fused=fused)
                loss, _, _ = model.remaen_loss(output, tf.constant(clean))
                variables = model.model_variables()
                gradients[fused] = dict(zip([v.op.name for v in variables],
                                            tf.gradients(loss, variables)))
        with tf.Session(config=fast_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            randomize_biases(sess, 4)
            grads = sess.run(gradients)
    assert set(grads[True]) == set(read_manifest())
    for name, reference in grads[False].items():
        scale = max(float(np.abs(reference).max()), 1e-3)
        np.testing.assert_allclose(grads[True][name] / scale, reference / scale, rtol=0,
                                   atol=1e-5, err_msg=name)


@pytest.mark.skipif(utils.gpu_available(), reason='a GPU is visible: mixed precision is used')
def test_mixed_precision_flag_is_ignored_with_a_note_on_cpu(capsys):
    assert utils.use_mixed_precision(False) is False
    assert capsys.readouterr().out == ''
    assert utils.use_mixed_precision(True) is False
    assert 'no GPU is visible' in capsys.readouterr().out


def test_bench_quick_writes_every_field(tmp_path):
    import bench
    out = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'bench.py'), '--quick', '--size', '32x40',
         '--large_size', '48x48', '--batch_size', '2', '--patch_size', '24',
         '--json_out', str(out)], cwd=str(tmp_path), capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    with open(out) as handle:
        assert json.load(handle) == last
    for field in bench.RESULT_FIELDS:
        assert isinstance(last[field], (int, float)) and last[field] > 0, field
    # The FLOP count comes from the graph: 3x3 convs dominate (~1.62M multiply-adds/pixel).
    assert 1.5e6 < last['macs_per_pixel'] < 1.8e6
    assert last['size'] == '32x40' and last['train_batch'] == '2x24x24'
    assert 'plain conv' in result.stdout
