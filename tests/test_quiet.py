"""quiet.setup / quiet.import_tf: a normal run prints nothing of TensorFlow's on stderr."""
import os
import subprocess
import sys
import warnings

import pytest

from conftest import ROOT
from console import quiet

# Builds and runs the network on a 1x16x16x3 image, the smallest whole run of the model.
SCRIPT = r'''
import sys
sys.path.insert(0, %r)
from console import quiet
quiet.setup()
tf = quiet.import_tf()
import numpy as np
import model
images = tf.placeholder(tf.float32, [1, 16, 16, 3])
output, _ = model.remaen(images)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    print(sess.run(output, {images: np.zeros((1, 16, 16, 3), np.float32)}).shape)
import os
print('TF_CPP_MIN_LOG_LEVEL=%%s' %% os.environ.get('TF_CPP_MIN_LOG_LEVEL'))
''' % ROOT


def run_script(**env):
    """Run SCRIPT in a fresh interpreter with a clean TF environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ('TF_CPP_MIN_LOG_LEVEL', 'CUDA_VISIBLE_DEVICES', quiet.VERBOSE_ENV)}
    clean.update(env)
    return subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                          env=clean, timeout=600, check=True)


@pytest.mark.slow
def test_normal_run_prints_nothing_on_stderr():
    result = run_script()
    assert result.stdout.splitlines() == ['(1, 16, 16, 3)', 'TF_CPP_MIN_LOG_LEVEL=3']
    assert result.stderr == ''


@pytest.mark.slow
def test_verbose_run_keeps_tensorflow_messages():
    result = run_script(**{quiet.VERBOSE_ENV: '1'})
    assert result.stdout.splitlines() == ['(1, 16, 16, 3)', 'TF_CPP_MIN_LOG_LEVEL=None']
    assert result.stderr.strip()             # e.g. absl's banner, the deprecation warning


def test_setup_keeps_explicit_values_and_filters_warnings(monkeypatch):
    monkeypatch.setitem(quiet._state, 'verbose', None)       # restored afterwards
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '1')
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    monkeypatch.setattr(quiet, 'has_nvidia_device', lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert quiet.setup() is False                       # its filters go in front
        warnings.warn_explicit('noise', UserWarning, 'x.py', 1, module='tf_slim.layers')
        warnings.warn_explicit('old', DeprecationWarning, 'x.py', 1, module='tensorflow')
        warnings.warn_explicit('ours', UserWarning, 'x.py', 1, module='tiling')
    assert [str(w.message) for w in caught] == ['ours']
    assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'
    assert 'CUDA_VISIBLE_DEVICES' not in os.environ         # a GPU machine keeps its GPUs
    monkeypatch.setattr(quiet, 'has_nvidia_device', lambda: False)
    with warnings.catch_warnings():
        quiet.setup()
    assert os.environ['CUDA_VISIBLE_DEVICES'] == ''
    monkeypatch.setenv(quiet.VERBOSE_ENV, '1')
    assert quiet.is_verbose() and quiet.setup() is True


def test_warning_filters_are_pytest_filterwarnings_lines():
    assert len(quiet.WARNING_FILTERS) == len(quiet.NOISY_CATEGORIES)
    for line in quiet.WARNING_FILTERS:
        action, message, category, module = line.split(':')
        assert action == 'ignore' and message == '' and module == quiet.NOISY_MODULES
        assert category in ('DeprecationWarning', 'PendingDeprecationWarning', 'UserWarning',
                            'FutureWarning')
