"""Every error is ``{"error", "status"}`` (+ ``code``); health; the OpenAPI document."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from ravepilot_core import RavePilot, Settings
from ravepilot_core.errors import BackendError, ConfigurationError
from ravepilot_server import create_app
from tests.server.conftest import Tenant
from tests.server.helpers import Client, assert_error, serve

pytestmark = pytest.mark.anyio

# Every /v1 path named in the HTTP contract (shared/api.md), with ``{}`` for a path parameter.
CONTRACT_PATHS = {
    "/v1/invitations",
    "/v1/invitations/link",
    "/v1/submissions",
    "/v1/submissions/{}",
    "/v1/submissions/{}/renders",
    "/v1/clips/{}/approve",
    "/v1/clips/{}/reject",
    "/v1/renders/{}",
    "/v1/collectors",
    "/v1/collectors/{}",
    "/v1/webhooks",
    "/v1/webhooks/{}",
    "/v1/webhooks/{}/deliveries",
    "/v1/webhooks/{}/rotate-secret",
    "/v1/webhooks/{}/test",
    "/v1/webhooks/{}/recover",
    "/v1/deliveries/{}",
    "/v1/deliveries/{}/retry",
}
# The ones this app serves today; the test below also checks any later addition.
SERVED_AT_LEAST = {
    "/v1/invitations",
    "/v1/invitations/link",
    "/v1/submissions",
    "/v1/submissions/{}",
    "/v1/collectors",
    "/v1/collectors/{}",
    "/v1/webhooks",
    "/v1/webhooks/{}",
    "/v1/webhooks/{}/deliveries",
}


def untyped(path: str) -> str:
    """``/v1/x/{id:str}`` and ``/v1/x/{id}`` -> ``/v1/x/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path).rstrip("/") or "/"


# -- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/nope", "/v1/submissions/sub_1/nope", "/v1", "/r/", "/v2/invitations"]
)
async def test_unknown_route_is_a_404(tenant: Tenant, client: Client, path: str) -> None:
    assert_error(await client.get(path, headers=tenant.headers), 404)
    assert_error(await client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/invitations"),
        ("GET", "/v1/invitations"),
        ("PUT", "/v1/submissions"),
        ("POST", "/v1/submissions/sub_1"),
        ("DELETE", "/v1/collectors/col_1"),
        ("PUT", "/v1/webhooks/we_1"),
        ("POST", "/health"),
    ],
)
async def test_wrong_method_is_a_405(
    tenant: Tenant, client: Client, method: str, path: str
) -> None:
    assert_error(await client.request(method, path, headers=tenant.headers), 405)


# -- bodies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{bad", b'{"customer_email": "marjorie@acme.com"', b"not json", b"{'single': 'quotes'}"],
    ids=["bad-key", "truncated", "text", "single-quotes"],
)
async def test_malformed_json_is_a_400(tenant: Tenant, client: Client, body: bytes) -> None:
    response = await client.post(
        "/v1/invitations",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    message = assert_error(response, 400)["error"]
    assert "malformed JSON" in message


async def test_an_empty_body_is_a_400_that_asks_for_a_json_body(
    tenant: Tenant, client: Client
) -> None:
    response = await client.post(
        "/v1/invitations",
        content=b"",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    message = assert_error(response, 400)["error"]
    assert "body" in message.lower() or "JSON" in message, message


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/invitations", {"customer_email": 5}, "customer_email"),
        ("/v1/invitations", {"customer_email": "a@acme.com", "send_email": "yes"}, "send_email"),
        ("/v1/invitations", {"customer_email": "a@acme.com", "send_email": 0}, "send_email"),
        (
            "/v1/invitations",
            {"customer_email": "a@acme.com", "customer_name": ["x"]},
            "customer_name",
        ),
        ("/v1/invitations/link", {"customer_email": None}, "customer_email"),
        ("/v1/collectors", {"name": "x", "auto_render": "no"}, "auto_render"),
        ("/v1/collectors", {"name": "x", "script": {"key": "a"}}, "script"),
        ("/v1/webhooks", {"url": "https://hooks.example.com/x", "events": "*"}, "events"),
        ("/v1/webhooks", {"url": ["https://hooks.example.com/x"]}, "url"),
    ],
)
async def test_wrong_json_type_is_a_400_naming_the_field(
    tenant: Tenant, client: Client, path: str, body: dict[str, Any], field: str
) -> None:
    message = assert_error(await client.post(path, json=body, headers=tenant.headers), 400)["error"]
    assert field in message


