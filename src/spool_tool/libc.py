"""The C library of this process, for the calls Python does not wrap (``statfs``, ``mallopt``).

``ctypes.CDLL(None)`` is the process's own symbol table (``dlopen(NULL)``), which holds the C
library Python itself is linked against. ``ctypes.util.find_library("c")`` named the same
library by running ``/sbin/ldconfig -p`` in a subprocess: a fork and ~3 ms of every run's
start-up (issue 10), for an answer the process already has.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library's functions (looked up by attribute), or None if it cannot be opened."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
