"""One error path for the command lines: every fault a user can cause ends in one line.

    def main(argv=None):
        args = settings.parse_args(argv)
        return errors.run(lambda: work(args), verbose=args.verbose, args=args)

``run`` calls the work and turns whatever a user can cause or fix into one ``error:`` line
on stderr that names the file or flag and what to do; the traceback is printed only with
``--verbose``. It covers our own errors (``UserError``: ``UsageError``, ``TrainingError``,
``dataloader.DataError``, ``CheckpointError``), the operating system's refusals (permissions,
a path below a regular file, a full disk, a name that is not valid text), the same faults
raised by TensorFlow's file and memory code, running out of memory, Ctrl-C and SIGTERM, and a
standard output closed early (``| head``). Anything else is a bug: one line says where, and
``--verbose`` shows the traceback. The exit codes (docs/errors.md):

    0    done
    1    an internal error (a bug)
    2    a user error: one ``error:`` line says what to change
    130  interrupted by Ctrl-C (SIGINT); 143: stopped by SIGTERM
    141  standard output was closed early (quiet, as for any Unix tool)

Exceptions may carry notes (``exc.add_note``, Python 3.11): they are appended to the line,
e.g. where the results of the images derained before an error were written.
"""
import errno
import os
import re
import signal
import sys
import traceback

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 128           # + the signal number: 130 for SIGINT, 143 for SIGTERM
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE

# Flags holding paths, in the order a failing path is matched against them (most specific
# first is decided by length); '{}' in a template ends the part compared.
PATH_FLAGS = ('checkpoint_dir', 'checkpoint', 'logs_dir', 'sample_dir', 'test_dir',
              'export_weights', 'input', 'data_path', 'test_path')
# Modules that may define CheckpointError (it moved from utils to checkpointing).
_CHECKPOINT_MODULES = ('checkpointing', 'utils')
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root


class UserError(Exception):
    """A problem the user can fix; the message is one line naming the path or flag and what to
    do. The CLI prints it as ``error: <message>`` and exits with 2."""


class UsageError(UserError):
    """Flags that cannot work together, or an output that cannot be written (one line)."""


class TrainingError(UserError):
    """Training had to stop (e.g. a NaN loss); the last good checkpoint is untouched."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or another stop signal) received by a command run through ``run``.

    A KeyboardInterrupt, so that code cleaning up after Ctrl-C does the same for it.
    """

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def user_errors():
    """The exception classes reported as ``error: <message>`` with exit code 2.

    ``UserError`` (``UsageError``, ``TrainingError``, ``DataError``) and ``CheckpointError``,
    looked up in the modules already imported: an error class of a module nobody imported
    cannot have been raised, and importing it here would start TensorFlow.
    """
    found = [UserError]
    for name in _CHECKPOINT_MODULES:
        cls = getattr(sys.modules.get(name), 'CheckpointError', None)
        if cls is not None and not issubclass(cls, tuple(found)):
            found.append(cls)
    return tuple(found)


# ----------------------------------------------------------------------------- running
def run(action, verbose=False, args=None):
    """Run a command and turn its faults into one line and an exit code.

    While it runs, SIGTERM raises ``Interrupted`` (as Ctrl-C raises KeyboardInterrupt), and
    standard output writes names that are not valid text with backslash escapes instead of
    failing.

    Args:
      action: callable without arguments; returns None (success) or an exit code.
      verbose: also print the traceback of an error (``--verbose``, ``REMAEN_VERBOSE=1``).
      args: the parsed flags, or None; used to name the flag of a failing path and to give
        the memory hint of the command.

    Returns:
      int exit code (see the module docstring).
    """
    previous = _on_sigterm(_raise_interrupted)
    previous_int = _on_signal(signal.SIGINT, _record_sigint)
    del _SIGINTS[:]
    _tolerate_unencodable(sys.stdout)
    try:
        code = action()
        raise_pending_interrupt()
        sys.stdout.flush()
        return EXIT_OK if code is None else code
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every fault ends here, by design
        return report(exc, verbose, args)
    finally:
        _on_sigterm(previous)
        _on_signal(signal.SIGINT, previous_int)


def report(exc, verbose=False, args=None, stream=None):
    """Print the one line of ``exc`` (and its traceback when verbose); return the exit code.

    Args:
      exc: the exception.
      verbose: print the traceback before the line.
      args: parsed flags or None (see ``run``).
      stream: where to print (default sys.stderr).

    Returns:
      int exit code.
    """
    stream = stream or sys.stderr
    if _stdout_closed(exc):
        _discard_stdout()
        return EXIT_STDOUT_CLOSED
    described = describe(exc, args)
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    if described is None:
        code, text = EXIT_INTERNAL, _internal(exc)
    else:
        code, text = described
    notes = ' '.join(getattr(exc, '__notes__', ()))
    print('error: %s' % (text + ('; ' + notes if notes else '')), file=stream)
    stream.flush()
    return code


