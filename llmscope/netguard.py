"""Where outbound webhooks may connect: the SSRF guard.

Tenants choose webhook URLs, and the worker that sends to them sits inside our network next to
ClickHouse, Redis, Kafka and the cloud's metadata service (169.254.169.254). So a URL is checked
twice:

1. When an endpoint is created or changed: `check_url_syntax` (in the endpoint schema) refuses
   other schemes than http(s), credentials in the URL, and ambiguous spellings (whitespace,
   control characters, backslashes); then the API awaits `vet_url`, which resolves the host and
   checks every address it resolves to, so a mistake is a 400 at once.
2. On every delivery attempt (streams/webhooks/transport.py), because DNS answers change: a name
   that was public at creation may resolve to 127.0.0.1 later (DNS rebinding). The transport
   resolves the name once, checks every address, and connects to an address it checked, so no
   second resolution can slip in between the check and the connection.

An address is refused unless it is globally routable unicast: unspecified, loopback, link-local,
multicast, private, reserved, shared (100.64/10), documentation and other special-purpose ranges
are all refused. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
IPv4-compatible `::a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`, Teredo) are judged by the
IPv4 address they carry. Host spellings such as `2130706433`, `0x7f.1` or `0177.0.0.1` are never
interpreted here: the resolver turns them into addresses, and the addresses are checked.

`allow_private=True` (LLMSCOPE_WEBHOOK_ALLOW_PRIVATE, on in `up`, whose receiver is often on the
same machine) lets any address through; the scheme and credentials checks stay.

Limits: the guard judges addresses, not intent. A public address that forwards to an internal
one (an open proxy, a tenant's own tunnel) is allowed. Ports are not restricted. An outbound
proxy (smokescreen or an egress firewall) is the stronger control where one exists; this guard
is the one that travels with the code.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmscope.errors import BadRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_URL_LENGTH = 2048
_BRACKETED = re.compile(r"^\[[0-9A-Fa-f:.]+\](:\d*)?$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALLOW_HINT = "webhooks may only reach public addresses (LLMSCOPE_WEBHOOK_ALLOW_PRIVATE=true allows others)"


class BlockedDestination(BadRequest):
    """The URL or one of its addresses is not allowed as a webhook destination."""

    code = "blocked_destination"


class UnresolvedHost(BadRequest):
    """The host has no address now: a 400 when an endpoint is created, a retry when delivering."""

    code = "unresolved_host"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # lowercase, IPv6 without brackets
    port: int


def check_url_syntax(url: str) -> Target:
    """The URL's scheme, host and port, or BlockedDestination saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise BlockedDestination(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise BlockedDestination("the URL must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise BlockedDestination("the URL cannot be parsed (a bracketed IPv6 address is not closed?)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedDestination(f"the URL's scheme must be http or https, not {scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise BlockedDestination("the URL must not contain credentials (user:password@); "
                                 "receivers verify the webhook-signature header instead")
    host = parts.hostname
    if not host:
        raise BlockedDestination("the URL has no host")
    if "%" in host or ("[" in parts.netloc and not _BRACKETED.match(parts.netloc)):
        raise BlockedDestination("the URL's host must be a name, an IPv4 address or a bracketed IPv6 address "
                                 "(no percent-encoding, no zone)")
    try:
        port = parts.port
    except ValueError:
        raise BlockedDestination("the URL's port is not a number from 1 to 65535") from None
    if port == 0:
        raise BlockedDestination("the URL's port is not a number from 1 to 65535")
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


def _carried_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if 1 < int(address) < 2**32:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(int(address))
    return None


def refusal(address: Address) -> str | None:
    """Why the address is not a public destination ('a loopback address'), or None if it is."""
    ip = _carried_ipv4(address) or address
    for kind, test in (("an unspecified", ip.is_unspecified), ("a loopback", ip.is_loopback),
                       ("a link-local", ip.is_link_local), ("a multicast", ip.is_multicast),
                       ("a private", ip.is_private), ("a reserved", ip.is_reserved),
                       ("a site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
                       ("a non-public", not ip.is_global)):
        if test:
            return f"{kind} address"
    return None


def parse_address(text: str) -> Address:
    """An address as a resolver returns it ('fe80::1%eth0' keeps its zone)."""
    return ipaddress.ip_address(text)


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> list[Address]:
    """All of `host`'s addresses if every one may be reached; BlockedDestination names the first
    that may not. All, not any: which address a connection uses is not ours to predict."""
    parsed = [parse_address(a) for a in dict.fromkeys(addresses)]
    if not parsed:
        raise UnresolvedHost(f"{host} has no address")
    if not allow_private:
        for address in parsed:
            reason = refusal(address)
            if reason:
                where = f"{host} is" if _literal(host) == address else f"{host} resolves to {address},"
                raise BlockedDestination(f"{where} {reason}: {_ALLOW_HINT}")
    return parsed


def _literal(host: str) -> Address | None:
    try:
        return parse_address(host)
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses in the system's preference order (getaddrinfo, off the event loop).
    An IP literal comes back as itself, a name through DNS and /etc/hosts."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvedHost(f"{host} cannot be resolved: {exc}") from None
    return [str(info[4][0]) for info in infos]


async def vet_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """The check an endpoint passes when created or changed: syntax, then every address."""
    target = check_url_syntax(url)
    check_addresses(target.host, await resolver(target.host, target.port), allow_private=allow_private)
    return target
