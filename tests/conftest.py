"""Shared test setup: project root on sys.path, quiet TensorFlow, the ``slow`` marker, and
the helpers several test files need (variable manifest, session config, tiny data sets)."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
SHARED_DATA = os.path.join(SHARED, 'data')
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# The facts about the authors' release the tests check against (reference/README.md).
REFERENCE = os.path.join(ROOT, 'reference')
MANIFEST = os.path.join(REFERENCE, 'remaen_variables.txt')
AUTHORS_INDEX = os.path.join(REFERENCE, 'ReMAEN_Rain100L_32.index')
SPEC = os.path.join(REFERENCE, 'SPEC.md')


def needs_shared_data(*names):
    """A ``skipif`` marker for a test that reads ``../shared/data/<name>`` for each name.

    The benchmark data sit beside the project in CI and on the team's machines, not in a
    clone of the project; without them the test skips with a reason naming what is missing.
    """
    import pytest
    missing = [name for name in names
               if not os.path.isdir(os.path.join(SHARED_DATA, name))]
    folders = ', '.join('../shared/data/' + name for name in missing)
    return pytest.mark.skipif(bool(missing), reason='needs %s beside the project (the team\'s '
                              'benchmark data, not in a clone)' % folders)


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


def pytest_cmdline_main(config):
    """The default tier on all of the machine's cores (up to 4): one pytest-xdist worker per
    core, each taking whole test files (``--dist loadfile``: a file's module fixtures are
    built once). The tests are single-threaded graph building and small session runs, so on
    a 2-core machine two workers take two thirds of the time (docs/project-layout.md, Tests:
    the tier must stay under 10 minutes on the slowest 2-core machine). Only when the whole
    ``tests`` folder is run without ``-m`` or ``-n``; ``-n 0`` (or ``REMAEN_TEST_WORKERS=1``)
    runs it in one process, as does a machine without pytest-xdist or with one core."""
    option = config.option
    if (hasattr(config, 'workerinput') or os.environ.get('PYTEST_XDIST_WORKER')
            or getattr(option, 'numprocesses', 'absent') is not None
            or option.markexpr or option.collectonly or option.usepdb
            or config.pluginmanager.getplugin('xdist') is None):
        return
    tests = os.path.dirname(os.path.abspath(__file__))
    if not config.args or any(os.path.abspath(arg) != tests for arg in config.args):
        return
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
             else os.cpu_count() or 1)
    workers = min(cores, 4)
    wanted = os.environ.get('REMAEN_TEST_WORKERS', '')
    if wanted.isdigit():
        workers = int(wanted)
    if workers > 1:
        option.numprocesses = workers
        option.dist = 'loadfile'
        option.tx = ['popen'] * workers


def pytest_configure(config):
    """Register the markers (``pytest --strict-markers`` and no unknown-marker warnings)."""
    config.addinivalue_line('markers', 'slow: the slow tier: whole CLI runs in subprocesses, '
                            'signals, distributed training, benchmarks (python -m pytest tests '
                            '-q -m slow; .ci/run runs it after the default tier)')
    # TensorFlow's and tf_slim's own deprecation warnings are not ours (quiet.py, as the CLI).
    from console import quiet
    for line in quiet.WARNING_FILTERS:
        config.addinivalue_line('filterwarnings', line)


# File names of pair N in each layout write_pairs can write (relative to the folder).
PAIR_LAYOUTS = {
    'canonical': ('rain-{}.png', 'norain-{}.png'),            # the ReMAEN authors' layout
    'padded': ('rain-{:03d}.png', 'norain-{:03d}.png'),       # zero-padded ids, as test sets
    'subfolders': (os.path.join('input', '{}.png'),           # paired subfolders
                   os.path.join('target', '{}.png')),
}


def write_pairs(folder, count, size=(24, 24), seed=0, layout='canonical', offset=None,
                grow=0):
    """Write ``count`` rainy/clean pairs (uint8 BGR PNGs), N = 1..count: the tests' tiny data.

    The clean image of pair N is a random texture in 20..199 drawn from
    ``default_rng([seed, N])``; its rainy image adds bright vertical streaks (at most +55, so
    nothing clips) or, with ``offset``, the same value to every sample.

    Args:
      folder: where to write (str or path); created with any subfolder the layout needs.
      count: number of pairs.
      size: (height, width) of every image.
      seed: content seed: the same arguments write the same files.
      layout: a key of ``PAIR_LAYOUTS``.
      offset: None for streaks, or an int in 0..56: rain = clean + offset everywhere.
      grow: pair N is ``grow * N`` rows taller than ``size`` (a set of mixed sizes).

    Returns:
      list of (rain_path, clean_path) strings, pair 1 first.
    """
    import cv2
    import numpy as np
    folder = os.fspath(folder)
    height, width = size
    paths = []
    for index in range(1, count + 1):
        rng = np.random.default_rng([seed, index])
        rows = height + grow * index
        clean = rng.integers(20, 200, (rows, width, 3), dtype=np.uint8)
        if offset is None:
            streaks = (rng.random((1, width)) > 0.8) * rng.random((rows, 1)) * 55
            rain = clean + streaks[..., None].astype(np.uint8)
        else:
            rain = clean + np.uint8(offset)
        pair = tuple(os.path.join(folder, name.format(index)) for name in PAIR_LAYOUTS[layout])
        for path, image in zip(pair, (rain, clean)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            assert cv2.imwrite(path, image), path
        paths.append(pair)
    return paths


def pytest_collection_modifyitems(config, items):
    """Without ``-m``, the run is the default tier: the ``slow`` tests are deselected (not
    skipped). ``-m slow`` runs the slow tier, ``-m 'slow or not slow'`` everything."""
    if config.getoption('markexpr', ''):
        return
    slow = [item for item in items if item.get_closest_marker('slow')]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker('slow')]