def describe(exc, args=None):
    """The exit code and one-line message of a fault a user can cause, or None for a bug.

    Args:
      exc: the exception.
      args: parsed flags or None (see ``run``).

    Returns:
      (code, message) or None.
    """
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, 'signum', signal.SIGINT)
        what = 'Ctrl-C (SIGINT)' if signum == signal.SIGINT else signal.Signals(signum).name
        return EXIT_INTERRUPTED + signum, 'interrupted by %s' % what
    if isinstance(exc, user_errors()):
        return EXIT_USER, str(exc)
    if isinstance(exc, MemoryError):
        return EXIT_USER, out_of_memory(args)
    if isinstance(exc, UnicodeError):
        return EXIT_USER, _encoding_message(exc)
    os_error = _os_error(exc)
    if os_error is not None:
        return EXIT_USER, os_message(*os_error, args=args)
    if _is_tf_error(exc, 'ResourceExhaustedError'):
        return EXIT_USER, out_of_memory(args)
    return None


def reason(exc):
    """A short cause of ``exc``, for a message that says the rest itself: 'the disk is full',
    'permission denied', 'out of memory', ..., else the first informative line of its text
    (TensorFlow's errors start with 'Graph execution error:')."""
    os_error = _os_error(exc)
    if os_error is not None:
        return _REASONS.get(os_error[0]) or (os_error[2] or 'system error').lower()
    if os.strerror(errno.ENOSPC) in str(exc):  # TensorFlow's ResourceExhaustedError too
        return _REASONS[errno.ENOSPC]
    if isinstance(exc, MemoryError) or _is_tf_error(exc, 'ResourceExhaustedError'):
        return 'out of memory'
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    informative = [line for line in lines if not line.endswith(':')] or lines or [
        type(exc).__name__]
    return informative[0][:200]


def out_of_memory(args=None):
    """'out of memory; <what to lower>' for the command of ``args``."""
    if args is not None and getattr(args, 'is_training', False):
        hint = ('lower --batch_size (now %d) or --patch_size (now %d)'
                % (args.batch_size, args.patch_size))
    elif args is not None:
        hint = 'derain large images in tiles: --tile 768 --tile_mode fast (docs/tiling.md)'
    else:
        hint = 'use smaller inputs or close other programs'
    return 'out of memory; %s' % hint


# Per error number: what happened to {path}, and what to do ("..., or choose another --flag"
# follows when the path belongs to a path flag).
_OS_MESSAGES = {
    errno.ENOSPC: ('the disk is full: cannot write {path}', 'free some space and run again'),
    errno.EDQUOT: ('disk quota exceeded: cannot write {path}', 'free some space and run again'),
    errno.EACCES: ('permission denied: {path}', 'change its permissions'),
    errno.EPERM: ('operation not permitted on {path}', 'change its permissions'),
    errno.EROFS: ('{path} is on a read-only file system', 'write somewhere else'),
    errno.ENOTDIR: ('{path}: a part of this path is a regular file, not a folder',
                    'fix the path'),
    errno.EISDIR: ('{path} is a folder, not a file', 'pass a file'),
    errno.ENOENT: ('{path} does not exist', 'check the path'),
    errno.ENAMETOOLONG: ('the name {path} is too long for the file system', 'shorten it'),
    errno.ELOOP: ('{path} is a loop of symbolic links', 'fix the link'),
    errno.EIO: ('input/output error on {path}', 'check the disk or the network share'),
    errno.EMFILE: ('too many open files (at {path})', 'raise the limit (ulimit -n)'),
    errno.ENOMEM: ('out of memory while accessing {path}', 'close other programs'),
}
_REASONS = {errno.ENOSPC: 'the disk is full', errno.EDQUOT: 'disk quota exceeded',
            errno.EACCES: 'permission denied', errno.ENOTDIR: 'a part of the path is a file'}
# strerror texts as TensorFlow's file code writes them after a path -> errno
_TF_OS_TEXTS = {os.strerror(code): code for code in _OS_MESSAGES}
_TF_OS_TEXTS['is not a directory'] = errno.ENOTDIR
_TF_OS_PATTERN = re.compile(r'(\S+?)(?:\.tempstate\d+)?[;:]? (%s)'
                            % '|'.join(re.escape(t) for t in _TF_OS_TEXTS))


