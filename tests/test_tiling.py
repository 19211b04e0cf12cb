"""Exact tiled inference: the SE hook, the receptive field and tiled == whole-image pass."""
import os

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import (SHARED, fast_session_config, randomize_biases, read_manifest,
                      variable_shapes)
import maeb
import main
import model
import tiling
from model import ModelConfig

tf.disable_v2_behavior()
DEMO_IMAGE = os.path.join(SHARED, 'data', 'Rain100L-demo', 'input', '51.png')






def demo_crop(height, width):
    """A real rainy image crop, BGR float32 in [0, 1] (synthetic if the demo is missing)."""
    image = cv2.imread(DEMO_IMAGE)
    if image is None:
        return np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    return image[:height, :width].astype(np.float32) / 255.0






def network_means():
    """The global-mean ops of the normal graph, in SE call order."""
    return [op.outputs[0] for op in tf.get_default_graph().get_operations()
            if op.type == 'Mean' and op.name.startswith('derainNet/')]


# ----------------------------------------------------------------------------- receptive field
@pytest.mark.parametrize('stages', [1, 2, 3, 5])
@pytest.mark.parametrize('dilations', [(1,), (1, 2, 3), (2, 4)])
def test_radius_closed_form(stages, dilations):
    config = ModelConfig(stages=stages, dilations=dilations)
    radius = stages * (8 * max(dilations) + 19) - 7
    assert tiling.receptive_field_radius(config) == radius
    radii = tiling.se_point_radii(config)
    assert len(radii) == 12 * stages and radii == sorted(radii) and radii[-1] < radius


def test_default_radius():
    assert tiling.receptive_field_radius() == 122


def gradient_reach(config, size, points):
    """Measured reach (Chebyshev) of output pixel (0, 0), and of SE inputs ``points``.

    float64 gradients of one corner pixel with respect to the image, all squeezes fed: the
    nonzero support is the receptive field (float32 products of ~100 weights underflow).
    """
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float64, [1, size, size, 3])
        with maeb.squeeze_override() as hooks:
            output, _, _ = model.remaen(images, config)
        targets = [hooks.inputs[k] for k in points] + [output]
        grads = [tf.gradients(tf.reduce_sum(t[0, 0, 0, :]), images)[0] for t in targets]
        rng = np.random.default_rng(0)
        feed = {images: rng.random((1, size, size, 3))}
        feed.update({s: rng.random((1, config.channels)) for s in hooks.squeezes})
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(grads, feed)
    reach = []
    for grad in values:
        rows, cols = np.nonzero(np.abs(grad[0]).sum(-1))
        reach.append(int(max(rows.max(), cols.max())))
    return reach


@pytest.mark.parametrize('config, points', [
    (ModelConfig(stages=1, channels=4, shared_attention=False, skip_connections=False),
     [1, 11]),
    (ModelConfig(stages=2, channels=4, dilations=(1,)), []),
])
def test_radius_equals_measured_gradient_support(config, points):
    radius = tiling.receptive_field_radius(config)
    measured = gradient_reach(config, radius + 3, points)
    radii = tiling.se_point_radii(config)
    assert measured == [radii[k] for k in points] + [radius]


# ----------------------------------------------------------------------------- tiles
def test_tiles_cover_the_image_once_and_halos_stop_at_borders():
    boxes = tiling.tile_interiors(37, 50, 16)
    assert len(boxes) == 3 * 4
    count = np.zeros((37, 50), int)
    for y0, y1, x0, x1 in boxes:
        count[y0:y1, x0:x1] += 1
    assert (count == 1).all()
    crop, interior = tiling.halo_crop((16, 32, 32, 48), 10, 37, 50)
    assert crop == (6, 37, 22, 50) and interior == [10, 10, 16, 16]
    crop, interior = tiling.halo_crop((0, 16, 0, 16), 10, 37, 50)
    assert crop == (0, 26, 0, 26) and interior == [0, 0, 16, 16]
    with pytest.raises(ValueError):
        tiling.tile_interiors(10, 10, 0)


def halos_ending_inside(height, width, tile, radius):
    """(rows, cols): whether some tile crops stop short of the image vertically/horizontally."""
    crops = [tiling.halo_crop(box, radius, height, width)[0]
             for box in tiling.tile_interiors(height, width, tile)]
    return (any(0 < c[0] or c[1] < height for c in crops),
            any(0 < c[2] or c[3] < width for c in crops))


