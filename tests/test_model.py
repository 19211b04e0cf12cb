"""Network, loss, training graph and checkpoint compatibility (the authors' layout)."""
import shutil

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import AUTHORS_INDEX, read_manifest, variable_shapes
import checkpointing
import model
from model import ModelConfig

tf.disable_v2_behavior()


def build(config=None, shape=(None, None, None, 3)):
    images = tf.placeholder(tf.float32, shape)
    output, end_points = model.remaen(images, config, reuse=tf.AUTO_REUSE)
    return images, output, end_points['residual'], end_points


def test_default_variables_equal_manifest():
    manifest = read_manifest()
    assert len(manifest) == 138
    with tf.Graph().as_default():
        build()
        assert variable_shapes() == manifest
        assert model.count_parameters(model.model_variables()) == 495771
        assert sum(np.prod(s) for s in manifest.values()) == 495771
        # Nothing outside derainNet is trainable.
        assert len(tf.trainable_variables()) == 138


@pytest.mark.parametrize('stages', [1, 2, 5])
def test_variable_count_independent_of_stages(stages):
    manifest = read_manifest()
    if stages == 1:
        # A single stage never has a GRU state, so the convs of the full GRU (conv_hr,
        # conv_hz, conv_hn, conv_xr) are not created: 138 - 7 GRUs * 4 * 2 = 82 variables.
        manifest = {n: s for n, s in manifest.items()
                    if n.split('/')[-2] not in ('conv_hr', 'conv_hz', 'conv_hn', 'conv_xr')}
        assert len(manifest) == 82
    with tf.Graph().as_default():
        _, _, _, end_points = build(ModelConfig(stages=stages))
        assert variable_shapes() == manifest
        assert [k for k in end_points if k.endswith('/output')] == \
            ['stage%d/output' % s for s in range(1, stages + 1)]


def test_second_build_reuses_variables():
    with tf.Graph().as_default():
        build()
        build(shape=(2, 24, 24, 3))
        assert len(model.model_variables()) == 138


@pytest.mark.parametrize('shape', [(1, 37, 53, 3), (2, 24, 24, 3)])
def test_shapes_stages_and_residual_sum(shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape, dtype=np.float32)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        images, output, residual, end_points = build()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            points = sess.run(dict(end_points), {images: image})
    assert points['output'].shape == shape and points['residual'].shape == shape
    for s in (1, 2, 3):
        assert points['stage%d/output' % s].shape == shape
        assert points['stage%d/residual' % s].shape == shape
    np.testing.assert_array_equal(points['residual'], points['stage3/residual'])
    np.testing.assert_array_equal(points['output'], points['stage3/output'])
    total = sum(points['stage%d/residual' % s].astype(np.float64) for s in (1, 2, 3))
    np.testing.assert_allclose(points['output'], image - total, atol=1e-5)
    # Random Xavier weights give a non-trivial residual.
    assert np.abs(points['residual']).max() > 1e-4


def test_zero_weights_give_identity_bit_for_bit():
    image = np.random.default_rng(1).random((1, 29, 31, 3), dtype=np.float32)
    with tf.Graph().as_default():
        images, output, residual, _ = build()
        with tf.Session() as sess:
            sess.run([v.initializer for v in tf.global_variables()])
            sess.run([v.assign(tf.zeros_like(v)) for v in model.model_variables()])
            out, res = sess.run([output, residual], {images: image})
    assert not res.any()
    assert out.dtype == image.dtype and np.array_equal(out, image)


def numpy_edge_map(images):
    """Independent numpy version: TF gray weights on channels 0,1,2; Laplacian SAME; ReLU."""
    gray = images @ np.array(model.GRAY_WEIGHTS, np.float64)           # [N, H, W]
    padded = np.pad(gray, ((0, 0), (1, 1), (1, 1)))
    height, width = gray.shape[1:]
    lap = 9 * gray - sum(padded[:, dy:dy + height, dx:dx + width]
                         for dy in range(3) for dx in range(3))
    return np.maximum(lap, 0)


def test_edge_loss_matches_numpy():
    rng = np.random.default_rng(2)
    out = rng.random((2, 13, 17, 3))
    clean = rng.random((2, 13, 17, 3))
    expected_edge = np.mean((numpy_edge_map(out) - numpy_edge_map(clean)) ** 2)
    expected_mse = np.mean((out - clean) ** 2)
    with tf.Graph().as_default(), tf.Session() as sess:
        total, mse, edge = sess.run(model.remaen_loss(tf.constant(out, tf.float32),
                                                      tf.constant(clean, tf.float32), 0.1))
        zero_total, _, _ = sess.run(model.remaen_loss(tf.constant(out, tf.float32),
                                                      tf.constant(clean, tf.float32), 0.0))
    assert abs(edge - expected_edge) < 1e-5
    assert abs(mse - expected_mse) < 1e-6
    assert abs(total - (expected_mse + 0.1 * expected_edge)) < 1e-5
    assert abs(zero_total - expected_mse) < 1e-6


