"""The README's OpenTelemetry snippet, run as written (a separate Python process configured only by
the two variables `llmscope up` prints), lands in the query API: it sets the global provider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import UpProcess, wait_for

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippet() -> str:
    section = README.read_text().split("## Sending spans", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under 'Sending spans'"
    return match.group(1)


def test_readme_otel_snippet_sets_the_global_provider_and_its_spans_arrive(up: UpProcess) -> None:
    code = _snippet()
    assert "trace.set_tracer_provider(provider)" in code
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": up.ingest_url,
           "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{up.key}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    def found() -> dict | None:
        r = httpx.get(f"{up.query_url}/api/v1/traces", params={"service": "my-llm-app"}, headers=up.auth())
        return r.json()["data"][0] if r.json()["data"] else None

    trace = wait_for(found, timeout=30)
    assert trace["root_span_name"] == "chat gpt-4o" and trace["input_tokens"] == 12 and trace["output_tokens"] == 3
