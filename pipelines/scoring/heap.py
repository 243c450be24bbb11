"""Handing freed heap memory back to the operating system between the strips of a scene.

Scoring frees and reallocates the same large buffers (GDAL blocks, strip arrays) all through a scene. glibc's
allocator keeps freed chunks for reuse and, once large blocks have been freed, serves later ones from its heap too,
where they fragment: measured on a 20,000 px scene, a third of peak RSS (about 300 MB) was freed memory that glibc
still held. No library exposes ``malloc_trim``, hence ctypes; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def release_free_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``); False where the C library has no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