@pytest.mark.parametrize("body", [[], "marjorie@acme.com", 42, None])
async def test_a_body_that_is_not_an_object_is_a_400(
    tenant: Tenant, client: Client, body: Any
) -> None:
    response = await client.post(
        "/v1/invitations",
        content=msgspec.json.encode(body),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400)


async def test_a_body_over_the_limit_is_a_413(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    huge = msgspec.json.encode({"customer_email": "a@acme.com", "customer_name": "x" * 2_000_000})
    response = await client.post(
        "/v1/invitations",
        content=huge,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413)

    # Just under the default limit (1 MiB) the body is read, and the field is what's wrong.
    large = msgspec.json.encode({"customer_email": "a@acme.com", "customer_name": "x" * 1_000_000})
    assert len(large) < 1024 * 1024
    response = await client.post(
        "/v1/invitations",
        content=large,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert "customer_name" in assert_error(response, 400)["error"]

    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert listed.json()["data"] == []


# -- unexpected failures ---------------------------------------------------------------------------


async def test_an_unexpected_exception_is_a_500_without_details(
    tenant: Tenant, client: Client, ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail: password=hunter2")

    monkeypatch.setattr(ravepilot.submissions, "list", boom)
    monkeypatch.setattr(ravepilot.invitations, "create", boom)

    for response in (
        await client.get("/v1/submissions", headers=tenant.headers),
        await client.post(
            "/v1/invitations", json={"customer_email": "a@acme.com"}, headers=tenant.headers
        ),
    ):
        message = assert_error(response, 500)["error"]
        assert message == "internal error"
        for leak in ("secret detail", "hunter2", "RuntimeError", "Traceback", ".py"):
            assert leak not in response.text

    # Routes that do not hit the broken service still work.
    assert (await client.get("/v1/collectors", headers=tenant.headers)).status_code == 200


async def test_an_internal_ravepilot_error_is_a_500_without_details(
    tenant: Tenant, client: Client, ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def misconfigured(*args: Any, **kwargs: Any) -> Any:
        raise ConfigurationError("the key in /etc/ravepilot/secret.key is wrong")

    monkeypatch.setattr(ravepilot.collectors, "list", misconfigured)
    response = await client.get("/v1/collectors", headers=tenant.headers)
    assert assert_error(response, 500)["error"] == "internal error"
    assert "/etc/ravepilot" not in response.text


async def test_a_backend_failure_is_a_503_in_the_error_shape(
    tenant: Tenant, client: Client, ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise BackendError("storage unreachable")

    monkeypatch.setattr(ravepilot.submissions, "list", unavailable)
    response = await client.get("/v1/submissions", headers=tenant.headers)
    assert_error(response, 503)


# -- health ----------------------------------------------------------------------------------------


async def test_health_needs_no_key(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["storage"] == "ok"


async def test_health_is_503_when_storage_is_unreachable(
    client: Client, ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable() -> None:
        raise BackendError("storage unreachable: disk I/O error")

    monkeypatch.setattr(ravepilot.storage, "ping", unreachable)
    response = await client.get("/health")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] != "ok"
    assert body["storage"] != "ok"

    monkeypatch.undo()
    assert (await client.get("/health")).status_code == 200


# -- the OpenAPI document --------------------------------------------------------------------------


async def test_openapi_document(client: Client, app: Litestar) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    documented = {untyped(path) for path in document["paths"]}

    served = {untyped(route.path) for route in app.routes}
    contract_paths_served = CONTRACT_PATHS & served
    assert contract_paths_served >= SERVED_AT_LEAST
    missing = sorted(contract_paths_served - documented)
    assert missing == [], f"served but not in the OpenAPI document: {missing}"
    assert "/health" in documented

    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"


async def test_the_app_leaves_the_hosts_logging_alone(
    tenant: Tenant, ravepilot: RavePilot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_app() keeps the root logger's handlers: the CLI's, or the embedding app's.

    Litestar's default replaced them with a queue and a listener thread, which changed the log
    format and cost every log line a hand-off of the GIL (~0.15 ms an outbox email).
    """
    records: list[logging.LogRecord] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    recorder = Recorder()
    monkeypatch.setattr(root, "handlers", [recorder])
    monkeypatch.setattr(root, "level", logging.INFO)

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(ravepilot.submissions, "list", boom)
    async with serve(create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot)) as client:
        assert root.handlers == [recorder]
        assert_error(await client.get("/v1/submissions", headers=tenant.headers), 500)

    logged = [r for r in records if r.name == "ravepilot.server" and r.exc_info]
    assert len(logged) == 1, [r.getMessage() for r in records]
    assert "GET /v1/submissions" in logged[0].getMessage()
