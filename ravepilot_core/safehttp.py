"""The HTTP client webhooks are delivered with: it connects only where the URL policy allows.

The check and the connection use the same DNS answer. :class:`PolicyResolver` is the
connector's only resolver and hands aiohttp nothing but approved addresses, so there is no
window between "checked" and "connected" for a rebinding DNS server to use. What the resolver
cannot see (aiohttp skips it for IP-literal hosts, and redirects and proxies change the target)
is covered by :class:`TargetPolicy`, a client middleware that runs before every request,
redirect hops included.

A refused target surfaces from ``session.post(...)`` as :class:`aiohttp.ClientConnectorError`
whose ``os_error`` is a :class:`RefusedAddress`: exactly :class:`aiohttp.ClientConnectorDNSError`
when a resolved name was refused, a plain ``ClientConnectorError`` when the middleware refused a
literal IP, a localhost name, a scheme or a proxy. Classify with :func:`refusal_of` rather than
by the exception class, because a DNS failure is a ``ClientConnectorDNSError`` too.

Requires aiohttp >= 3.12 (client middlewares).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.connector import Connection
from yarl import URL

from ravepilot_core.context import Resolver
from ravepilot_core.urlpolicy import is_local_name, refusal_reason

__all__ = [
    "PeerRecordingResponse",
    "PolicyResolver",
    "RefusedAddress",
    "TargetPolicy",
    "check_target",
    "new_session",
    "peer_address",
    "refusal_of",
]

# Cached DNS answers were approved when they were cached, so caching is safe; a short TTL keeps
# deliveries close to what DNS says now without a lookup per request.
DNS_CACHE_SECONDS = 10

# The flags aiohttp's own resolvers report for numeric answers.
_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class RefusedAddress(OSError):
    """RavePilot must not connect to this target (the message names the address and why).

    An :class:`OSError` so that aiohttp treats a refusal from the resolver like any other
    connection failure and wraps it in a :class:`aiohttp.ClientConnectorError`.

    Attributes:
        host: The host (name or literal address) of the refused URL.
        reason: Why, e.g. ``"127.0.0.1 is a loopback address"``.
    """

    def __init__(self, host: str, reason: str) -> None:
        # errno None and the message as strerror: ClientConnectorError's str() shows strerror.
        super().__init__(None, f"refusing to connect to {host}: {reason}")
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.host, self.reason))


def refusal_of(exc: BaseException) -> RefusedAddress | None:
    """Return the :class:`RefusedAddress` behind an error from the session, if that was the cause.

    Args:
        exc: What ``session.post(...)`` (or any request on a :func:`new_session`) raised.

    Returns:
        The refusal when the policy stopped the request, None for any other failure.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RefusedAddress):
            return current
        if isinstance(current, aiohttp.ClientConnectorError):
            if isinstance(current.os_error, RefusedAddress):
                return current.os_error
        current = current.__cause__
    return None


class PolicyResolver(AbstractResolver):
    """An aiohttp resolver that returns only addresses the URL policy allows.

    If any address a host resolves to is refused, the whole host is refused: picking the good
    ones would let a hostile DNS answer mix a private address into a list aiohttp retries through.
    """

    def __init__(self, resolver: Resolver, *, allow_private: bool) -> None:
        """Wrap ``resolver``.

        Args:
            resolver: The core's injected host-to-addresses function (``ctx.resolver``).
            allow_private: Skip the address rules (``RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS``).
        """
        self._resolver = resolver
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and return its addresses if every one of them is allowed.

        Raises:
            RefusedAddress: ``host`` is a localhost name or resolves to a refused address.
            OSError: ``host`` does not resolve (aiohttp reports it as a DNS error).
        """
        if not self._allow_private and is_local_name(host):
            raise RefusedAddress(host, f"{host} is a localhost name")
        addresses = await self._resolver(host)
        results: list[ResolveResult] = []
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
                reason = None if self._allow_private else refusal_reason(address)
            except ValueError:
                raise RefusedAddress(host, f"{address!r} is not an IP address") from None
            if reason is not None:
                raise RefusedAddress(host, f"{host} resolves to {address}; {reason}")
            found = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, found):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": found,
                    "proto": 0,
                    "flags": _NUMERIC_FLAGS,
                }
            )
        if not results:
            # An empty list would trip an assertion inside aiohttp's connector.
            raise OSError(f"{host} has no usable address")
        return results

    async def close(self) -> None:
        """Nothing to release: the wrapped resolver belongs to the caller."""


@functools.lru_cache(maxsize=4096)
def _target_refusal(url: str, allow_private: bool) -> tuple[str, str] | None:
    """Return (host, reason) if ``url`` is refused before any DNS lookup, else None."""
    # Parsed with yarl, the parser aiohttp uses, so we judge the host aiohttp will connect to.
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return url, f"{url!r} is not a valid URL"
    host = parsed.raw_host or ""
    if parsed.scheme not in ("https", "http"):
        return host or url, f"the {parsed.scheme or 'missing'}:// scheme is not allowed"
    if not host:
        return url, f"{url!r} has no host"
    if allow_private:
        return None
    if is_local_name(host):
        return host, f"{host} is a localhost name"
    # The address is judged before the scheme: "a loopback address" is the more useful verdict.
    try:
        reason = refusal_reason(host)
    except ValueError:
        reason = None
        try:
            socket.inet_aton(host)
        except OSError:
            pass
        else:
            # "127.1", "2130706433", "0177.0.0.1": the C library reads these as IPv4 addresses.
            reason = f"{host} is a non-canonical IPv4 address"
    if reason is not None:
        return host, reason
    if parsed.scheme != "https":
        return host, "plain http:// is allowed only with RAVEPILOT_ALLOW_PRIVATE_WEBHOOKS"
    return None


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse what can be judged from ``url`` alone: scheme, literal IP host, localhost names.

    Hosts that need DNS are judged by :class:`PolicyResolver` when the connection is made.
    Cheap enough to call per request: the verdict is cached per URL.

    Raises:
        RefusedAddress: ``url`` must not be requested.
    """
    refusal = _target_refusal(url, allow_private)
    if refusal is not None:
        raise RefusedAddress(*refusal)


