"""/v1/webhooks: secrets, the event catalog, changes, deletion, deliveries and the URL policy."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ravepilot_core import RavePilot, Settings
from ravepilot_server import create_app
from tests.server.conftest import Receiver, Tenant, serve_tenant
from tests.server.helpers import Client, assert_error, expect, new_submission, serve

pytestmark = pytest.mark.anyio

HOOK_URL = "https://hooks.example.com/ravepilot"
CATALOG = [
    "invitation.created",
    "submission.started",
    "clip.uploaded",
    "clip.transcribed",
    "submission.submitted",
    "clip.approved",
    "clip.rejected",
    "render.succeeded",
    "render.failed",
    "submission.withdrawn",
    "webhook.test",
]


async def register(client: Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("url", HOOK_URL)
    return expect(await client.post("/v1/webhooks", json=body, headers=tenant.headers), 201)


async def get(client: Client, tenant: Tenant, endpoint_id: str) -> dict[str, Any]:
    return expect(await client.get(f"/v1/webhooks/{endpoint_id}", headers=tenant.headers))


async def patch(client: Client, tenant: Tenant, endpoint_id: str, **body: Any) -> httpx.Response:
    return await client.patch(f"/v1/webhooks/{endpoint_id}", json=body, headers=tenant.headers)


# -- registering -----------------------------------------------------------------------------------


async def test_create_returns_the_secret_once(tenant: Tenant, client: Client) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={"url": HOOK_URL, "events": ["invitation.created"], "description": "CRM sync"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert created["id"].startswith("we_")
    assert created["url"] == HOOK_URL
    assert created["events"] == ["invitation.created"]
    assert created["description"] == "CRM sync"
    assert created["active"] is True
    assert created["disabled_reason"] is None
    assert created["failure_count"] == 0

    one = await client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert secret not in one.text
    assert one.json() == {k: v for k, v in created.items() if k != "secret"}

    listed = await client.get("/v1/webhooks", headers=tenant.headers)
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    assert all("secret" not in e for e in listed.json()["data"])
    assert secret not in listed.text


async def test_every_endpoint_gets_its_own_secret(tenant: Tenant, client: Client) -> None:
    secrets = {(await register(client, tenant))["secret"] for _ in range(3)}
    assert len(secrets) == 3


async def test_list_carries_the_full_event_catalog(tenant: Tenant, client: Client) -> None:
    response = await client.get("/v1/webhooks", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == []
    assert sorted(body["events"]) == sorted(CATALOG)
    assert len(body["events"]) == 11
    assert "webhook.test" in body["events"]


async def test_list_is_newest_first(tenant: Tenant, client: Client) -> None:
    ids = [(await register(client, tenant, description=f"n{n}"))["id"] for n in range(3)]
    listed = (await client.get("/v1/webhooks", headers=tenant.headers)).json()["data"]
    assert [e["id"] for e in listed] == list(reversed(ids))


async def test_default_events_is_everything(tenant: Tenant, client: Client) -> None:
    created = await register(client, tenant)
    assert created["events"] == ["*"]
    assert created["description"] is None


async def test_every_catalog_name_is_accepted(tenant: Tenant, client: Client) -> None:
    created = await register(client, tenant, events=CATALOG)
    assert created["events"] == CATALOG


@pytest.mark.parametrize(
    ("events", "named"),
    [
        (["invitation.sent"], "invitation.sent"),
        (["clip.approved", "clip.deleted"], "clip.deleted"),
        (["Clip.Approved"], "Clip.Approved"),
        (["*", "clip.approved"], "*"),
        ([], "events"),
    ],
    ids=["unknown", "one-unknown", "wrong-case", "star-and-name", "empty"],
)
async def test_bad_event_selection_is_a_400(
    tenant: Tenant, client: Client, events: list[str], named: str
) -> None:
    response = await client.post(
        "/v1/webhooks", json={"url": HOOK_URL, "events": events}, headers=tenant.headers
    )
    message = assert_error(response, 400)["error"]
    assert named in message
    assert (await client.get("/v1/webhooks", headers=tenant.headers)).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [{}, {"url": HOOK_URL, "secret": "whsec_mine"}, {"url": 42}, {"url": HOOK_URL, "events": "*"}],
    ids=["no-url", "unknown-field", "url-not-string", "events-not-list"],
)
async def test_malformed_body_is_a_400(
    tenant: Tenant, client: Client, body: dict[str, Any]
) -> None:
    assert_error(await client.post("/v1/webhooks", json=body, headers=tenant.headers), 400)


# -- changing --------------------------------------------------------------------------------------


async def test_patch_url_events_and_description(tenant: Tenant, client: Client) -> None:
    created = await register(client, tenant, description="first")
    endpoint_id = created["id"]

    response = await patch(client, tenant, endpoint_id, url="https://hooks.example.com/v2")
    assert response.status_code == 200, response.text
    assert response.json()["url"] == "https://hooks.example.com/v2"
    assert response.json()["events"] == ["*"]

    response = await patch(client, tenant, endpoint_id, events=["clip.approved", "clip.rejected"])
    assert response.status_code == 200, response.text
    assert response.json()["events"] == ["clip.approved", "clip.rejected"]
    assert response.json()["url"] == "https://hooks.example.com/v2"

    response = await patch(client, tenant, endpoint_id, description="second")
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "second"

    stored = await get(client, tenant, endpoint_id)
    assert stored == response.json()
    assert stored["url"] == "https://hooks.example.com/v2"
    assert stored["events"] == ["clip.approved", "clip.rejected"]
    assert stored["created_at"] == created["created_at"]
    assert "secret" not in stored

    response = await patch(client, tenant, endpoint_id, description=None)
    assert response.status_code == 200, response.text
    assert (await get(client, tenant, endpoint_id))["description"] is None


async def test_switch_off_and_on(tenant: Tenant, client: Client, receiver: Receiver) -> None:
    # A receiver that answers, so that re-enabling works also once it first sends webhook.test.
    endpoint_id = (await register(client, tenant, url=receiver.url))["id"]

    response = await patch(client, tenant, endpoint_id, active=False)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    assert response.json()["disabled_reason"] == "manual"
    stored = await get(client, tenant, endpoint_id)
    assert stored["active"] is False
    assert stored["disabled_reason"] == "manual"

    response = await patch(client, tenant, endpoint_id, active=True)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    assert response.json()["disabled_reason"] is None
    assert response.json()["failure_count"] == 0
    stored = await get(client, tenant, endpoint_id)
    assert stored["active"] is True
    assert stored["disabled_reason"] is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"events": ["nope.never"]}, "nope.never"),
        ({"events": []}, "events"),
        ({"events": ["*", "clip.approved"]}, "*"),
        ({"secret": "whsec_mine"}, "secret"),
        ({"active": "yes"}, "active"),
    ],
    ids=["unknown-event", "empty-events", "star-and-name", "unknown-field", "active-not-bool"],
)
async def test_invalid_patch_is_a_400_and_changes_nothing(
    tenant: Tenant, client: Client, body: dict[str, Any], named: str
) -> None:
    created = await register(client, tenant)
    endpoint_id = created["id"]
    message = assert_error(await patch(client, tenant, endpoint_id, **body), 400)["error"]
    assert named in message
    assert await get(client, tenant, endpoint_id) == {
        k: v for k, v in created.items() if k != "secret"
    }


async def test_delete(tenant: Tenant, client: Client) -> None:
    keep = await register(client, tenant, description="keep")
    gone = await register(client, tenant, description="gone")

    response = await client.delete(f"/v1/webhooks/{gone['id']}", headers=tenant.headers)
    assert response.status_code == 204
    assert response.content == b""

    for method, path in (
        ("GET", f"/v1/webhooks/{gone['id']}"),
        ("PATCH", f"/v1/webhooks/{gone['id']}"),
        ("DELETE", f"/v1/webhooks/{gone['id']}"),
        ("GET", f"/v1/webhooks/{gone['id']}/deliveries"),
    ):
        body = {"description": "x"} if method == "PATCH" else None
        assert_error(await client.request(method, path, json=body, headers=tenant.headers), 404)

    listed = (await client.get("/v1/webhooks", headers=tenant.headers)).json()["data"]
    assert [e["id"] for e in listed] == [keep["id"]]


async def test_unknown_endpoint_is_a_404(tenant: Tenant, client: Client) -> None:
    for method, path in (
        ("GET", "/v1/webhooks/we_DOESNOTEXIST"),
        ("DELETE", "/v1/webhooks/we_DOESNOTEXIST"),
        ("GET", "/v1/webhooks/we_DOESNOTEXIST/deliveries"),
    ):
        assert_error(await client.request(method, path, headers=tenant.headers), 404)
    assert_error(await patch(client, tenant, "we_DOESNOTEXIST", active=False), 404)


# -- deliveries ------------------------------------------------------------------------------------


@pytest.fixture
async def idle_client(ravepilot: RavePilot, tmp_path: Path) -> AsyncIterator[Client]:
    """The server without its background worker, so deliveries stay exactly as they were queued."""
    async with serve(
        create_app(Settings(data_dir=tmp_path), ravepilot=ravepilot, run_worker=False)
    ) as client:
        yield client


async def test_an_invitation_queues_one_delivery(
    tenant: Tenant, idle_client: Client, ravepilot: RavePilot
) -> None:
    client = idle_client
    everything = await register(client, tenant, events=["*"])
    invitations = await register(client, tenant, events=["invitation.created"])
    clips_only = await register(client, tenant, events=["clip.approved"])
    submission_id = await new_submission(client, tenant)

    events = await ravepilot.storage.list_events(tenant.workspace_id)
    assert len(events) == 1
    event = events[0]
    assert msgspec.json.decode(event.payload)["data"]["id"] == submission_id

    for endpoint in (everything, invitations):
        response = await client.get(
            f"/v1/webhooks/{endpoint['id']}/deliveries", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        deliveries = response.json()["data"]
        assert len(deliveries) == 1
        delivery = deliveries[0]
        assert delivery["id"].startswith("dlv_")
        assert delivery["event_id"] == event.id
        assert delivery["event_type"] == "invitation.created"
        assert delivery["status"] == "pending"
        assert delivery["attempts"] == 0
        assert delivery["response_status"] is None
        assert delivery["last_attempt_at"] is None

    response = await client.get(
        f"/v1/webhooks/{clips_only['id']}/deliveries", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []


async def test_deliveries_are_newest_first_and_not_retroactive(
    tenant: Tenant, idle_client: Client
) -> None:
    client = idle_client
    await new_submission(client, tenant, "early@acme.com")  # before the endpoint existed
    endpoint = await register(client, tenant)
    await new_submission(client, tenant, "one@acme.com")
    await new_submission(client, tenant, "two@acme.com")
    await client.post(  # reused: no new event, so no new delivery
        "/v1/invitations",
        json={"customer_email": "one@acme.com", "send_email": False},
        headers=tenant.headers,
    )
    deliveries = (
        await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=tenant.headers)
    ).json()["data"]
    assert len(deliveries) == 2
    assert deliveries[0]["id"] > deliveries[1]["id"]
    assert deliveries[0]["created_at"] >= deliveries[1]["created_at"]


async def test_deliveries_of_other_workspaces_are_not_queued(
    tenant: Tenant, other_tenant: Tenant, idle_client: Client
) -> None:
    client = idle_client
    ours = await register(client, tenant)
    await new_submission(client, other_tenant)
    deliveries = (
        await client.get(f"/v1/webhooks/{ours['id']}/deliveries", headers=tenant.headers)
    ).json()["data"]
    assert deliveries == []


async def test_delete_drops_pending_deliveries(
    tenant: Tenant, idle_client: Client, ravepilot: RavePilot
) -> None:
    client = idle_client
    endpoint = await register(client, tenant)
    await new_submission(client, tenant, "one@acme.com")
    await new_submission(client, tenant, "two@acme.com")
    before = await ravepilot.storage.list_deliveries(endpoint["id"])
    assert [d.status for d in before] == ["pending", "pending"]

    response = await client.delete(f"/v1/webhooks/{endpoint['id']}", headers=tenant.headers)
    assert response.status_code == 204

    after = await ravepilot.storage.list_deliveries(endpoint["id"])
    assert {d.id for d in after} == {d.id for d in before}
    assert [d.status for d in after] == ["dropped", "dropped"]
    assert all(d.next_attempt_at is None for d in after)


# -- the URL policy --------------------------------------------------------------------------------

RESOLVES = {
    "hooks.example.com": ["93.184.216.34"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "evil.example.com": ["10.0.0.5"],
    "mixed.example.com": ["93.184.216.34", "192.168.0.7"],
    "v6-private.example.com": ["fd00::1"],
    "empty.example.com": [],
}


@dataclass
class Strict:
    """A server that enforces the URL policy, with a fake resolver that records look-ups."""

    client: Client
    tenant: Tenant
    lookups: list[str] = field(default_factory=list)

    async def register(self, url: str) -> httpx.Response:
        return await self.client.post(
            "/v1/webhooks", json={"url": url}, headers=self.tenant.headers
        )


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[Strict]:
    lookups: list[str] = []

    async def resolver(host: str) -> list[str]:
        lookups.append(host)
        try:
            return list(RESOLVES[host])
        except KeyError:
            raise OSError(f"[Errno -2] Name or service not known: {host!r}") from None

    async with serve_tenant(
        tmp_path / "strict", "strict", allow_private_webhooks=False, resolver=resolver
    ) as (client, tenant):
        yield Strict(client=client, tenant=tenant, lookups=lookups)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/ravepilot",
        "https://hooks.example.com:8443/ravepilot?source=rp",
        "https://93.184.216.34/hook",
        "https://v6.example.com/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
async def test_public_https_urls_are_accepted(strict: Strict, url: str) -> None:
    response = await strict.register(url)
    assert response.status_code == 201, response.text
    assert response.json()["url"] == url


async def test_names_are_checked_by_resolving_them(strict: Strict) -> None:
    response = await strict.register(HOOK_URL)
    assert response.status_code == 201, response.text
    assert "hooks.example.com" in strict.lookups


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/ravepilot",
        "ftp://hooks.example.com/ravepilot",
        "hooks.example.com/ravepilot",
        "https:///ravepilot",
        "https://localhost/hook",
        "https://LOCALHOST./hook",
        "https://app.localhost/hook",
        "https://127.0.0.1/hook",
        "https://127.1.2.3:8443/hook",
        "https://[::1]/hook",
        "https://0.0.0.0/hook",
        "https://10.0.0.1/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.10/hook",
        "https://100.64.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://224.0.0.1/hook",
        "https://[ff02::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://240.0.0.1/hook",
        "https://evil.example.com/hook",
        "https://mixed.example.com/hook",
        "https://v6-private.example.com/hook",
        "https://nowhere.example.com/hook",
        "https://empty.example.com/hook",
        "https://user:pass@hooks.example.com/hook",
        "https://token@hooks.example.com/hook",
        "https://hooks.example.com:99999/hook",
    ],
)
async def test_forbidden_urls_are_a_400(strict: Strict, url: str) -> None:
    response = await strict.register(url)
    message = assert_error(response, 400)["error"]
    assert "url" in message.lower()
    listed = await strict.client.get("/v1/webhooks", headers=strict.tenant.headers)
    assert listed.json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/ravepilot",
        "https://127.0.0.1/hook",
        "https://evil.example.com/hook",
        "https://nowhere.example.com/hook",
        "https://user:pass@hooks.example.com/hook",
    ],
)
async def test_patching_to_a_forbidden_url_is_a_400(strict: Strict, url: str) -> None:
    created = await register(strict.client, strict.tenant)
    response = await patch(strict.client, strict.tenant, created["id"], url=url)
    assert "url" in assert_error(response, 400)["error"].lower()
    assert (await get(strict.client, strict.tenant, created["id"]))["url"] == HOOK_URL


async def test_private_urls_are_allowed_when_configured(tenant: Tenant, client: Client) -> None:
    # The shared fixture runs with allow_private_webhooks=True (development mode).
    created = await register(client, tenant, url="http://127.0.0.1:9000/hook")
    assert created["url"] == "http://127.0.0.1:9000/hook"
    # ... but credentials in the URL are refused even then.
    response = await client.post(
        "/v1/webhooks",
        json={"url": "http://user:pass@127.0.0.1:9000/hook"},
        headers=tenant.headers,
    )
    assert_error(response, 400)
