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
from machine import precision
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
            reference, _ = model.remaen(images, fused=False)
        shapes = variable_shapes()
        with tf.name_scope('optimised'):
            optimised, _ = model.remaen(images, fused=True, direct_dilation=True,
                                         reuse=True)
        with tf.name_scope('half'):
            half, half_points = model.remaen(images, precision='fp16', reuse=True)
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
                output, _ = model.remaen(tf.constant(rain), fused=fused, reuse=tf.AUTO_REUSE)
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


def test_direct_dilation_training_gradients_equal_space_to_batch():
    """Where the kernels differentiate dilated Conv2D ops (oneDNN), training builds them
    directly: the same gradients as the reference SpaceToBatchND formulation."""
    config = fast_session_config()
    if not precision.direct_dilation_trainable(config):
        pytest.skip('this TensorFlow has no CPU gradient for dilated Conv2D (oneDNN off)')
    rng = np.random.default_rng(2)
    rain = rng.random((2, 16, 16, 3), dtype=np.float32)
    clean = np.clip(rain - 0.2 * rng.random(rain.shape, dtype=np.float32), 0, 1)
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(5)
        gradients, ops = {}, {}
        for direct in (False, True):
            with tf.name_scope('direct' if direct else 'space_to_batch'):
                output, _ = model.remaen(tf.constant(rain), fused=True, reuse=tf.AUTO_REUSE,
                                         direct_dilation=direct)
                loss, _, _ = model.remaen_loss(output, tf.constant(clean))
                variables = model.model_variables()
                gradients[direct] = dict(zip([v.op.name for v in variables],
                                             tf.gradients(loss, variables)))
        for direct in (False, True):
            scope = 'direct' if direct else 'space_to_batch'
            ops[direct] = {op.type for op in graph.get_operations()
                           if op.name.startswith(scope + '/')}
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            randomize_biases(sess, 5)
            grads = sess.run(gradients)
    assert 'SpaceToBatchND' in ops[False] and 'SpaceToBatchND' not in ops[True]
    assert set(grads[True]) == set(read_manifest())
    for name, reference in grads[False].items():
        scale = max(float(np.abs(reference).max()), 1e-3)
        np.testing.assert_allclose(grads[True][name] / scale, reference / scale, rtol=0,
                                   atol=1e-5, err_msg=name)


@pytest.mark.skipif(precision.gpu_available(), reason='a GPU is visible: mixed precision is used')
def test_mixed_precision_flag_is_ignored_with_a_note_on_cpu(capsys):
    assert utils.use_mixed_precision(False) is False
    assert capsys.readouterr().out == ''
    assert utils.use_mixed_precision(True) is False
    assert 'no GPU is visible' in capsys.readouterr().out


@pytest.mark.slow
def test_bench_quick_writes_every_field(tmp_path):
    import bench
    from benchmarks import report
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
    for field in report.RESULT_FIELDS:
        assert isinstance(last[field], (int, float)) and last[field] > 0, field
    # fp32 vs bf16: measured only on CPUs with bfloat16 instructions, else null.
    from machine import precision
    assert last['bf16_supported'] is precision.bf16_supported()
    assert last['precision'] == 'fp32'
    measured = bench.bf16_unavailable() is None
    for field in report.BF16_FIELDS[1:]:
        assert field in last
        if measured:
            assert isinstance(last[field], float) and last[field] > 0, field
        else:
            assert last[field] is None, field
    assert ('bf16: not measured' in result.stdout) is not measured
    # The FLOP count comes from the graph: 3x3 convs dominate (~1.62M multiply-adds/pixel).
    assert 1.5e6 < last['macs_per_pixel'] < 1.8e6
    assert last['size'] == '32x40' and last['train_batch'] == '2x24x24'
    assert 'plain conv' in result.stdout


def fake_phase(seconds, psnr=None):
    return {'seconds': seconds, 'psnr': psnr, 'checkpoint': 'ckpt/ReMAEN'}


