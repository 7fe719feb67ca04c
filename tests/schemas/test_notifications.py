"""The events topic's message: a tenant's webhook event survives the trip; anything else is poison."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from schemas.alert_events import webhook_test_event
from schemas.messages import MalformedMessage
from schemas.notifications import Notification


def test_a_notification_round_trips_with_its_tenant_and_event() -> None:
    event = webhook_test_event("wh_1", datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc))
    note = Notification("acme", event)
    back = Notification.from_bytes(note.to_bytes())
    assert back.tenant_id == "acme"
    assert back.event == event
    assert note.key() == b"acme"


@pytest.mark.parametrize("value", [b"", b"[]", b'{"tenant_id": "", "event": {}}', b'{"tenant_id": "a"}',
                                   b'{"tenant_id": "a", "event": {"type": "nope"}}', b"\xff"])
def test_anything_else_is_a_malformed_message(value: bytes) -> None:
    with pytest.raises(MalformedMessage):
        Notification.from_bytes(value)