def test_tiled_equals_whole_with_interior_halos():
    config = ModelConfig(stages=1, dilations=(1,))            # R = 20
    radius = tiling.receptive_field_radius(config)
    image = demo_crop(48, 64)
    assert halos_ending_inside(48, 64, 24, radius) == (True, True)
    with tf.Graph().as_default():
        tf.set_random_seed(7)
        images = tf.placeholder(tf.float32, [1, None, None, 3])
        output, _, _ = model.remaen(images, config)
        graph = tiling.build_tiled_graph(config)
        assert len(graph.squeezes) == 12
        with tf.Session(config=fast_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            randomize_biases(sess, 7)
            whole = sess.run(output, {images: image[np.newaxis]})[0]
            exact = tiling.derain_tiled(sess, graph, image, 24, radius)
            short = tiling.derain_tiled(sess, graph, image, 24, 2)
    assert np.abs(whole - image).max() > 0.02                 # a non-trivial network
    assert np.abs(exact - whole).max() < 1e-4
    # A halo below the radius is only approximate: the check above is not vacuous.
    assert np.abs(short - whole).max() > 1e-3


def test_hook_and_tiling_with_states_carried_across_stages():
    config = ModelConfig(stages=2, channels=4, dilations=(1,))   # R = 47
    radius = tiling.receptive_field_radius(config)
    image = demo_crop(72, 40)
    height, width = image.shape[:2]
    assert halos_ending_inside(height, width, 24, radius)[0]
    with tf.Graph().as_default():
        tf.set_random_seed(5)
        images = tf.placeholder(tf.float32, [1, None, None, 3])
        output, _, _ = model.remaen(images, config)
        means = network_means()
        graph = tiling.build_tiled_graph(config)               # shares the variables
        with tf.Session(config=fast_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            randomize_biases(sess, 5)
            whole, mean_values = sess.run([output, means], {images: image[np.newaxis]})
            # The hooked graph fed with the whole-image means is the normal graph.
            feed = {graph.images: image[np.newaxis], graph.interior: [0, 0, height, width]}
            feed.update(zip(graph.squeezes, mean_values))
            hooked, sums = sess.run([graph.output, graph.sums], feed)
            tiled = tiling.derain_tiled(sess, graph, image, 24, radius,
                                        tiling.se_point_radii(config))
    assert len(mean_values) == len(graph.squeezes) == 24
    np.testing.assert_allclose(hooked, whole, rtol=0, atol=1e-6)
    for total, mean in zip(sums, mean_values):
        np.testing.assert_allclose(total / (height * width), mean, rtol=1e-5, atol=1e-7)
    assert np.abs(tiled - whole[0]).max() < 1e-4


def save_xavier_checkpoint(prefix, seed=11):
    """Random Xavier weights (and small random biases) for every manifest variable."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in read_manifest().items():
        if len(shape) == 1:
            values[name] = rng.uniform(-0.03, 0.03, shape)
        else:
            receptive = int(np.prod(shape[:-2]))
            limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
            values[name] = rng.uniform(-limit, limit, shape)
    with tf.Graph().as_default():
        stored = [tf.Variable(v.astype(np.float32), name=n) for n, v in values.items()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(stored).save(sess, prefix)


def test_derainer_tiles_the_default_network_exactly(tmp_path, capsys):
    prefix = str(tmp_path / 'ReMAEN')
    save_xavier_checkpoint(prefix)
    image = demo_crop(12, 20)
    derainer = main.Derainer(prefix, ModelConfig(), fast_session_config(), tile=12)
    try:
        with derainer.graph.as_default():
            # Whole-image network (hook inactive) and tiled network share the manifest's
            # 138 variables; the former has its 36 means, the latter 36 fed squeezes.
            assert variable_shapes() == read_manifest()
            assert len(tf.trainable_variables()) == 138
            assert len(network_means()) == len(derainer.tiled.squeezes) == 36
        assert derainer.tile_overlap == 122
        whole = derainer.run(image)                  # the one-pass result, computed apart
        tiled = derainer(image)                      # 1 x 2 tiles, 36 + 1 passes
        small = derainer(image[:12, :12])            # fits in one tile: whole-image pass
        np.testing.assert_array_equal(small, derainer.run(image[:12, :12]))
    finally:
        derainer.close()
    assert not maeb._SQUEEZE_OVERRIDES
    assert np.mean((whole > 0) & (whole < 1)) > 0.75 and np.abs(whole - image).max() > 0.02
    assert tiled.shape == image.shape and np.abs(tiled - whole).max() < 1e-4
    assert main.Derainer._check_tiling(ModelConfig(), 64, 16) == 16
    assert 'approximate' in capsys.readouterr().out
    with pytest.raises(main.UsageError):
        main.Derainer._check_tiling(ModelConfig(), 64, -1)