class TargetPolicy:
    """Client middleware that applies :func:`check_target` to every request, redirects included.

    It also refuses proxies: through a proxy the connector resolves the proxy's host, not the
    target's, so the policy could not see where the request goes.
    """

    def __init__(self, *, allow_private: bool) -> None:
        """Apply the rules of ``allow_private`` (see :func:`check_target`)."""
        self._allow_private = allow_private

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Refuse ``request`` or pass it on."""
        try:
            if request.proxy is not None:
                raise RefusedAddress(
                    request.url.raw_host or "", "webhooks are not delivered through a proxy"
                )
            check_target(str(request.url), allow_private=self._allow_private)
        except RefusedAddress as exc:
            # The same shape as a refusal from the resolver, so callers need one except clause;
            # a bare OSError here would reach them as a ClientOSError without os_error.
            raise aiohttp.ClientConnectorError(request.connection_key, exc) from exc
        return await handler(request)


class PeerRecordingResponse(aiohttp.ClientResponse):
    """A response that remembers the address it came from.

    aiohttp releases the connection as soon as the body has been received, which for a short or
    empty body happens before ``session.post()`` even returns; ``response.connection`` is None by
    then. So the peer is recorded when the response starts, while the connection is still ours.
    """

    peer: str | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        """Record the peer address, then read the status line and headers as usual."""
        transport = connection.transport
        peername = None if transport is None else transport.get_extra_info("peername")
        if peername:
            self.peer = str(peername[0])
        return await super().start(connection)


def peer_address(response: aiohttp.ClientResponse) -> str | None:
    """Return the IP address ``response`` came from (logged as the attempt's ``target_ip``).

    Reliable for responses from :func:`new_session`, whatever happened to the body. For other
    sessions it must be called before the body is read or released, and returns None if aiohttp
    already released the connection (a short body is released before ``post()`` returns).
    """
    if isinstance(response, PeerRecordingResponse) and response.peer is not None:
        return response.peer
    connection = response.connection
    transport = None if connection is None else connection.transport
    peername = None if transport is None else transport.get_extra_info("peername")
    return str(peername[0]) if peername else None


def new_session(
    *,
    resolver: Resolver,
    allow_private: bool,
    timeout: float = 10.0,
    limit: int = 0,
    user_agent: str,
    check_each_request: bool = True,
) -> aiohttp.ClientSession:
    """Return the keep-alive session webhooks are delivered with; close it when done.

    Do not pass ``middlewares=`` or ``proxy=`` to its requests: per-request middlewares replace
    the session's, which would drop :class:`TargetPolicy`, and proxies are refused.

    Args:
        resolver: The core's host-to-addresses function (``ctx.resolver``).
        allow_private: Lift the address rules and allow ``http://`` (development and tests).
        timeout: Seconds for a whole request, connecting to reading the body.
        limit: Most connections open at once; 0 for no limit.
        user_agent: The default ``User-Agent`` header.
        check_each_request: Run :class:`TargetPolicy` on every request and redirect hop. A
            caller that never follows redirects nor uses proxies, and calls
            :func:`check_target` itself (the webhook sender), saves the middleware's cost.

    Raises:
        RuntimeError: Called outside a running asyncio event loop.
    """
    asyncio.get_running_loop()  # aiohttp binds to the running loop; fail clearly without one
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(resolver, allow_private=allow_private),
        limit=limit,
        limit_per_host=0,
        ttl_dns_cache=DNS_CACHE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=True,
        middlewares=(TargetPolicy(allow_private=allow_private),) if check_each_request else (),
        response_class=PeerRecordingResponse,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": user_agent},
        # We do not decompress, so do not invite compressed replies.
        skip_auto_headers=("Accept-Encoding",),
        auto_decompress=False,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        # Environment proxies and .netrc credentials have no place in webhook delivery.
        trust_env=False,
    )
