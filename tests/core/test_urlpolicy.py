"""The webhook URL policy, and the HTTP client that enforces it at connect time.

The client tests use real aiohttp servers on 127.0.0.1 and an injected resolver that maps fake
names to addresses, so "where would this request land?" is answered by real sockets.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ravepilot_core.errors import InvalidRequest
from ravepilot_core.safehttp import (
    PolicyResolver,
    RefusedAddress,
    TargetPolicy,
    check_target,
    new_session,
    peer_address,
    refusal_of,
)
from ravepilot_core.urlpolicy import check_webhook_url, is_public_address, refusal_reason

HOOK_HOST = "hooks.example.test"
USER_AGENT = "RavePilot-Webhooks/test"

# --------------------------------------------------------------------------- is_public_address

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "2002:0808:0808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "64:ff9b::8.8.8.8",
    "64:ff9b:1::808:808",  # local-use NAT64, /96 form
    "2001:0:808:808:0:0:f7f7:f7f7",  # Teredo: server 8.8.8.8, client ~f7f7f7f7 = 8.8.8.8
    "::ffff:8.8.8.8",  # IPv4-mapped public
]

NOT_PUBLIC = [
    # (address, the class refusal_reason must name)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "'this network'"),
    ("192.0.0.1", "IETF protocol assignment"),
    ("192.0.0.9", "IETF protocol assignment"),  # is_global says True on 3.11
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("192.88.99.1", "6to4 relay anycast"),  # is_global says True on 3.11
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fec0::1", "site-local"),  # is_global says True on 3.11
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),  # is_global says True on 3.11
    ("2001:2::1", "benchmarking"),
    ("100::1", "discard-only"),
    ("5f00::1", "SRv6"),  # is_global says True on 3.11
    ("4000::1", "outside the global unicast range"),
    ("::808:808", "IPv4-compatible"),
    ("::ffff:0:808:808", "IPv4-translated"),
    # IPv4-mapped
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    # 6to4: the embedded address is in bits 16-48; is_global says all of 2002::/16 is global
    ("2002:7f00:1::1", "loopback"),
    ("2002:a00:1::", "private"),
    ("2002:a9fe:a9fe::1", "link-local"),
    ("2002:c000:201::1", "documentation"),
    # NAT64 well-known prefix: the embedded address is the last 32 bits
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a00:1", "private"),
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b::", "unspecified"),
    # NAT64 local-use prefix
    ("64:ff9b:1::7f00:1", "loopback"),
    ("64:ff9b:1::c0a8:101", "private"),
    ("64:ff9b:1:7f00:1::808:808", "not in the /96 form"),  # a /48 translator reads 127.0.0.1
    # Teredo: server in bits 32-64, client (inverted) in the last 32 bits; both must be public
    ("2001:0:7f00:1::f7f7:f7f7", "loopback"),  # server 127.0.0.1
    ("2001:0:808:808::80ff:fffe", "loopback"),  # client ~80fffffe = 127.0.0.1
    ("2001:0:808:808::f5ff:fffe", "private"),  # client ~f5fffffe = 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),  # RFC 4380's example, 192.0.2.45
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(address) is None
    assert is_public_address(address) is True


@pytest.mark.parametrize(("address", "kind"), NOT_PUBLIC)
def test_non_public_addresses_are_refused_and_the_reason_says_why(address: str, kind: str) -> None:
    assert is_public_address(address) is False
    reason = refusal_reason(address)
    assert reason is not None
    assert reason.startswith(f"{address} is ")
    assert kind in reason


def test_embedded_forms_name_the_embedded_address() -> None:
    assert refusal_reason("127.0.0.1") == "127.0.0.1 is a loopback address"
    assert refusal_reason("::ffff:127.0.0.1") == (
        "::ffff:127.0.0.1 is an IPv4-mapped address embedding 127.0.0.1, "
        "which is a loopback address"
    )
    assert refusal_reason("2002:7f00:1::1") == (
        "2002:7f00:1::1 is a 6to4 address embedding 127.0.0.1, which is a loopback address"
    )
    assert refusal_reason("64:ff9b::a00:1") == (
        "64:ff9b::a00:1 is a NAT64 address embedding 10.0.0.1, which is a private address"
    )


def test_every_non_public_v4_address_is_refused_in_every_v6_wrapping() -> None:
    for address, _ in NOT_PUBLIC:
        v4 = ipaddress.ip_address(address.split("%")[0])
        if v4.version != 4:
            continue
        n = int(v4)
        wrappings = [
            f"::ffff:{v4}",
            str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)),
            str(ipaddress.IPv6Address((0x64FF9B << 96) | n)),
            str(ipaddress.IPv6Address((0x64FF9B0001 << 80) | n)),
            # Teredo with a public server and this client, and the other way round
            str(ipaddress.IPv6Address((0x20010000 << 96) | (0x08080808 << 64) | (n ^ 0xFFFFFFFF))),
            str(ipaddress.IPv6Address((0x20010000 << 96) | (n << 64) | 0xF7F7F7F7)),
        ]
        for wrapped in wrappings:
            assert not is_public_address(wrapped), (address, wrapped)


def test_a_non_address_is_an_error() -> None:
    with pytest.raises(ValueError):
        is_public_address("example.com")
    with pytest.raises(ValueError):
        refusal_reason("127.1")


# --------------------------------------------------------------------------- check_webhook_url


async def fake_dns(host: str) -> list[str]:
    table = {
        "ok.example.com": ["93.184.216.34"],
        "v6.example.com": ["2606:4700:4700::1111"],
        "mixed.example.com": ["93.184.216.34", "10.0.0.1"],
        "mapped.example.com": ["::ffff:127.0.0.1"],
        "nat64.example.com": ["64:ff9b::a9fe:a9fe"],
        "empty.example.com": [],
    }
    if host not in table:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return table[host]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url", ["https://ok.example.com/hook", "https://v6.example.com/", "https://8.8.8.8/"]
)
async def test_check_webhook_url_accepts_public_targets(url: str) -> None:
    assert await check_webhook_url(url, resolver=fake_dns, allow_private=False) == url


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://mixed.example.com/", r"mixed\.example\.com resolves to 10\.0\.0\.1.*private"),
        ("https://mapped.example.com/", r"embedding 127\.0\.0\.1.*loopback"),
        ("https://nat64.example.com/", r"embedding 169\.254\.169\.254.*link-local"),
        ("https://127.0.0.1/", r"127\.0\.0\.1 is a loopback address"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[2002:7f00:1::1]/", "loopback"),
        ("https://localhost/", "localhost"),
        ("https://LOCALHOST./", "localhost"),
        ("https://api.localhost/", "localhost"),
        ("https://nowhere.example.com/", "does not resolve"),
        ("https://empty.example.com/", "does not resolve"),
        ("http://ok.example.com/", "https"),
        ("ftp://ok.example.com/", "https"),
        ("https://user:pw@ok.example.com/", "credentials"),
        ("https://ok.example.com:99999/", "not a valid URL"),
    ],
)
async def test_check_webhook_url_refuses(url: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await check_webhook_url(url, resolver=fake_dns, allow_private=False)


@pytest.mark.anyio
async def test_check_webhook_url_allow_private_lifts_the_address_rules() -> None:
    for url in ("http://127.0.0.1:9/x", "http://localhost:8080/", "https://mixed.example.com/"):
        assert await check_webhook_url(url, resolver=fake_dns, allow_private=True) == url
    with pytest.raises(InvalidRequest, match="https"):
        await check_webhook_url("ftp://127.0.0.1/", resolver=fake_dns, allow_private=True)


# --------------------------------------------------------------------------- check_target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/", "127.0.0.1 is a loopback address"),
        ("https://127.0.0.1/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped address embedding 127.0.0.1"),
        ("https://[64:ff9b::a00:1]/", "NAT64 address embedding 10.0.0.1"),
        ("https://[::1]:8443/", "loopback"),
        ("https://[fe80::1%25eth0]/", "link-local"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://127.1/", "non-canonical IPv4"),
        ("https://2130706433/", "non-canonical IPv4"),
        ("https://0x7f.0.0.1/", "non-canonical IPv4"),
        ("https://0177.0.0.1/", "non-canonical IPv4"),
        ("https://localhost/", "localhost name"),
        ("https://hooks.localhost./", "localhost name"),
        ("http://hooks.example.com/", "plain http://"),
        ("ftp://hooks.example.com/", "ftp:// scheme"),
        ("file:///etc/passwd", "file:// scheme"),
        ("https:///nohost", "has no host"),
    ],
)
def test_check_target_refuses(url: str, message: str) -> None:
    with pytest.raises(RefusedAddress, match=message) as caught:
        check_target(url, allow_private=False)
    assert message in caught.value.reason
    # The refusal is stable when served from the cache.
    with pytest.raises(RefusedAddress, match=message):
        check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",  # names are judged by the resolver, at connect time
        "https://8.8.8.8/",
        "https://[2606:4700:4700::1111]:8443/",
        "https://[2002:808:808::1]/",
        "https://[64:ff9b::808:808]/",
    ],
)
def test_check_target_lets_public_targets_through(url: str) -> None:
    check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://[::ffff:127.0.0.1]/",
        "https://[64:ff9b::a00:1]/",
        "http://localhost:8000/",
        "https://127.1/",
    ],
)
def test_check_target_allow_private(url: str) -> None:
    check_target(url, allow_private=True)
    with pytest.raises(RefusedAddress):
        check_target(url, allow_private=False)


def test_check_target_refuses_other_schemes_even_when_private_is_allowed() -> None:
    with pytest.raises(RefusedAddress, match="gopher://"):
        check_target("gopher://127.0.0.1:70/", allow_private=True)


# --------------------------------------------------------------------------- PolicyResolver


def mapping_resolver(table: dict[str, list[str]]) -> Callable[[str], Awaitable[list[str]]]:
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return resolve


@pytest.mark.anyio
async def test_policy_resolver_returns_aiohttp_results_for_public_addresses() -> None:
    resolver = PolicyResolver(
        mapping_resolver({"dual.example.com": ["93.184.216.34", "2606:4700:4700::1111"]}),
        allow_private=False,
    )
    results = await resolver.resolve("dual.example.com", 443, socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        ("93.184.216.34", 443, socket.AF_INET),
        ("2606:4700:4700::1111", 443, socket.AF_INET6),
    ]
    assert {r["hostname"] for r in results} == {"dual.example.com"}
    only_v6 = await resolver.resolve("dual.example.com", 443, socket.AF_INET6)
    assert [r["host"] for r in only_v6] == ["2606:4700:4700::1111"]
    await resolver.close()


@pytest.mark.anyio
async def test_policy_resolver_refuses_the_whole_host_if_any_address_is_refused() -> None:
    resolver = PolicyResolver(
        mapping_resolver(
            {
                "mixed.example.com": ["93.184.216.34", "10.0.0.1"],
                # refused even when asked only for IPv4: the host is refused, not the address
                "mixed6.example.com": ["93.184.216.34", "::1"],
                "junk.example.com": ["93.184.216.34", "not-an-ip"],
            }
        ),
        allow_private=False,
    )
    with pytest.raises(RefusedAddress, match=r"10\.0\.0\.1 is a private address"):
        await resolver.resolve("mixed.example.com", 443, socket.AF_UNSPEC)
    with pytest.raises(RefusedAddress, match="loopback"):
        await resolver.resolve("mixed6.example.com", 443, socket.AF_INET)
    with pytest.raises(RefusedAddress, match="not an IP address"):
        await resolver.resolve("junk.example.com", 443, socket.AF_UNSPEC)
    with pytest.raises(RefusedAddress, match="localhost"):
        await resolver.resolve("localhost", 443, socket.AF_UNSPEC)


@pytest.mark.anyio
async def test_policy_resolver_allow_private_and_lookup_failures() -> None:
    table = {"hooks.example.test": ["127.0.0.1", "::1"], "v6only.example.test": ["::1"]}
    resolver = PolicyResolver(mapping_resolver(table), allow_private=True)
    results = await resolver.resolve(HOOK_HOST, 80, socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["127.0.0.1", "::1"]
    # Nothing of the wanted family is an ordinary lookup failure, never an empty list (which
    # aiohttp's connector does not expect).
    with pytest.raises(OSError, match="no usable address") as caught:
        await resolver.resolve("v6only.example.test", 80, socket.AF_INET)
    assert not isinstance(caught.value, RefusedAddress)
    with pytest.raises(socket.gaierror):
        await resolver.resolve("nowhere.example.test", 80, socket.AF_UNSPEC)


# --------------------------------------------------------------------------- the real client


@dataclass
class Server:
    """A real aiohttp server on 127.0.0.1 that records what reached it."""

    port: int
    requests: list[web.Request] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)


@asynccontextmanager
async def serve(
    routes: Callable[[Server], list[web.RouteDef]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    server = Server(port=0)

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        server.requests.append(request)
        assert request.transport is not None
        server.peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def body(request: web.Request) -> web.Response:
        return web.Response(text="received")

    app = web.Application(middlewares=[record])
    app.add_routes([web.post("/", ok), web.post("/body", body)])
    if routes is not None:
        app.add_routes(routes(server))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def resolver_for(*addresses: str) -> Callable[[str], Awaitable[list[str]]]:
    return mapping_resolver({HOOK_HOST: list(addresses)})


@pytest.mark.anyio
async def test_a_name_resolving_to_loopback_is_refused_before_connecting() -> None:
    async with serve() as server:
        session = new_session(
            resolver=resolver_for("127.0.0.1"), allow_private=False, user_agent=USER_AGENT
        )
        async with session:
            with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
                await session.post(f"https://{HOOK_HOST}:{server.port}/", data=b"{}")
        assert server.requests == []
    refusal = refusal_of(caught.value)
    assert refusal is not None
    assert refusal is caught.value.os_error
    assert refusal.host == HOOK_HOST
    assert refusal.reason == f"{HOOK_HOST} resolves to 127.0.0.1; 127.0.0.1 is a loopback address"
    assert "loopback" in str(caught.value)  # aiohttp's message carries ours


@pytest.mark.anyio
async def test_a_literal_loopback_address_is_refused_before_connecting() -> None:
    # aiohttp never asks the resolver about IP literals; the middleware judges them.
    async with serve() as server:
        async with new_session(
            resolver=resolver_for(), allow_private=False, user_agent=USER_AGENT
        ) as session:
            for host in ("127.0.0.1", "[::ffff:127.0.0.1]"):
                with pytest.raises(aiohttp.ClientConnectorError) as caught:
                    await session.post(f"http://{host}:{server.port}/", data=b"{}")
                refusal = refusal_of(caught.value)
                assert refusal is not None, caught.value
                assert "loopback" in refusal.reason
                assert not isinstance(caught.value, aiohttp.ClientConnectorDNSError)
        assert server.requests == []


@pytest.mark.anyio
async def test_allow_private_delivers_and_reports_the_peer_address() -> None:
    async with serve() as server:
        async with new_session(
            resolver=resolver_for("127.0.0.1"), allow_private=True, user_agent=USER_AGENT
        ) as session:
            # A 204 has no body: aiohttp has released the connection before post() returns.
            async with session.post(f"http://{HOOK_HOST}:{server.port}/", data=b"{}") as resp:
                assert resp.status == 204
                assert peer_address(resp) == "127.0.0.1"
            async with session.post(f"http://{HOOK_HOST}:{server.port}/body", data=b"{}") as resp:
                assert await resp.text() == "received"
                assert peer_address(resp) == "127.0.0.1"  # still known after the body is read
            # The literal form needs no resolver at all.
            async with session.post(f"http://127.0.0.1:{server.port}/", data=b"{}") as resp:
                assert peer_address(resp) == "127.0.0.1"
    assert len(server.requests) == 3
    # Keep-alive: the two requests to the name shared one connection (the pool is keyed by host,
    # so the literal-address request got its own).
    assert server.peers[0] == server.peers[1] != server.peers[2]
    headers = server.requests[0].headers
    assert headers["User-Agent"] == USER_AGENT
    assert "Accept-Encoding" not in headers
    assert "Cookie" not in headers


@pytest.mark.anyio
async def test_a_lookup_failure_is_not_a_refusal() -> None:
    async with new_session(
        resolver=mapping_resolver({}), allow_private=False, user_agent=USER_AGENT
    ) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.post(f"https://{HOOK_HOST}/", data=b"{}")
    assert refusal_of(caught.value) is None
    assert isinstance(caught.value.os_error, socket.gaierror)


@pytest.mark.anyio
async def test_dns_rebinding_cannot_slip_between_check_and_connect() -> None:
    # A hostile DNS server answers a public address to whoever checks first, then 127.0.0.1.
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    lookups: list[str] = []

    async def rebinding(host: str) -> list[str]:
        lookups.append(host)
        return answers[min(len(lookups), len(answers)) - 1]

    async with serve() as server:
        url = f"https://{HOOK_HOST}:{server.port}/"
        # A check-then-connect design would pass here and then connect to the second answer.
        assert await check_webhook_url(url, resolver=rebinding, allow_private=False) == url
        async with new_session(
            resolver=rebinding, allow_private=False, user_agent=USER_AGENT
        ) as session:
            with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
                await session.post(url, data=b"{}")
        assert server.requests == []
    # The connection path resolved exactly once and judged that very answer.
    assert lookups == [HOOK_HOST, HOOK_HOST]
    refusal = refusal_of(caught.value)
    assert refusal is not None
    assert "127.0.0.1 is a loopback address" in refusal.reason


@pytest.mark.anyio
async def test_the_connection_goes_only_to_addresses_the_resolver_approved() -> None:
    # The wrapped resolver is consulted once per connection: later answers (here a refused one)
    # cannot redirect a request the cache already holds an approved answer for, and the answer
    # that was approved is the address the socket is connected to.
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    lookups: list[str] = []

    async def changing(host: str) -> list[str]:
        lookups.append(host)
        return answers[min(len(lookups), len(answers)) - 1]

    async with serve() as server:
        async with new_session(
            resolver=changing, allow_private=True, user_agent=USER_AGENT
        ) as session:
            for _ in range(2):
                async with session.post(f"http://{HOOK_HOST}:{server.port}/", data=b"") as resp:
                    assert peer_address(resp) == "127.0.0.1"
    assert lookups == [HOOK_HOST]


def make_certificate(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOOK_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOOK_HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.mark.anyio
async def test_a_redirect_to_a_refused_address_is_refused(tmp_path: Path) -> None:
    # The first hop must be allowed for the redirect to matter, and every address here is
    # loopback; so the resolver allows private addresses while the middleware, which judges
    # each hop's URL, does not. In production both come from the same allow_private.
    def routes(server: Server) -> list[web.RouteDef]:
        async def to_literal(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"https://127.0.0.1:{server.port}/")

        async def to_name(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"https://{HOOK_HOST}:{server.port}/")

        return [web.post("/to-literal", to_literal), web.post("/to-name", to_name)]

    async with serve(routes, ssl_context=make_certificate(tmp_path)) as server:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=PolicyResolver(resolver_for("127.0.0.1"), allow_private=True)
            ),
            middlewares=(TargetPolicy(allow_private=False),),
        ) as session:
            base = f"https://{HOOK_HOST}:{server.port}"
            async with session.post(f"{base}/to-name", data=b"{}", ssl=False) as resp:
                assert resp.status == 204  # redirects themselves still work
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.post(f"{base}/to-literal", data=b"{}", ssl=False)
    assert [request.path for request in server.requests] == ["/to-name", "/", "/to-literal"]
    refusal = refusal_of(caught.value)
    assert refusal is not None
    assert refusal.reason == "127.0.0.1 is a loopback address"


@pytest.mark.anyio
async def test_proxies_are_refused() -> None:
    async with serve() as server:
        async with new_session(
            resolver=resolver_for("127.0.0.1"), allow_private=True, user_agent=USER_AGENT
        ) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.post(
                    f"http://{HOOK_HOST}:{server.port}/",
                    data=b"{}",
                    proxy=f"http://127.0.0.1:{server.port}",
                )
        assert server.requests == []
    refusal = refusal_of(caught.value)
    assert refusal is not None
    assert "proxy" in refusal.reason


@pytest.mark.anyio
async def test_the_total_timeout_applies() -> None:
    release = asyncio.Event()

    def routes(server: Server) -> list[web.RouteDef]:
        async def slow(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response()

        return [web.post("/slow", slow)]

    async with serve(routes) as server:
        async with new_session(
            resolver=resolver_for("127.0.0.1"),
            allow_private=True,
            timeout=0.2,
            user_agent=USER_AGENT,
        ) as session:
            with pytest.raises(asyncio.TimeoutError):
                await session.post(f"http://{HOOK_HOST}:{server.port}/slow", data=b"{}")
        release.set()


def test_new_session_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        new_session(resolver=resolver_for(), allow_private=False, user_agent=USER_AGENT)


def test_refusal_of_ignores_other_errors() -> None:
    assert refusal_of(ValueError("x")) is None
    assert refusal_of(ConnectionRefusedError(111, "refused")) is None
    refused = RefusedAddress("10.0.0.1", "10.0.0.1 is a private address")
    assert refusal_of(refused) is refused
    assert str(refused) == "refusing to connect to 10.0.0.1: 10.0.0.1 is a private address"
