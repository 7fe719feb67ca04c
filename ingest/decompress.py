"""Request-body decompression (identity, gzip, deflate, zstd) with a bomb-safe size limit."""

from __future__ import annotations

import zlib

import zstandard

from llmscope.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

# Output is produced in bounded steps so a bomb never allocates much more than `limit`.
_STEP = 256 * 1024
# Worst-case zstd expansion per input byte (a 4-byte RLE block yields 128 KiB); input is fed in
# slices small enough that one slice cannot overshoot the remaining budget by much.
_ZSTD_MAX_RATIO = 32 * 1024
_ZSTD_MIN_SLICE = 32
# Concatenated gzip members / zstd frames are legal but each costs a fresh decoder (~10 µs);
# real exporters send one, so a cap stops a cheap CPU-burning body of thousands of empty ones.
_MAX_MEMBERS = 1024

_IDENTITY = frozenset({"", "identity", "none"})


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Decode `body` per Content-Encoding; raise PayloadTooLarge once the output would exceed `limit`."""
    if len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    if not body:
        return body  # an empty export is a valid (empty) request whatever the header says
    # "gzip, identity" style lists name codings in the order applied, so undo them in reverse.
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    for coding in reversed(codings):
        if coding in _IDENTITY:
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS, "gzip", limit, multi_member=True)
        elif coding == "deflate":
            body = _deflate(body, limit)
        elif coding == "zstd":
            body = _zstd(body, limit)
        else:
            raise UnsupportedMediaType(f"unsupported Content-Encoding {coding!r}; use gzip, deflate, zstd or none")
    return body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds {limit} bytes after decompression")


def _deflate(body: bytes, limit: int) -> bytes:
    # HTTP "deflate" means zlib-wrapped, but many clients send raw deflate; the zlib header check
    # fails fast on raw data, so trying zlib first costs almost nothing.
    try:
        return _inflate(body, zlib.MAX_WBITS, "deflate", limit)
    except BadRequest as zlib_error:
        try:
            return _inflate(body, -zlib.MAX_WBITS, "deflate", limit)
        except BadRequest:
            raise zlib_error from None


def _inflate(body: bytes, wbits: int, name: str, limit: int, *, multi_member: bool = False) -> bytes:
    # Input is fed in slices too: zlib copies the remaining input into unused_data at every
    # stream end, which would make a body of many tiny gzip members quadratic.
    out = bytearray()
    view = memoryview(body)
    pos = 0
    try:
        for _ in range(_MAX_MEMBERS):
            d = zlib.decompressobj(wbits)
            pending: bytes | memoryview = b""
            while not d.eof:
                if not pending and pos < len(view):
                    pending = view[pos : pos + _STEP]
                    pos += len(pending)
                chunk = d.decompress(pending, min(_STEP, limit + 1 - len(out)))
                out += chunk
                if len(out) > limit:
                    raise _too_large(limit)
                progressed = chunk or len(d.unconsumed_tail) < len(pending)
                pending = d.unconsumed_tail
                if not progressed and not d.eof:
                    raise BadRequest(f"body is not valid {name}: compressed data is truncated")
            pos -= len(d.unused_data)
            if pos >= len(view):
                return bytes(out)
            if not multi_member:
                raise BadRequest(f"body is not valid {name}: trailing bytes after the compressed stream")
        raise BadRequest(f"body is not valid {name}: more than {_MAX_MEMBERS} concatenated members")
    except zlib.error as e:
        raise BadRequest(f"body is not valid {name}: {e}") from None


def _zstd(body: bytes, limit: int) -> bytes:
    out = bytearray()
    view = memoryview(body)
    pos = 0
    dctx = zstandard.ZstdDecompressor()
    try:
        for _ in range(_MAX_MEMBERS):
            if pos >= len(view):
                return bytes(out)
            d = dctx.decompressobj()
            while not d.eof:
                if pos >= len(view):
                    raise BadRequest("body is not valid zstd: compressed data is truncated")
                step = max(_ZSTD_MIN_SLICE, (limit - len(out)) // _ZSTD_MAX_RATIO)
                piece = view[pos : pos + step]
                pos += len(piece)
                out += d.decompress(piece)
                if len(out) > limit:
                    raise _too_large(limit)
            # Only the tail of the last slice can be left over; it starts the next frame.
            pos -= len(d.unused_data)
    except zstandard.ZstdError as e:
        raise BadRequest(f"body is not valid zstd: {e}") from None
    if pos >= len(view):
        return bytes(out)
    raise BadRequest(f"body is not valid zstd: more than {_MAX_MEMBERS} concatenated frames")
