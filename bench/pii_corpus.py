"""A labelled PII corpus of LLM prompts and completions, generated deterministically from a seed.

Documents are support chats, agent tool calls (JSON arguments), RAG context, logs and config
pastes, some as OTel GenAI message JSON (escaped, as SDKs send them), some with non-ASCII text.
Positive documents carry 1–4 labelled values of the kinds the engine detects; every document is
full of near-misses: order numbers, timestamps, UUIDs, versions, git SHAs, prices, numbers shaped
like phones or cards that are not valid ones. Labels are truth by construction: each value is
generated valid (Luhn, mod 97, SSA rules, a number `phonenumbers` knows), each near-miss invalid.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban

Label = tuple[int, int, str]  # (start, end, kind) in characters


@dataclass(frozen=True)
class Doc:
    text: str
    labels: tuple[Label, ...]
    style: str  # prose | json (GenAI messages) | tool (JSON arguments) | log | config


_FIRST = ["jane", "omar", "li", "sofia", "mateo", "aisha", "lukas", "chloé", "ravi", "emma", "noah", "yuki"]
_LAST = ["roe", "haddad", "wei", "rossi", "garcia", "khan", "müller", "martin", "patel", "smith", "tanaka"]
_DOMAINS = ["example.com", "acme-corp.io", "mail.example.co.uk", "university.edu", "contoso.org", "gmail.com"]
_AREAS = ["212", "312", "415", "646", "617", "206", "305", "512", "702", "808", "404", "713"]
_FILLER = [
    "Summarise the attached quarterly report for the board in three bullet points.",
    "Please keep the tone friendly and avoid jargon; the audience is non-technical.",
    "List the top five risks with a one-line mitigation each, ordered by impact.",
    "Use the context below to answer; if the answer is not in the context, say so.",
    "Translate the following paragraph into French, keeping product names in English.",
    "I reset my password yesterday but the login page still rejects it.",
    "The API key rotation policy says every secret must be rotated every 90 days.",
    "Sure! Here is a short summary of the ticket history and the next steps.",
    "Thanks for your patience, I've escalated this to our billing team.",
    "Could you explain why the bearer token expires after one hour?",
    "Merci pour votre retour, nous revenons vers vous très vite. 🙂",
    "Die Lieferung verzögert sich leider um zwei Werktage.",
    "お問い合わせありがとうございます。担当者より折り返しご連絡いたします。",
]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int, valid: bool = True) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    check = (10 - total % 10) % 10
    return body + str(check if valid else (check + rng.randint(1, 9)) % 10)


def _group(value: str, sizes: list[int], sep: str) -> str:
    out, pos = [], 0
    for size in sizes:
        out.append(value[pos : pos + size])
        pos += size
    return sep.join(out)


# -- valid values (kind, generator) -------------------------------------------------------------


def email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}+billing", f"{last}{rng.randint(1, 99)}"])
    value = f"{local}@{rng.choice(_DOMAINS)}"
    value = value.encode("ascii", "ignore").decode()  # `chloé` → `chlo`: addresses here are ASCII
    return value.upper() if rng.random() < 0.1 else value


def phone(rng: random.Random) -> str:
    while True:
        kind = rng.randrange(8)
        if kind < 5:
            area, ex, line = rng.choice(_AREAS), str(rng.randint(201, 989)), _digits(rng, 4)
            if ex[1:] == "11":
                continue
            formats = [f"+1 {area}-{ex}-{line}", f"({area}) {ex}-{line}", f"+1 ({area}) {ex} {line}", f"{area}.{ex}.{line}"]
            text = (formats + [f"{area}{ex}{line}"])[kind]  # the last one bare: a phone only next to a phone word
        elif kind == 5:
            text = f"+44 20 7946 0{_digits(rng, 3)}"
        elif kind == 6:
            text = f"+33 1 {rng.randint(40, 49)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}"
        else:
            text = f"+49 30 {_digits(rng, 8)}"
        number = phonenumbers.parse(text, "US")
        if phonenumbers.is_valid_number(number):
            return text


def card(rng: random.Random) -> str:
    brand = rng.randrange(4)
    if brand == 0:
        return _group(_luhn_complete(rng, "4", 16), [4, 4, 4, 4], rng.choice([" ", "-", ""]))
    if brand == 1:
        return _group(_luhn_complete(rng, str(rng.randint(51, 55)), 16), [4, 4, 4, 4], rng.choice([" ", "-"]))
    if brand == 2:
        return _group(_luhn_complete(rng, rng.choice(["34", "37"]), 15), [4, 6, 5], " ")
    return _luhn_complete(rng, "6011", 16)


def _iban_with_check(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


def iban(rng: random.Random) -> str:
    country, size, banks = rng.choice([("DE", 18, [""]), ("GB", 14, ["WEST", "NWBK", "BARC"]), ("NL", 10, ["ABNA", "RABO"]), ("CH", 17, [""])])
    value = _iban_with_check(country, rng.choice(banks) + _digits(rng, size))
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.6 else value


def _not_iban(rng: random.Random) -> str:
    while True:
        value = f"DE{rng.randint(10, 99)} {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 4)} {_digits(rng, 2)}"
        if not stdnum_iban.is_valid(value):
            return value


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            sep = "-" if rng.random() < 0.85 else ""  # nine bare digits: an SSN only next to the word
            return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"{rng.choice([203, 198, 34, 52, 81, 151])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(4)]
    return rng.choice([f"2001:db8:{groups[0]}::{groups[1]}", "2a00:1450:" + ":".join(groups) + ":1:2"])


def secret(rng: random.Random) -> str:
    kind = rng.randrange(9)
    mixed = string.ascii_letters + string.digits
    if kind == 0:
        return "sk-proj-" + _alnum(rng, 12) + _digits(rng, 4) + _alnum(rng, 24)
    if kind == 1:
        return "sk-ant-api03-" + _alnum(rng, 60, mixed + "-_") + "AA"
    if kind == 2:
        return "ghp_" + _alnum(rng, 36)
    if kind == 3:
        return "AKIA" + _alnum(rng, 16, string.ascii_uppercase + string.digits)
    if kind == 4:
        return f"xoxb-{_digits(rng, 12)}-{_digits(rng, 13)}-{_alnum(rng, 24)}"
    if kind == 5:
        return "sk_live_" + _alnum(rng, 24)
    if kind == 6:
        return "hf_" + _alnum(rng, 34)
    if kind == 7:
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps({"sub": _digits(rng, 8)}).encode()).rstrip(b"=").decode()
        return f"{header}.{payload}.{_alnum(rng, 43, mixed + '-_')}"
    return _alnum(rng, 6) + rng.choice("!#%^*") + _digits(rng, 3) + _alnum(rng, 5)  # a password (assigned)


# -- near-misses (never PII) --------------------------------------------------------------------

NEAR_MISSES: list[Callable[[random.Random], str]] = [
    lambda r: f"Order ORD-{r.randint(2019, 2025)}-{_digits(r, 6)} shipped at 2024-0{r.randint(1, 9)}-1{r.randint(0, 9)}T{r.randint(10, 23)}:{r.randint(10, 59)}:00Z.",
    lambda r: f"Request {_alnum(r, 8, '0123456789abcdef')}-{_alnum(r, 4, '0123456789abcdef')}-4{_alnum(r, 3, '0123456789abcdef')}-a{_alnum(r, 3, '0123456789abcdef')}-{_alnum(r, 12, '0123456789abcdef')} timed out after {r.randint(2, 60)} s.",
    lambda r: f"Commit {_alnum(r, 40, '0123456789abcdef')} (short {_alnum(r, 7, '0123456789abcdef')}) introduced the regression in build {r.randint(100, 9999)}.",
    lambda r: f"Deployed version {r.randint(1, 12)}.{r.randint(0, 30)}.{r.randint(0, 9)} and release {r.randint(1, 12)}.0.{r.randint(10000, 29999)}.{r.randint(100, 9999)} on 2024-1{r.randint(0, 2)}-{r.randint(10, 28)}.",
    lambda r: f"Total ${r.randint(1, 9)},{_digits(r, 3)}.{_digits(r, 2)} (EUR {r.randint(1, 9)}.{_digits(r, 3)},00), invoice INV-{_digits(r, 8)}.",
    lambda r: f"Ticket #{r.randint(2, 9)}{_digits(r, 9)} and tracking number 1Z{_alnum(r, 6, string.ascii_uppercase + string.digits)}{_digits(r, 10)} were updated.",
    lambda r: f"Epoch {r.randint(1600000000000, 1799999999999)} ms, {r.randint(1600000000, 1799999999)} s; latency p95 {r.randint(200, 2000)} ms.",
    lambda r: f"Card on file {_group(_luhn_complete(r, '4', 16, valid=False), [4, 4, 4, 4], ' ')} was declined (failed the checksum).",
    lambda r: f"Account {_not_iban(r)} is not an IBAN we recognise.",
    lambda r: f"SSN field showed {r.choice(['000', '666', '9' + _digits(r, 2)])}-{_digits(r, 2)}-{_digits(r, 4)}, which was never issued.",
    lambda r: f"Call 555-01{_digits(r, 2)} or 123-456-{_digits(r, 4)}; extension {r.randint(1000, 9999)}, SKU {_digits(r, 7)}.",
    lambda r: f"Running on 127.0.0.1:{r.randint(1024, 65535)}, version {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}, clock 12:{r.randint(10, 59)}:{r.randint(10, 59)}.",
    lambda r: f"Use std::vector<int> v; slice a[1::2]; MAC 00:1a:2b:{_alnum(r, 2, '0123456789abcdef')}:4d:5e.",
    lambda r: f"Image icon@2x.png, package lodash@4.17.{r.randint(10, 21)}, scaler task-sk-learn-compatible-scaler.",
    lambda r: "Set api_key: <your-api-key> and password: ******** in the config, then restart.",
    lambda r: f"Coordinates {r.randint(10, 60)}.{_digits(r, 4)}, {r.randint(1, 9)}.{_digits(r, 4)}; ISBN 978-3-16-148410-0; resolution 1920x1080.",
    lambda r: f"max_tokens={r.choice([256, 1024, 4096])}, temperature=0.{r.randint(0, 9)}, sort code {_digits(r, 2)}-{_digits(r, 2)}-{_digits(r, 2)}.",
    lambda r: f"sha256:{_alnum(r, 64, '0123456789abcdef')} was pulled at 2024-05-07 09:{r.randint(10, 59)}:00.",
    lambda r: f"Join the Zoom meeting, meeting ID {r.randint(810, 899)} {_digits(r, 4)} {_digits(r, 4)}, passcode {_digits(r, 6)}.",
    lambda r: f"Customer id {r.randint(2, 9)}{_digits(r, 9)} asked about order number {_digits(r, 10)}.",
    lambda r: f"The header eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.{_alnum(r, 16)} has no alg, so it is not a JWT.",
    lambda r: f"Embedded image data:image/png;base64,iVBORw0KGgo{_alnum(r, 40, string.ascii_letters + string.digits + '+/')}= in the prompt.",
    lambda r: f"Build {r.randint(2019, 2025)}.{r.randint(1, 12)}.{r.randint(1, 28)}.{_digits(r, 4)} passed {r.randint(100, 999)} tests in {r.randint(1, 9)}.{_digits(r, 2)} s.",
]

_VALUES: dict[str, Callable[[random.Random], str]] = {
    "email": email, "phone": phone, "card": card, "iban": iban, "ssn": ssn, "ip": ip, "secret": secret,
}  # fmt: skip
# How each kind is introduced in prose; `{}` is the value.
_CONTEXT = {
    "email": ["You can reach me at {}.", "Please send the invoice to {} instead.", "cc: {}"],
    "phone": ["Call me on {} after 5pm.", "My mobile is {}.", "Our office line: {}", "cell: {}"],
    "card": ["Charge my card {} for the renewal.", "The card number is {}, exp 12/27."],
    "iban": ["Refunds go to IBAN {} please.", "Wire it to {}."],
    "ssn": ["My SSN is {} for the tax form.", "social security number {}", "SSN: {}"],
    "ip": ["The request came from {} and was blocked.", "Our gateway at {} rejected the call."],
    "secret": ["I pasted our key by mistake: {}", "export OPENAI_API_KEY={}", "password: {}", "Authorization: Bearer {}",
               '{"api_key": "{}"}'],
}


def _segments(rng: random.Random, positive: bool) -> list[tuple[str, str | None]]:
    """The document as (text, kind or None) pieces: sentences, each followed by a space or newline."""
    sentences: list[list[tuple[str, str | None]]] = []
    size = rng.randint(500, 1400)
    while sum(len(t) for sentence in sentences for t, _ in sentence) < size:
        sentences.append([(rng.choice(_FILLER) if rng.random() < 0.5 else rng.choice(NEAR_MISSES)(rng), None)])
    for kind in rng.sample(sorted(_VALUES), rng.randint(1, 4)) if positive else []:
        value = _VALUES[kind](rng)
        context = rng.choice(_CONTEXT[kind])
        if kind == "secret" and not value.startswith(("sk", "gh", "AK", "xo", "hf", "ey")):
            context = rng.choice(["password: {}", "db password={} (temporary)"])  # a bare password is just a word
        before, _, after = context.partition("{}")
        sentences.insert(rng.randrange(len(sentences) + 1), [(before, None), (value, kind), (after, None)])
    pieces: list[tuple[str, str | None]] = []
    for sentence in sentences:
        pieces += sentence + [(rng.choice([" ", " ", "\n"]), None)]
    return pieces


def _render(pieces: list[tuple[str, str | None]], style: str) -> tuple[str, tuple[Label, ...]]:
    escape = (lambda s: json.dumps(s)[1:-1]) if style in ("json", "tool") else (lambda s: s)
    head, tail = {
        "json": ('[{"role": "user", "parts": [{"type": "text", "content": "', '"}]}]'),
        "tool": ('{"name": "create_ticket", "arguments": {"customer_note": "', '", "priority": "high"}}'),
    }.get(style, ("", ""))
    out, labels, pos = [head], [], len(head)
    for text, kind in pieces:
        text = escape(text)
        if kind:
            labels.append((pos, pos + len(text), kind))
        out.append(text)
        pos += len(text)
    out.append(tail)
    return "".join(out), tuple(labels)


def generate(seed: int = 20240607, docs: int = 1200, positive_share: float = 0.5) -> list[Doc]:
    rng = random.Random(seed)
    corpus = []
    for _ in range(docs):
        style = rng.choice(["prose", "prose", "json", "json", "tool", "log", "config"])
        pieces = _segments(rng, rng.random() < positive_share)
        if style == "log":
            pieces = [(f"2024-05-07 09:{rng.randint(10, 59)}:{rng.randint(10, 59)},{_digits(rng, 3)} INFO worker: ", None)] + pieces
        elif style == "config":
            pieces = [("# pasted from .env\nLOG_LEVEL=debug\nREGION=eu-west-1\n", None)] + pieces
        text, labels = _render(pieces, style)
        corpus.append(Doc(text, labels, style))
    return corpus
