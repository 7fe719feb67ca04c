"""`bound_heap` keeps glibc from serving large buffers out of its arenas after it freed one
(llmscope/heap.py): seen on a fresh interpreter, with and without it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from llmscope.heap import bound_heap

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes, libc.mallinfo2.restype = ctypes.c_void_p, [ctypes.c_void_p], Info
if sys.argv[1] == "bound":
    assert bound_heap()
before = libc.mallinfo2().hblks
first = libc.malloc(1 << 20)  # above the 128 KiB threshold: mapped on its own
libc.free(first)              # unbounded, glibc now raises the threshold to 1 MiB
second = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)  # 1 if the second block was mapped on its own
"""

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def mapped_blocks(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_freed_large_block_raises_glibcs_threshold_unless_bounded() -> None:
    # Without it the second megabyte comes out of the arena (and fragments it): that is the hazard.
    assert mapped_blocks("default") == 0
    assert mapped_blocks("bound") == 1
