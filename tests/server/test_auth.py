"""API keys (401), scopes (403) and tenant isolation (404) on every /v1 route."""

from __future__ import annotations

from typing import Any

import pytest

from ravepilot_core import RavePilot
from ravepilot_core.models import ALL_SCOPES
from ravepilot_server.request import RavePilotRequest
from tests.server.conftest import Tenant
from tests.server.helpers import Client, assert_error

pytestmark = pytest.mark.anyio

INVITATION = {"customer_email": "marjorie@acme.com", "send_email": False}
LINK = {"customer_email": "marjorie@acme.com"}
NEW_COLLECTOR = {"name": "Spring campaign"}
NEW_WEBHOOK = {"url": "https://hooks.example.com/ravepilot", "events": ["*"]}

# (method, path, body, scope); ``{col}`` and ``{we}`` are filled with real ids of the workspace.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/v1/invitations", INVITATION, "invitations"),
    ("POST", "/v1/invitations/link", LINK, "invitations"),
    ("GET", "/v1/submissions", None, "submissions"),
    ("GET", "/v1/submissions/sub_01JD0000000000000000000000", None, "submissions"),
    ("GET", "/v1/collectors", None, "admin"),
    ("POST", "/v1/collectors", NEW_COLLECTOR, "admin"),
    ("GET", "/v1/collectors/{col}", None, "admin"),
    ("PATCH", "/v1/collectors/{col}", {"name": "Renamed"}, "admin"),
    ("POST", "/v1/webhooks", NEW_WEBHOOK, "webhooks"),
    ("GET", "/v1/webhooks", None, "webhooks"),
    ("GET", "/v1/webhooks/{we}", None, "webhooks"),
    ("PATCH", "/v1/webhooks/{we}", {"description": "changed"}, "webhooks"),
    ("DELETE", "/v1/webhooks/{we}", None, "webhooks"),
    ("GET", "/v1/webhooks/{we}/deliveries", None, "webhooks"),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _, _ in ROUTES]


async def call(
    client: Client, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> Any:
    return await client.request(method, path, json=body, headers=headers)


async def resources(client: Client, tenant: Tenant) -> dict[str, str]:
    """Create a collector and a webhook endpoint in the tenant's workspace; return their ids."""
    collector = await client.post("/v1/collectors", json=NEW_COLLECTOR, headers=tenant.headers)
    assert collector.status_code == 201, collector.text
    webhook = await client.post("/v1/webhooks", json=NEW_WEBHOOK, headers=tenant.headers)
    assert webhook.status_code == 201, webhook.text
    return {"col": collector.json()["id"], "we": webhook.json()["id"]}


# -- 401 -------------------------------------------------------------------------------------------


async def test_no_key_is_a_401(client: Client) -> None:
    response = await client.get("/v1/submissions")
    message = assert_error(response, 401)["error"]
    assert "API key" in message


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-ravepilot-key"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "sk_live_abcdef"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer " + "rp_" + "x" * 500},
    ],
    ids=["bearer-garbage", "bearer-empty", "x-api-key-garbage", "x-api-key-empty", "too-long"],
)
async def test_malformed_key_is_a_401(client: Client, headers: dict[str, str]) -> None:
    assert_error(await client.get("/v1/submissions", headers=headers), 401)


async def test_unknown_key_is_a_401(tenant: Tenant, client: Client) -> None:
    unknown = "rp_live_" + "A" * 43
    for headers in ({"Authorization": f"Bearer {unknown}"}, {"X-API-Key": unknown}):
        message = assert_error(await client.get("/v1/submissions", headers=headers), 401)["error"]
        assert "unknown" in message


async def test_revoked_key_is_a_401(tenant: Tenant, client: Client, ravepilot: RavePilot) -> None:
    key, plaintext = await ravepilot.api_keys.create(tenant.workspace_id, name="soon revoked")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert (await client.get("/v1/submissions", headers=headers)).status_code == 200

    await ravepilot.api_keys.revoke(key.id)
    message = assert_error(await client.get("/v1/submissions", headers=headers), 401)["error"]
    assert "revoked" in message
    assert_error(await client.get("/v1/submissions", headers={"X-API-Key": plaintext}), 401)
    # The other keys of the workspace keep working.
    assert (await client.get("/v1/submissions", headers=tenant.headers)).status_code == 200


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest", "ApiKey"])
async def test_non_bearer_authorization_scheme_is_a_401(
    tenant: Tenant, client: Client, scheme: str
) -> None:
    # Even a valid key is refused under another scheme.
    headers = {"Authorization": f"{scheme} {tenant.key}"}
    assert_error(await client.get("/v1/submissions", headers=headers), 401)


async def test_bearer_and_x_api_key_both_work(tenant: Tenant, client: Client) -> None:
    created = await client.post(
        "/v1/invitations", json=INVITATION, headers={"Authorization": f"Bearer {tenant.key}"}
    )
    assert created.status_code == 201, created.text
    listed = await client.get("/v1/submissions", headers={"X-API-Key": tenant.key})
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()["data"]] == [created.json()["submission"]["id"]]
    lowercase = await client.get(
        "/v1/submissions", headers={"Authorization": f"bearer {tenant.key}"}
    )
    assert lowercase.status_code == 200, lowercase.text


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_needs_a_key(
    tenant: Tenant, client: Client, method: str, path: str, body: dict[str, Any] | None, scope: str
) -> None:
    ids = await resources(client, tenant)
    url = path.format(**ids)
    assert_error(await call(client, method, url, body, {}), 401)
    assert_error(await call(client, method, url, body, {"X-API-Key": "rp_live_unknown"}), 401)


