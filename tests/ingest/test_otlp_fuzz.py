"""Property tests: hostile bodies through decode -> validate -> normalise only ever raise LLMScopeError."""

from __future__ import annotations

import gzip
import json
import zlib

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.decompress import decompress
from ingest.otlp_codec import decode_traces
from ingest.otlp_validate import split_request, validate_spans
from llmscope.errors import LLMScopeError
from streams.stages.normalise import normalise

NOW = 1_800_000_000_000_000_000
RETENTION = 30 * 86_400 * 1_000_000_000  # the settings' default retention
JSON = "application/json"
PROTO = "application/x-protobuf"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OTLP_KEYS = [
    "resourceSpans",
    "scopeSpans",
    "spans",
    "resource",
    "scope",
    "attributes",
    "key",
    "value",
    "traceId",
    "spanId",
    "parentSpanId",
    "links",
    "events",
    "status",
    "stringValue",
    "intValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "bytesValue",
    "startTimeUnixNano",
    "kind",
    "code",
]


def _pipeline(body: bytes, content_type: str) -> None:
    """The ingest + stream path; anything but an LLMScopeError escaping fails the test."""
    try:
        req = decode_traces(body, content_type)
    except LLMScopeError:
        return
    normalise(req, "fuzz")  # promised only for validated requests, but cheap to hold it to more
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    for span in normalise(result.request, "fuzz"):
        orjson.dumps(span.to_row(NOW))
    for chunk in split_request(result.request, 512):
        decode_traces(chunk, PROTO)  # what we forward must parse downstream


def _valid_json() -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "lib"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": str(NOW - 10),
                                "endTimeUnixNano": NOW,
                                "attributes": [
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                                    {
                                        "key": "gen_ai.response.finish_reasons",
                                        "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
                                    },
                                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                                ],
                                "events": [{"timeUnixNano": str(NOW - 5), "name": "e"}],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }


VALID_JSON = orjson.dumps(_valid_json())
VALID_PROTO = decode_traces(VALID_JSON, JSON).SerializeToString()

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(OTLP_KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)
hex_id = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=16, max_size=16),
    st.just("0" * 32),
    st.just(""),
    st.text(max_size=40),
    st.integers(),
    st.none(),
)
int64ish = st.one_of(
    st.integers(min_value=NOW - 10**12, max_value=NOW + 10**12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2**64).map(str),
    st.floats(),
    st.text(max_size=6),
    st.none(),
)
any_value = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "stringValue": json_leaf,
            "intValue": int64ish,
            "boolValue": json_leaf,
            "doubleValue": json_leaf,
            "bytesValue": st.one_of(st.just("AAEC"), st.text(max_size=8)),
        },
    ),
    lambda children: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(children, max_size=3)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": kvs}},
            st.lists(st.fixed_dictionaries({"key": st.text(max_size=10), "value": children}), max_size=3),
        ),
    ),
    max_leaves=10,
)
attribute_key = st.sampled_from(
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.response.finish_reasons",
        "llm.token_count.prompt",
        "openinference.span.kind",
        "session.id",
        "service.name",
        "gen_ai.request.model",
    ]
) | st.text(max_size=12)
attributes = st.lists(st.fixed_dictionaries({"key": attribute_key, "value": any_value}), max_size=4)
span_json = st.fixed_dictionaries(
    {},
    optional={
        "traceId": hex_id,
        "spanId": hex_id,
        "parentSpanId": hex_id,
        "name": json_leaf,
        "kind": st.integers(min_value=-5, max_value=2**33) | json_leaf,
        "startTimeUnixNano": int64ish,
        "endTimeUnixNano": int64ish,
        "attributes": attributes,
        "events": st.lists(
            st.fixed_dictionaries({}, optional={"timeUnixNano": int64ish, "name": json_leaf, "attributes": attributes}),
            max_size=2,
        ),
        "links": st.lists(st.fixed_dictionaries({}, optional={"traceId": hex_id, "spanId": hex_id}), max_size=2),
        "status": st.fixed_dictionaries(
            {}, optional={"code": st.integers(min_value=-3, max_value=9) | json_leaf, "message": json_leaf}
        ),
        "extra": json_value,
    },
)
# Spans that pass validation, so hostile attributes reach normalise through the validator.
valid_span_json = st.fixed_dictionaries(
    {
        "traceId": st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32).filter(lambda h: int(h, 16)),
        "spanId": st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).filter(lambda h: int(h, 16)),
        "startTimeUnixNano": st.just(str(NOW - 10)),
        "endTimeUnixNano": st.sampled_from([NOW, str(NOW)]),
        "attributes": attributes,
    },
    optional={
        "kind": st.integers(min_value=0, max_value=2**31 - 1),
        "name": st.text(max_size=20),
        "status": st.fixed_dictionaries({"code": st.integers(min_value=0, max_value=2**31 - 1)}),
    },
)
otlp_json = st.builds(
    lambda rss: {"resourceSpans": rss},
    st.lists(
        st.fixed_dictionaries(
            {
                "scopeSpans": st.lists(
                    st.fixed_dictionaries(
                        {"spans": st.lists(span_json | valid_span_json, max_size=4)}, optional={"scope": json_value}
                    ),
                    max_size=2,
                )
            },
            optional={"resource": st.fixed_dictionaries({"attributes": attributes})},
        ),
        max_size=2,
    ),
)


