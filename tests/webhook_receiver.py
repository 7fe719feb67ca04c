"""A webhook receiver on 127.0.0.1 for tests: records every request and verifies its signature with
the reference `standardwebhooks` library, answering as the test tells it to."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any  # the payload standardwebhooks returned, or the exception it raised


@dataclass
class Receiver:
    """A webhook receiver: answers with `reply(n)` for the n-th request (0-based) and records each."""

    server: ThreadingHTTPServer
    secrets: list[str]
    reply: Callable[[int], Reply] = lambda n: (204, {}, b"")
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # ends slow answers at teardown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def verify(self, body: bytes, headers: dict[str, str]) -> Any:
        errors = []
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(body, headers)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)
        return errors[0]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            n = len(receiver.received)
            receiver.received.append(Received(self.path, headers, body, receiver.verify(body, headers)))
            status, extra, payload = receiver.reply(n)
            if status == 0:  # stall: answer nothing until the test ends
                receiver.release.wait(10)
                return
            self.send_response(status)
            for k, v in {"content-length": str(len(payload)), **extra}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST  # a followed redirect would show up as a GET

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve_receiver(secrets: list[str], reply: Callable[[int], Reply] | None = None) -> Iterator[Receiver]:
    """A receiver verifying with `secrets` (mutable: add one when an endpoint's secret is known)."""
    rec = Receiver(server=ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler), secrets=secrets)
    if reply is not None:
        rec.reply = reply
    rec.server.RequestHandlerClass = _handler(rec)
    rec.server.daemon_threads = True
    thread = threading.Thread(target=rec.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release.set()
        rec.server.shutdown()
        rec.server.server_close()
        thread.join(5)