async def test_body_errors_never_precede_auth(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    garbage = b'{"customer_email": '
    for headers in ({}, {"Authorization": "Bearer rp_live_unknown"}, {"X-API-Key": "nope"}):
        response = await client.post(
            "/v1/invitations",
            content=garbage,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert_error(response, 401)
    # A valid key without the scope is refused before the body is looked at, too.
    _, plaintext = await ravepilot.api_keys.create(tenant.workspace_id, scopes=["submissions"])
    response = await client.post(
        "/v1/invitations",
        content=garbage,
        headers={"X-API-Key": plaintext, "Content-Type": "application/json"},
    )
    assert "invitations" in assert_error(response, 403)["error"]
    # ... while the right key reaches the body and gets the 400.
    response = await client.post(
        "/v1/invitations",
        content=garbage,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400)


# -- 403 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_needs_its_scope(
    tenant: Tenant,
    client: Client,
    ravepilot: RavePilot,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    scope: str,
) -> None:
    ids = await resources(client, tenant)
    url = path.format(**ids)
    for other_scope in ALL_SCOPES:
        if other_scope == scope:
            continue
        _, plaintext = await ravepilot.api_keys.create(tenant.workspace_id, scopes=[other_scope])
        response = await call(client, method, url, body, {"Authorization": f"Bearer {plaintext}"})
        message = assert_error(response, 403)["error"]
        assert scope in message, (other_scope, message)

    # The key with exactly that one scope gets past the guard.
    _, plaintext = await ravepilot.api_keys.create(tenant.workspace_id, scopes=[scope])
    response = await call(client, method, url, body, {"X-API-Key": plaintext})
    assert response.status_code not in (401, 403), response.text
    if "sub_01JD" not in url:
        assert response.status_code < 300, response.text


async def test_a_refused_call_changes_nothing(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    _, plaintext = await ravepilot.api_keys.create(tenant.workspace_id, scopes=["submissions"])
    response = await client.post(
        "/v1/invitations", json=INVITATION, headers={"X-API-Key": plaintext}
    )
    assert_error(response, 403)
    listed = await client.get("/v1/submissions", headers={"X-API-Key": plaintext})
    assert listed.json()["data"] == []


# -- tenant isolation ------------------------------------------------------------------------------


async def test_another_workspaces_objects_are_404_and_invisible(
    tenant: Tenant, other_tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    a, b = tenant, other_tenant
    invitation = await client.post("/v1/invitations", json=INVITATION, headers=a.headers)
    assert invitation.status_code == 201, invitation.text
    sub_id = invitation.json()["submission"]["id"]
    ids = await resources(client, a)
    col_id, we_id = ids["col"], ids["we"]
    primary_id = (await ravepilot.collectors.primary(a.workspace_id)).id

    before = {
        url: (await client.get(url, headers=a.headers)).json()
        for url in (
            f"/v1/submissions/{sub_id}",
            f"/v1/collectors/{col_id}",
            f"/v1/webhooks/{we_id}",
        )
    }

    probes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/submissions/{sub_id}", None),
        ("GET", f"/v1/collectors/{col_id}", None),
        ("PATCH", f"/v1/collectors/{col_id}", {"name": "Hijacked"}),
        ("GET", f"/v1/collectors/{primary_id}", None),
        ("PATCH", f"/v1/collectors/{primary_id}", {"host": "evil.example.com"}),
        ("GET", f"/v1/webhooks/{we_id}", None),
        ("PATCH", f"/v1/webhooks/{we_id}", {"url": "https://evil.example.com/steal"}),
        ("PATCH", f"/v1/webhooks/{we_id}", {"active": False}),
        ("GET", f"/v1/webhooks/{we_id}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{we_id}", None),
    ]
    for method, url, body in probes:
        response = await call(client, method, url, body, b.headers)
        assert_error(response, 404)

    for collector_id in (col_id, primary_id):
        response = await client.post(
            "/v1/invitations",
            json={
                **INVITATION,
                "customer_email": "intruder@globex.com",
                "collector_id": collector_id,
            },
            headers=b.headers,
        )
        assert_error(response, 404)

    submissions = (await client.get("/v1/submissions", headers=b.headers)).json()["data"]
    assert submissions == []
    collectors = (await client.get("/v1/collectors", headers=b.headers)).json()["data"]
    assert {c["id"] for c in collectors}.isdisjoint({col_id, primary_id})
    assert len(collectors) == 1 and collectors[0]["primary"] is True
    webhooks = (await client.get("/v1/webhooks", headers=b.headers)).json()["data"]
    assert webhooks == []

    # A's objects are untouched by B's attempts.
    for url, body in before.items():
        after = await client.get(url, headers=a.headers)
        assert after.status_code == 200
        assert after.json() == body
    a_submissions = (await client.get("/v1/submissions", headers=a.headers)).json()["data"]
    assert [s["id"] for s in a_submissions] == [sub_id]


def test_a_route_outside_the_api_key_middleware_is_told_it_has_no_caller() -> None:
    scope: Any = {"type": "http", "path": "/mine", "query_string": b"", "headers": [], "state": {}}
    request = RavePilotRequest(scope)
    with pytest.raises(RuntimeError, match=r"/mine is not behind .*api_key_middleware"):
        _ = request.principal
