"""`bound_heap` caps glibc's malloc arenas (llmscope/heap.py): counted in a fresh interpreter whose
threads allocate at once, with and without it."""

from __future__ import annotations

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