def test_every_variable_gets_a_gradient_and_lr_schedule():
    rng = np.random.default_rng(3)
    rain = rng.random((2, 24, 24, 3), dtype=np.float32)
    clean = np.clip(rain - 0.1 * rng.random((2, 24, 24, 3), dtype=np.float32), 0, 1)
    with tf.Graph().as_default():
        tf.set_random_seed(3)
        graph = model.build_train_graph(tf.constant(rain), tf.constant(clean),
                                        lr_decay_step=2)
        grads = tf.gradients(graph.loss, graph.variables)
        assert len(graph.variables) == 138
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(grads)
            assert all(np.abs(g).max() > 0 for g in values), \
                [v.op.name for v, g in zip(graph.variables, values) if not np.abs(g).any()]
            rates = []
            for _ in range(3):
                rates.append(sess.run(graph.learning_rate))
                sess.run(graph.train_op)
            assert sess.run(graph.global_step) == 3
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 1e-4], rtol=1e-6)


def authors_layout(tmp_path):
    """Names/shapes of the authors' checkpoint read from its real index file."""
    folder = tmp_path / 'index_copy'
    folder.mkdir()
    shutil.copy(AUTHORS_INDEX, folder / 'ReMAEN_Rain100L_32.index')
    (folder / 'ReMAEN_Rain100L_32.data-00000-of-00001').write_bytes(b'')
    return dict(tf.train.list_variables(str(folder / 'ReMAEN_Rain100L_32')))


def test_authors_checkpoint_layout_restores(tmp_path):
    layout = authors_layout(tmp_path)
    manifest = read_manifest()
    network = {n: tuple(s) for n, s in layout.items() if n.startswith('derainNet/')
               and '/Adam' not in n}
    assert network == manifest
    rng = np.random.default_rng(4)
    values = {name: rng.standard_normal(shape).astype(np.float32)
              for name, shape in layout.items()}
    (tmp_path / 'checkpoint' / 'ReMAEN_Rain100L_32').mkdir(parents=True)
    prefix = str(tmp_path / 'checkpoint' / 'ReMAEN_Rain100L_32' / 'ReMAEN')
    with tf.Graph().as_default():
        stored = [tf.Variable(value, name=name) for name, value in values.items()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(stored).save(sess, prefix)
    found = checkpointing.find(str(tmp_path / 'checkpoint' / 'ReMAEN_Rain100L_32'))
    assert found == prefix
    with tf.Graph().as_default():
        images, output, _, _ = build()
        variables = model.model_variables()
        with tf.Session() as sess:
            assert checkpointing.check_compatible(prefix, variables)  # no missing / unexpected
            step = checkpointing.restore(sess, prefix, variables)
            name = 'derainNet/ReMAEN/responding_path/convGRU6/conv_hn/weights'
            restored = sess.run(tf.global_variables(name)[0])
            np.testing.assert_array_equal(restored, values[name])
            assert sess.run(output, {images: np.zeros((1, 8, 8, 3))}).shape == (1, 8, 8, 3)
    assert step == 0


def test_checkpoint_with_wrong_model_is_refused(tmp_path):
    prefix = str(tmp_path / 'narrow' / 'ReMAEN')
    with tf.Graph().as_default():
        build(ModelConfig(channels=16))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(model.model_variables()).save(sess, prefix)
    with tf.Graph().as_default():
        build()
        with pytest.raises(checkpointing.CheckpointError, match='shape differs'):
            checkpointing.check_compatible(prefix, model.model_variables())


def test_settings_booleans_and_defaults():
    import settings
    args = settings.parse_args(['--is_testing', 'False', '--is_training', 'True'])
    assert args.is_testing is False and args.is_training is True
    for text, value in (('1', True), ('0', False), ('yes', True), ('no', False),
                        ('TRUE', True), ('false', False)):
        assert settings.parse_args(['--is_testing', text]).is_testing is value
    with pytest.raises(SystemExit):
        settings.parse_args(['--is_testing', 'maybe'])
    args = settings.parse_args([])
    assert (args.lr, args.beta1, args.beta2, args.patch_size, args.iterations,
            args.batch_size, args.channel_dim, args.stages) == \
        (1e-3, 0.9, 0.999, 64, 40000, 32, 32, 3)
    assert args.data_path == 'data/train/{}' and args.test_path == 'data/test/{}'
    assert args.checkpoint_dir == 'checkpoints'
    assert args.trainset_size is None and args.testset_size is None
    paper = ['--is_testing', 'True', '--train_dataset', 'Rain100L', '--test_dataset',
             'Rain100L', '--trainset_size', '200', '--testset_size', '100',
             '--batch_size', '32']
    args = settings.parse_args(paper)
    assert args.is_testing and not args.is_training and args.testset_size == 100


def test_settings_of_earlier_versions_and_no_channel_flag():
    # Settings written before --input_channels was removed still load when they say 3.
    stored = dict(ModelConfig().to_dict(), input_channels=3)
    assert ModelConfig.from_dict(stored) == ModelConfig()
    assert 'input_channels' not in ModelConfig().to_dict()
    with pytest.raises(ValueError, match='input_channels=1'):
        ModelConfig.from_dict(dict(stored, input_channels=1))
    import settings
    with pytest.raises(SystemExit):
        settings.build_parser().parse_args(['--input_channels', '3'])


def test_stored_one_channel_model_is_a_usage_error(tmp_path):
    from console.errors import UsageError
    checkpointing.save_settings(str(tmp_path), {'model': dict(ModelConfig().to_dict(),
                                                      input_channels=1)})
    with pytest.raises(UsageError, match='input_channels=1'):
        checkpointing.stored_config(str(tmp_path))
    with pytest.raises(UsageError, match=str(tmp_path)):
        checkpointing.check_settings(str(tmp_path), ModelConfig())
