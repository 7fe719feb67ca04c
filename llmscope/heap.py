"""The C heap of a long-running role: two malloc arenas, so freed memory is reused rather than
spread over many, and the free pages inside them given back to the system (keep_heap_trimmed); and
chDB's own allocator told to keep less in reserve (bound_chdb_heap).

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
import os
import platform
import sys
import threading
import time

M_ARENA_MAX = -8  # <malloc.h>
ARENA_MAX = 2
TRIM_SECONDS = 30.0
# chDB's jemalloc, read from the environment when the library loads: freed pages back to the system
# after 1 s rather than 5, and smaller per-thread caches (objects up to 4 KiB rather than 32, half the
# slots). chDB's pool parks every thread it ever started (`up` had ~180 after a few minutes at 1,000
# spans/s; ~80 since outdated parts are removed in turn, see storage/chdb_engine.py), each with a cache
# of its own: they held 108 MiB after 10 minutes, 25 with this.
CHDB_MALLOC_CONF = "dirty_decay_ms:1000,tcache_max:4096,lg_tcache_nslots_mul:-1"


def bound_heap() -> bool:
    """Call first thing in a long-running process (before it starts threads). True if applied:
    glibc only (other allocators do not make an arena per thread this way)."""
    if not _glibc():
        return False
    return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENA_MAX))


def bound_chdb_heap() -> bool:
    """Call before chDB is imported: its allocator reads JE_MALLOC_CONF once, when the library loads.
    A JE_MALLOC_CONF set by the operator wins. False if too late or overridden."""
    if "chdb" in sys.modules or "JE_MALLOC_CONF" in os.environ:
        return False
    os.environ["JE_MALLOC_CONF"] = CHDB_MALLOC_CONF
    return True


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_heap_trimmed(every: float = TRIM_SECONDS) -> threading.Thread | None:
    """Give the free pages inside the arenas back to the system every `every` seconds, from a
    daemon thread; None where the C library is not glibc.

    glibc returns memory by itself only from the top of an arena; the free chunks between live ones
    (an export body, a Kafka batch, a decoded batch freed around a longer-lived object) stay resident.
    In `up` at 2,000 spans/s they grew 11 -> 30 MiB in 15 minutes, and one malloc_trim gave back
    28 MiB. The call holds each arena's lock while it walks the free chunks and returns their pages
    (measured: 1.6 ms for 10 MiB freed in 4 KiB holes, 22 ms for 200 MiB; a walk that finds nothing
    new to return costs a tenth of that), so it runs every half minute, not after each batch."""
    if not _glibc():
        return None
    trim = ctypes.CDLL("libc.so.6").malloc_trim

    def run() -> None:  # for the life of the process
        while True:
            time.sleep(every)
            trim(0)

    thread = threading.Thread(target=run, name="heap-trim", daemon=True)
    thread.start()
    return thread
