"""Only our own output on a normal run: TensorFlow's start-up noise, silenced before import.

On a CPU-only machine TensorFlow 2.21 prints about a dozen lines before anything useful:
absl's "All log messages before absl::InitializeLog() ..." banner, "Could not find cuda
drivers", the oneDNN/CPU-feature notes, an ``E0000 ... cuInit ... UNKNOWN ERROR (303)``
line, "MLIR V1 optimization pass is not enabled", the ``disable_resource_variables``
deprecation of ``disable_v2_behavior`` and tf_slim's ``layer.apply`` UserWarning. None of
them is actionable for a user of this project.

Use::

    from console import quiet
    quiet.setup(verbose=args.verbose)     # BEFORE anything imports tensorflow
    tf = quiet.import_tf()                # tensorflow.compat.v1, v2 behaviour disabled

``REMAEN_VERBOSE=1`` (or ``verbose=True``) leaves everything as TensorFlow does it. A value
the user set explicitly (``TF_CPP_MIN_LOG_LEVEL``, ``CUDA_VISIBLE_DEVICES``) always wins.

For pytest, ``WARNING_FILTERS`` are the same Python-warning filters as ``filterwarnings``
lines (``pytest.ini``: ``filterwarnings =`` followed by one per line).
"""
import contextlib
import os
import sys
import warnings

import cv2

VERBOSE_ENV = 'REMAEN_VERBOSE'
# Python warnings raised from these modules are TensorFlow's and tf_slim's own business.
NOISY_MODULES = r'(tensorflow|tf_slim|keras|tf_keras|absl|google\.protobuf)(\..*)?'
NOISY_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, UserWarning, FutureWarning)
# The same filters in pytest's ``filterwarnings`` syntax (action:message:category:module).
WARNING_FILTERS = tuple('ignore::%s:%s' % (category.__name__, NOISY_MODULES)
                        for category in NOISY_CATEGORIES)

_state = {'verbose': None, 'showwarning': warnings.showwarning}


def is_verbose(verbose=False):
    """True when ``verbose`` is set or the environment asks for it (``REMAEN_VERBOSE=1``).

    Args:
      verbose: the caller's flag (e.g. ``--verbose``).

    Returns:
      bool.
    """
    value = os.environ.get(VERBOSE_ENV, '').strip().lower()
    return bool(verbose) or value in ('1', 'true', 'yes', 'on')


def setup(verbose=False):
    """Silence TensorFlow's start-up output; call before ``tensorflow`` is imported.

    Unless verbose: ``TF_CPP_MIN_LOG_LEVEL=3`` (C++ logs: errors only... and those of start-up
    are not errors for us), ``CUDA_VISIBLE_DEVICES=''`` when there is no NVIDIA device (no
    cuInit probe and its E0000 line), Python warnings of TensorFlow, tf_slim and Keras
    ignored, and OpenCV's log at errors only. Values already in the environment are kept.
    Calling it again is harmless.

    Args:
      verbose: keep every message (also when ``REMAEN_VERBOSE=1``).

    Returns:
      bool, whether the run is verbose.
    """
    verbose = is_verbose(verbose)
    _state['verbose'] = verbose
    if verbose:
        return True
    # OpenCV's decoder warnings ("PNG input buffer is incomplete"): a corrupt image is
    # reported by our own one-line error.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    if 'CUDA_VISIBLE_DEVICES' not in os.environ and not has_nvidia_device():
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    for category in NOISY_CATEGORIES:
        warnings.filterwarnings('ignore', category=category, module=NOISY_MODULES)
    if warnings.showwarning is not _show_warning:
        _state['showwarning'] = warnings.showwarning
        warnings.showwarning = _show_warning
    return False


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` of a quiet run: a warning whose category has ``cli_note``
    (``images.DataWarning``: an image converted on load) is one ``note: <message>`` line on
    standard error; any other goes to the previous hook (Python's file:line format)."""
    if getattr(category, 'cli_note', False):
        stream = file if file is not None else sys.stderr
        if stream is not None:
            stream.write('note: %s\n' % message)
        return
    _state['showwarning'](message, category, filename, lineno, file, line)


def has_nvidia_device():
    """True when the kernel exposes an NVIDIA GPU (``/dev/nvidia0`` or ``/dev/nvidiactl``)."""
    return any(os.path.exists(path) for path in ('/dev/nvidia0', '/dev/nvidiactl'))


@contextlib.contextmanager
def stderr_silenced(enabled=True):
    """Send file descriptor 2 to /dev/null inside the block (C++ logging writes there).

    Python's ``sys.stderr`` is flushed before and after, so nothing of ours is lost or
    reordered; an exception raised inside is shown normally once fd 2 is restored.

    Args:
      enabled: False makes it a no-op.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tf(verbose=None):
    """Import ``tensorflow.compat.v1`` in TF1 graph mode, quietly unless verbose.

    Calls ``setup`` first if nobody did. While not verbose, the import itself runs with fd 2
    redirected (absl's pre-InitializeLog banner ignores ``TF_CPP_MIN_LOG_LEVEL``), then
    ``disable_v2_behavior()`` (its deprecation is logged), and the Python loggers of
    TensorFlow and absl are set to errors only.

    Args:
      verbose: None = the mode chosen by ``setup`` (or the environment); else as ``setup``.

    Returns:
      the ``tensorflow.compat.v1`` module.
    """
    if verbose is not None or _state['verbose'] is None:
        setup(bool(verbose))
    verbose = _state['verbose']
    with stderr_silenced(not verbose):
        import tensorflow.compat.v1 as tf
        if not verbose:
            tf.get_logger().setLevel('ERROR')
            _absl_errors_only()
        tf.disable_v2_behavior()
    from console import errors  # a Ctrl-C swallowed inside TensorFlow's import still stops the run
    errors.raise_pending_interrupt()
    return tf


def _absl_errors_only():
    """absl's Python logging at ERROR (TensorFlow's deprecation notes go through it)."""
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl ships with TensorFlow; nothing to do without it
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
