"""The CPU stage's processes: `prepare` (streams/stages/pipeline.py) runs in a pool of worker
processes (so `up` uses more than one core), or on a thread. The parent owns its children: they
ignore a terminal's Ctrl-C and die with the parent, even one killed with SIGKILL."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa

from streams.stages.enrich import TenantPolicies
from streams.stages.pipeline import PreparedBatch, RawMessage, prepare


def tune_collector() -> None:
    """A batch allocates hundreds of thousands of objects that all live until it is returned, and
    hardly any cycles: with the default thresholds the collector ran every 700 allocations and
    traversed the growing batch again and again, a quarter of the stage's time."""
    gc.set_threshold(50_000, 20, 100)


def _child_init(parent: int, niceness: int) -> None:
    """Runs first in every CPU-stage process: the parent owns it, and yields to it for the cores.

    A terminal's Ctrl-C signals the whole foreground process group; the parent decides how to
    stop, so the child ignores it. And the child must not outlive the parent, even a parent
    killed with SIGKILL: the kernel's parent-death signal covers that, and a watchdog thread covers
    the case where the parent died before the signal was armed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(niceness)
    tune_collector()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _prepare(messages: list[RawMessage], policies: TenantPolicies) -> PreparedBatch:
    """`prepare`, then the free pages of Arrow's allocator (mimalloc) back to the system: it keeps a
    batch's row buffers for the next one, and it frees per thread, so on the thread that allocated.
    Measured on batches of 1,000 realistic spans (≈175 ms each): the process held 16 MiB less
    (125 against 141 MiB anonymous), for 0.1 ms a batch."""
    try:
        return prepare(messages, policies)
    finally:
        pa.default_memory_pool().release_unused()


class CpuStage:
    """Runs `prepare` in worker processes (so `up` uses more than one core), or on a thread."""

    def __init__(self, processes: int, niceness: int = 0) -> None:
        self._processes, self._niceness = processes, niceness
        self._pool: Executor | None = None
        self._closed = False

    def _executor(self) -> Executor | None:
        if self._closed:
            # A batch still retrying while the worker stops must not start a pool nobody closes.
            raise RuntimeError("the CPU stage is closed: the worker is stopping")
        if self._processes and self._pool is None:
            # The children (and multiprocessing's helper) start with SIGINT ignored, which they
            # inherit: a Ctrl-C while they import, before _child_init runs, would kill them with a
            # traceback. (A blocked mask would be safer for the parent, but spawn does not pass it on.)
            main = threading.current_thread() is threading.main_thread()
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                # spawn, not fork: the parent holds chDB, Kafka clients and threads.
                pool = ProcessPoolExecutor(
                    self._processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_init, initargs=(os.getpid(), self._niceness),
                )
                for _ in range(self._processes):
                    pool.submit(int)  # starts the processes now, while SIGINT is ignored
            finally:
                if main:
                    signal.signal(signal.SIGINT, handler)
            self._pool = pool
        return self._pool

    def start(self) -> None:
        """Start the worker processes ahead of the first batch, which would otherwise wait for them."""
        self._executor()

    async def prepare(self, messages: list[RawMessage], policies: TenantPolicies) -> PreparedBatch:
        pool = self._executor()
        if pool is None:
            return await asyncio.to_thread(_prepare, messages, policies)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, _prepare, messages, policies)
        except BrokenProcessPool:
            # A child died (e.g. OOM-killed): the next attempt starts a new pool, unless another
            # batch's attempt already did (forgetting that one would leave its process running).
            if self._pool is pool:
                self._pool = None
            raise

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
