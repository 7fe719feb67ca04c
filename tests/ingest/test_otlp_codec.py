"""OTLP/HTTP trace decoding (protobuf and OTLP JSON) and response/error body encoding."""

from __future__ import annotations

import orjson
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ingest.otlp_codec import GRPC_CODE, decode_traces, encode_export_response, encode_status
from ingest.otlp_validate import validate_spans
from llmscope.errors import BadRequest, UnsupportedMediaType

NOW = 1_544_712_700_000_000_000
RETENTION = 30 * 86_400 * 1_000_000_000  # the settings' default retention
JSON = "application/json"
PROTO = "application/x-protobuf"

# The opentelemetry-proto examples/trace.json shape: uppercase hex ids, int64 as strings.
EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                {"key": "count", "value": {"intValue": "42"}},
                            ],
                            "links": [{"traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175"}],
                            "status": {"code": 2, "message": "boom"},
                        }
                    ],
                }
            ],
        }
    ]
}


def _span_json(**overrides: object) -> dict:
    span = dict(EXAMPLE["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    span.update(overrides)
    return span


def _body(*spans: dict) -> bytes:
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


def test_otlp_json_example_with_uppercase_hex_ids_decodes() -> None:
    req = decode_traces(orjson.dumps(EXAMPLE), JSON)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert span.links[0].trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60d")
    assert span.links[0].span_id == bytes.fromhex("eee19b7ec3c1b175")
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.kind == 2
    assert span.status.code == 2 and span.status.message == "boom"
    assert span.attributes[1].value.int_value == 42
    assert req.resource_spans[0].resource.attributes[0].value.string_value == "my.service"


def test_json_int64_accepted_as_numbers_and_strings() -> None:
    req = decode_traces(
        _body(_span_json(startTimeUnixNano=1544712660000000000, endTimeUnixNano="1544712661000000000")), JSON
    )
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (1544712660000000000, 1544712661000000000)


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    doc = {"future": 1, "resourceSpans": [{"x": [], "scopeSpans": [{"y": {}, "spans": [_span_json(zzz="new")]}]}]}
    req = decode_traces(orjson.dumps(doc), JSON)
    assert len(req.resource_spans[0].scope_spans[0].spans) == 1


@pytest.mark.parametrize(
    "bad_id", ["not-hex-at-all-not-hex-at-all-xx", "5B8EFF", 12345, "5B8EFFF798038103D269B633813FC60CAA"]
)
def test_bad_hex_trace_id_rejects_only_that_span(bad_id: object) -> None:
    good = _span_json()
    bad = _span_json(traceId=bad_id, spanId="EEE19B7EC3C1B175")
    req = decode_traces(_body(good, bad), JSON)
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected) == (1, 1)
    assert "trace_id" in result.error_message


def test_bad_hex_parent_span_id_rejects_that_span_instead_of_making_it_a_root() -> None:
    req = decode_traces(_body(_span_json(parentSpanId="XYZXYZXYZXYZXYZX")), JSON)
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected) == (0, 1)
    assert "parent_span_id" in result.error_message


def test_json_snake_case_ids_are_still_read_as_hex() -> None:
    span = {"trace_id": "5B8EFFF798038103D269B633813FC60C", "span_id": "EEE19B7EC3C1B174", "startTimeUnixNano": "1"}
    req = decode_traces(_body(span), JSON)
    assert req.resource_spans[0].scope_spans[0].spans[0].span_id == bytes.fromhex("eee19b7ec3c1b174")


def test_protobuf_round_trip() -> None:
    original = decode_traces(orjson.dumps(EXAMPLE), JSON)
    assert decode_traces(original.SerializeToString(), PROTO) == original


@pytest.mark.parametrize(
    "content_type",
    ["application/x-protobuf", "application/protobuf", "APPLICATION/X-PROTOBUF; charset=binary"],
)
def test_protobuf_content_types_accepted_ignoring_case_and_parameters(content_type: str) -> None:
    original = decode_traces(orjson.dumps(EXAMPLE), JSON)
    assert decode_traces(original.SerializeToString(), content_type) == original


def test_json_content_type_with_charset_parameter_accepted() -> None:
    assert decode_traces(orjson.dumps(EXAMPLE), "Application/JSON; charset=utf-8").resource_spans


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/grpc", "application/jsonl"])
def test_other_content_types_are_unsupported_media_type_listing_accepted_ones(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType, match="application/x-protobuf.*application/json"):
        decode_traces(b"{}", content_type)


@pytest.mark.parametrize("content_type", [JSON, PROTO])
@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_empty_body_is_an_empty_request(content_type: str, body: bytes) -> None:
    assert decode_traces(body, content_type) == ExportTraceServiceRequest()


def test_empty_json_object_is_an_empty_request() -> None:
    assert decode_traces(b"{}", JSON) == ExportTraceServiceRequest()


def test_invalid_protobuf_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="^invalid protobuf ExportTraceServiceRequest: "):
        decode_traces(b"\x0a\xff\xff\xff\xff\x0f", PROTO)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe{}", "invalid JSON"),
        (b"[]", "must be an object"),
        (b'"text"', "must be an object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array, got object"),
        (b'{"resourceSpans": [3]}', "resourceSpans[0]: expected an object, got number"),
        (b'{"resourceSpans": [{"scopeSpans": "x"}]}', "resourceSpans[0].scopeSpans: expected an array, got string"),
    ],
)
def test_malformed_json_is_bad_request_saying_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_traces(body, JSON)


def test_bad_json_value_error_names_its_json_path() -> None:
    spans = [_span_json(), _span_json(), _span_json(), _span_json(startTimeUnixNano="soon")]
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": []}, {"spans": spans}]}]}
    with pytest.raises(BadRequest) as info:
        decode_traces(orjson.dumps(doc), JSON)
    assert "resourceSpans[0].scopeSpans[1].spans[3].startTimeUnixNano: " in info.value.message


def test_bad_resource_attribute_error_names_its_path() -> None:
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"intValue": "x"}}]}}]}
    with pytest.raises(BadRequest, match=r"resourceSpans\[0\]\.resource\.attributes\.value\.intValue: "):
        decode_traces(orjson.dumps(doc), JSON)


def test_deeply_nested_json_is_bad_request_not_recursion_error() -> None:
    deep = b'{"arrayValue": {"values": [' * 300 + b'{"stringValue": "x"}' + b"]}}" * 300
    body = _body(_span_json(attributes=[{"key": "deep", "value": {"stringValue": "PLACEHOLDER"}}]))
    body = body.replace(b'{"stringValue":"PLACEHOLDER"}', deep)
    with pytest.raises(BadRequest, match="nested deeper than"):
        decode_traces(body, JSON)


def test_json_nesting_within_limit_decodes_and_reparses_as_protobuf() -> None:
    value: dict = {"stringValue": "x"}
    for _ in range(30):
        value = {"arrayValue": {"values": [value]}}
    req = decode_traces(_body(_span_json(attributes=[{"key": "deep", "value": value}])), JSON)
    assert decode_traces(req.SerializeToString(), PROTO) == req


def test_json_bytes_values_stay_base64() -> None:
    attr = {"key": "b", "value": {"bytesValue": "AAEC"}}
    req = decode_traces(_body(_span_json(attributes=[attr])), JSON)
    assert req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.bytes_value == b"\x00\x01\x02"


def test_full_success_response_leaves_partial_success_unset() -> None:
    assert encode_export_response(0, "", as_json=True) == b"{}"
    resp = ExportTraceServiceResponse.FromString(encode_export_response(0, "", as_json=False))
    assert not resp.HasField("partial_success")


def test_partial_success_json_encodes_rejected_spans_as_string() -> None:
    body = encode_export_response(3, "rejected 3 of 10 spans", as_json=True)
    assert orjson.loads(body) == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "rejected 3 of 10 spans"}}


def test_partial_success_protobuf_encoding() -> None:
    resp = ExportTraceServiceResponse.FromString(encode_export_response(3, "why", as_json=False))
    assert resp.HasField("partial_success")
    assert (resp.partial_success.rejected_spans, resp.partial_success.error_message) == (3, "why")


def test_warning_only_response_sets_partial_success_with_zero_rejected() -> None:
    resp = ExportTraceServiceResponse.FromString(encode_export_response(0, "heads up", as_json=False))
    assert resp.HasField("partial_success") and resp.partial_success.rejected_spans == 0


def test_status_body_json_and_protobuf() -> None:
    assert orjson.loads(encode_status(3, "bad span", as_json=True)) == {"code": 3, "message": "bad span"}
    status = status_pb2.Status.FromString(encode_status(3, "bad span", as_json=False))
    assert (status.code, status.message) == (3, "bad span")


def test_grpc_codes_for_http_statuses() -> None:
    assert GRPC_CODE[400] == 3 and GRPC_CODE[401] == 16 and GRPC_CODE[403] == 7 and GRPC_CODE[404] == 5
    assert GRPC_CODE[413] == 8 and GRPC_CODE[429] == 8 and GRPC_CODE[415] == 3
    assert GRPC_CODE[500] == 13 and GRPC_CODE[503] == 14
