"""PII policy and span redaction: which values are scanned, and what each policy does with findings."""

# Which values are scanned (see `should_scan`):
# - content attributes, whatever their length: prompt/completion text and messages (CONTENT_PREFIXES),
#   and every attribute of `gen_ai.*` events (message events);
# - free text: any other attribute value longer than 20 characters, except ids and structured keys
#   (SKIP_SUFFIXES / SKIP_PREFIXES: ids, model names, versions, hashes, SDK/service/host metadata);
# - span.status_message. Resource attributes, span names, ids, user_id and session_id are never touched.

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from enum import StrEnum

from schemas.span import Span
from streams.pii_detect import Finding, find_pii


class PiiPolicy(StrEnum):
    OFF = "off"  # not scanned at all
    DETECT = "detect"  # counted, text unchanged
    MASK = "mask"  # replaced by `[EMAIL]`, `[PHONE]`, …
    HASH = "hash"  # replaced by `[EMAIL:<12 hex of HMAC-SHA256(key, canonical value)>]`
    DROP = "drop"  # the whole attribute (or status message) holding PII is removed


CONTENT_PREFIXES = (
    "gen_ai.prompt", "gen_ai.completion", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
    "llm.input_messages", "llm.output_messages", "llm.prompts", "input.value", "output.value",
    "llmscope.prompt", "llmscope.completion",
)  # fmt: skip
FREE_TEXT_MIN_LEN = 20
SKIP_SUFFIXES = (
    ".id", "_id", ".ids", ".model", ".version", ".hash", ".sha", ".digest", ".finish_reasons",
    ".operation.name", ".provider.name", ".system", ".kind", ".type", ".status_code", ".encoding_formats",
)  # fmt: skip
SKIP_PREFIXES = ("llmscope.model.", "telemetry.", "service.", "otel.", "code.", "process.", "host.", "os.")


def should_scan(key: str, value: str, content: bool = False) -> bool:
    """Content keys always; other values only when long free text that is not an id/structured key."""
    if not value:
        return False
    if content or key.startswith(CONTENT_PREFIXES):
        return True
    return len(value) > FREE_TEXT_MIN_LEN and not key.endswith(SKIP_SUFFIXES) and not key.startswith(SKIP_PREFIXES)


def redact_span(span: Span, policy: PiiPolicy | str, hash_key: bytes = b"", region: str = "US") -> dict[str, int]:
    """Scan and redact a span in place (attributes, event attributes, status message); counts per kind.

    `region` is the default region for phone numbers written without a country code.
    """
    policy = PiiPolicy(policy)
    if policy is PiiPolicy.OFF:
        return {}
    if policy is PiiPolicy.HASH and not hash_key:
        raise ValueError("hash policy needs a non-empty key: an unkeyed hash of an e-mail is reversible")
    counts: dict[str, int] = {}

    def scan(value: str) -> str | None:
        """New value (None = drop the field), counting what it held."""
        new, findings = redact_text(value, policy, hash_key, region)
        for f in findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        return None if findings and policy is PiiPolicy.DROP else new

    _scan_mapping(span.attributes, False, scan)
    for event in span.events:
        _scan_mapping(event.attributes, event.name.startswith("gen_ai."), scan)
    if span.status_message:
        span.status_message = scan(span.status_message) or ""
    return counts


def _scan_mapping(attrs: dict[str, str], content: bool, scan: Callable[[str], str | None]) -> None:
    for key, value in list(attrs.items()):
        if isinstance(value, str) and should_scan(key, value, content):
            new = scan(value)
            if new is None:
                del attrs[key]
            elif new is not value:
                attrs[key] = new


def redact_text(text: str, policy: PiiPolicy, hash_key: bytes = b"", region: str = "US") -> tuple[str, list[Finding]]:
    """(new text, findings). DETECT and DROP leave the text unchanged; the caller drops fields."""
    findings = find_pii(text, region)
    if not findings or policy not in (PiiPolicy.MASK, PiiPolicy.HASH):
        return text, findings
    out: list[str] = []
    pos = 0
    for f in findings:
        label = f.kind.upper()
        if policy is PiiPolicy.HASH:
            label += ":" + hmac.new(hash_key, f.canonical.encode(), hashlib.sha256).hexdigest()[:12]
        out += (text[pos : f.start], "[", label, "]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out), findings
