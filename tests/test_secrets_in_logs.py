"""Secrets never reach a log line or an error body: a role started with a Kafka SASL password, a
Redis URL with a password, a PII hash key and an admin key in its settings, whose broker and Redis
both fail, logs and answers `/ready` without any of them (while saying what fails)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from llmscope.broker import free_port

SECRETS = {
    "LLMSCOPE_KAFKA_SASL_PASSWORD": "kafka-pw-6f1d2c",
    "LLMSCOPE_PII_HASH_KEY": "pii-key-93be01",
    "LLMSCOPE_ADMIN_KEY": "admin-key-5a7c44",
}
REDIS_PASSWORD = "redis-pw-0c8e7a"


def test_a_role_with_failing_dependencies_never_logs_or_answers_its_secrets(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens: the broker and Redis both fail
    port = free_port()
    env = {
        **os.environ, **SECRETS,
        "LLMSCOPE_DATA_DIR": str(tmp_path / "data"), "LLMSCOPE_INGEST_HOST": "127.0.0.1", "LLMSCOPE_INGEST_PORT": str(port),
        "LLMSCOPE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}", "LLMSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LLMSCOPE_KAFKA_SASL_USERNAME": "llmscope", "LLMSCOPE_PRODUCE_TIMEOUT_SECONDS": "1",
        "LLMSCOPE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed}/0",
        "LLMSCOPE_LOG_LEVEL": "DEBUG", "LLMSCOPE_LOG_FORMAT": "json",
    }  # fmt: skip
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "llmscope.cli", "ingest"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 30, None
        while ready is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None, log.read_text()[-3000:]
        assert ready.status_code == 503 and "broker" in ready.json()["errors"], ready.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    text = log.read_text()
    for secret in (*SECRETS.values(), REDIS_PASSWORD):
        assert secret not in text, f"{secret} in the log"
        assert secret not in ready.text, f"{secret} in /ready"
    # What fails is said (so the secrets had every chance to appear): the settings, Kafka, Redis.
    assert '"message": "settings: Settings(' in text and "redis://:[redacted]@" in text
    assert "Kafka not available at start" in text and "key invalidation (Redis)" in text
