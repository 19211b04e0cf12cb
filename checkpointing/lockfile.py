"""An exclusive lock file that names its holder, for one writer per folder (``checkpoints``).

The lock is the kernel's ``flock`` on the file, held from ``acquire`` to ``release`` or to the
end of the process however it ends (``kill -9`` included), so a lock a dead process left is
free and its file only says who held it. The file holds one JSON line: pid, host, start time
and command of the holder, for the message another process gets. On file systems without
``flock`` the holder's pid is checked instead (alive on this host = held).
"""
import datetime
import errno
import fcntl
import json
import os
import socket
import sys


class Held(Exception):
    """Another process holds the lock; ``str()`` describes it, ``holder`` is its dict."""

    def __init__(self, holder):
        super(Held, self).__init__(describe(holder))
        self.holder = holder


class FileLock(object):
    """An exclusive lock on ``path`` (created if needed), see the module docstring."""

    def __init__(self, path):
        self.path, self._fd = path, None

    def acquire(self):
        """Take the lock.

        Returns:
          the dict of the previous holder when its file was left behind (a process that ended
          without releasing it: the caller may say so), else None.

        Raises:
          Held: another process holds it. OSError: the file cannot be created.
        """
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS) or (
                        holder and _alive(holder)):
                    os.close(fd)
                    raise Held(holder)
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # its holder released and removed it meanwhile: lock the new file
                os.close(fd)
        previous = _read_holder(self._fd)
        me = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': datetime.datetime.now().isoformat(timespec='seconds'),
              'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(me) + '\n').encode('utf-8'), 0)
        return previous

    def release(self):
        """Remove the file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                os.remove(self.path)
        except OSError:
            pass
        os.close(fd)


def describe(holder):
    """'process <pid> on <host> since <time>: <command>' of a holder dict."""
    if not holder or 'pid' not in holder:
        return 'an unknown process'
    command = str(holder.get('command', '?'))
    return 'process %s on %s since %s: %s' % (
        holder.get('pid'), holder.get('host', '?'), holder.get('started', '?'),
        command if len(command) <= 60 else command[:57] + '...')


def _read_holder(fd):
    """The holder a lock file names: a dict ({} when unreadable), None when empty."""
    text = os.pread(fd, 1 << 16, 0).decode('utf-8', 'replace').strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder):
    """Whether the holder's process still runs (on another host: assumed so)."""
    if holder.get('host') != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get('pid')), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError, OverflowError):
        return False
    return True


def _same_file(fd, path):
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
