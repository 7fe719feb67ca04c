"""Content-Encoding handling: every supported coding, corrupt input, and the decompressed-size limit."""

from __future__ import annotations

import gzip
import os
import time
import tracemalloc
import zlib

import pytest
import zstandard

from ingest.decompress import decompress
from llmscope.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

PAYLOAD = os.urandom(2000) + b"spans " * 20_000
LIMIT = 1 << 20


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding", [None, "", "identity", "none", "IDENTITY"])
def test_identity_encodings_return_body_unchanged(encoding: str | None) -> None:
    assert decompress(PAYLOAD, encoding, LIMIT) == PAYLOAD


@pytest.mark.parametrize(
    ("encoding", "compressed"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("GZip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", _raw_deflate(PAYLOAD)),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
        ("gzip, identity", gzip.compress(PAYLOAD)),
    ],
    ids=["gzip", "x-gzip", "mixed-case", "deflate-zlib", "deflate-raw", "zstd", "list"],
)
def test_supported_encodings_round_trip(encoding: str, compressed: bytes) -> None:
    assert decompress(compressed, encoding, LIMIT) == PAYLOAD


def test_concatenated_gzip_members_are_all_decoded() -> None:
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", LIMIT) == b"abcd"


def test_concatenated_zstd_frames_are_all_decoded() -> None:
    z = zstandard.ZstdCompressor()
    assert decompress(z.compress(b"ab") + z.compress(b"cd"), "zstd", LIMIT) == b"abcd"


def test_zstd_frame_without_content_size_is_decoded() -> None:
    z = zstandard.ZstdCompressor(write_content_size=False)
    assert decompress(z.compress(PAYLOAD), "zstd", LIMIT) == PAYLOAD


def test_empty_body_stays_empty_whatever_the_encoding() -> None:
    assert decompress(b"", "gzip", LIMIT) == b""


def test_unknown_encoding_is_unsupported_media_type() -> None:
    with pytest.raises(
        UnsupportedMediaType, match="unsupported Content-Encoding 'br'; use gzip, deflate, zstd or none"
    ):
        decompress(b"x", "br", LIMIT)


def test_raw_body_over_limit_is_rejected_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge):
        decompress(b"x" * 101, None, 100)


def test_body_exactly_at_limit_is_accepted() -> None:
    assert decompress(gzip.compress(b"x" * 100), "gzip", 100) == b"x" * 100


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_decompressed_body_over_limit_gets_payload_too_large(encoding: str) -> None:
    data = b"x" * 1001
    compressed = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }[encoding](data)
    with pytest.raises(PayloadTooLarge, match="request body exceeds 1000 bytes after decompression"):
        decompress(compressed, encoding, 1000)


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_100mb_bomb_hits_limit_fast_without_allocating_it(encoding: str) -> None:
    zeros = bytes(100_000_000)
    bomb = gzip.compress(zeros, 9) if encoding == "gzip" else zstandard.ZstdCompressor(level=19).compress(zeros)
    del zeros
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge):
            decompress(bomb, encoding, LIMIT)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 4 * LIMIT


@pytest.mark.parametrize(
    ("encoding", "body", "name"),
    [
        ("gzip", b"definitely not gzip", "gzip"),
        ("gzip", gzip.compress(PAYLOAD)[:-10], "gzip"),
        ("deflate", b"\x00\x01garbage", "deflate"),
        ("deflate", zlib.compress(PAYLOAD) + b"junk", "deflate"),
        ("zstd", b"not zstd at all", "zstd"),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)[:-10], "zstd"),
    ],
    ids=["gzip-garbage", "gzip-truncated", "deflate-garbage", "deflate-trailing", "zstd-garbage", "zstd-truncated"],
)
def test_corrupt_compressed_body_is_bad_request_naming_the_encoding(encoding: str, body: bytes, name: str) -> None:
    with pytest.raises(BadRequest, match=f"^body is not valid {name}: "):
        decompress(body, encoding, LIMIT)


def test_thousands_of_empty_gzip_members_are_refused_quickly() -> None:
    body = gzip.compress(b"", mtime=0) * 5000
    started = time.perf_counter()
    with pytest.raises(BadRequest, match="concatenated members"):
        decompress(body, "gzip", LIMIT)
    assert time.perf_counter() - started < 0.5
