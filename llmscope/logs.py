"""Log lines on stdout: one JSON object per line for collectors (time, level, logger, message,
request id, tenant, role), or text when a person watches a terminal; secrets masked in both.

The request id and tenant travel in context variables: set by the HTTP middleware and by
authentication, they reach every line the request causes, also in threads it hands work to
(asyncio.to_thread copies the context).
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from llmscope.auth import KEY_PREFIX
from llmscope.redaction import URL_PASSWORD, URL_PASSWORD_REPLACEMENT

request_id_var: ContextVar[str] = ContextVar("llmscope_request_id", default="")
tenant_var: ContextVar[str] = ContextVar("llmscope_tenant", default="")

# What must never reach a log line, whoever wrote the message (ours, a library's, an exception's):
# API keys (a key's 12-character prefix, its public name, stays), bearer tokens, passwords in URLs,
# webhook signing secrets, and `password=`/`secret:`-style pairs.
_SECRETS = (
    (re.compile("(" + re.escape(KEY_PREFIX) + r"[A-Za-z0-9]{8})[A-Za-z0-9]{12,}"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    (URL_PASSWORD, URL_PASSWORD_REPLACEMENT),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_[redacted]"),
    (re.compile(r"(?i)\b(password|passwd|secret|api_key|apikey)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}]+"), r"\1\2[redacted]"),
)


_CHATTY = ("faust", "mode", "aiokafka", "httpx")


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the request id, tenant and role to every record (an explicit `extra=` wins)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        if not getattr(record, "tenant", ""):
            record.tenant = tenant_var.get()
        record.role = self.role
        return True


class JsonLines(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message", "request_id", "tenant", "role"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, timezone.utc).isoformat()  # ISO 8601 in UTC

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextLines(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{k}={v}" for k in ("request_id", "tenant") if (v := getattr(record, k, ""))]
        if context:
            first, newline, rest = line.partition("\n")  # after the message, before a traceback
            line = f"{first} [{' '.join(context)}]{newline}{rest}"
        return redact(line)


def log_handler(stream: TextIO, as_json: bool, role: str) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if as_json else TextLines())
    handler.addFilter(ContextFilter(role))
    return handler


def configure_logging(
    level: str, log_format: Literal["auto", "json", "text"], role: str, stream: TextIO | None = None
) -> None:
    """Root logging for a role's process: one handler on `stream` (stdout by default); `auto` is
    text on a terminal."""
    stream = stream or sys.stdout
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = log_handler(stream, as_json, role)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The stream libraries narrate every start, stop and partition assignment at INFO (dozens of
    # lines per start), and httpx every request (each webhook attempt, whose outcome is kept in
    # the deliveries API and counted in the webhook metrics); their warnings and errors still come
    # through, and DEBUG shows everything.
    for chatty in _CHATTY:
        logging.getLogger(chatty).setLevel(level if logging.getLevelName(level) == logging.DEBUG else logging.WARNING)
