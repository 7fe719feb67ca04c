"""TLS for the tests' plain-TCP servers: a certificate authority made per session (trustme) and a
small TLS-terminating proxy that puts it in front of tansu or Redis, which speak plain TCP only.

The proxy runs its own event loop on a thread, so tests on any loop (or subprocesses) use it alike;
it copies bytes both ways and closes both sides when either ends."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from llmscope.broker import free_port


@dataclass(frozen=True)
class Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost, as PEM files; a client
    certificate signed by the same CA; and a second CA that signed nothing of these."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path
    other_ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_pki(directory: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@llmscope.test")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "server.pem": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "server-key.pem": server.private_key_pem.bytes(),
        "client.pem": b"".join(blob.bytes() for blob in client.cert_chain_pems),
        "client-key.pem": client.private_key_pem.bytes(),
        "other-ca.pem": other.cert_pem.bytes(),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    d = directory
    return Pki(ca, d / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem", d / "client-key.pem", d / "other-ca.pem")


class TlsProxy:
    """Listens with TLS on 127.0.0.1:`port` and forwards each connection, decrypted, to `upstream`."""

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext, port: int | None = None) -> None:
        self.upstream, self.context = upstream, context
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tls-proxy-{self.port}")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TlsProxy:
        self._thread.start()
        if not self._started.wait(5):
            raise RuntimeError("TLS proxy did not start")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self.context)
        )
        self._started.set()
        self._loop.run_forever()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            self._connections.discard(task)
            return
        try:
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            for writer in (client_writer, upstream_writer):
                with contextlib.suppress(Exception):
                    writer.close()
            self._connections.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def tls_proxy(upstream: tuple[str, int], context: ssl.SSLContext, port: int | None = None) -> Iterator[TlsProxy]:
    proxy = TlsProxy(upstream, context, port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
