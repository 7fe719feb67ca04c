"""The heap settings of long-running roles (llmscope/heap.py), each checked in a fresh interpreter:
`bound_heap` caps glibc's malloc arenas (counted with threads that allocate at once),
`keep_heap_trimmed` gives freed holes back (resident memory after frees), and `bound_chdb_heap`
reaches chDB's allocator (its options as chDB reports them)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, re, sys, tempfile, threading
from llmscope.heap import bound_heap

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
if sys.argv[1] == "bound":
    assert bound_heap()
start = threading.Barrier(8)

def allocate():
    start.wait()  # all at once: glibc gives a thread that finds the arenas busy one of its own
    for p in [libc.malloc(200) for _ in range(20_000)]:
        libc.free(p)

threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with tempfile.NamedTemporaryFile("r") as report:
    out = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(len(re.findall(r'<heap nr="[0-9]+">', report.read())))
"""

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_threads_allocating_at_once_share_two_arenas() -> None:
    assert arenas("default") > 2  # the hazard: an arena per busy thread
    assert arenas("bound") == 2


TRIM_PROBE = """
import ctypes, sys, time
from llmscope.heap import keep_heap_trimmed

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def anon_kib():
    line = next(l for l in open("/proc/self/status") if l.startswith("RssAnon:"))
    return int(line.split()[1])

if sys.argv[1] == "trimmed":
    assert keep_heap_trimmed(every=0.2) is not None
# 200 MiB in 4 KiB chunks, every 16th kept: what is freed lies between live chunks, below the top
# of the heap, where glibc never gives it back by itself.
blocks = [libc.malloc(4096) for _ in range(51_200)]
for b in blocks:
    ctypes.memset(b, 1, 4096)
for i, b in enumerate(blocks):
    if i % 16:
        libc.free(b)
time.sleep(1.0)
print(anon_kib())
"""


def anon_after_frees(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", TRIM_PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_freed_memory_between_live_chunks_is_given_back() -> None:
    kept, trimmed = anon_after_frees("default"), anon_after_frees("trimmed")
    assert kept > 150 * 1024  # the hazard: ~190 MiB freed and still resident
    assert trimmed < kept - 120 * 1024


CHDB_PROBE = """
import re, tempfile
from llmscope.heap import bound_chdb_heap

print(bound_chdb_heap())
from chdb import session

with tempfile.TemporaryDirectory() as path:
    stats = session.Session(path).query("SELECT stats FROM system.jemalloc_stats", "TSVRaw").bytes().decode()
print(re.search(r"opt.dirty_decay_ms: (\\d+)", stats)[1], re.search(r"opt.tcache_max: (\\d+)", stats)[1])
"""


def chdb_allocator(env: dict[str, str]) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    done = subprocess.run([sys.executable, "-c", CHDB_PROBE], capture_output=True, text=True, check=True, env=clean | env)
    return done.stdout.split()


def test_chdbs_allocator_returns_pages_sooner_and_caches_less_per_thread() -> None:
    assert chdb_allocator({}) == ["True", "1000", "4096"]


def test_an_allocator_setting_given_by_the_operator_wins() -> None:
    assert chdb_allocator({"JE_MALLOC_CONF": "dirty_decay_ms:3000"}) == ["False", "3000", "32768"]
