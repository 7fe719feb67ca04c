"""Body formats: `json` sends the event itself; `slack` sends `{"text": ...}`, which Slack incoming
webhooks (and Mattermost, Discord's /slack endpoints, Rocket.Chat) display as one message.

The Slack text is the event's one-line summary behind an emoji, with `&`, `<` and `>` escaped as
Slack asks (a rule named "<!channel>" must not ping a channel). Both formats are signed alike.
"""

from __future__ import annotations

import json

from schemas.alert_events import WebhookEvent, event_json
from schemas.webhooks import WebhookFormat

CONTENT_TYPE = "application/json"
_EMOJI = {"alert.firing": ":rotating_light:", "alert.resolved": ":white_check_mark:",
          "anomaly.opened": ":chart_with_upwards_trend:", "anomaly.closed": ":white_check_mark:",
          "webhook.test": ":wave:", "budget.threshold": ":moneybag:"}


def slack_text(event: WebhookEvent) -> str:
    line = " ".join(event.data.summary.split())
    escaped = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{_EMOJI[event.type]} {escaped}"


def render(event: WebhookEvent, fmt: WebhookFormat) -> bytes:
    """The body to send (and sign): render once and keep it, so every retry sends the same bytes."""
    if fmt == "slack":
        return json.dumps({"text": slack_text(event)}, ensure_ascii=False).encode()
    return event_json(event)
