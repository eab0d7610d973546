"""Which webhook URLs RavePilot may call: https only, never into a private network.

Checked on the literal host and on every address it resolves to, at registration and again at
delivery time (DNS can change between the two). The delivery-time check lives in
:mod:`ravepilot_core.safehttp`, which judges the very addresses it then connects to.

An address is judged by what a packet sent to it would reach: the IPv6 forms that carry an IPv4
address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96`` and
``64:ff9b:1::/48``, Teredo ``2001::/32``) are judged by the IPv4 address they embed, because a
dual-stack socket, a relay or a translator delivers them there.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ravepilot_core.context import Resolver
from ravepilot_core.errors import InvalidRequest

__all__ = ["check_webhook_url", "is_local_name", "is_public_address", "refusal_reason"]

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Explicit tables rather than ``is_global`` alone: Python 3.11's registry misses some of these
# (192.0.0.9, 192.88.99.0/24, fec0::/10, 3fff::/20, 5f00::/16 and, worst, every 6to4 address,
# 2002:7f00:1:: included, count as global there). ``is_global`` stays as a backstop below.
# The first match wins, so more specific networks come first.
_V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "an unspecified address"),
    (_V4("0.0.0.0/8"), "a 'this network' address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay anycast address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)

_V6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("::/96"), "a deprecated IPv4-compatible address"),
    (_V6("::ffff:0:0:0/96"), "an IPv4-translated (SIIT) address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001:2::/48"), "a benchmarking address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("2001::/23"), "an IETF protocol assignment address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("5f00::/16"), "an SRv6 segment identifier"),
    (_V6("fc00::/7"), "a unique local (private) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a deprecated site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
)

# IANA has allocated only 2000::/3 for global unicast; anything else is reserved, whatever the
# local ``ipaddress`` version thinks.
_V6_GLOBAL_UNICAST = _V6("2000::/3")

_NAT64_WELL_KNOWN = _V6("64:ff9b::/96")
_NAT64_LOCAL_USE = _V6("64:ff9b:1::/48")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")

# Bits 48-95 of a 64:ff9b:1::/48 address: zero in the /96 form, the only one we can judge (RFC
# 6052 puts the IPv4 address elsewhere for shorter prefixes, and we cannot know the local
# translator's prefix length).
_NAT64_LOCAL_MIDDLE = ((1 << 48) - 1) << 32


def _v4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    for network, what in _V4_REFUSED:
        if ip in network:
            return what
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """Return (form, embedded IPv4 addresses) for the IPv6 forms that carry IPv4 ones."""
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped address", [ip.ipv4_mapped]
    if ip in _NAT64_WELL_KNOWN:
        return "a NAT64 address", [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _NAT64_LOCAL_USE:
        return "a local-use NAT64 address", [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _SIX_TO_FOUR:
        assert ip.sixtofour is not None
        return "a 6to4 address", [ip.sixtofour]
    if ip in _TEREDO:
        assert ip.teredo is not None
        server, client = ip.teredo  # the client address comes back already de-obfuscated
        return "a Teredo address", [server, client]
    return None


def refusal_reason(address: str) -> str | None:
    """Say why RavePilot must not connect to ``address``, or return None if it may.

    Args:
        address: An IPv4 or IPv6 address (an IPv6 zone such as ``%eth0`` is ignored).

    Returns:
        None for a globally routable unicast address, else a sentence naming the address and
        its class, e.g. ``"127.0.0.1 is a loopback address"``.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        what = _v4_refusal(ip)
        return None if what is None else f"{address} is {what}"
    ip = ipaddress.IPv6Address(int(ip))  # drop the zone: it does not change where packets go
    embedded = _embedded_v4(ip)
    if embedded is not None:
        form, v4s = embedded
        if ip in _NAT64_LOCAL_USE and int(ip) & _NAT64_LOCAL_MIDDLE:
            return f"{address} is {form} not in the /96 form, so its IPv4 address is ambiguous"
        for v4 in v4s:
            what = _v4_refusal(v4)
            if what is not None:
                return f"{address} is {form} embedding {v4}, which is {what}"
        # A public embedded address is as reachable as the IPv4 one, which we would allow.
        return None
    for network, what in _V6_REFUSED:
        if ip in network:
            return f"{address} is {what}"
    if ip not in _V6_GLOBAL_UNICAST:
        return f"{address} is a reserved address (outside the global unicast range 2000::/3)"
    if not ip.is_global:
        return f"{address} is not a globally routable address"
    return None


def is_public_address(address: str) -> bool:
    """Return whether ``address`` is a globally routable unicast IP address.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    return refusal_reason(address) is None


def is_local_name(host: str) -> bool:
    """Return whether ``host`` names this machine whatever DNS says (``localhost`` and kin)."""
    name = host.rstrip(".").lower()
    return name in _LOCAL_NAMES or name.endswith(".localhost")


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
    if is_local_name(host):
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
        reason = refusal_reason(address)
        if reason is not None:
            where = reason if literal is not None else f"{host} resolves to {address}; {reason}"
            raise InvalidRequest(
                f"url must not point at a private, loopback, link-local, reserved or multicast "
                f"address ({where})"
            )
    return url
