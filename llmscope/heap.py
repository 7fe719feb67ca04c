"""The C heap of a long-running role: bounded, so that a process running for weeks stays flat.

glibc's malloc gives threads that allocate at the same time arenas of their own (up to eight per
core), and every time it frees a large block it had mapped on its own it raises the size from which
it maps blocks, up to 32 MiB. After that, large buffers (export bodies, Kafka batches, query
results) come from the arenas, which they fragment: free space the process keeps and the kernel
counts. In `up` at 2,000 spans/s, the arenas' free space grew 6 -> 37 MiB in 7 minutes; with two
arenas and the mapping size fixed at 128 KiB (large buffers mapped and unmapped on their own), it
grew 2 -> 17 MiB. The same as MALLOC_ARENA_MAX=2 and MALLOC_MMAP_THRESHOLD_=131072 in the
environment, which glibc reads only when the process starts, hence here. chDB brings its own
allocator (jemalloc), which returns freed pages by itself.
"""

from __future__ import annotations

import ctypes
import platform

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept: setting it stops the raising
ARENA_MAX = 2


def bound_heap() -> bool:
    """Call first thing in a long-running process (before it starts threads). True if applied:
    glibc only (musl and macOS allocators do not raise their thresholds this way)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
