"""Ablation flags end to end (variables, outputs, loss, folders, settings check) and towers.

Expected variable lists are derived from the authors' manifest (remaen_variables.txt). The
configurations that keep the paper's variables are built in ONE graph (``derainNet`` is
opened with AUTO_REUSE, so they share the weights) to compare their outputs cheaply.
"""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import read_manifest, write_pairs
import main
import model
from model import ModelConfig
import settings

tf.disable_v2_behavior()
GRU_STATE_CONVS = ('conv_hr', 'conv_hz', 'conv_hn', 'conv_xr')
PATH_OF_GRU = {k: 'extracting_path' if k <= 4 else 'responding_path' for k in range(1, 8)}
SIZE = 24


def config_of(flags):
    """ModelConfig exactly as main.py builds it from command-line flags."""
    return main.model_config(settings.parse_args(flags))


def expected_variables(flags):
    """The variable list an ablation must have, derived from the paper's manifest."""
    manifest = read_manifest()
    if flags == ['--stages', '1']:
        # No GRU state in a single stage: the state convs are never created.
        return {n: s for n, s in manifest.items() if n.split('/')[-2] not in GRU_STATE_CONVS}
    if flags == ['--shared_attention', 'False']:
        out = {n: s for n, s in manifest.items()
               if not n.startswith(('derainNet/ReMAEN/extracting_path/SEBlock/',
                                    'derainNet/ReMAEN/responding_path/SEBlock/'))}
        for k, path in PATH_OF_GRU.items():
            shared = 'derainNet/ReMAEN/%s/SEBlock/' % path
            for name, shape in manifest.items():
                if name.startswith(shared):
                    own = 'derainNet/ReMAEN/%s/convGRU%d/SEBlock/' % (path, k)
                    out[own + name[len(shared):]] = shape
        return out
    if flags == ['--channel_dim', '16']:
        scale = {32: 16, 8: 4}
        return {n: tuple(scale.get(d, d) for d in s) for n, s in manifest.items()}
    return manifest


def shapes(variables):
    return {v.op.name: tuple(v.get_shape().as_list()) for v in variables}


def variables_used_by(graph, name_scope):
    """derainNet variables whose value is read by ops under ``name_scope`` (one build)."""
    used = set()
    for var in model.model_variables():
        for consumer in var.value().consumers():
            if consumer.name.startswith(name_scope + '/'):
                used.add(var)
    return used


# Configurations with the paper's variables, built in one graph on the same weights.
SAME_VARIABLES = {'default': [], 'dilations1': ['--dilations', '1'],
                  'noskip': ['--skip_connections', 'False'], 'stages2': ['--stages', '2'],
                  'stages6': ['--stages', '6']}


@pytest.fixture(scope='module')
def shared_build():
    """Every same-variable configuration on one input and one set of weights."""
    rng = np.random.default_rng(1)
    rain = rng.random((1, SIZE, SIZE, 3), dtype=np.float32)
    clean = np.clip(rain - 0.1 * rng.random(rain.shape, dtype=np.float32), 0, 1)
    with tf.Graph().as_default() as graph:
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [1, None, None, 3])
        targets = tf.placeholder(tf.float32, [1, None, None, 3])
        built, used, scopes = {}, {}, ['derainNet'] + ['derainNet_%d' % i for i in range(1, 5)]
        for scope, (label, flags) in zip(scopes, SAME_VARIABLES.items()):
            output, end_points = model.remaen(images, config_of(flags), reuse=tf.AUTO_REUSE)
            built[label] = end_points
            used[label] = shapes(variables_used_by(graph, scope))
        losses = {w: model.remaen_loss(built['default']['output'], targets, w)
                  for w in (0.0, 0.1)}
        all_variables = shapes(model.model_variables())
        config = tf.ConfigProto()
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        with tf.Session(config=config) as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run({'built': built, 'losses': losses},
                              {images: rain, targets: clean})
    return {'used': used, 'all': all_variables, 'values': values['built'],
            'losses': values['losses'], 'clean': clean}


@pytest.mark.parametrize('label', list(SAME_VARIABLES))
def test_same_variable_configurations_use_the_manifest(shared_build, label):
    manifest = read_manifest()
    assert len(manifest) == 138
    assert shared_build['all'] == manifest  # no ablation created an extra variable
    assert shared_build['used'][label] == expected_variables(SAME_VARIABLES[label])
    assert len(shared_build['used'][label]) == 138


@pytest.mark.parametrize('flags,count', [(['--stages', '1'], 82),
                                         (['--shared_attention', 'False'], 158),
                                         (['--channel_dim', '16'], 138)])
