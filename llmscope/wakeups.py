"""Wake-ups within one process: a writer tells the pollers here that it stored what they look for.

A leader's poll waits a while between looks at the store once it keeps finding nothing
(streams/pacing.py). A write made in the same process wakes it at once (new outbox rows notify in
schemas/webhook_rows.py, whoever inserts them); in `up` the query API and the worker are one
process, so a test webhook the API queues is sent within the poll interval.
Writes from other processes are not seen here: the poll finds them at its next look, so a
wake-up only ever shortens a wait. Listeners may be called from any thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

WEBHOOK_OUTBOX = "webhook outbox"  # new rows in webhook_deliveries, due at once

_listeners: defaultdict[str, list[Callable[[], None]]] = defaultdict(list)


def listen(subject: str, wake: Callable[[], None]) -> Callable[[], None]:
    """Call `wake` after each write of `subject` in this process; returns what stops it (once or more)."""
    _listeners[subject].append(wake)

    def stop() -> None:
        if wake in _listeners[subject]:
            _listeners[subject].remove(wake)

    return stop


def notify(subject: str) -> None:
    for wake in list(_listeners[subject]):
        wake()