def _dumps(doc: object) -> bytes:
    # stdlib json: handles >64-bit ints and emits NaN/Infinity (invalid JSON, which is the point).
    return json.dumps(doc).encode()


@FAST
@given(st.binary(max_size=512), st.sampled_from([JSON, PROTO]))
def test_random_bytes_never_raise_anything_but_llmscope_errors(body: bytes, content_type: str) -> None:
    _pipeline(body, content_type)


@FAST
@given(json_value)
def test_random_json_structures_never_raise_anything_but_llmscope_errors(doc: object) -> None:
    _pipeline(_dumps(doc), JSON)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(otlp_json)
def test_otlp_shaped_json_with_hostile_values_never_raises_anything_else(doc: dict) -> None:
    _pipeline(_dumps(doc), JSON)


@FAST
@given(st.sampled_from([VALID_JSON, VALID_PROTO]), st.data())
def test_truncated_or_corrupted_valid_messages_never_raise_anything_else(body: bytes, data: st.DataObject) -> None:
    content_type = JSON if body is VALID_JSON else PROTO
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    flip_at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flipped = bytearray(body)
    flipped[flip_at] ^= data.draw(st.integers(min_value=1, max_value=255))
    _pipeline(body[:cut], content_type)
    _pipeline(bytes(flipped), content_type)


# Each opener, repeated `depth` times around "1": how many JSON levels one repetition opens, and
# whether the body is invalid at any depth. Unknown fields are ignored (OTLP/JSON), so a body that
# is only unknown fields is an empty, valid request, until it nests deeper than 100 levels.
NESTING = {
    "[": ("]", 1),  # never an object: always 400
    '{"a":': ("}", 1),  # unknown field "a": 200 up to depth 100
    '{"resourceSpans":[': ("]}", 2),  # depth 1: resourceSpans[0] is 1, not an object; deeper, the
    # inner "resourceSpans" is an unknown field of ResourceSpans: 200 up to 2 * depth = 100 levels
    '{"arrayValue":{"values":[': ("]}}", 3),  # unknown top-level field: 200 up to 3 * depth <= 100
}
MAX_JSON_DEPTH = 100


def _deep_nesting_status(opener: str, depth: int) -> int:
    _, levels = NESTING[opener]
    if opener == "[" or (opener == '{"resourceSpans":[' and depth == 1):
        return 400
    return 200 if depth * levels <= MAX_JSON_DEPTH else 400


def _status(body: bytes, content_type: str) -> int:
    """What POST /v1/traces answers for this body: the LLMScopeError's status (ingest.app maps it), else 200."""
    try:
        validate_spans(decode_traces(body, content_type), now_ns=NOW, max_past_ns=RETENTION)
    except LLMScopeError as e:
        return e.status
    return 200


def _at_the_edges(test):  # type: ignore[no-untyped-def]
    """Always try depths 1, 2 and either side of the depth limit, whatever hypothesis draws."""
    for opener, (_, levels) in NESTING.items():
        for depth in {1, 2, MAX_JSON_DEPTH // levels, MAX_JSON_DEPTH // levels + 1}:
            test = example(depth, opener)(test)
    return test


@FAST
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(sorted(NESTING)))
@_at_the_edges
def test_deep_json_nesting_is_a_bad_request_not_a_crash(depth: int, opener: str) -> None:
    closer, _ = NESTING[opener]
    body = (opener * depth + "1" + closer * depth).encode()
    _pipeline(body, JSON)
    assert _status(body, JSON) == _deep_nesting_status(opener, depth)


def _length_delimited(field: int, payload: bytes) -> bytes:
    size, varint = len(payload), bytearray()
    while size > 0x7F:
        varint.append((size & 0x7F) | 0x80)
        size >>= 7
    varint.append(size)
    return bytes([field << 3 | 2]) + bytes(varint) + payload


@FAST
@given(st.integers(min_value=1, max_value=300))
def test_deep_protobuf_nesting_is_a_bad_request_not_a_crash(depth: int) -> None:
    value = _length_delimited(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        value = _length_delimited(5, _length_delimited(1, value))  # array_value.values[0]
    key_value = _length_delimited(1, b"k") + _length_delimited(2, value)
    span = (
        _length_delimited(1, bytes(range(1, 17)))
        + _length_delimited(2, bytes(range(1, 9)))
        + _length_delimited(9, key_value)
    )
    body = _length_delimited(1, _length_delimited(2, _length_delimited(2, span)))
    _pipeline(body, PROTO)


@FAST
@given(st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)), st.integers(min_value=0, max_value=200))
def test_invalid_utf8_inside_json_strings_is_a_bad_request(junk: bytes, where: int) -> None:
    # JSON text is UTF-8 (RFC 8259): invalid bytes anywhere make the whole body invalid, wherever
    # they land (inside a string, between tokens, or after a leading BOM, which is itself valid).
    for body in (VALID_JSON.replace(b'"chat"', b'"ch' + junk + b'at"'), VALID_JSON[:where] + junk + VALID_JSON[where:]):
        _pipeline(body, JSON)
        assert _status(body, JSON) == 400, body


@FAST
@given(st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)))
def test_invalid_utf8_in_protobuf_strings_never_raises_anything_else(junk: bytes) -> None:
    _pipeline(VALID_PROTO.replace(b"chat", junk[:4].ljust(4, b"\xff")), PROTO)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


@FAST
@given(st.binary(max_size=256), st.sampled_from(["gzip", "deflate", "zstd", "br", "identity", None]))
def test_random_compressed_bodies_never_raise_anything_else(body: bytes, encoding: str | None) -> None:
    try:
        decompress(body, encoding, 1 << 16)
    except LLMScopeError:
        pass


@FAST
@given(st.sampled_from(["gzip", "deflate", "zstd"]), st.data())
def test_truncated_compressed_bodies_never_raise_anything_else(encoding: str, data: st.DataObject) -> None:
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstandard.ZstdCompressor().compress}[encoding]
    body = compress(VALID_PROTO)
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    try:
        _pipeline(decompress(body[:cut], encoding, 1 << 16), PROTO)
    except LLMScopeError:
        pass


def test_valid_bodies_survive_the_pipeline() -> None:
    for body, content_type in ((VALID_JSON, JSON), (VALID_PROTO, PROTO)):
        result = validate_spans(decode_traces(body, content_type), now_ns=NOW, max_past_ns=RETENTION)
        (span,) = normalise(result.request, "t")
        assert (span.input_tokens, span.provider, span.finish_reasons) == (12, "openai", ["stop"])


@pytest.mark.parametrize("content_type", [JSON, PROTO])
def test_huge_flat_input_is_handled(content_type: str) -> None:
    doc = _valid_json()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] *= 2000
    body = orjson.dumps(doc)
    if content_type == PROTO:
        body = decode_traces(body, JSON).SerializeToString()
    _pipeline(body, content_type)
