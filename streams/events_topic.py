"""Sending a notification (an alert transition, a budget threshold) to the events topic, where the
webhook agent picks it up: sent at once and awaited, so the caller records it as sent only once
the broker has it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust

from llmscope.settings import Settings
from schemas.notifications import Notification

Send = Callable[[Notification], Awaitable[None]]


def events_sender(app: faust.App, settings: Settings) -> Send:
    topic = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")

    async def send(note: Notification) -> None:
        await topic.maybe_declare()  # once: with the settings' partitions, not the broker's default
        sent = await topic.send(key=note.key(), value=note.to_bytes(), force=True)  # force: not buffered
        await sent

    return send
