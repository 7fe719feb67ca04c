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

from tests.conftest import UpProcess, start_up, stop_up, wait_for
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


def _post(up: UpProcess, key: str) -> httpx.Response:
    body = request_of([llm_span()]).SerializeToString()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"}
    return httpx.post(f"{up.ingest_url}/v1/traces", content=body, headers=headers, timeout=30)


def _export(up: UpProcess, key: str) -> int:
    return _post(up, key).status_code


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


def test_the_cli_sets_a_tenants_rate_limits_and_ingest_applies_them(admin_up: UpProcess) -> None:
    _data(_cli(admin_up, "tenants", "create", "team-l"))
    made = _data(_cli(admin_up, "keys", "create", "--tenant", "team-l", "--scopes", "ingest"))
    assert isinstance(made, dict) and _export(admin_up, made["key"]) == 200
    shown = _data(_cli(admin_up, "tenants", "limits", "team-l"))
    assert isinstance(shown, dict) and shown["own"] == []
    set_ = _data(_cli(admin_up, "tenants", "limits", "team-l", "--key-requests-per-second", "0.5", "--burst-seconds", "2"))
    assert isinstance(set_, dict) and (set_["key_requests_per_second"], set_["own"]) == (0.5, ["key_requests_per_second", "burst_seconds"])

    def applied() -> bool:  # `up`'s ingest re-reads the limits every 5 s
        r = _post(admin_up, made["key"])
        return r.status_code == 429 and '"key-requests";q=1;w=2' in r.headers["ratelimit-policy"]

    wait_for(applied, timeout=15.0, interval=0.2)
    reset = _data(_cli(admin_up, "tenants", "limits", "team-l", "--defaults"))
    assert isinstance(reset, dict) and reset["own"] == []
    refused = _cli(admin_up, "tenants", "limits", "team-l", "--burst-seconds", "-1")
    assert refused.returncode == 1 and "400" in refused.stderr
