"""The PII engine as it was before the per-span gate (commit b549b37), frozen: the reference that
tests/streams/test_pii_equivalence.py and bench/pii_corpus_bench.py compare the product engine with.
Not imported by the product; do not fix bugs here, they are the baseline."""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import orjson
import phonenumbers
import re2
from stdnum import iban as stdnum_iban

from schemas.span import Span
from schemas.tenant_settings import PiiPolicy

# One RE2 pass per string value (the gate) finds every place a detector could match; detectors and
# their validators run only in windows around those places.


class Finding(NamedTuple):
    start: int
    end: int
    kind: str  # one of KINDS
    canonical: str  # normalised value, so `hash` is stable across formats (E.164, compact IBAN, …)


KINDS = ("secret", "email", "iban", "card", "ssn", "ip", "phone")  # overlap priority, highest first
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}

# Digit detectors start with [0-9] (the regex engine then skips non-digits fast) and check the left
# boundary in Python (`_free_left`); lookaheads keep `4111…1112/27`, `1.2.3.4.5`, `12-34x` out.
_CARD = re.compile(r"[0-9](?:[ \-]?[0-9]){12,18}(?![\w]|[\-.,/:][0-9])")
_SSN = re.compile(r"([0-9]{3})([\- ]?)([0-9]{2})\2([0-9]{4})(?![\w]|[\-.,/:][0-9])")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![\w\-]|\.[0-9])")
_PHONE = re.compile(r"[0-9][0-9 ().\-]{5,22}[0-9](?![\w\-/:@%]|[.,][0-9])")
_IBAN = re.compile(r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![\w\-])")
_IPV6 = re.compile(
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})(?:%[\w.]+)?(?![\w:]|\.\w)"
)
_EMAIL = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
    r"([A-Za-z]{2,24})(?![\w\-]|\.[A-Za-z0-9])"
)
_SECRET = re.compile(
    r"(?:sk-ant-(?:api|admin)\d\d-[\w\-]{20,}|sk-(?:proj-|svcacct-|admin-)?[\w\-]{20,}"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9+/=]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}|glpat-[\w\-]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|xox[abprse]-[A-Za-z0-9\-]{10,}|lls_[\w\-]{20,}|AIza[\w\-]{35}|hf_[A-Za-z0-9]{30,}"
    r"|eyJ[\w\-]{8,}\.[\w\-]{8,}\.[\w\-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)(?![\w\-])"
)
# Credentials in `key: value` form and bearer tokens: only the value is reported (`[SECRET:…]`,
# our own hash token, is not a `secret:` assignment).
_ASSIGNED = re.compile(
    r"(?i)(?:(?<!\[)\b(?:api[_\-]?key|secret(?:[_\-]?key)?|client[_\-]?secret|password|passwd|pwd|access[_\-]?token"
    r"|auth[_\-]?token|refresh[_\-]?token|private[_\-]?key)\\?[\"']?\s*[:=]\s*(?:\\?[\"'])?|\bbearer\s+)"
    r"([^\s\"'`,;&\\<>{}\[\]]{8,})"
)
_PLACEHOLDER = re.compile(r"(?i)^(?:x+|\*+|\.+|null|none|true|false|undefined|changeme|redacted|your[_\-].*|\$.*|%.*)$")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|social security|tax ?id)\b")
_VERSION_CONTEXT = re.compile(r"(?i)(?:\bv|version|ver\.?|release|build|rev\.?)\s*$")
_PHONE_CONTEXT = re.compile(r"(?i)phone|\btel\b|call|mobile|cell|fax|whats ?app|sms|text me|reach me|number|dial")
_ID_CONTEXT = re.compile(r"(?i)order|invoice|ticket|tracking|\bref|case|account|customer|transaction|\bid\b|#")
_DATE_LIKE = re.compile(r"\d{4}[\-./ ]\d{1,2}[\-./ ]\d{1,2}|\d{1,2}[\-./ ]\d{1,2}[\-./ ]\d{2,4}")
_FILE_TLDS = frozenset(
    ("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "tsx", "py", "md", "txt", "json", "yaml",
     "yml", "html", "xml", "pdf")
)  # fmt: skip
_HEX = frozenset("0123456789abcdefABCDEF")
_TOKEN = re.compile(rb"[^\s\"'<>]*")
# The gate: every trigger in one alternation, run by RE2 as one linear DFA pass over UTF-8 bytes
# (about 6 µs per KiB plus about 1.5 µs per trigger; no capture groups, which would double that).
# Digit runs count only at a boundary (`\n` escapes included), so UUIDs, hashes, `ORD-2024-…` and
# ISO timestamps, which fill ordinary prompts, do not open windows.
_NOT_AFTER = rb"(?:^|[^0-9A-Za-z_\-./:]|\\[nrtbf])"
_SECRET_PREFIXES = (
    "sk-", "sk_", "rk_", "whsec_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "AKIA", "ASIA",
    "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "xoxe-", "lls_", "AIza", "hf_", "eyJ", "-----BEGIN",
)  # fmt: skip
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "bearer") + tuple(
    a + sep + b for a, b in (("api", "key"), ("access", "token"), ("auth", "token"), ("refresh", "token"), ("private", "key"))
    for sep in ("", "_", "-")
)  # fmt: skip
_GATE = re2.compile(
    _NOT_AFTER + rb"[0-9](?:[ .()\-]{0,2}[0-9]){6,}(?:[^0-9A-Za-z_\-]|$)"  # phones, cards, SSNs
    rb"|" + _NOT_AFTER + rb"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"  # IPv4
    rb"|"
    + _NOT_AFTER
    + rb"(?i:[a-z]{2}[0-9]{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?)(?:[^0-9A-Za-z_\-]|$)"  # IBAN
    rb"|::|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){3,}|@|"  # IPv6, e-mail
     + "|".join(map(re.escape, _SECRET_PREFIXES)).encode() + rb"|(?i:" + "|".join(_SECRET_WORDS).encode() + rb")"
)
_SECRET_HIT_SET = frozenset(w.lower().encode() for w in _SECRET_PREFIXES + _SECRET_WORDS)  # tells those hits apart
_DATE_HIT = re.compile(rb"\D?\d{4}-\d{2}-\d{2}(?: \d{2})?\D?")  # `2024-05-07` or `2024-05-07 09:…`

