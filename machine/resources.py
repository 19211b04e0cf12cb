"""This machine's resources: memory (the process's, the machine's, a cgroup's) and its CPU.

* ``peak_rss_mb`` / ``current_rss_mb``: this process's memory (VmHWM / VmRSS);
* ``physical_memory`` / ``available_memory_mb``: the machine's memory and what is available
  now, both lowered to a cgroup limit (``cgroup_memory``);
* ``machine_description`` / ``device_description``: CPU model and usable cores, GPUs (the
  latter asks TensorFlow, inside the function).
"""
import os
import platform
import sys


def _proc_field_mb(field, path='/proc/self/status'):
    """A ``<field>: <N> kB`` line of a /proc file (``/proc/self/status`` fields such as
    ``'VmRSS'``, ``/proc/meminfo`` fields such as ``'MemAvailable'``) in MB, or None."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


def _read_int(path):
    """The integer in a one-line file (cgroup limits), or None ('max', absent, unreadable)."""
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


# cgroup memory files, (limit, usage): v2, then v1.
CGROUP_MEMORY_FILES = (('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'),
                       ('/sys/fs/cgroup/memory/memory.limit_in_bytes',
                        '/sys/fs/cgroup/memory/memory.usage_in_bytes'))


def cgroup_memory():
    """(limit, usage) in bytes of this process's cgroup memory (v2, then v1; usage None if
    unreadable), or None when there is no limit ('max', v1's huge value, no cgroup files)."""
    for limit_path, usage_path in CGROUP_MEMORY_FILES:
        limit = _read_int(limit_path)
        if limit is not None and limit < 2 ** 60:
            return limit, _read_int(usage_path)
    return None


def physical_memory():
    """Bytes of memory of this machine (or of its cgroup limit when lower); None if unknown."""
    try:
        total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
        return None
    cgroup = cgroup_memory()
    return total if cgroup is None else min(total, cgroup[0])


def available_memory_mb():
    """Memory available to this process now, in MB (None when it cannot be known).

    Linux's MemAvailable (free memory plus reclaimable caches), lowered to what a cgroup
    memory limit (containers, ``systemd-run -p MemoryMax``) still allows.
    """
    known = [_proc_field_mb('MemAvailable', '/proc/meminfo')]
    cgroup = cgroup_memory()
    if cgroup is not None:
        known.append((cgroup[0] - (cgroup[1] or 0)) / 2.0 ** 20)
    known = [value for value in known if value is not None]
    return min(known) if known else None


def peak_rss_mb():
    """Peak resident memory of this process in MB (VmHWM; ru_maxrss where /proc is absent)."""
    peak = _proc_field_mb('VmHWM')
    if peak is not None:
        return peak
    import resource
    scale = 1.0 if sys.platform == 'darwin' else 1024.0  # bytes on macOS, KB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024.0


def current_rss_mb():
    """Resident memory of this process now, in MB (0 where /proc is absent)."""
    return _proc_field_mb('VmRSS') or 0.0


def machine_description():
    """(CPU model name, logical cores usable by this process)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return cpu, cores


def device_description():
    """'N GPU(s)' when TensorFlow sees GPUs, else 'CPU only (N cores)'."""
    import tensorflow as tf2
    gpus = tf2.config.list_physical_devices('GPU')
    if gpus:
        return '%d GPU(s)' % len(gpus)
    return 'CPU only (%d cores)' % machine_description()[1]
