"""The Client: a bounded queue the caller's thread only ever put_nowait()s into, drained by one sender thread."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import queue
import threading
import time
import weakref
from typing import Any

import httpx

from llmscope_sdk._transport import RetryPolicy, send_batch
from llmscope_sdk.budgets import BudgetCheckFailed, BudgetStatus, fetch_status

__version__ = "0.1.0"
log = logging.getLogger("llmscope_sdk")
DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_QUERY_ENDPOINT = "http://localhost:8000"
_WAKE = object()  # put into the queue to wake the sender for a flush or shutdown


class Client:
    """Batches events and POSTs them to `{endpoint}/api/v1/events`; every public method is safe to call anywhere
    (`budget_status` alone raises, when it has no status to give: `within_budget` does not)."""

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        service_name: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue_size: int = 10_000,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        capture_content: bool = True,
        max_content_chars: int = 32_000,
        shutdown_timeout: float = 5.0,
        enabled: bool = True,
        query_endpoint: str | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else os.environ.get("LLMSCOPE_API_KEY", "")
        self.endpoint = (endpoint or os.environ.get("LLMSCOPE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.url = f"{self.endpoint}/api/v1/events"
        # Budget checks go to the query API, not the ingest (llmscope_sdk/budgets.py).
        self.query_endpoint = (query_endpoint or os.environ.get("LLMSCOPE_QUERY_ENDPOINT")
                               or DEFAULT_QUERY_ENDPOINT).rstrip("/")
        self.service_name = (
            service_name or os.environ.get("LLMSCOPE_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME", "")
        )
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.capture_content = capture_content
        self.max_content_chars = max_content_chars
        self.shutdown_timeout = shutdown_timeout
        self.enabled = enabled
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_queue_size))
        self._lock = threading.Lock()
        self._settled_cv = threading.Condition(self._lock)
        self._counts = {"sent": 0, "dropped_queue_full": 0, "dropped_rejected": 0, "dropped_failed": 0, "retries": 0}
        self._enqueued = 0
        self._settled = 0  # events sent or dropped by the sender; flush() waits for it to catch up
        self._flush_target = 0
        self._closing = False
        self._abort = threading.Event()  # set when a shutdown runs out of time: stop retrying
        self._thread: threading.Thread | None = None
        atexit.register(_at_exit, weakref.ref(self))  # weak: a dropped Client is not kept alive until exit
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    # -- the caller's side: cheap, non-blocking, never raises --------------------------------------------------

    def submit(self, event: dict[str, Any]) -> bool:
        """Queue one event; False (and counted) if it had to be dropped."""
        try:
            if not self.enabled or self._closing:
                return False
            self._ensure_sender()
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                with self._lock:
                    self._counts["dropped_queue_full"] += 1
                return False
            with self._lock:
                self._enqueued += 1
            return True
        except Exception:  # the user's call must never fail because of us
            log.debug("llmscope: submit failed", exc_info=True)
            return False

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "queued": max(0, self._enqueued - self._settled)}

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Send everything queued so far; True if it all settled (sent or dropped) within `timeout`."""
        try:
            with self._lock:
                target = self._enqueued
                if self._settled >= target:
                    return True
                self._flush_target = max(self._flush_target, target)
            self._ensure_sender()
            self._wake()
            with self._settled_cv:
                return self._settled_cv.wait_for(lambda: self._settled >= target, timeout)
        except Exception:
            log.debug("llmscope: flush failed", exc_info=True)
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the sender; later events are dropped. Idempotent."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        done = self.flush(timeout)
        self._closing = True
        if not done:
            self._abort.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        return done

    def budget_status(self, budget_id: str, timeout: float = 2.0) -> BudgetStatus:
        """The budget's status now (cached by the server for a few seconds); BudgetCheckFailed if none."""
        return fetch_status(self.query_endpoint, self.api_key, budget_id, timeout)

    def within_budget(self, budget_id: str, *, default: bool = True, timeout: float = 2.0) -> bool:
        """Whether the budget still has room; `default` when its status cannot be had (never raises)."""
        try:
            return self.budget_status(budget_id, timeout).within_budget
        except BudgetCheckFailed as exc:
            log.warning("llmscope: %s; assuming within_budget=%s", exc, default)
            return default

    # -- the sender thread -------------------------------------------------------------------------------------

    def _ensure_sender(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llmscope-sender", daemon=True)
                self._thread.start()

    def _after_fork(self) -> None:
        # Only the forking thread survives a fork: start over with fresh locks and queue; the parent sends its own.
        self._lock = threading.Lock()
        self._settled_cv = threading.Condition(self._lock)
        self._queue = queue.Queue(maxsize=self._queue.maxsize)
        self._enqueued = self._settled = self._flush_target = 0
        self._thread = None

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:  # a full queue wakes the sender by itself
            pass

    def _hurry(self) -> bool:
        return self._closing or self._settled < self._flush_target

    def _run(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"llmscope-sdk-python/{__version__}",
        }
        with httpx.Client(timeout=self.timeout) as http:
            while True:
                batch = self._collect()
                if batch:
                    self._send(http, headers, batch)
                elif self._closing and self._queue.empty():
                    return

    def _collect(self) -> list[dict[str, Any]]:
        """Up to batch_size events: waits at most flush_interval after the first one, not at all when hurried."""
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(batch) < self.batch_size:
            try:
                if self._hurry():
                    item = self._queue.get_nowait() if batch else self._queue.get(timeout=0.05)
                else:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    item = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if item is _WAKE:
                continue
            batch.append(item)
            if deadline is None:
                deadline = time.monotonic() + self.flush_interval
        return batch

    def _send(self, http: httpx.Client, headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
        try:
            if self._abort.is_set():  # a shutdown ran out of time: what is left is dropped, not sent slowly
                self._count("dropped_failed", len(batch))
            else:
                self._send_split(http, headers, batch)
        except Exception:
            log.warning("llmscope: unexpected error sending %d events", len(batch), exc_info=True)
            self._count("dropped_failed", len(batch))
        finally:
            with self._settled_cv:
                self._settled += len(batch)
                self._settled_cv.notify_all()

    def _send_split(self, http: httpx.Client, headers: dict[str, str], batch: list[dict[str, Any]]) -> None:
        outcome = send_batch(
            http, self.url, headers, batch, self.retry, self._abort, on_retry=lambda: self._count("retries", 1)
        )
        if outcome.result == "too_large" and len(batch) > 1:  # 413: halve until it fits
            half = len(batch) // 2
            self._send_split(http, headers, batch[:half])
            self._send_split(http, headers, batch[half:])
        elif outcome.result == "sent":
            self._count("sent", outcome.accepted)
            if outcome.rejected:
                self._count("dropped_rejected", len(outcome.rejected))
                log.warning("llmscope: %d events rejected, first: %s", len(outcome.rejected), outcome.rejected[0])
        elif outcome.result == "failed":
            self._count("dropped_failed", len(batch))
            log.warning("llmscope: dropped %d events: %s", len(batch), outcome.detail)
        else:
            self._count("dropped_rejected", len(batch))
            log.warning("llmscope: batch of %d events refused: %s", len(batch), outcome.detail)

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self._counts[key] += n


def _after_fork(ref: weakref.ReferenceType[Client]) -> None:
    client = ref()
    if client is not None:
        client._after_fork()


def _at_exit(ref: weakref.ReferenceType[Client]) -> None:
    client = ref()
    if client is not None and client._thread is not None:
        client.shutdown()