def test_variable_changing_ablations(flags, count):
    expected = expected_variables(flags)
    assert len(expected) == count
    with tf.Graph().as_default():
        model.remaen(tf.placeholder(tf.float32, [1, SIZE, SIZE, 3]), config_of(flags))
        got = shapes(model.model_variables())
        params = model.count_parameters(model.model_variables())
    assert got == expected
    if flags[0] == '--shared_attention':
        assert not any(n.startswith('derainNet/ReMAEN/%s/SEBlock/' % p)
                       for n in got for p in ('extracting_path', 'responding_path'))
        for k, path in PATH_OF_GRU.items():
            assert len([n for n in got
                        if n.startswith('derainNet/ReMAEN/%s/convGRU%d/SEBlock/' % (path, k))]) \
                == 4
        # 7 SE blocks of 552 parameters instead of 2: 495,771 + 5 * 552.
        assert params == 495771 + 5 * 552
    if flags[0] == '--channel_dim':
        assert got['derainNet/ReMAEN/extracting_path/MAEB1/d1/weights'] == (3, 3, 3, 16)
        assert got['derainNet/RMG/SEBlock/fully_connected/weights'] == (16, 4)
        assert got['derainNet/RMG/Conv_1/weights'] == (3, 3, 16, 3)


def test_graph_changing_ablations_change_the_output(shared_build):
    values = shared_build['values']
    default = values['default']['output']
    for label in ('dilations1', 'noskip'):
        assert values[label]['output'].shape == default.shape
        assert np.abs(values[label]['output'] - default).max() > 1e-4, label
    # All stages share every weight: fewer/more stages on the same weights replay the paper's
    # stages exactly (stage 2 of the default model IS the 2-stage model's output).
    np.testing.assert_allclose(values['stages2']['output'], values['default']['stage2/output'],
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(values['stages6']['stage3/output'], default, rtol=0, atol=1e-6)
    assert np.abs(values['stages6']['output'] - default).max() > 1e-4


def test_edge_loss_weight_zero_is_plain_mse(shared_build):
    args = settings.parse_args(['--edge_loss_weight', '0'])
    assert args.edge_loss_weight == 0.0
    output = shared_build['values']['default']['output']
    mse = float(np.mean((output.astype(np.float64) - shared_build['clean']) ** 2))
    total, mse0, edge0 = shared_build['losses'][0.0]
    assert total == mse0 and edge0 == 0.0
    assert total == pytest.approx(mse, rel=1e-5)
    total, mse1, edge1 = shared_build['losses'][0.1]
    assert edge1 > 0 and total == pytest.approx(mse1 + 0.1 * edge1, rel=1e-6)


ABLATION_FLAGS = [[], ['--stages', '1'], ['--stages', '2'], ['--stages', '6'],
                  ['--shared_attention', 'False'], ['--dilations', '1'],
                  ['--dilations', '1', '2'], ['--skip_connections', 'False'],
                  ['--channel_dim', '16'], ['--edge_loss_weight', '0'],
                  ['--edge_loss_weight', '0.5'], ['--stages', '2', '--dilations', '1']]


def test_checkpoint_folder_suffixes_are_distinct():
    suffixes = [main.run_suffix(settings.parse_args(f)) for f in ABLATION_FLAGS]
    assert suffixes[0] == ''
    assert all(suffixes[1:]) and len(set(suffixes)) == len(suffixes)
    folders = [main.default_checkpoint_folder(settings.parse_args(f + ['--batch_size', '8']))
               for f in ABLATION_FLAGS]
    assert folders[0] == os.path.join('checkpoints', 'ReMAEN_Rain100L_8')
    assert folders[1] == os.path.join('checkpoints', 'ReMAEN_Rain100L_8_s1')
    assert len(set(folders)) == len(folders)
    # Flags spelling the paper's values explicitly are the paper's run.
    explicit = ['--stages', '3', '--dilations', '1', '2', '3', '--shared_attention', 'True',
                '--skip_connections', 'True', '--edge_loss_weight', '0.1', '--channel_dim', '32']
    assert main.run_suffix(settings.parse_args(explicit)) == ''


def test_settings_mismatch_on_restore_names_the_setting(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pairs(str(tmp_path / 'train' / 'Tiny'), 2, size=(SIZE, SIZE))
    write_pairs(str(tmp_path / 'test' / 'Tiny'), 1, size=(SIZE, SIZE), seed=1)
    common = ['--train_dataset', 'Tiny', '--test_dataset', 'Tiny', '--batch_size', '1',
              '--data_path', str(tmp_path / 'train' / '{}'),
              '--test_path', str(tmp_path / 'test' / '{}'),
              '--checkpoint_dir', str(tmp_path / 'ckpt'), '--seed', '0']
    assert main.main(['--is_training', 'True', '--iterations', '1', '--patch_size', str(SIZE),
                      '--stages', '2'] + common) == 0
    folder = tmp_path / 'ckpt' / 'ReMAEN_Tiny_1_s2'
    stored = json.loads((folder / 'remaen_settings.json').read_text())
    assert stored['model']['stages'] == 2 and stored['train_pairs'] == 2
    capsys.readouterr()
    code = main.main(['--is_testing', 'True', '--checkpoint', str(folder)] + common)
    err = capsys.readouterr().err
    assert code == 2
    assert 'stages: 2 vs 3' in err and err.startswith('error:')
    assert 'Traceback' not in err
    assert not (tmp_path / 'results').exists()


# ----------------------------------------------------------------------------- multi-tower
def train_one_step(rain, clean, devices, initial=None, config=None):
    """One Adam step; returns (loss, {name: value after}, {name: value before}, graph)."""
    graph = tf.Graph()
    with graph.as_default():
        rain_in = tf.placeholder(tf.float32, rain.shape)
        clean_in = tf.placeholder(tf.float32, clean.shape)
        net = model.build_train_graph(rain_in, clean_in, config=config, devices=devices)
        init = tf.global_variables_initializer()
    config = tf.ConfigProto(device_count={'CPU': 2}, allow_soft_placement=False)
    config.graph_options.rewrite_options.disable_meta_optimizer = True  # faster first step
    with tf.Session(graph=graph, config=config) as sess:
        names = [d.name for d in sess.list_devices()]
        assert any(n.endswith('/device:CPU:1') for n in names), names
        sess.run(init)
        if initial is not None:
            for var in net.variables:
                var.load(initial[var.op.name], sess)
        before = sess.run({v.op.name: v for v in net.variables})
        loss, _ = sess.run([net.loss, net.train_op], {rain_in: rain, clean_in: clean})
        after = sess.run({v.op.name: v for v in net.variables})
    return loss, after, before, graph


def device_of(op):
    spec = tf.DeviceSpec.from_string(op.device)
    return spec.device_type.upper(), spec.device_index


@pytest.mark.slow   # two training graphs of the paper's network (their build is the cost)
@pytest.mark.parametrize('config', [ModelConfig()], ids=['paper'])
def test_two_towers_equal_one_tower(config):
    rng = np.random.default_rng(2)
    rain = rng.random((2, SIZE, SIZE, 3), dtype=np.float32)
    clean = np.clip(rain - 0.2 * rng.random(rain.shape, dtype=np.float32), 0, 1)
    loss1, after1, before, _ = train_one_step(rain, clean, None, config=config)
    loss2, after2, before2, graph = train_one_step(rain, clean, ['/cpu:0', '/cpu:1'],
                                                   initial=before, config=config)
    # Two stages or more hold every variable of the paper's (the channels change shapes only).
    assert set(after2) == set(read_manifest()) and len(after2) == 138
    for name in before:
        np.testing.assert_array_equal(before2[name], before[name])
    assert loss2 == pytest.approx(loss1, rel=1e-5, abs=1e-7)
    moved = max(float(np.abs(after1[n] - before[n]).max()) for n in after1)
    assert moved > 1e-4  # the step did something
    # Adam's first step is lr * g / (|g| + eps): where a gradient is near eps (1e-8), the
    # float32 rounding of two half-batch gradients against one whole batch is amplified. So:
    # 99% of every variable's weights within 1e-5 (1% of lr), and none off by more than 5% of
    # lr. (Seen: 0.22% of MAEB1/d2's 9,216 weights past 1e-5 on an AVX2-only EPYC, 2026-12-07;
    # under 0.1% on the AVX-512 machines.)
    for name in after1:
        diff = np.abs(after2[name] - after1[name])
        assert float(np.mean(diff > 1e-5)) < 1e-2, name
        np.testing.assert_allclose(after2[name], after1[name], rtol=0, atol=5e-5, err_msg=name)
    # Standard tower placement: variables on /cpu:0, tower i's compute on devices[i].
    ops = graph.get_operations()
    variables = [op for op in ops if op.type in ('VariableV2', 'VarHandleOp')
                 and op.name.startswith('derainNet/')]
    assert len(variables) > 138  # the weights and their Adam slots
    assert {device_of(op) for op in variables} == {('CPU', 0)}
    counts = []
    for tower in (0, 1):
        convs = [op for op in ops if op.type.startswith('Conv2D')
                 and op.name.startswith('tower_%d/' % tower)]
        counts.append(len(convs))
        assert {device_of(op) for op in convs} == {('CPU', tower)}
    assert counts[0] == counts[1] > 60 * config.stages  # forward and backward, each tower
