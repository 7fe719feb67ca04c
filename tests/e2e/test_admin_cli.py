"""`llmscope tenants …` and `llmscope keys …` against a running `llmscope up --admin-key`: the CLI
reaches the admin API with the key `up` saved, and what it does takes effect on the running server
(ingest included: one key resolver serves both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up
from tests.otlp_factory import llm_span, request_of


@pytest.fixture(scope="module")
def admin_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    running = start_up(tmp_path_factory.mktemp("admin-up"), "--admin-key")
    yield running
    stop_up(running)


def _cli(up: UpProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSCOPE_")}
    env["LLMSCOPE_ADMIN_URL"] = up.query_url
    data_dir = str(Path(up.log).parent)  # `up` saved its admin key there
    return subprocess.run(
        [sys.executable, "-m", "llmscope.cli", *args, "--data-dir", data_dir], env=env, capture_output=True, text=True, timeout=60
    )


def _data(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _export(up: UpProcess, key: str) -> int:
    body = request_of([llm_span()]).SerializeToString()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"}
    return httpx.post(f"{up.ingest_url}/v1/traces", content=body, headers=headers, timeout=30).status_code


def test_the_cli_manages_tenants_and_keys_on_a_running_up(admin_up: UpProcess) -> None:
    created = _data(_cli(admin_up, "tenants", "create", "team-a", "--name", "Team A"))
    assert created == {**created, "tenant_id": "team-a", "name": "Team A", "disabled": False}
    made = _data(_cli(admin_up, "keys", "create", "--tenant", "team-a", "--name", "svc", "--scopes", "ingest,read"))
    assert isinstance(made, dict) and made["key"].startswith("lls_")
    assert _export(admin_up, made["key"]) == 200
    listed = _data(_cli(admin_up, "keys", "list", "--tenant", "team-a"))
    assert isinstance(listed, list) and [k["key_id"] for k in listed] == [made["key_id"]] and "key" not in listed[0]

    rotated = _data(_cli(admin_up, "keys", "rotate", made["key_id"], "--grace-seconds", "600"))
    assert isinstance(rotated, dict) and _export(admin_up, rotated["new"]["key"]) == 200
    assert _export(admin_up, made["key"]) == 200  # within its grace period

    _data(_cli(admin_up, "keys", "revoke", made["key_id"]))
    assert _export(admin_up, made["key"]) == 401  # at once: the admin API and ingest share the resolver
    _data(_cli(admin_up, "tenants", "disable", "team-a"))
    assert _export(admin_up, rotated["new"]["key"]) == 401
    _data(_cli(admin_up, "tenants", "rename", "team-a", "Team Alpha"))
    tenants = _data(_cli(admin_up, "tenants", "list"))
    assert isinstance(tenants, list) and {"tenant_id": "team-a", "name": "Team Alpha"}.items() <= next(
        t for t in tenants if t["tenant_id"] == "team-a"
    ).items()

    refused = _cli(admin_up, "tenants", "create", "team-a")
    assert refused.returncode == 1 and "exists" in refused.stderr
    wrong = _cli(admin_up, "keys", "list", "--admin-key", admin_up.key)  # the dev key has no admin scope
    assert wrong.returncode == 1 and "403" in wrong.stderr and admin_up.key not in wrong.stderr
