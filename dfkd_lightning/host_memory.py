"""Keep freed host memory in the process instead of handing it back to the system.

glibc's ``malloc`` serves blocks above a threshold with fresh ``mmap`` pages and returns
freed memory at the top of the heap to the system. A training step on the CPU allocates
and frees the same multi-megabyte activations every step, so every step pays page faults
and page zeroing again: on the digits benchmark (DAFL, 2 threads) that was a third of
the wall time (3 million minor faults in 300 steps). :func:`keep_freed_host_memory`
raises the ``mmap`` threshold to its maximum (32 MiB) and stops trimming, the setting
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...`` gives
from outside. The process keeps its peak resident memory (the peak itself is unchanged).

It is a no-op off glibc (macOS, Windows, musl) and when ``DFKD_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_host_memory"]

#: ``mallopt`` parameters (glibc ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's upper bound for the ``mmap`` threshold on 64-bit systems.
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
#: The largest trim threshold ``mallopt`` takes (an ``int``): in effect, never trim.
_NEVER_TRIM = 2**31 - 1

_applied = False


def keep_freed_host_memory() -> bool:
    """Tune glibc's allocator once per process; True when it is (now or before) tuned."""
    global _applied
    if _applied:
        return True
    if os.environ.get("DFKD_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
    )
    return _applied
