"""glibc ``malloc`` settings for a frame loop that runs for months.

Every frame is a buffer of about 1 MB (640x480 BGR) made on the capture thread and dropped on
another, and the web view adds JPEGs made on its encoder thread. glibc gives each thread that
allocates its own heap (arena) and rarely returns the fragments of one: a drill measured RSS going
from 90 to 225 MB over 7 minutes of ``--loop --http`` with one viewer. ``tune_malloc`` caps the
arenas at two (``M_ARENA_MAX``), unless the user set ``MALLOC_ARENA_MAX`` themselves; the capture
side also reuses its frame buffers (``sources.framepool``), so the largest allocation is not made
per frame at all. ``MALLOC_MMAP_THRESHOLD_=131072``, the other known cure, is not set: every large
buffer is then mmapped and page-faulted afresh, which slowed ``edge-app bench`` on a 2-core AMD EPYC
(docs/faults.md). ``edge-app soak`` measures the result. Other C libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Cap glibc's arenas with ``mallopt``; whether it was applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, ARENA_MAX) == 1)
    log.debug("malloc: at most %d arenas (%s)", ARENA_MAX, "applied" if applied else "refused")
    return applied