def find_pii(text: str, region: str = "US") -> list[Finding]:
    """Validated findings in text order; where two overlap, the kind earlier in KINDS wins."""
    found: list[Finding] = []
    for family, spans in _gate(text).items():
        for lo, hi in _merge(spans, len(text)):
            if family == "num":
                numeric = _ibans(text, lo, hi) + _cards(text, lo, hi) + _ssns(text, lo, hi) + _ips(text, lo, hi, False)
                # Phones last: parsing is the costly check, and digits already claimed need none.
                found += numeric + _phones(text, lo, hi, region, numeric)
            elif family == "email":
                found += _emails(text, lo, hi)
            elif family == "ip6":
                found += _ips(text, lo, hi, True)
            else:
                found += _secrets(text, lo, hi)
    if len(found) < 2:
        return found
    kept: list[Finding] = []  # sorted by start, non-overlapping
    for f in sorted(found, key=lambda f: (_PRIORITY[f.kind], f.start)):
        i = bisect.bisect_left(kept, f.start, key=lambda k: k.start)
        if (i and kept[i - 1].end > f.start) or (i < len(kept) and kept[i].start < f.end):
            continue
        kept.insert(i, f)
    return kept


def _gate(text: str) -> dict[str, list[tuple[int, int]]]:
    """Windows (per detector family) around every place where a detector could match."""
    windows: dict[str, list[tuple[int, int]]] = {}
    # A byte offset is at least the char offset and at most `slack` more, so the window
    # [byte start - slack, byte end] holds the match (RE2's str wrapper costs ~5 µs per match).
    data = text.encode("utf-8", "surrogatepass")
    slack = len(data) - len(text)
    for m in _GATE.finditer(data):
        start, end = m.span()  # one call: each accessor of RE2's wrapper costs ~1 µs
        hit, lo = data[start:end], start - slack
        if hit == b"@":
            windows.setdefault("email", []).append((lo - 70, end + 260))
        elif hit.lower() in _SECRET_HIT_SET:  # to the end of the token, plus room for `key: value`
            token_end = _TOKEN.match(data, end).end()  # type: ignore[union-attr]  # `*` always matches
            if hit == b"-----BEGIN":
                found = data.find(b"-----END", end)
                token_end = found + 80 if found >= 0 else len(data)
            windows.setdefault("secret", []).append((lo - 12, token_end + 200))
        elif b":" in hit[:-1]:  # a digit run can only end with `:`; an IPv6 address holds one inside
            windows.setdefault("ip6", []).append((lo - 45, end + 45))
        elif not _DATE_HIT.fullmatch(hit):  # dates are the commonest digit run
            windows.setdefault("num", []).append((lo - 45, end + 40))  # IBAN letters sit before digits
    return windows


