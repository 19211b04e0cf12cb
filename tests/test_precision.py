"""machine/precision.py: CPU flags, the precision each request resolves to, and the bf16 rewrite.

The numerical checks run in a child process (this file run as a script) started with
``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow reads that variable once, when it is imported, and
on CPUs without avx512/AMX neural-network features (such as the AVX2-only test machine)
its oneDNN ops, and with them the bf16 rewrite, are off by default. On such a CPU the
rewrite still runs, and TensorFlow computes the bfloat16 ops with its Eigen kernels
(slowly; oneDNN logs "supports DT_BFLOAT16 only on platforms with AVX-512"), so the
numbers are real bfloat16 numbers.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from machine import precision
import settings

NO_BF16 = {'fpu', 'sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512_vnni'}
AVX512_BF16 = NO_BF16 | {'avx512_bf16'}
AMX_BF16 = {'avx2', 'amx_tile', 'amx_bf16'}
FAKE_FLAGS = 'avx avx2 avx512f avx512_bf16'
SIZE = 24


# ----------------------------------------------------------------------------- CPU flags
def test_cpu_flags_reads_the_first_flags_line(tmp_path, monkeypatch):
    monkeypatch.delenv(precision.FLAGS_ENV, raising=False)
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n'
                       'bugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu other\n')
    assert precision.cpu_flags(str(cpuinfo)) == {'fpu', 'avx', 'avx2', 'fma'}
    assert not precision.bf16_supported(precision.cpu_flags(str(cpuinfo)))


def test_cpu_flags_is_empty_when_unreadable(tmp_path, monkeypatch):
    monkeypatch.delenv(precision.FLAGS_ENV, raising=False)
    assert precision.cpu_flags(str(tmp_path / 'missing')) == set()
    (tmp_path / 'noflags').write_text('processor\t: 0\n')
    assert precision.cpu_flags(str(tmp_path / 'noflags')) == set()
    (tmp_path / 'binary').write_bytes(b'\xff\xfe\x00flags')
    assert precision.cpu_flags(str(tmp_path / 'binary')) == set()


def test_cpu_flags_environment_override(tmp_path, monkeypatch):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('flags\t\t: avx avx2\n')
    monkeypatch.setenv(precision.FLAGS_ENV, ' avx2  amx_bf16 ')
    assert precision.cpu_flags(str(cpuinfo)) == {'avx2', 'amx_bf16'}
    assert precision.bf16_supported()
    monkeypatch.setenv(precision.FLAGS_ENV, '')  # set but empty: a CPU without flags
    assert precision.cpu_flags(str(cpuinfo)) == set()
    assert not precision.bf16_supported()


@pytest.mark.parametrize('flags, supported', [
    (NO_BF16, False), (AVX512_BF16, True), (AMX_BF16, True), (set(), False),
    (['avx512_bf16'], True), ({'avx512bf16', 'bf16'}, False)])
def test_bf16_supported(flags, supported):
    assert precision.bf16_supported(flags) is supported


# ----------------------------------------------------------------------------- resolution
# (requested, gpu, bf16 CPU) -> (precision, note)
MATRIX = [
    ('fp32', False, False, 'fp32', None), ('fp32', False, True, 'fp32', None),
    ('fp32', True, False, 'fp32', None), ('fp32', True, True, 'fp32', None),
    ('bf16', False, False, 'fp32', precision.NOTE_BF16_CPU),
    ('bf16', False, True, 'bf16', None),
    ('bf16', True, False, 'fp16', precision.NOTE_BF16_GPU),
    ('bf16', True, True, 'fp16', precision.NOTE_BF16_GPU),
    ('fp16', False, False, 'fp32', precision.NOTE_FP16_CPU),
    ('fp16', False, True, 'fp32', precision.NOTE_FP16_CPU),
    ('fp16', True, False, 'fp16', None), ('fp16', True, True, 'fp16', None),
    ('auto', False, False, 'fp32', None), ('auto', False, True, 'bf16', None),
    ('auto', True, False, 'fp16', None), ('auto', True, True, 'fp16', None),
]


@pytest.mark.parametrize('requested, gpu, supported, expected, note', MATRIX)
def test_resolve_precision_matrix(requested, gpu, supported, expected, note):
    notes = []
    flags = AVX512_BF16 if supported else NO_BF16
    assert precision.resolve_precision(requested, gpu=gpu, flags=flags, log=notes.append,
                                       onednn=True) == expected
    assert notes == ([note] if note else [])


def test_resolve_precision_notes_are_exact():
    assert precision.NOTE_BF16_CPU == ('note: --precision bf16 needs a CPU with avx512_bf16 '
                                       'or amx_bf16 (this one has neither): running fp32')
    for note in (precision.NOTE_BF16_CPU, precision.NOTE_BF16_GPU, precision.NOTE_FP16_CPU,
                 precision.NOTE_ONEDNN):
        assert note.startswith('note: ') and '\n' not in note


def test_resolve_precision_prints_one_line(capsys):
    assert precision.resolve_precision('bf16', gpu=False, flags=NO_BF16) == 'fp32'
    assert capsys.readouterr().out == precision.NOTE_BF16_CPU + '\n'


@pytest.mark.parametrize('requested, note', [('bf16', [precision.NOTE_ONEDNN]),
                                             ('auto', [precision.NOTE_ONEDNN])])
def test_bf16_without_onednn_runs_fp32(requested, note):
    notes = []
    assert precision.resolve_precision(requested, gpu=False, flags=AVX512_BF16,
                                       log=notes.append, onednn=False) == 'fp32'
    assert notes == note


def test_resolve_precision_rejects_unknown():
    with pytest.raises(ValueError, match='fp64'):
        precision.resolve_precision('fp64', gpu=False, flags=NO_BF16)


def test_resolve_precision_reads_the_environment_flags(monkeypatch):
    notes = []
    monkeypatch.setenv(precision.FLAGS_ENV, FAKE_FLAGS)
    assert precision.resolve_precision('auto', gpu=False, log=notes.append,
                                       onednn=True) == 'bf16'
    monkeypatch.setenv(precision.FLAGS_ENV, 'avx avx2')
    assert precision.resolve_precision('auto', gpu=False, log=notes.append,
                                       onednn=True) == 'fp32'
    assert precision.resolve_precision('bf16', gpu=False, log=notes.append,
                                       onednn=True) == 'fp32'
    assert notes == [precision.NOTE_BF16_CPU]


def test_this_machine_matches_proc_cpuinfo(monkeypatch):
    monkeypatch.delenv(precision.FLAGS_ENV, raising=False)
    flags = precision.cpu_flags()
    assert precision.bf16_supported() == bool({'avx512_bf16', 'amx_bf16'} & flags)


# ----------------------------------------------------------------------------- flags
def parse(argv):
    parser = argparse.ArgumentParser()
    settings.add_session_flags(parser)
    return parser.parse_args(argv)


def test_precision_flag_choices_and_default():
    assert parse([]).precision is None
    for choice in precision.CHOICES:
        assert parse(['--precision', choice]).precision == choice
    with pytest.raises(SystemExit):
        parse(['--precision', 'fp64'])
    assert settings.parse_args(['--precision', 'bf16']).precision == 'bf16'


@pytest.mark.parametrize('argv, requested, notes', [
    ([], 'fp32', 0), (['--mixed_precision', 'True'], 'fp16', 0),
    (['--mixed_precision', 'False'], 'fp32', 0), (['--precision', 'auto'], 'auto', 0),
    (['--precision', 'fp16', '--mixed_precision', 'True'], 'fp16', 0),
    (['--precision', 'bf16', '--mixed_precision', 'True'], 'bf16', 1)])
def test_requested_precision_combines_both_flags(argv, requested, notes):
    logged = []
    assert precision.requested_precision(parse(argv), logged.append) == requested
    assert len(logged) == notes


def test_from_args_uses_this_machine(monkeypatch):
    monkeypatch.setattr(precision, 'gpu_available', lambda: False)
    notes = []
    monkeypatch.setenv(precision.FLAGS_ENV, 'avx avx2')
    assert precision.from_args(parse(['--precision', 'bf16']), notes.append) == 'fp32'
    assert precision.from_args(parse(['--mixed_precision', 'True']), notes.append) == 'fp32'
    assert precision.from_args(parse([]), notes.append) == 'fp32'
    assert notes == [precision.NOTE_BF16_CPU, precision.NOTE_FP16_CPU]
    monkeypatch.setattr(precision, 'gpu_available', lambda: True)
    assert precision.from_args(parse(['--mixed_precision', 'True']), notes.append) == 'fp16'


def test_graph_float16():
    assert [precision.graph_float16(p) for p in precision.PRECISIONS] == [False, False, True]


# ----------------------------------------------------------------------------- session
def test_apply_sets_the_rewrite_exactly_for_bf16():
    import tensorflow.compat.v1 as tf
    import utils
    from tensorflow.core.protobuf import rewriter_config_pb2
    on = rewriter_config_pb2.RewriterConfig.ON
    for name in precision.PRECISIONS:
        config = precision.apply_to_session_config(tf.ConfigProto(), name)
        options = config.graph_options.rewrite_options
        assert (options.auto_mixed_precision_onednn_bfloat16 == on) == (name == 'bf16')
        assert precision.bf16_rewrite_requested(config) == (name == 'bf16')
        assert options.auto_mixed_precision != on  # the GPU float16 rewrite: never
        assert precision.bf16_rewrite_requested(utils.session_config(precision=name)) == (
            name == 'bf16')
    # An earlier ON is switched off again.
    config = precision.apply_to_session_config(tf.ConfigProto(), 'bf16')
    assert not precision.bf16_rewrite_requested(
        precision.apply_to_session_config(config, 'fp32'))
    with pytest.raises(ValueError):
        precision.apply_to_session_config(tf.ConfigProto(), 'auto')
    # Positional arguments of the old signature still mean the same.
    config = utils.session_config(2, 1, False)
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (2, 1)
    assert not precision.bf16_rewrite_requested(config)


def test_rewrite_is_active_exactly_where_onednn_is_on():
    """In this process TensorFlow was imported without TF_ENABLE_ONEDNN_OPTS: oneDNN (and
    the rewrite) are on where TensorFlow enables them by default (CPUs with avx512_bf16,
    AMX, VNNI...) and off on the AVX2-only test machine."""
    import utils
    active = precision.rewrite_active(utils.session_config(precision='bf16'))
    assert active == precision.onednn_enabled()
    assert not precision.rewrite_active(utils.session_config(precision='fp32'))


# ----------------------------------------------------------------------------- bf16 numbers
def child_main(out_dir):
    """Run the real network in fp32 and bf16 sessions (one graph, same weights); write
    ``result.json`` and ``outputs.npz`` into ``out_dir``. Run with TF_ENABLE_ONEDNN_OPTS=1."""
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    from conftest import randomize_biases
    import model
    import utils
    rng = np.random.default_rng(0)
    rain = rng.random((1, SIZE, SIZE, 3), np.float32)
    clean = np.clip(rain - 0.2 * rng.random(rain.shape, np.float32), 0, 1).astype(np.float32)
    result = {'onednn': precision.onednn_enabled(),
              'resolved': precision.from_args(parse(['--precision', 'bf16']), log=print)}
    outputs = {}
    with tf.Graph().as_default():
        tf.set_random_seed(3)
        rain_in = tf.placeholder(tf.float32, [1, None, None, 3])
        clean_in = tf.placeholder(tf.float32, [1, None, None, 3])
        net = model.build_train_graph(rain_in, clean_in)
        feed = {rain_in: rain, clean_in: clean}
        saver = tf.train.Saver()
        with tf.Session(config=utils.session_config()) as session:
            session.run(tf.global_variables_initializer())
            randomize_biases(session, 3)
            start = saver.save(session, os.path.join(out_dir, 'start'), write_meta_graph=False)
        for name in ('fp32', 'bf16'):
            config = utils.session_config(precision=name)
            with tf.Session(config=config) as session:
                saver.restore(session, start)
                metadata = tf.RunMetadata()
                outputs[name] = session.run(
                    net.output, feed, options=tf.RunOptions(output_partition_graphs=True),
                    run_metadata=metadata)
                _, loss = session.run([net.train_op, net.loss], feed)
                saver.save(session, os.path.join(out_dir, name), write_meta_graph=False)
            result[name] = {'loss': float(loss), 'bf16_ops': bf16_op_counts(metadata),
                            'rewrite_active': precision.rewrite_active(config)}
    np.savez(os.path.join(out_dir, 'outputs.npz'), rain=rain, **outputs)
    with open(os.path.join(out_dir, 'result.json'), 'w') as handle:
        json.dump(result, handle)


def bf16_op_counts(metadata):
    """{op type: count} of the executed nodes with a bfloat16 type attribute."""
    counts = {}
    for graph in metadata.partition_graphs:
        for node in graph.node:
            if any(value.type == 14 for value in node.attr.values()):  # 14 = DT_BFLOAT16
                counts[node.op] = counts.get(node.op, 0) + 1
    return counts


@pytest.fixture(scope='module')
def bf16_run(tmp_path_factory):
    """The child's results: fp32 and bf16 outputs, one training step each, checkpoints."""
    out_dir = tmp_path_factory.mktemp('bf16')
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS='1', TF_CPP_MIN_LOG_LEVEL='2',
               REMAEN_CPU_FLAGS=FAKE_FLAGS)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), str(out_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with open(os.path.join(str(out_dir), 'result.json')) as handle:
        result = json.load(handle)
    outputs = dict(np.load(os.path.join(str(out_dir), 'outputs.npz')))
    return dict(result, outputs=outputs, dir=str(out_dir), stdout=done.stdout)


@pytest.mark.slow
def test_faked_flags_resolve_bf16_in_a_child_process(bf16_run):
    assert bf16_run['onednn'] is True
    assert bf16_run['resolved'] == 'bf16'
    assert 'note:' not in bf16_run['stdout']


@pytest.mark.slow
def test_bf16_rewrite_ran_on_the_network(bf16_run):
    assert bf16_run['fp32']['bf16_ops'] == {}
    assert not bf16_run['fp32']['rewrite_active']
    ops = bf16_run['bf16']['bf16_ops']
    assert bf16_run['bf16']['rewrite_active']
    # 3 stages x (24 MAEB + 3 path + 2 RMG + 7 fused GRU ...) convolutions: most in bf16.
    # With TensorFlow's Eigen kernels (CPUs without bfloat16) they stay 'Conv2D'; with oneDNN
    # on a bfloat16 CPU they run as '_MklNativeConv2D' and '_MklNativeFusedConv2D' (136 of
    # them, measured on an AMD EPYC with avx512_bf16).
    convs = sum(count for op, count in ops.items() if op.endswith('Conv2D'))
    assert convs >= 100 and ops.get('Cast', 0) > 0


@pytest.mark.slow
def test_bf16_outputs_are_within_bf16_tolerance_of_fp32(bf16_run):
    outputs = bf16_run['outputs']
    fp32, bf16 = outputs['fp32'], outputs['bf16']
    assert np.abs(fp32 - outputs['rain']).max() > 0.05  # a non-trivial network
    difference = np.abs(bf16 - fp32).max()
    # bfloat16 keeps 8 significant bits (2^-8 = 0.4% per rounding); measured max 8e-3 on
    # outputs of magnitude ~1.3 (the test machine, Eigen's bf16 kernels).
    assert difference < 2e-2 * np.abs(fp32).max()
    assert difference > 1e-4  # not the float32 numbers: the rewrite really ran
    assert abs(bf16_run['bf16']['loss'] - bf16_run['fp32']['loss']) < 2e-2 * bf16_run[
        'fp32']['loss']


@pytest.mark.slow
def test_bf16_checkpoint_has_the_fp32_names_and_dtypes(bf16_run):
    import tensorflow.compat.v1 as tf
    prefixes = {name: os.path.join(bf16_run['dir'], name) for name in ('fp32', 'bf16')}
    listed = {name: tf.train.list_variables(p) for name, p in prefixes.items()}
    assert listed['bf16'] == listed['fp32']
    dtypes = {name: tf.train.NewCheckpointReader(p).get_variable_to_dtype_map()
              for name, p in prefixes.items()}
    assert dtypes['bf16'] == dtypes['fp32']
    assert set(dtypes['bf16'].values()) == {tf.float32, tf.int64}  # weights, Adam; step
    names = {n for n, _ in listed['bf16']}
    assert 'derainNet/RMG/Conv/weights' in names and 'global_step' in names
    # The bf16 training step moved every weight, mostly the way the fp32 step did (Adam's
    # first step is about -lr * sign(gradient): compare the signs).
    start = tf.train.NewCheckpointReader(os.path.join(bf16_run['dir'], 'start'))
    readers = {n: tf.train.NewCheckpointReader(p) for n, p in prefixes.items()}
    agree, total = 0, 0
    for name in names:
        if name.startswith('derainNet/') and 'Adam' not in name:
            steps = {n: r.get_tensor(name) - start.get_tensor(name) for n, r in readers.items()}
            assert np.abs(steps['bf16']).max() > 0, name
            agree += int(np.sum(np.sign(steps['bf16']) == np.sign(steps['fp32'])))
            total += steps['fp32'].size
    assert agree > 0.9 * total

if __name__ == '__main__':
    sys.path.insert(0, ROOT)
    child_main(sys.argv[1])
