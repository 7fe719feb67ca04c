"""The live message contract: built from spans-table rows, previews of the redacted text, filters."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from schemas.alert_events import AlertData, AlertFiringEvent, RuleRef
from schemas.live import LiveFilter, alert_message, anomaly_message, content_text, span_message
from streams.stages.normalise import normalise
from tests.otlp_factory import llm_span, request_of


def _row(**extra: object) -> dict:
    span = normalise(request_of([llm_span(extra=extra)], service="bot"), "t1")[0]
    span.cost_usd = None
    return span.to_row(span.end_time_ns)


def test_span_message_carries_the_small_fields_a_live_client_shows() -> None:
    row = _row(**{"gen_ai.prompt": "What is  the\ncapital of France?", "gen_ai.completion": "Paris.", "user.id": "u1"})
    m = span_message(row)
    assert m["type"] == "span" and m["service"] == "bot" and m["model"] == "gpt-4o" and m["provider"] == "openai"
    assert m["operation"] == "chat" and m["status"] == "ok" and m["user_id"] == "u1"
    assert m["latency_ms"] == 250.0 and m["input_tokens"] == 100 and m["output_tokens"] == 20
    assert m["input"] == "What is the capital of France?" and m["output"] == "Paris."
    assert m["cost_usd"] is None and m["time"].endswith("Z") and "tenant_id" not in m
    json.dumps(m)  # plain JSON


def test_previews_are_capped() -> None:
    m = span_message(_row(**{"input.value": "x" * 5000}))
    assert len(m["input"]) == 200 and m["input"].endswith("…")


def test_content_text_reads_every_convention() -> None:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    assert content_text({"gen_ai.input.messages": messages}, "input") == "user: hi"
    assert content_text({"gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "be brief",
                         "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "hi"}, "input") == "system: be brief\nuser: hi"
    assert content_text({"llm.output_messages.0.message.role": "assistant",
                         "llm.output_messages.0.message.content": "hello"}, "output") == "assistant: hello"
    sdk = json.dumps([{"role": "user", "content": [{"type": "text", "text": "[EMAIL] wrote"}]}])
    assert content_text({"llmscope.prompt": sdk}, "input") == "user: [EMAIL] wrote"
    assert content_text({"llmscope.completion": json.dumps("plain answer")}, "output") == "plain answer"
    assert content_text({"output.value": "{not json"}, "output") == "{not json"
    assert content_text({}, "input") == ""


def test_filters_match_exact_strings_and_minimum_numbers() -> None:
    m = span_message(_row(**{"user.id": "u1"})) | {"cost_usd": 0.5}
    assert LiveFilter().matches(m)
    assert LiveFilter(service="bot", model="gpt-4o", status="ok", user_id="u1", operation="chat").matches(m)
    assert not LiveFilter(service="other").matches(m)
    assert LiveFilter(min_latency_ms=250).matches(m) and not LiveFilter(min_latency_ms=251).matches(m)
    assert LiveFilter(min_cost_usd=0.5).matches(m) and not LiveFilter(min_cost_usd=0.6).matches(m)
    assert not LiveFilter(min_cost_usd=0).matches(m | {"cost_usd": None})  # unknown cost never passes a cost floor
    assert LiveFilter(service="other").matches({"type": "alert"})  # span filters do not hide other kinds


def test_an_anomaly_row_becomes_a_message_with_the_apis_fields() -> None:
    row = {"episode_id": "ab" * 16, "is_overall": 1, "service_name": "", "provider": "", "model": "",
           "metric": "requests", "direction": "down", "status": "closed", "started_at": "2026-12-06 22:40:00",
           "ended_at": "2026-12-06 22:47:00", "observed": 0.0, "expected": 120.5, "score": -1.2,
           "peak_at": "2026-12-06 22:41:00", "peak_score": -9.5, "peak_observed": 0.0, "peak_expected": 118.0}
    message = anomaly_message(row, "closed")
    assert message["type"] == "anomaly" and message["change"] == "closed" and message["overall"] is True
    assert message["service"] is None and message["provider"] is None and message["model"] is None
    assert message["started_at"] == "2026-12-06T22:40:00.000Z" and message["ended_at"] == "2026-12-06T22:47:00.000Z"
    assert message["peak_at"] == "2026-12-06T22:41:00.000Z" and message["peak_score"] == -9.5
    assert LiveFilter(service="chat-api", min_latency_ms=100).matches(message)  # span filters never hide it


def test_an_alert_message_carries_the_alert_as_the_api_lists_it_and_passes_every_span_filter() -> None:
    fired = datetime(2026, 12, 6, 12, 1, tzinfo=timezone.utc)
    data = AlertData(alert_id="a1", status="firing", rule=RuleRef(id="rule_1", name="errors", kind="threshold",
                     severity="critical"), metric="errors", comparison=">=", threshold=3, value=5, peak=5, window="5m",
                     group_by=None, group=None, started_at=fired, fired_at=fired, summary="errors 5 (>= 3 over 5m)")
    message = alert_message(AlertFiringEvent(id="evt_1", timestamp=fired, data=data))
    assert message["type"] == "alert" and message["change"] == "firing"
    assert message["alert_id"] == "a1" and message["rule"]["severity"] == "critical" and message["value"] == 5
    assert message["fired_at"] == "2026-12-06T12:01:00Z"
    assert LiveFilter(service="other", min_latency_ms=1).matches(message)  # filters choose spans, not alerts
