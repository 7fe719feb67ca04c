"""Passwords inside URLs (redis://:pw@host, https://user:pw@clickhouse:8443) replaced by
`[redacted]`: for log lines (llmscope/logs.py), `/ready` errors (llmscope/http.py) and the
settings' repr, which all may show a configured URL or an error quoting one."""

from __future__ import annotations

import re

URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")
URL_PASSWORD_REPLACEMENT = r"\1[redacted]@"


def redact_url(text: str) -> str:
    return URL_PASSWORD.sub(URL_PASSWORD_REPLACEMENT, text)