def test_bench_bf16_summary(capsys):
    import bench
    from benchmarks import report
    from machine import precision
    summary = bench.bf16_summary(None)
    assert summary == {'bf16_supported': precision.bf16_supported(),
                       'infer_speedup_bf16': None, 'train_speedup_bf16': None,
                       'bf16_psnr_delta': None, 'train_command_s_bf16': None,
                       'train_command_ratio_bf16': None}
    assert set(summary) == set(report.BF16_FIELDS)
    runs = {'infer': {'fp32': fake_phase([3.0, 2.0]), 'bf16': fake_phase([1.0, 1.5])},
            'train': {'fp32': fake_phase([6.0]), 'bf16': fake_phase([4.0])},
            'command': {'fp32': {'seconds': 6.6}, 'bf16': {'seconds': 4.4}},
            'quality': {'fp32': fake_phase(None, [30.0, 31.0, 29.5]),
                        'bf16': fake_phase(None, [30.01, 30.98, 29.45])}}
    summary = bench.bf16_summary(runs)
    assert summary['infer_speedup_bf16'] == pytest.approx(2.5 / 1.25)
    assert summary['train_speedup_bf16'] == pytest.approx(1.5)
    assert summary['bf16_psnr_delta'] == pytest.approx(0.05)
    assert summary['train_command_s_bf16'] == 4.4
    assert summary['train_command_ratio_bf16'] == pytest.approx(1.1)
    args = bench.parse_args(['--quick'])
    bench.print_bf16(summary, runs, None, args)
    line = capsys.readouterr().out
    assert line.count('\n') == 1 and '(2.00x)' in line and '0.0500 dB over 3 pairs' in line
    bench.print_bf16(bench.bf16_summary(None), None, 'no bf16 here', args)
    assert capsys.readouterr().out.startswith('bf16: not measured: no bf16 here;')


def test_bench_bf16_is_measured_only_where_supported(monkeypatch):
    import bench
    from machine import precision
    monkeypatch.setenv(precision.FLAGS_ENV, 'avx avx2')
    assert 'avx512_bf16' in bench.bf16_unavailable(gpu=False)
    monkeypatch.setenv(precision.FLAGS_ENV, 'avx2 avx512_bf16')
    assert 'GPU' in bench.bf16_unavailable(gpu=True)
    monkeypatch.setattr(precision, 'onednn_enabled', lambda: False)
    assert 'oneDNN' in bench.bf16_unavailable(gpu=False)
    monkeypatch.setattr(precision, 'onednn_enabled', lambda: True)
    assert bench.bf16_unavailable(gpu=False) is None


def test_bench_quality_phase_measures_the_paper_psnr(tmp_path):
    """The PSNR phase on one small crop of a demo pair, in fp32 (the bf16 run is the same
    code with another session config)."""
    import cv2
    import bench
    from benchmarks import phases
    import metrics
    for kind in ('input', 'target'):
        os.makedirs(str(tmp_path / kind))
        image = cv2.imread(os.path.join(bench.BF16_DATA, kind, '51.png'))
        cv2.imwrite(str(tmp_path / kind / '51.png'), image[100:140, 200:248])
    args = bench.parse_args(['--quick', '--bf16_data', str(tmp_path), '--precision', 'fp32'])
    result = phases.run_quality_phase(args)
    assert result['names'] == ['51'] and len(result['psnr']) == 1
    assert result['checkpoint'].startswith(bench.BF16_CHECKPOINT)
    rain = cv2.imread(str(tmp_path / 'input' / '51.png')) / 255.0
    clean = cv2.imread(str(tmp_path / 'target' / '51.png')) / 255.0
    # The shipped model improves on the rainy input.
    assert result['psnr'][0] > metrics.evaluate(rain, clean)['psnr']


def test_flop_count_of_known_ops():
    from benchmarks import profiling
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, [1, 5, 6, 4])
        tf.nn.conv2d(images, tf.zeros([3, 3, 4, 8]), 1, 'SAME')
        tf.nn.depthwise_conv2d(images, tf.zeros([3, 3, 4, 1]), [1, 1, 1, 1], 'VALID')
        tf.matmul(tf.zeros([2, 3]), tf.zeros([3, 7]))
        counted = profiling.count_flops(graph)
    assert counted['by_type'] == {'Conv2D': 5 * 6 * 8 * 9 * 4,
                                  'DepthwiseConv2dNative': 3 * 4 * 4 * 9,
                                  'MatMul': 2 * 7 * 3}
    assert counted['ops'] == 3 and counted['macs'] == sum(counted['by_type'].values())


def test_forward_macs_counts_the_factory_graph():
    from benchmarks import profiling
    counts = {}
    for size in ((8, 8), (8, 16)):
        with tf.Graph().as_default() as graph:
            net = model.build_inference_graph(image_size=size)
            assert net.images.shape.as_list() == [1, size[0], size[1], 3]
            counts[size] = profiling.count_flops(graph)
        assert profiling.forward_macs(model.ModelConfig(), size) == counts[size]['macs']
    small, large = counts[(8, 8)]['by_type'], counts[(8, 16)]['by_type']
    # Convolutions scale with the pixels; the SE blocks' fully connected layers do not.
    assert large['Conv2D'] == 2 * small['Conv2D']
    assert large['MatMul'] == small['MatMul'] > 0
