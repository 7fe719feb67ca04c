"""One batch onto the wire: gzip JSON POST with bounded, jittered retries that honour Retry-After."""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

log = logging.getLogger("llmscope_sdk")

# The OTLP set: throttling and gateway trouble are transient; any other status will fail the same way again.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    max_elapsed: float = 30.0  # total time one batch may spend retrying before it is dropped

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so many clients recovering at once don't stampede together."""
        return random.uniform(0.0, min(self.max_backoff, self.initial_backoff * (2**attempt)))


@dataclass
class Outcome:
    result: Literal["sent", "rejected", "failed", "too_large"]
    accepted: int = 0
    rejected: list[dict[str, Any]] | None = None
    detail: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def encode_batch(events: list[dict[str, Any]]) -> bytes:
    body = json.dumps({"events": events}, separators=(",", ":"), ensure_ascii=False, default=str)
    return gzip.compress(body.encode(), compresslevel=6)


def send_batch(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    events: list[dict[str, Any]],
    policy: RetryPolicy,
    stop: threading.Event,
    on_retry: Any = None,
) -> Outcome:
    """POST one batch until it is answered for good or the retry budget (or `stop`) runs out; never raises."""
    body = encode_batch(events)
    started = time.monotonic()
    attempt = 0
    while True:
        retry_after: float | None = None
        try:
            response = http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # connection refused/reset, timeouts: the request may not have landed
            detail = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if 200 <= status < 300:
                return _accepted(response, len(events))
            detail = f"HTTP {status}: {response.text[:300]}"
            if status == 413:
                return Outcome("too_large", detail=detail)
            if status not in RETRYABLE_STATUS:
                return Outcome("rejected", detail=detail)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        delay = retry_after if retry_after is not None else policy.backoff(attempt)
        if time.monotonic() - started + delay > policy.max_elapsed:
            return Outcome("failed", detail=f"gave up after {attempt + 1} attempts: {detail}")
        if on_retry is not None:
            on_retry()
        log.debug("llmscope: retrying batch in %.2fs after %s", delay, detail)
        if stop.wait(delay):
            return Outcome("failed", detail=f"stopped while retrying: {detail}")
        attempt += 1


def _accepted(response: httpx.Response, sent: int) -> Outcome:
    """A 2xx may still reject single events: `{"accepted": n, "rejected": [{"index", "id", "errors"}]}`."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    rejected = payload.get("rejected") if isinstance(payload, dict) else None
    rejected = [r for r in rejected if isinstance(r, dict)] if isinstance(rejected, list) else []
    return Outcome("sent", accepted=max(0, sent - len(rejected)), rejected=rejected)
