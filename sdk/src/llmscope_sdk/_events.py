"""Event building blocks: ids, plain JSON from provider objects, content capping, error info, token clamping."""

from __future__ import annotations

import json
import uuid
from typing import Any

_MAX_ERROR_MESSAGE = 4000
_MAX_DEPTH = 20


def new_event_id() -> str:
    """Random and made once per event, so a retried POST carries the same id and the server drops the copy."""
    return uuid.uuid4().hex


def plain(obj: Any, depth: int = 0) -> Any:
    """JSON-ready copy of dicts, lists, pydantic models (the provider SDKs' types) and scalars."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if depth > _MAX_DEPTH:
        return str(obj)
    if hasattr(obj, "model_dump"):
        try:
            return plain(obj.model_dump(mode="json", exclude_none=True), depth + 1)
        except Exception:
            return str(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v, depth + 1) for k, v in obj.items() if v is not None and not _is_sentinel(v)}
    if isinstance(obj, (list, tuple)):
        return [plain(v, depth + 1) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    return str(obj)


def _is_sentinel(value: Any) -> bool:
    # openai/anthropic mark "not given" keyword arguments with NotGiven/Omit instances.
    return type(value).__name__ in ("NotGiven", "Omit")


def given(value: Any) -> bool:
    return value is not None and not _is_sentinel(value)


def content(value: Any, max_chars: int) -> str | list[dict[str, Any]] | None:
    """Content the event contract accepts: a string, or messages that each have a role; capped at max_chars."""
    if not given(value):
        return None
    data = plain(value)
    if isinstance(data, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and m["role"] for m in data
    ):
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if len(text) <= max_chars:
            return data
        return _cut(text, max_chars)
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return _cut(text, max_chars)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}…[truncated {len(text) - max_chars} chars]"


def error_info(exc: BaseException) -> dict[str, str]:
    message = str(exc) or repr(exc)
    return {"type": type(exc).__name__, "message": message[:_MAX_ERROR_MESSAGE]}


def tokens(
    input_tokens: Any = 0,
    output_tokens: Any = 0,
    cached_input_tokens: Any = 0,
    cache_write_tokens: Any = 0,
    reasoning_tokens: Any = 0,
) -> dict[str, int]:
    """Token counts as the contract wants them: non-negative ints, totals including their parts."""
    counts = {
        "input_tokens": _int(input_tokens),
        "output_tokens": _int(output_tokens),
        "cached_input_tokens": _int(cached_input_tokens),
        "cache_write_tokens": _int(cache_write_tokens),
        "reasoning_tokens": _int(reasoning_tokens),
    }
    # A provider reporting parts larger than the total would get the whole event refused; keep the data instead.
    counts["input_tokens"] = max(counts["input_tokens"], counts["cached_input_tokens"] + counts["cache_write_tokens"])
    counts["output_tokens"] = max(counts["output_tokens"], counts["reasoning_tokens"])
    return counts


def reported(usage: Any, counts: dict[str, int]) -> dict[str, int]:
    """The counts, marked as stated when the provider sent a usage object at all: its zeros are real
    zeros (a cached or refused call costs $0), while a call without one has unknown usage and cost."""
    return {**counts, "usage_reported": True} if usage else counts


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def field(obj: Any, *path: str) -> Any:
    """obj.a.b… for objects or dicts alike; None as soon as a step is missing."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj
