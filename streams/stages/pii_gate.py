"""The PII gate: one RE2 pass over all the string values of a span finds every place a detector
could match, and turns each into a window (per detector family) where the detectors then run."""

# Why one pass per span and not per value: a span carries a handful of scanned values (system
# instructions, input and output messages, tool arguments, event contents), and each RE2 call costs
# about 1 µs before it reads a byte, plus about 0.7 µs per hit through the Python wrapper. The
# values are joined with NUL separators and scanned once through the low-level binding, which
# returns plain (start, end) tuples.
#
# Why the windows are exactly those of a separate scan per value: no gate pattern matches a NUL
# inside a match, only as the one boundary character before or after it (where a separate scan
# would see the start or end of the text), and hits are mapped back to their value. Two NULs
# separate values, so a hit that ends on the first leaves the second as the next value's left
# boundary, as `^` would be.

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import re2

Windows = dict[str, list[tuple[int, int]]]  # detector family → (lo, hi) character ranges, unmerged

# The gate: every trigger in one alternation, run by RE2 as one linear DFA pass over UTF-8 bytes
# (no capture groups, which would double the cost). Digit runs count only at a boundary (`\n`
# escapes included), so UUIDs, hashes, `ORD-2024-…` and ISO timestamps, which fill ordinary
# prompts, do not open windows.
_NOT_AFTER = rb"(?:^|[^0-9A-Za-z_\-./:]|\\[nrtbf])"
_SECRET_PREFIXES = (
    "sk-", "sk_", "rk_", "whsec_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "AKIA", "ASIA",
    "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "xoxe-", "lls_", "AIza", "hf_", "eyJ", "-----BEGIN",
)  # fmt: skip
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "bearer") + tuple(
    a + sep + b for a, b in (("api", "key"), ("access", "token"), ("auth", "token"), ("refresh", "token"), ("private", "key"))
    for sep in ("", "_", "-")
)  # fmt: skip
GATE_PATTERN = (
    _NOT_AFTER + rb"[0-9](?:[ .()\-]{0,2}[0-9]){6,}(?:[^0-9A-Za-z_\-]|$)"  # phones, cards, SSNs
    rb"|" + _NOT_AFTER + rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"  # IPv4
    rb"|"
    + _NOT_AFTER
    + rb"(?i:[a-z]{2}[0-9]{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?)(?:[^0-9A-Za-z_\-]|$)"  # IBAN
    rb"|::|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){3,}|@|"  # IPv6, e-mail
    + "|".join(map(re.escape, _SECRET_PREFIXES)).encode() + rb"|(?i:" + "|".join(_SECRET_WORDS).encode() + rb")"
)
_GATE = re2._re2.RE2(GATE_PATTERN, re2.Options())  # the binding under re2.compile: no match objects
_UNANCHORED = re2._re2.RE2.Anchor.UNANCHORED
_SECRET_HIT_SET = frozenset(w.lower().encode() for w in _SECRET_PREFIXES + _SECRET_WORDS)  # tells those hits apart
_DATE_HIT = re.compile(rb"\D?\d{4}-\d{2}-\d{2}(?: \d{2})?\D?")  # `2024-05-07` or `2024-05-07 09:…`
_TOKEN = re.compile(rb"[^\s\"'<>]*")
_SEP = "\x00\x00"
_SEP_BYTES = _SEP.encode()


def gate(texts: Sequence[str]) -> list[Windows | None]:
    """Windows per text, in the texts' order; None for a text with nothing to look at."""
    joined = _SEP.join(texts)
    ascii_only = joined.isascii()  # the common case: byte offsets are character offsets
    data = joined.encode("ascii") if ascii_only else _SEP_BYTES.join(t.encode("utf-8", "surrogatepass") for t in texts)
    out: list[Windows | None] = [None] * len(texts)
    match, size = _GATE.Match, len(data)
    start, end = match(_UNANCHORED, data, 0, size)[0]
    layout = None
    while start >= 0:
        hit = data[start:end]
        # Dates are the commonest digit run, and can be no other kind of hit: skip them first.
        if not _DATE_HIT.fullmatch(hit):
            starts, limits, slacks = layout = layout or _layout(texts, ascii_only)
            i = bisect.bisect_right(starts, start + 1) - 1  # a hit may begin on the NUL before its text
            windows = out[i]
            if windows is None:
                windows = out[i] = {}
            _add_window(windows, data, hit, start, end, starts[i], limits[i], slacks[i])
        start, end = match(_UNANCHORED, data, end, size)[0]  # never empty: every alternative reads a byte
    return out


def _layout(texts: Sequence[str], ascii_only: bool) -> tuple[list[int], list[int], list[int]]:
    """Where each text starts and ends in the joined bytes, and how many more bytes than characters it has."""
    starts, limits, slacks = [], [], []
    pos = 0
    for text in texts:
        size = len(text) if ascii_only else len(text.encode("utf-8", "surrogatepass"))
        starts.append(pos)
        limits.append(pos + size)
        slacks.append(size - len(text))
        pos += size + len(_SEP)
    return starts, limits, slacks


def _add_window(windows: Windows, data: bytes, hit: bytes, start: int, end: int, base: int, limit: int, slack: int) -> None:
    """One hit (byte offsets in `data`; its text is data[base:limit]) → one window in characters."""
    # A byte offset is at least the char offset and at most `slack` more, so the window
    # [byte start - slack, byte end] holds the match.
    lo = start - base - slack
    if hit == b"@":
        windows.setdefault("email", []).append((lo - 70, end - base + 260))
    elif hit.lower() in _SECRET_HIT_SET:  # to the end of the token, plus room for `key: value`
        token_end = _TOKEN.match(data, end, limit).end()  # type: ignore[union-attr]  # `*` always matches
        if hit == b"-----BEGIN":
            found = data.find(b"-----END", end, limit)
            token_end = found + 80 if found >= 0 else limit
        windows.setdefault("secret", []).append((lo - 12, token_end - base + 200))
    elif b":" in hit[:-1]:  # a digit run can only end with `:`; an IPv6 address holds one inside
        windows.setdefault("ip6", []).append((lo - 45, end - base + 45))
    else:
        windows.setdefault("num", []).append((lo - 45, end - base + 40))  # IBAN letters sit before digits
