"""PII detection (true positives, validated negatives) and the redaction policies on spans."""

from __future__ import annotations

import json
import re

import pytest

from schemas.span import Span, SpanEvent
from schemas.tenant_settings import PiiPolicy
from streams.stages.pii import redact_span, should_scan
from streams.stages.pii_detect import find_pii

# A ~1 KB support-desk prompt with two or more of every kind.
POSITIVE = (
    "Hi team, this is Jane Roe (jane.roe+billing@example.co.uk, or j.roe@acme-corp.com). Please call me "
    "on +1 415-555-2671 or my London office +44 20 7946 0958; the NYC desk is (212) 555-0187 and Paris "
    "is 0033 1 42 68 53 00. Charge the card on file, 4111 1111 1111 1111 exp 12/27, or the Mastercard "
    "5555-5555-5555-4444; Amex 3782 822463 10005 is expired. Refunds go to IBAN DE89 3704 0044 0532 0130 00 "
    "or GB82WEST12345698765432. My SSN is 219-09-9999 and my wife's is 078-05-1120. The gateway at "
    "203.0.113.42 (and 2001:db8:85a3::8a2e:370:7334) rejected us; our backup host is 198.51.100.7. "
    "I pasted our config by mistake: OPENAI_API_KEY=sk-proj-Abc123def456GHI789jkl012MNO345pqr and "
    "ANTHROPIC_API_KEY=sk-ant-api03-ABCdef123456ghiJKL789mnoPQR-xyz_0, GitHub ghp_1234567890abcdefghijABCDEFGHIJ123456, "
    "AWS AKIAIOSFODNN7EXAMPLE, Slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx, webhook "
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, LLMScope lls_live_3kq9Zx8VbN2mT5wR7yP1aD4fG6hJ0cLe and session "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
EXPECTED = {"email": 2, "phone": 4, "card": 3, "iban": 2, "ssn": 2, "ip": 3, "secret": 8}

# A ~1 KB prompt full of numbers that look like PII to a bare regex and must not match.
NEGATIVE = (
    "Order ORD-2024-001234 shipped 2024-05-06T12:34:56.789Z (epoch 1717171717171 ms, 1717171717 s); "
    "order 4111 1111 1111 1112 failed the Luhn check and was refunded on 2024-05-07 09:15:00. "
    "Request 123e4567-e89b-12d3-a456-426614174000 ran commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b "
    "(short a3f5c9e) on version 1.2.3, v2.14.0-rc.1, release 10.0.19045.2364 and python 3.11.7. "
    "Total $1,299.99 (was 1299.99 USD, or EUR 2.499,00); invoice INV-00042371 for 3 units at 19.99 each. "
    "Ticket #4155552671 and tracking number 1Z999AA10123456784 were updated at 10:30-11:45 on 12/05/2024. "
    "Build 2024.10.15.1234 at coordinates 48.8566, 2.3522; frame 0x7ffd5e8c; ISBN 978-3-16-148410-0. "
    "Local service on 127.0.0.1:8080, std::vector<int> v, slice a[1::2], clock 12:34:56, MAC 00:1a:2b:3c:4d:5e. "
    "The pipeline task-sk-learn-compatible-scaler reads api_key: <your-api-key> and password: ********; "
    "max_tokens=4096, tokens: 1024, image icon@2x.png, package lodash@4.17.21, resolution 1920x1080, "
    "account 12345678, sort code 40-47-84, SKU 8806090, phone extension 4521, year range 1999-2024."
)


def test_every_kind_is_found_in_a_realistic_prompt() -> None:
    findings = find_pii(POSITIVE)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    assert counts == EXPECTED, [(f.kind, POSITIVE[f.start : f.end]) for f in findings]
    assert 900 < len(POSITIVE) < 1600


def test_lookalikes_are_not_pii() -> None:
    assert find_pii(NEGATIVE) == [], [(f.kind, NEGATIVE[f.start : f.end]) for f in find_pii(NEGATIVE)]
    assert 900 < len(NEGATIVE) < 1600


@pytest.mark.parametrize(
    ("text", "kind", "canonical"),
    [
        ("mail JANE@Example.COM now", "email", "jane@example.com"),
        ("ring +1 (646) 555-3890 today", "phone", "+16465553890"),
        ("my cell: 4155552671", "phone", "+14155552671"),  # bare digits count next to a phone word
        ("card 4111-1111-1111-1111.", "card", "4111111111111111"),
        ("iban de89370400440532013000", "iban", "DE89370400440532013000"),
        ("SSN 219099999", "ssn", "219099999"),  # bare nine digits only with the word SSN nearby
        ("from 2001:db8::1 today", "ip", "2001:db8::1"),
        ("Authorization: Bearer abcDEF1234567890ghiJKL", "secret", "abcDEF1234567890ghiJKL"),
        ("password=Tr0ub4dor&3", "secret", "Tr0ub4dor"),
    ],
)
def test_single_findings_and_canonical_values(text: str, kind: str, canonical: str) -> None:
    [finding] = find_pii(text)
    assert (finding.kind, finding.canonical) == (kind, canonical)


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112",  # fails Luhn
        "id 4111111111111110",  # fails Luhn
        "ref 1234 5678 9012 3456",  # fails Luhn
        "SSN 000-12-3456 and 666-12-3456 and 900-12-3456 and 123-00-4567 and 123-45-0000",  # never issued
        "call 555-0100",  # too short to be a valid number
        "IBAN DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "header eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.abcdefghijklmnop",  # header JSON has no alg/typ
        "sk-this-is-just-words-not-a-key",
        "timestamp 1717171717171 and id 2024001234",
    ],
)
def test_validators_reject(text: str) -> None:
    assert find_pii(text) == []


