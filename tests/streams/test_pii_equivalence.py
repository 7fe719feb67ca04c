"""The PII engine finds exactly what the engine before the per-span gate found (bench/pii_legacy.py,
frozen): same findings, same counts, same redacted spans, on the labelled corpus and on edge cases
of the joined gate pass (value boundaries, escapes, non-ASCII, NULs)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import pii_legacy as legacy
from bench.pii_corpus import generate
from schemas.span import Span, SpanEvent
from schemas.tenant_settings import PiiPolicy
from streams.stages.pii import redact_span
from streams.stages.pii_detect import find_pii, find_pii_many
from streams.stages.pii_gate import Windows, gate

CORPUS = generate(seed=20240607, docs=600)


def _spans() -> list[Span]:
    spans = []
    for i in range(0, len(CORPUS) - 1, 2):
        spans.append(Span(
            tenant_id="t1", trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id="", name="chat", kind="client",
            service_name="svc", start_time_ns=1, end_time_ns=2, status_message=CORPUS[i + 1].text[:200] if i % 3 else "",
            attributes={
                "gen_ai.system_instructions": "You are a helpful assistant. Escalate at +1 415-555-2671.",
                "gen_ai.input.messages": CORPUS[i].text,
                "gen_ai.output.messages": CORPUS[i + 1].text,
                "gen_ai.response.id": f"chatcmpl-{i:024x}",
                "app.note": CORPUS[i].text[-120:],
            },
            events=[SpanEvent(1, "gen_ai.user.message", {"content": CORPUS[i + 1].text[:300]})],
        ))  # fmt: skip
    return spans


def test_corpus_findings_are_those_of_the_old_engine() -> None:
    assert sum(bool(d.labels) for d in CORPUS) > 200
    for doc in CORPUS:
        assert find_pii(doc.text) == legacy.find_pii(doc.text), doc.text


@pytest.mark.parametrize("policy", [PiiPolicy.DETECT, PiiPolicy.MASK, PiiPolicy.HASH, PiiPolicy.DROP])
def test_redacted_spans_and_counts_are_those_of_the_old_engine(policy: PiiPolicy) -> None:
    for old, new in zip(_spans(), _spans()):
        assert redact_span(new, policy, b"k") == legacy.redact_span(old, policy, b"k")
        assert new == old


# Values that meet at the separators of the joined pass in every way a detector cares about.
EDGES = [
    "4111 1111 1111 1111", "call 415-555-2671", "2024-10-15", "2024-10-15 09", "\\n219-09-9999", "SSN 219099999",
    "a@b.co", "@", "x@", "DE89 3704 0044 0532 0130 00", "203.0.113.42", "::", "2001:db8::1", "fe80:", "sk-proj-",
    "sk-proj-Abc123def456GHI789jkl012MNO345pqr", "password: hunter2hunter2", "-----BEGIN RSA PRIVATE KEY-----\nabc",
    "-----END RSA PRIVATE KEY-----", "Bearer", " abcDEF1234567890ghiJKL", "été 4111111111111111 ☕", "日本 +44 20 7946 0958",
    "\x00", "\x00\x00", "", "1234567", "(212) 555-0187", "\ud800 415-555-2671", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh",
]  # fmt: skip


def _clipped(windows: Windows | None, size: int) -> Windows:
    """As the detectors see them: a hit that begins or ends on a separator reaches one character
    past its value, where a pass over the value alone stops at its start or end."""
    return {family: [(max(lo, 0), min(hi, size)) for lo, hi in spans] for family, spans in (windows or {}).items()}


def test_each_value_gets_the_windows_of_its_own_pass() -> None:
    for i, first in enumerate(EDGES):
        for second in EDGES[i:] + EDGES[:i]:
            texts = [first, second, first + second]
            joined = [_clipped(w, len(t)) for w, t in zip(gate(texts), texts)]
            assert joined == [_clipped(gate([t])[0], len(t)) for t in texts], texts
            assert joined == [_clipped(legacy._gate(t), len(t)) for t in texts], texts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(EDGES + [" ", "\n", "-", ".", "é", "0", "9"]), max_size=8).map("".join), max_size=5))
def test_many_values_find_what_each_finds_alone(texts: list[str]) -> None:
    assert find_pii_many(texts) == [legacy.find_pii(t) for t in texts]


def test_redaction_of_a_copied_span_matches_field_by_field() -> None:
    span = _spans()[0]
    span.attributes["gen_ai.prompt.0.content"] = "bob@example.org"  # short, but content: scanned
    span.attributes["user.email"] = "eve@example.net"  # short and not content: not scanned
    old, new = copy.deepcopy(span), copy.deepcopy(span)
    assert redact_span(new, PiiPolicy.MASK) == legacy.redact_span(old, PiiPolicy.MASK)
    assert new == old and new.attributes["gen_ai.prompt.0.content"] == "[EMAIL]"
    assert new.attributes["user.email"] == "eve@example.net"
