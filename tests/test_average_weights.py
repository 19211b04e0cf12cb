"""tools/average_weights.py: the mean of real-network checkpoints against numpy."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))

import average_weights  # noqa: E402
import checkpointing  # noqa: E402
import model  # noqa: E402


@pytest.fixture(scope='module')
def run_folder(tmp_path_factory):
    """ReMAEN-100, -200, -250, -300: the default network, each variable random (numpy); 250
    stands for a training folder's rotating newest checkpoint."""
    folder = str(tmp_path_factory.mktemp('avg') / 'ReMAEN_Tiny_1')
    os.makedirs(folder)
    with tf.Graph().as_default():
        model.build_inference_graph(model.ModelConfig())
        variables = model.model_variables()
        saver = checkpointing.make_saver(variables)
        with tf.Session() as session:
            for step in (100, 200, 250, 300):
                rng = np.random.default_rng(step)
                for variable in variables:
                    variable.load(0.1 * rng.standard_normal(variable.shape.as_list()), session)
                saver.save(session, os.path.join(folder, 'ReMAEN-%d' % step),
                           write_meta_graph=False, write_state=False)
    return folder


def error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


def test_the_mean_of_a_step_range_equals_numpy(run_folder, tmp_path, capsys):
    out = str(tmp_path / 'avg')
    assert average_weights.main([out, run_folder, '--steps', '100-200']) == 0
    assert 'Averaged 2 checkpoints (ReMAEN-100, ReMAEN-200)' in capsys.readouterr().out
    names = [n for n, _ in tf.train.list_variables(os.path.join(out, 'ReMAEN'))]
    assert len(names) == 138 and all(n.startswith('derainNet/') for n in names)
    moved = 0
    for name in names:
        a, b, c = (tf.train.load_variable(os.path.join(run_folder, 'ReMAEN-%d' % s), name)
                   for s in (100, 200, 300))
        mean = tf.train.load_variable(os.path.join(out, 'ReMAEN'), name)
        np.testing.assert_allclose(mean, (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-7)
        moved += not np.allclose(a, b)
    assert moved == 138   # the checkpoints really differ (not a mean of equal weights)
    settings = checkpointing.load_settings(out)
    assert [os.path.basename(p) for p in settings['averaged_checkpoints']] == [
        'ReMAEN-100', 'ReMAEN-200']
    # Prefixes given one by one: the same mean.
    again = str(tmp_path / 'avg2')
    assert average_weights.main([again, os.path.join(run_folder, 'ReMAEN-100'),
                                 os.path.join(run_folder, 'ReMAEN-200')]) == 0
    name = names[0]
    np.testing.assert_array_equal(tf.train.load_variable(os.path.join(again, 'ReMAEN'), name),
                                  tf.train.load_variable(os.path.join(out, 'ReMAEN'), name))


@pytest.mark.slow   # the tool as a whole process (its quiet start-up)
def test_every_keeps_the_multiples_and_the_import_is_quiet(run_folder, tmp_path):
    out = str(tmp_path / 'avg')
    # The environment of a user's shell: no TensorFlow log settings (conftest sets some).
    env = {k: v for k, v in os.environ.items()
           if k not in ('TF_CPP_MIN_LOG_LEVEL', 'CUDA_VISIBLE_DEVICES', 'REMAEN_VERBOSE')}
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'average_weights.py'),
                             out, run_folder, '--steps', '150-300', '--every', '100'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert 'Averaged 2 checkpoints (ReMAEN-200, ReMAEN-300)' in result.stdout
    # TensorFlow's start-up lines (absl's banner, oneDNN, CUDA) are silenced.
    assert result.stderr == ''
    name = tf.train.list_variables(os.path.join(out, 'ReMAEN'))[0][0]
    a, b = (tf.train.load_variable(os.path.join(run_folder, 'ReMAEN-%d' % s), name)
            for s in (200, 300))
    np.testing.assert_allclose(tf.train.load_variable(os.path.join(out, 'ReMAEN'), name),
                               (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-7)
    assert checkpointing.select_prefixes([run_folder], every=50) == [
        os.path.join(run_folder, 'ReMAEN-%d' % s) for s in (100, 200, 250, 300)]


def test_bad_sources_and_targets_are_one_line(run_folder, tmp_path, capsys):
    out = str(tmp_path / 'avg')
    assert average_weights.main([out, os.path.join(run_folder, 'ReMAEN-150')]) == 2
    assert 'no checkpoint at' in error_line(capsys)
    assert average_weights.main([out, run_folder, '--steps', '400-500']) == 2
    assert 'no checkpoint with an iteration in 400-500' in error_line(capsys)
    assert average_weights.main([out, run_folder, '--steps', '210-290', '--every', '100']) == 2
    assert ('no checkpoint with an iteration in 210-290 and a multiple of 100'
            in error_line(capsys))
    with pytest.raises(SystemExit):
        average_weights.main([out, run_folder, '--every', '0'])
    assert '--every' in capsys.readouterr().err
    assert average_weights.main([out, str(tmp_path)]) == 2
    assert 'holds no training checkpoints' in error_line(capsys)
    # Never into a training folder.
    assert average_weights.main([run_folder, run_folder]) == 2
    assert 'holds training checkpoints' in error_line(capsys)
    assert sorted(checkpointing.steps(run_folder)) == [100, 200, 250, 300]
    with pytest.raises(SystemExit) as exit_info:
        average_weights.main([out, run_folder, '--steps', '7000-6100'])
    assert exit_info.value.code == 2 and '--steps' in capsys.readouterr().err
    assert not os.path.exists(out)