def os_message(code, path, strerror=None, args=None):
    """One line for an operating-system error on ``path``: what happened, what to do.

    Args:
      code: errno number (or None).
      path: the file or folder concerned (or None).
      strerror: the system's text, used for error numbers without their own message.
      args: parsed flags or None: the flag holding ``path`` is named.
    """
    path = path or 'a file'
    problem, advice = _OS_MESSAGES.get(code, ('%s: {path}' % (strerror or 'system error %s'
                                                               % code), 'check it'))
    flag = flag_of(path, args)
    return '%s; %s%s' % (problem.format(path=path), advice,
                         ', or choose another %s' % flag if flag else '')


def flag_of(path, args):
    """The path flag (e.g. '--test_dir') whose value holds ``path``, or None."""
    if args is None or not isinstance(path, str):
        return None
    target = os.path.abspath(path)
    best = None
    for name in PATH_FLAGS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value.split('{}')[0]:
            continue
        root = os.path.abspath(value.split('{}')[0])
        if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
            if best is None or len(root) > len(best[1]):
                best = (name, root)
    return '--' + best[0] if best else None


# ----------------------------------------------------------------------------- helpers
def _os_error(exc):
    """(errno, path, strerror) of an OSError (also one wrapped as ``__cause__`` or raised by
    TensorFlow's file code), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            path = exc.filename if exc.filename is not None else exc.filename2
            return exc.errno, None if path is None else os.fsdecode(path), exc.strerror
        if _is_tf_error(exc):
            match = _TF_OS_PATTERN.search(getattr(exc, 'message', str(exc)))
            if match:
                return _TF_OS_TEXTS[match.group(2)], match.group(1), match.group(2)
        exc = exc.__cause__ or exc.__context__
    return None


def _is_tf_error(exc, name=None):
    """Whether ``exc`` is one of TensorFlow's errors (``tf.errors.OpError``, or ``name``)."""
    module = type(exc).__module__ or ''
    if not module.startswith('tensorflow') or not hasattr(exc, 'error_code'):
        return False
    return name is None or type(exc).__name__ == name


def _encoding_message(exc):
    text = getattr(exc, 'object', '')
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'backslashreplace')
    shown = text.encode('utf-8', 'backslashreplace').decode('utf-8')
    return ('the name %s is not valid %s text; rename the file (or set a UTF-8 locale, e.g. '
            'LANG=C.UTF-8)' % (shown[:200], getattr(exc, 'encoding', 'UTF-8')))


def _internal(exc):
    """'internal error ...' naming the exception and our innermost frame."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename).startswith(_HERE)]
    where = ' at %s:%d' % (os.path.relpath(frames[-1].filename, _HERE),
                           frames[-1].lineno) if frames else ''
    message = str(exc).strip().splitlines()
    return ('internal error (%s%s%s); this is a bug: rerun with --verbose for the traceback '
            'and report it' % (type(exc).__name__, ': ' + message[0][:200] if message else '',
                               where))


def _stdout_closed(exc):
    """True for a BrokenPipeError: the reader of our output (``| head``) has gone. The
    commands write to no other pipe."""
    return isinstance(exc, BrokenPipeError)


def _discard_stdout():
    """Point standard output at /dev/null so that the interpreter's last flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture): nothing will be flushed to a pipe


def _tolerate_unencodable(stream):
    """Make ``stream`` write unencodable characters (file names that are not valid UTF-8) as
    backslash escapes instead of raising."""
    reconfigure = getattr(stream, 'reconfigure', None)
    if reconfigure is not None:
        try:
            reconfigure(errors='backslashreplace')
        except (ValueError, OSError):
            pass


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


# Ctrl-Cs received while ``run`` runs. Some libraries import optional modules under a bare
# ``except:``, which swallows the KeyboardInterrupt of a Ctrl-C that lands in that import
# (seen once in the test suite: a Ctrl-C during TensorFlow's import let the run finish);
# ``raise_pending_interrupt`` raises it again.
_SIGINTS = []


def _record_sigint(signum, _frame):
    _SIGINTS.append(signum)
    raise KeyboardInterrupt


def raise_pending_interrupt():
    """Raise KeyboardInterrupt if a Ctrl-C arrived during ``run`` whose exception was lost."""
    if _SIGINTS:
        raise KeyboardInterrupt


def _on_signal(signum, handler):
    """Install ``handler`` for ``signum``; returns the previous one (None off the main thread
    or when ``handler`` is None)."""
    if handler is None:
        return None
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread: signals stay as they are
        return None


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM; returns the previous one (None off the main thread)."""
    if handler is None:
        return None
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals stay as they are
        return None
