"""One delivery attempt and the retry schedule around it.

An attempt POSTs the body with fresh Standard Webhooks headers and classifies what happened:

| outcome     | when                                                           | what the caller does            |
|-------------|----------------------------------------------------------------|---------------------------------|
| `delivered` | any 2xx                                                        | done                            |
| `gone`      | 410                                                            | disable the endpoint            |
| `retry`     | timeout, connection error, unresolvable host, 408, 429, 5xx    | again after `next_delay`        |
| `failed`    | 3xx (redirects are never followed), other 4xx, blocked address | give up on this message         |

`Retry-After` (seconds or an HTTP date) is honoured on any retry answer, capped at the longest step
of the schedule, so a receiver cannot park a message for a month. A whole attempt has a deadline
(10 s by default; 5 s to connect): a slow receiver costs a retry, never a stuck worker. Only the
first KiB of a response is read.

The schedule (RETRY_SCHEDULE, seconds before each attempt after the previous one): immediately,
5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h: eleven attempts over about 24 hours,
each delay ±20 % jitter so endpoints that failed together do not retry together. The jitter is a
hash of the message id and attempt number, so the schedule is a pure function a replay recomputes.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Literal

import httpx

from llmscope.netguard import BlockedDestination
from streams.webhooks.signing import webhook_headers

RETRY_SCHEDULE = (0, 5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
JITTER = 0.2
MAX_RETRY_AFTER = max(RETRY_SCHEDULE)
ATTEMPT_TIMEOUT = 10.0
EXCERPT_BYTES = 1024
Result = Literal["delivered", "retry", "gone", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    status: int | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait
    error: str | None = None
    response_excerpt: str = ""
    elapsed_ms: float = 0.0


def retry_delay(attempt: int, key: str = "") -> float | None:
    """Seconds to wait before attempt number `attempt` (1 = the first, sent at once) after the
    previous one; None when the schedule has no such attempt. Jittered by (key, attempt)."""
    if not 1 <= attempt <= len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempt - 1]
    fraction = int.from_bytes(hashlib.sha256(f"{key}\x1f{attempt}".encode()).digest()[:4], "big") / 2**32
    return base * (1 + JITTER * (2 * fraction - 1))


def next_delay(attempts_made: int, outcome: Outcome, key: str = "") -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts ending in `outcome`; None when
    there is none (delivered, gone, failed, or the schedule is spent)."""
    if outcome.result != "retry":
        return None
    delay = retry_delay(attempts_made + 1, key)
    if delay is None:
        return None
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def classify(status: int) -> tuple[Result, str | None]:
    if 200 <= status < 300:
        return "delivered", None
    if status == 410:
        return "gone", "the receiver answered 410 Gone"
    if status in (408, 429) or status >= 500:
        return "retry", f"the receiver answered {status}"
    if 300 <= status < 400:
        return "failed", f"the receiver answered {status}, a redirect, which webhooks do not follow: update the URL"
    return "failed", f"the receiver answered {status}"


async def attempt(client: httpx.AsyncClient, url: str, msg_id: str, body: bytes, secrets: Sequence[str], *,
                  content_type: str = "application/json", timestamp: int | None = None,
                  timeout: float = ATTEMPT_TIMEOUT) -> Outcome:
    """Send one signed POST and say what happened; never raises for the receiver's behaviour."""
    now = time.time()
    headers = webhook_headers(secrets, msg_id, int(now) if timestamp is None else timestamp, body)
    headers["content-type"] = content_type
    started = time.monotonic()

    def took() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                excerpt = await _excerpt(response)
    except BlockedDestination as exc:
        return Outcome("failed", error=exc.message, elapsed_ms=took())
    except httpx.TimeoutException as exc:
        return Outcome("retry", error=f"{type(exc).__name__}: no answer in time", elapsed_ms=took())
    except TimeoutError:
        return Outcome("retry", error=f"no answer within {timeout:g} s", elapsed_ms=took())
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return Outcome("failed", error=f"bad URL: {exc}", elapsed_ms=took())
    except httpx.TransportError as exc:
        return Outcome("retry", error=f"{type(exc).__name__}: {exc}"[:300], elapsed_ms=took())
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    result, error = classify(response.status_code)
    return Outcome(result, response.status_code, retry_after if result == "retry" else None, error, excerpt, took())


async def _excerpt(response: httpx.Response) -> str:
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return data[:EXCERPT_BYTES].decode("utf-8", "replace")