def _merge(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        lo, hi = max(lo, 0), min(hi, size)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _free_left(text: str, i: int, bad: str) -> bool:
    """No word char or `bad` char just before i; a JSON escape (`\\n`) counts as a boundary."""
    if i == 0:
        return True
    c = text[i - 1]
    if c.isalnum() or c == "_" or c in bad:
        return i >= 2 and text[i - 2] == "\\" and c in "nrtbf"
    return True


def _cards(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    for m in _CARD.finditer(text, lo, hi):
        raw = m.group()
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1 or not _free_left(text, m.start(), "-.,/:+"):
            continue  # mixed separators are not how cards are written
        sep = seps.pop() if seps else ""
        groups = raw.split(sep) if sep else [raw]
        # A CVV or expiry may ride along: take the longest group-aligned prefix that validates.
        for n in range(len(groups), 0, -1):
            digits = "".join(groups[:n])
            if 13 <= len(digits) <= 19 and _is_card(digits):
                out.append(Finding(m.start(), m.start() + len(sep.join(groups[:n])), "card", digits))
                break
    return out


def _is_card(digits: str) -> bool:
    if len(set(digits)) == 1 or not _luhn_ok(digits):
        return False
    # Luhn alone passes one random number in ten: also require an issuer range (Visa, Mastercard,
    # Amex, Diners, Discover, JCB, UnionPay, Maestro).
    d2, d3, d4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    return (
        digits[0] == "4" or 51 <= d2 <= 55 or 2221 <= d4 <= 2720 or d2 in (34, 37, 36, 38, 62, 65, 50, 56, 57, 58, 63, 67)
        or 300 <= d3 <= 305 or d4 == 6011 or 644 <= d3 <= 649 or 3528 <= d4 <= 3589
    )  # fmt: skip


def _luhn_ok(digits: str) -> bool:
    odd = sum(int(c) for c in digits[-1::-2])
    even = sum(_LUHN_DOUBLE[int(c)] for c in digits[-2::-2])
    return (odd + even) % 10 == 0


_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _ssns(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    for m in _SSN.finditer(text, lo, hi):
        area, sep, group, serial = m.groups()
        if not _free_left(text, m.start(), "-.,/:+"):
            continue
        if not sep and not _SSN_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            continue  # nine bare digits are an SSN only when the text says so
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue  # never issued (SSA rules)
        out.append(Finding(m.start(), m.end(), "ssn", area + group + serial))
    return out


def _ips(text: str, lo: int, hi: int, v6: bool) -> list[Finding]:
    out = []
    for m in (_IPV6 if v6 else _IPV4).finditer(text, lo, hi):
        value = m.group()
        if not _free_left(text, m.start(), ":.-" if v6 else ".-"):
            continue
        if v6 and (sum(c in _HEX for c in value) < 4 or ("::" not in value and value.count(":") < 7)):
            continue  # `a::b` slices, `std::`, times (12:34:56) and MAC addresses are not addresses
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified or _VERSION_CONTEXT.search(text, max(0, m.start() - 12), m.start()):
            continue  # localhost is nobody's address; `version 1.2.3.4` is not an address
        out.append(Finding(m.start(), m.end(), "ip", ip.compressed))
    return out


def _ibans(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    for m in _IBAN.finditer(text, lo, hi):
        value = m.group()
        if not _free_left(text, m.start(), "-"):
            continue
        # The pattern may swallow a following word: drop space-separated groups until it validates.
        while len(value) >= 15:
            if stdnum_iban.is_valid(value):
                out.append(Finding(m.start(), m.start() + len(value), "iban", stdnum_iban.compact(value)))
                break
            if " " not in value:
                break  # an unspaced IBAN is one whole token
            value = value[: value.rfind(" ")]
    return out


def _phones(text: str, lo: int, hi: int, region: str, taken: list[Finding]) -> list[Finding]:
    out = []
    for m in _PHONE.finditer(text, lo, hi):
        start, end = m.start(), m.end()
        if any(start < t.end and t.start < end for t in taken):
            continue
        if start and text[start - 1] == "(":
            start -= 1
        if start and text[start - 1] == "+":
            start -= 1
        if not _free_left(text, start, "+-./:@#$€£"):
            continue  # `ORD-2024-…`, `#4155552671`, `$1 299 000`, `v1.2.3`
        cand = text[start:end]
        number = _phone_number(text, cand, start, region)
        if number is None and " " in cand:
            # `room 12 555-123-4567` or `… 555-123-4567 12`: retry without the first or last group.
            head, _, tail = cand.partition(" ")
            if (number := _phone_number(text, tail, start + len(head) + 1, region)) is not None:
                start += len(head) + 1
            else:
                head = cand.rpartition(" ")[0]
                if (number := _phone_number(text, head, start, region)) is not None:
                    end = start + len(head)
        if number is not None:
            out.append(Finding(start, end, "phone", number))
    return out


def _phone_number(text: str, cand: str, start: int, region: str) -> str | None:
    """E.164 of a candidate when phonenumbers says it is a valid number, else None."""
    digits = "".join(c for c in cand if c.isdigit())
    if not 7 <= len(digits) <= 15 or "  " in cand or "--" in cand or ".." in cand or cand.count("(") != cand.count(")"):
        return None
    international = cand.startswith(("+", "00"))
    if not international and _DATE_LIKE.fullmatch(cand):
        return None
    if "." in cand and not international and not re.fullmatch(r"\(?\d{3}\)?\.\d{3}\.\d{4}", cand):
        return None  # dotted digits are versions or IPs unless shaped like 555.123.4567
    if not international and not any(not c.isdigit() for c in cand):
        # Bare digit runs (ids, epoch millis) count as phones only next to a phone word.
        window = text[max(0, start - 30) : start]
        if not _PHONE_CONTEXT.search(window) or _ID_CONTEXT.search(window):
            return None
    return _valid_phone(
        ("+" + digits[2:] if cand.startswith("00") else "+" + digits) if international else digits, region
    )


@lru_cache(maxsize=4096)
def _valid_phone(number: str, region: str) -> str | None:
    """Cached: validating one NANP number walks two dozen regions (~50 µs), and numbers repeat."""
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _emails(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    for m in _EMAIL.finditer(text, lo, hi):
        start, value = m.start(), m.group()
        if start and text[start - 1] == "\\" and value[0] in "nrtbf":
            start, value = start + 1, value[1:]  # a JSON escape (`\nalice@…`) glued to the match
        elif not _free_left(text, start, ".%+-"):
            continue
        local = value.partition("@")[0]
        if m.group(1).lower() in _FILE_TLDS or ".." in local or local.startswith(".") or local.endswith("."):
            continue  # `icon@2x.png` is a file name
        out.append(Finding(start, m.end(), "email", value.lower()))
    return out


def _secrets(text: str, lo: int, hi: int) -> list[Finding]:
    out = []
    for m in _SECRET.finditer(text, lo, hi):
        value = m.group()
        if not _free_left(text, m.start(), "-"):
            continue
        if value.startswith("eyJ") and not _is_jwt(value):
            continue
        if value.startswith("sk-") and not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value[3:])):
            continue  # `sk-` + words (`sk-learn-compatible-…`) is not a key
        out.append(Finding(m.start(), m.end(), "secret", value))
    for m in _ASSIGNED.finditer(text, lo, hi):
        value = m.group(1)
        if _PLACEHOLDER.match(value) or (value.isalpha() and len(value) < 12):
            continue  # placeholders and short plain words (`password: required`) are not credentials
        out.append(Finding(m.start(1), m.end(1), "secret", value))
    return out


def _is_jwt(value: str) -> bool:
    """Three base64url parts whose first decodes to a JSON object with `alg` or `typ`."""
    header = value.split(".", 1)[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


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
