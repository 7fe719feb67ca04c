"""A role whose store cannot be reached at start says so in one line and exits non-zero (a
supervisor restarts it), instead of a traceback; a password in the store's URL is not printed."""

from __future__ import annotations

import os
import subprocess
import sys

from llmscope.broker import free_port


def test_ingest_without_its_clickhouse_server_exits_with_one_line_naming_it() -> None:
    port = free_port()  # nothing listens there
    env = {**os.environ, "LLMSCOPE_CLICKHOUSE_URL": f"http://llmscope:s3cret-pw@127.0.0.1:{port}",
           "LLMSCOPE_INGEST_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "llmscope.cli", "ingest"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"llmscope ingest: cannot connect to ClickHouse at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret-pw" not in done.stderr + done.stdout
