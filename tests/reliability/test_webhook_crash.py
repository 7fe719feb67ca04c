"""kill -9 of `llmscope up` while a webhook delivery is retrying: the delivery waits in the outbox
(chDB, on disk), not in memory, so after the restart it is delivered, and once a receiver answered
2xx it is never sent again. The receiver verifies every request with `standardwebhooks`."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up
from tests.processes import descendants, gone
from tests.waiting import eventually
from tests.webhook_receiver import serve_receiver

pytestmark = pytest.mark.crash


async def _delivery(client: httpx.AsyncClient, up: UpProcess, headers: dict[str, str], endpoint_id: str,
                    event_id: str) -> dict | None:
    r = await client.get(f"{up.query_url}/api/v1/webhooks/{endpoint_id}/deliveries", headers=headers)
    return next((d for d in r.json()["data"] if d["event_id"] == event_id), None) if r.status_code == 200 else None


async def _delivered(client: httpx.AsyncClient, up: UpProcess, headers: dict[str, str], endpoint_id: str,
                     event_id: str) -> dict:
    async def check() -> dict | None:
        found = await _delivery(client, up, headers, endpoint_id, event_id)
        return found if found and found["status"] == "delivered" else None
    return await eventually(check, timeout=90)


async def test_a_delivery_retrying_when_up_is_killed_is_delivered_after_the_restart_and_never_after_its_2xx(
        tmp_path, monkeypatch) -> None:
    # Retries after 0.25 s, 1.5 s, 6 s, 30 s, …: the kill lands while the row waits for its 4th attempt.
    monkeypatch.setenv("LLMSCOPE_WEBHOOK_RETRY_DELAY_SCALE", "0.05")
    monkeypatch.setenv("LLMSCOPE_WEBHOOK_POLL_SECONDS", "0.2")
    answer = {"status": 503}
    up = start_up(tmp_path, "--admin-key")
    try:
        headers = {"authorization": f"Bearer {(tmp_path / 'admin-api-key').read_text().strip()}"}
        with serve_receiver([], reply=lambda n: (answer["status"], {}, b"")) as receiver:
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.post(f"{up.query_url}/api/v1/webhooks", json={"url": receiver.url}, headers=headers)
                assert r.status_code == 201, r.text  # a loopback receiver: `up` allows private destinations
                endpoint = r.json()["data"]
                receiver.secrets.append(endpoint["secret"])
                test = f"{up.query_url}/api/v1/webhooks/{endpoint['id']}/test"
                first = (await client.post(test, headers=headers)).json()["data"]["event_id"]

                async def waiting_for_its_fourth_attempt() -> bool:
                    found = await _delivery(client, up, headers, endpoint["id"], first)
                    return found is not None and found["status"] == "pending" and found["attempt_count"] == 3
                await eventually(waiting_for_its_fourth_attempt, timeout=60)

                family = descendants(up.process.pid)
                up.process.kill()
                up.process.wait(10)
                assert not gone(family), "the killed up left processes running"
                before_restart = len(receiver.received)
                answer["status"] = 200

                restarting = time.monotonic()
                up = start_up(tmp_path, "--admin-key")
                serving = time.monotonic()
                delivered = await _delivered(client, up, headers, endpoint["id"], first)
                print(f"\nup serving {serving - restarting:.1f} s after the restart; the retried webhook "
                      f"delivered {time.monotonic() - serving:.1f} s later")
                # A later event delivered too: the loop has run on since the first one's 200.
                second = (await client.post(f"{up.query_url}/api/v1/webhooks/{endpoint['id']}/test",
                                            headers=headers)).json()["data"]["event_id"]
                await _delivered(client, up, headers, endpoint["id"], second)
    finally:
        if up.process.poll() is None:
            stop_up(up)

    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    assert before_restart == 3 and ids[:before_restart] == [first] * before_restart
    # After the restart: the first event once more (answered 200), then only the second.
    assert ids[before_restart:] == [first, second], ids
    codes = [a["status_code"] for a in delivered["attempts"]]
    assert codes[-1] == 200 and set(codes[:-1]) == {503} and len(codes) == before_restart + 1
