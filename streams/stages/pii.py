"""Span redaction: which values are scanned, and what each PII policy (schemas/tenant_settings.py) does with findings."""

# Which values are scanned (see `should_scan`):
# - content attributes, whatever their length: prompt/completion text and messages (CONTENT_PREFIXES),
#   and every attribute of `gen_ai.*` events (message events);
# - free text: any other attribute value longer than 20 characters, except ids and structured keys
#   (SKIP_SUFFIXES / SKIP_PREFIXES: ids, model names, versions, hashes, SDK/service/host metadata);
# - span.status_message. Resource attributes, span names, ids, user_id and session_id are never touched.

from __future__ import annotations

import hashlib
import hmac

from schemas.span import Span
from schemas.tenant_settings import PiiPolicy
from streams.stages.pii_detect import Finding, find_pii_many


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
    if content:
        return True
    rule = _key_rule(key)
    return rule is _ALWAYS or (rule is _IF_LONG and len(value) > FREE_TEXT_MIN_LEN)


_ALWAYS, _IF_LONG, _NEVER = "always", "if long", "never"
_KEY_RULES: dict[str, str] = {}  # key → rule; a span's keys repeat across spans, and the tests cost more than a lookup
_KEY_RULES_MAX = 4096  # keys come from clients: bounded, cleared when full


def _key_rule(key: str) -> str:
    rule = _KEY_RULES.get(key)
    if rule is None:
        if key.startswith(CONTENT_PREFIXES):
            rule = _ALWAYS
        elif key.endswith(SKIP_SUFFIXES) or key.startswith(SKIP_PREFIXES):
            rule = _NEVER
        else:
            rule = _IF_LONG
        if len(_KEY_RULES) >= _KEY_RULES_MAX:
            _KEY_RULES.clear()
        _KEY_RULES[key] = rule
    return rule


def redact_span(span: Span, policy: PiiPolicy | str, hash_key: bytes = b"", region: str = "US") -> dict[str, int]:
    """Scan and redact a span in place (attributes, event attributes, status message); counts per kind.

    `region` is the default region for phone numbers written without a country code.
    """
    if policy.__class__ is not PiiPolicy:
        policy = PiiPolicy(policy)
    if policy is PiiPolicy.OFF:
        return {}
    if policy is PiiPolicy.HASH and not hash_key:
        raise ValueError("hash policy needs a non-empty key: an unkeyed hash of an e-mail is reversible")
    places: list[tuple[dict[str, str] | None, str]] = []  # (mapping, key); None: the status message
    values: list[str] = []
    _collect(span.attributes, False, places, values)
    for event in span.events:
        _collect(event.attributes, event.name.startswith("gen_ai."), places, values)
    if span.status_message:
        places.append((None, ""))
        values.append(span.status_message)
    counts: dict[str, int] = {}
    for (attrs, key), value, findings in zip(places, values, find_pii_many(values, region)):
        if not findings:
            continue
        for f in findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        if policy is PiiPolicy.DETECT:
            continue
        new = None if policy is PiiPolicy.DROP else _replaced(value, findings, policy, hash_key)
        if attrs is None:
            span.status_message = new or ""
        elif new is None:
            attrs.pop(key, None)
        else:
            attrs[key] = new
    return counts


def _collect(attrs: dict[str, str], content: bool, places: list[tuple[dict[str, str] | None, str]], values: list[str]) -> None:
    """`should_scan`, inlined: it runs for every attribute of every span."""
    for key, value in attrs.items():
        if not value or not isinstance(value, str):
            continue
        if not content:
            rule = _KEY_RULES.get(key) or _key_rule(key)
            if rule is _NEVER or (rule is _IF_LONG and len(value) <= FREE_TEXT_MIN_LEN):
                continue
        places.append((attrs, key))
        values.append(value)


def _replaced(text: str, findings: list[Finding], policy: PiiPolicy, hash_key: bytes) -> str:
    out: list[str] = []
    pos = 0
    for f in findings:
        label = f.kind.upper()
        if policy is PiiPolicy.HASH:
            label += ":" + hmac.new(hash_key, f.canonical.encode(), hashlib.sha256).hexdigest()[:12]
        out += (text[pos : f.start], "[", label, "]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
