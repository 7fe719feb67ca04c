"""An httpx transport that connects only where the SSRF guard allows, to the address it checked.

For each request: resolve the URL's host once, check every address (llmscope/netguard.py), then
send the request to one of those addresses by rewriting the URL's host to the address. The
request keeps its `Host` header (httpx set it from the original URL), and TLS uses the original
name for SNI and certificate verification (httpcore's `sni_hostname` extension), so the receiver
sees a normal request for its name while no second DNS lookup can happen between check and
connect (DNS rebinding). Addresses are tried in the resolver's order when a connection is refused.

Connections are not kept alive: the pool would key them by address, so a later request for
another host name at the same address could reuse a TLS session verified for the first name.
Webhooks are few; one handshake per attempt is the cheaper guarantee.

Environment proxies are ignored (`trust_env=False`): through a proxy, the address checked would
not be the one connected to.
"""

from __future__ import annotations

import ssl

import httpx

from llmscope.netguard import Resolver, UnresolvedHost, check_addresses, system_resolver


class GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver,
                 verify: ssl.SSLContext | bool = True) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = httpx.AsyncHTTPTransport(
            verify=verify, trust_env=False, retries=0, limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii")  # IDNA-encoded, brackets stripped: what DNS and SNI take
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = check_addresses(host, await self._resolver(host, port), allow_private=self._allow_private)
        except UnresolvedHost as exc:
            raise httpx.ConnectError(exc.message, request=request) from None
        refused: httpx.ConnectError | None = None
        for address in addresses:
            request.url = url.copy_with(host=str(address))
            request.extensions = {**request.extensions, "sni_hostname": host}
            try:
                return await self._inner.handle_async_request(request)
            except httpx.ConnectError as exc:
                refused = exc
        assert refused is not None
        raise refused

    async def aclose(self) -> None:
        await self._inner.aclose()


def webhook_client(*, allow_private: bool, resolver: Resolver = system_resolver,
                   verify: ssl.SSLContext | bool = True, connect_timeout: float = 5.0,
                   read_timeout: float = 10.0) -> httpx.AsyncClient:
    """The one client the delivery loop keeps: guarded, no redirects, no environment proxies."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, resolver=resolver, verify=verify),
        follow_redirects=False, trust_env=False,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        headers={"user-agent": "LLMScope-Webhooks/1"},
    )
