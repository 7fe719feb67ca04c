"""The C heap of a long-running role: two malloc arenas, so freed memory is reused rather than
spread over many.

glibc's malloc gives threads that allocate at the same time arenas of their own, up to eight per
core, and memory freed in one arena serves only that arena's threads. `up` runs a dozen threads
(the event loop, Faust's consumer, the store's calls, the CPU stage's feeder, the broker's output):
a fresh interpreter whose 8 threads allocate at once ends up with 9 arenas. Capped at two, as
MALLOC_ARENA_MAX=2 would (which glibc reads only at the start of a process, hence here). In `up` at
2,000 spans/s the arenas' free space grew 4 -> 22 MiB in 6 minutes with the cap, 6 -> 35 without
(one run each); the ingest's CPU per span did not change (bench/ingest_per_core.py, back to back).

Tried and not kept: also fixing the mmap threshold at 128 KiB (glibc raises it after each large
free, after which large buffers come from the arenas). Free space then grew only 2 -> 15 MiB, but
every export body and Kafka batch was mapped and unmapped on its own, page faults included: the
ingest's CPU per span rose from 25-33 to 37-47 µs. chDB brings its own allocator (jemalloc),
which returns freed pages by itself.
"""

from __future__ import annotations

import ctypes
import platform

M_ARENA_MAX = -8  # <malloc.h>
ARENA_MAX = 2


def bound_heap() -> bool:
    """Call first thing in a long-running process (before it starts threads). True if applied:
    glibc only (other allocators do not make an arena per thread this way)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENA_MAX))