def redact_text(text: str, policy: PiiPolicy, hash_key: bytes = b"") -> tuple[str, dict[str, int]]:
    """One text redacted as the worker redacts a span's content: (new text, findings by kind)."""
    span = Span(
        tenant_id="t", trace_id="0" * 32, span_id="0" * 16, parent_span_id="", name="chat", kind="client",
        service_name="svc", start_time_ns=1, end_time_ns=2, attributes={"gen_ai.prompt": text},
    )  # fmt: skip
    counts = redact_span(span, policy, hash_key)
    return span.attributes["gen_ai.prompt"], counts


def _span() -> Span:
    messages = json.dumps([{"role": "user", "content": "Hi,\nI'm alice@example.com\n+1 415-555-2671"}])
    return Span(
        tenant_id="t1", trace_id="a" * 32, span_id="b" * 16, parent_span_id="", name="chat", kind="client",
        service_name="svc", start_time_ns=1, end_time_ns=2,
        status_message="upstream rejected key sk-proj-Abc123def456GHI789jkl012MNO345pqr",
        attributes={
            "gen_ai.input.messages": messages,
            "gen_ai.prompt.0.content": "bob@example.org",  # short, but content: scanned
            "app.note": "customer asked to be called at +44 20 7946 0958 tomorrow",  # free text
            "gen_ai.response.id": "chatcmpl-alice@example.com-0000000000",  # an id: not scanned
            "user.email": "eve@example.net",  # short and not content: not scanned
            "gen_ai.request.model": "gpt-4o",
        },
        resource_attributes={"host.ip": "203.0.113.9"},
        events=[
            SpanEvent(3, "gen_ai.user.message", {"content": "card 4111 1111 1111 1111"}),
            SpanEvent(4, "exception", {"exception.message": "invalid IBAN DE89 3704 0044 0532 0130 00 for payout"}),
        ],
    )  # fmt: skip


EXPECTED_SPAN = {"email": 2, "phone": 2, "card": 1, "iban": 1, "secret": 1}


def test_detect_counts_and_leaves_text_intact() -> None:
    span, original = _span(), _span()
    assert redact_span(span, PiiPolicy.DETECT) == EXPECTED_SPAN
    assert span == original


def test_off_does_nothing() -> None:
    span = _span()
    assert redact_span(span, PiiPolicy.OFF) == {}
    assert span == _span()


def test_mask_replaces_values_and_keeps_json_valid() -> None:
    span = _span()
    assert redact_span(span, "mask") == EXPECTED_SPAN
    content = json.loads(span.attributes["gen_ai.input.messages"])[0]["content"]
    assert content == "Hi,\nI'm [EMAIL]\n[PHONE]"
    assert span.attributes["gen_ai.prompt.0.content"] == "[EMAIL]"
    assert span.attributes["app.note"] == "customer asked to be called at [PHONE] tomorrow"
    assert span.events[0].attributes["content"] == "card [CARD]"
    assert span.events[1].attributes["exception.message"] == "invalid IBAN [IBAN] for payout"
    assert span.status_message == "upstream rejected key [SECRET]"
    # Ids, short non-content values and resource attributes are left alone.
    assert span.attributes["gen_ai.response.id"] == "chatcmpl-alice@example.com-0000000000"
    assert span.attributes["user.email"] == "eve@example.net"
    assert span.resource_attributes == {"host.ip": "203.0.113.9"}


def test_hash_is_stable_keyed_and_format_independent() -> None:
    a, b, c = _span(), _span(), _span()
    redact_span(a, PiiPolicy.HASH, b"key-1")
    redact_span(b, PiiPolicy.HASH, b"key-1")
    redact_span(c, PiiPolicy.HASH, b"key-2")
    assert a == b
    token = re.fullmatch(r"\[EMAIL:([0-9a-f]{12})\]", a.attributes["gen_ai.prompt.0.content"])
    assert token is not None
    assert a.attributes["gen_ai.prompt.0.content"] != c.attributes["gen_ai.prompt.0.content"]
    # The hash is of the canonical value: the same phone number written two ways hashes the same.
    one, _ = redact_text("+1 415-555-2671", PiiPolicy.HASH, b"key-1")
    two, _ = redact_text("call (415) 555 2671", PiiPolicy.HASH, b"key-1")
    assert one == two[len("call ") :]


def test_hash_needs_a_key() -> None:
    with pytest.raises(ValueError):
        redact_span(_span(), PiiPolicy.HASH, b"")


def test_drop_removes_fields_holding_pii() -> None:
    span = _span()
    assert redact_span(span, PiiPolicy.DROP) == EXPECTED_SPAN
    assert "gen_ai.input.messages" not in span.attributes
    assert "gen_ai.prompt.0.content" not in span.attributes
    assert "app.note" not in span.attributes
    assert span.attributes["gen_ai.request.model"] == "gpt-4o"
    assert span.events[0].attributes == {} and span.events[1].attributes == {}
    assert span.status_message == ""


def test_redaction_is_idempotent() -> None:
    masked, _ = redact_text(POSITIVE, PiiPolicy.MASK)
    assert find_pii(masked) == []
    hashed, _ = redact_text(POSITIVE, PiiPolicy.HASH, b"k")
    assert find_pii(hashed) == []


def test_what_is_scanned() -> None:
    assert should_scan("llm.input_messages.0.message.content", "hi")
    assert should_scan("input.value", "x")
    assert should_scan("anything", "x", content=True)
    assert should_scan("app.free_text", "a" * 21)
    assert not should_scan("app.free_text", "a" * 20)
    assert not should_scan("gen_ai.response.id", "x" * 100)
    assert not should_scan("service.instance.id", "x" * 100)
    assert not should_scan("llmscope.model.raw", "anthropic.claude-3-5-sonnet-20241022-v2:0")
