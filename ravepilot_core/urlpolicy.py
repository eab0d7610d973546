"""Which webhook URLs RavePilot may call: https only, never into a private network.

Checked on the literal host and on every address it resolves to, at registration and again at
delivery time (DNS can change between the two).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ravepilot_core.context import Resolver
from ravepilot_core.errors import InvalidRequest

__all__ = ["check_webhook_url", "is_public_address"]

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def is_public_address(address: str) -> bool:
    """Return whether ``address`` is a globally routable unicast IP address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


async def check_webhook_url(url: str, *, resolver: Resolver, allow_private: bool) -> str:
    """Return ``url`` if RavePilot may deliver to it, else raise InvalidRequest saying why."""
    if len(url) > 2048:
        raise InvalidRequest("url must be at most 2048 characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise InvalidRequest(f"url {url!r} is not a valid URL") from None
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes or not host:
        raise InvalidRequest(f"url must be an https:// URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise InvalidRequest("url must not contain credentials; authenticate with the signature")
    if allow_private:
        return url
    if host.rstrip(".").lower() in _LOCAL_NAMES or host.endswith(".localhost"):
        raise InvalidRequest("url must not point at localhost")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(host)
        except OSError as exc:
            raise InvalidRequest(
                f"url host {host!r} does not resolve ({exc}); check the URL"
            ) from None
        if not addresses:
            raise InvalidRequest(f"url host {host!r} does not resolve; check the URL")
    for address in addresses:
        if not is_public_address(address):
            raise InvalidRequest(
                f"url must not point at a private, loopback, link-local, reserved or multicast "
                f"address ({host} is {address})"
            )
    return url
