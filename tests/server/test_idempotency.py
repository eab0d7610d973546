"""Idempotency-Key on the creating POSTs: replay, conflicts, scope, release on error, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest

from ravepilot_core import RavePilot
from ravepilot_core.idempotency import request_fingerprint
from ravepilot_core.testing import FrozenClock
from tests.server.conftest import Tenant, serve_tenant
from tests.server.helpers import Client, assert_error

pytestmark = pytest.mark.anyio

BODY_A = msgspec.json.encode({"customer_email": "marjorie@acme.com", "send_email": False})
BODY_B = msgspec.json.encode({"customer_email": "otto@acme.com", "send_email": False})


async def post(
    client: Client,
    tenant: Tenant,
    key: str | None,
    body: bytes = BODY_A,
    path: str = "/v1/invitations",
) -> httpx.Response:
    headers = {**tenant.headers, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(path, content=body, headers=headers)


async def submission_ids(client: Client, tenant: Tenant) -> list[str]:
    response = await client.get("/v1/submissions", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["data"]]


def replayed(response: httpx.Response) -> bool:
    header: str | None = response.headers.get("Idempotent-Replayed")
    return header == "true"


# -- replay ----------------------------------------------------------------------------------------


async def test_same_key_and_body_replays_the_first_response(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    first = await post(client, tenant, "order-1")
    assert first.status_code == 201, first.text
    assert not replayed(first)

    second = await post(client, tenant, "order-1")
    assert second.status_code == 201  # a replay, not the 200 of a reused invitation
    assert second.content == first.content
    assert replayed(second)
    assert second.headers["content-type"].startswith("application/json")

    third = await post(client, tenant, "order-1")
    assert third.status_code == 201
    assert third.content == first.content
    assert replayed(third)

    assert await submission_ids(client, tenant) == [first.json()["submission"]["id"]]
    events = await ravepilot.storage.list_events(tenant.workspace_id)
    assert [e.type for e in events] == ["invitation.created"]

    # Without a key the same body is an ordinary (reused) invitation.
    plain = await post(client, tenant, None)
    assert plain.status_code == 200
    assert not replayed(plain)


async def test_replay_is_the_stored_response_not_a_fresh_one(
    tenant: Tenant, client: Client
) -> None:
    first = await post(client, tenant, "order-1")
    # The submission moves on (here: its email state), but the replay is the first answer.
    resent = await post(
        client,
        tenant,
        None,
        msgspec.json.encode({"customer_email": "marjorie@acme.com", "send_email": True}),
    )
    assert resent.json()["submission"]["invitation_email"]["status"] != "not_sent"
    replay = await post(client, tenant, "order-1")
    assert replayed(replay)
    assert replay.content == first.content
    assert replay.json()["submission"]["invitation_email"]["status"] == "not_sent"


async def test_collector_and_webhook_creation_replay_too(tenant: Tenant, client: Client) -> None:
    for key, path, body, count in (
        ("col-1", "/v1/collectors", {"name": "Spring campaign"}, 2),  # the primary and a new one
        ("we-1", "/v1/webhooks", {"url": "https://hooks.example.com/rp"}, 1),
    ):
        encoded = msgspec.json.encode(body)
        first = await post(client, tenant, key, encoded, path)
        second = await post(client, tenant, key, encoded, path)
        assert first.status_code == second.status_code == 201
        assert second.content == first.content and replayed(second)
        listed = (await client.get(path, headers=tenant.headers)).json()["data"]
        assert len(listed) == count, path


async def test_a_replayed_webhook_secret_is_not_stored_in_plaintext(
    tenant: Tenant, client: Client, tmp_path: Path
) -> None:
    # Webhook secrets are encrypted at rest; the remembered response must not undo that.
    hook_body = msgspec.json.encode({"url": "https://hooks.example.com/rp"})
    first = await post(client, tenant, "we-secret", hook_body, "/v1/webhooks")
    assert first.status_code == 201, first.text
    secret = first.json()["secret"].encode()
    files = {path.name: path.read_bytes() for path in tmp_path.glob("ravepilot.db*")}
    assert "ravepilot.db" in files
    leaking = sorted(name for name, content in files.items() if secret in content)
    assert leaking == [], f"the webhook secret is stored in plaintext in {leaking}"


# -- conflicts -------------------------------------------------------------------------------------


async def test_same_key_with_another_body_is_a_409(tenant: Tenant, client: Client) -> None:
    first = await post(client, tenant, "order-1", BODY_A)
    assert first.status_code == 201
    second = await post(client, tenant, "order-1", BODY_B)
    message = assert_error(second, 409)["error"]
    assert "Idempotency-Key" in message
    assert await submission_ids(client, tenant) == [first.json()["submission"]["id"]]
    # The original still replays.
    again = await post(client, tenant, "order-1", BODY_A)
    assert again.status_code == 201 and replayed(again)


async def test_same_key_on_another_path_is_a_409(tenant: Tenant, client: Client) -> None:
    first = await post(client, tenant, "shared", BODY_A)
    assert first.status_code == 201
    link_body = msgspec.json.encode({"customer_email": "marjorie@acme.com"})
    assert_error(await post(client, tenant, "shared", link_body, "/v1/invitations/link"), 409)
    collector_body = msgspec.json.encode({"name": "Spring"})
    assert_error(await post(client, tenant, "shared", collector_body, "/v1/collectors"), 409)
    collectors = (await client.get("/v1/collectors", headers=tenant.headers)).json()["data"]
    assert len(collectors) == 1


async def test_key_length_limit(tenant: Tenant, client: Client) -> None:
    message = assert_error(await post(client, tenant, "k" * 256), 400)["error"]
    assert "Idempotency-Key" in message
    assert await submission_ids(client, tenant) == []

    longest = await post(client, tenant, "k" * 255)
    assert longest.status_code == 201, longest.text
    assert replayed(await post(client, tenant, "k" * 255))


async def test_empty_key_is_a_400(tenant: Tenant, client: Client) -> None:
    assert "Idempotency-Key" in assert_error(await post(client, tenant, ""), 400)["error"]
    assert await submission_ids(client, tenant) == []


async def test_keys_are_per_workspace(tenant: Tenant, other_tenant: Tenant, client: Client) -> None:
    ours = await post(client, tenant, "order-1")
    theirs = await post(client, other_tenant, "order-1")
    assert ours.status_code == theirs.status_code == 201
    assert not replayed(ours) and not replayed(theirs)
    assert ours.json()["submission"]["id"] != theirs.json()["submission"]["id"]
    assert await submission_ids(client, tenant) == [ours.json()["submission"]["id"]]
    assert await submission_ids(client, other_tenant) == [theirs.json()["submission"]["id"]]
    # And a different body under the same key in the other workspace is no conflict here.
    assert (await post(client, other_tenant, "order-2", BODY_B)).status_code == 201
    reused = await post(client, tenant, "order-2", BODY_A)  # marjorie exists here already
    assert reused.status_code == 200, reused.text
    assert not replayed(reused)


# -- failures are not remembered -------------------------------------------------------------------


async def test_a_failed_request_releases_the_key(tenant: Tenant, client: Client) -> None:
    failing = msgspec.json.encode(
        {"customer_email": "marjorie@acme.com", "collector_id": "col_NOPE", "send_email": False}
    )
    first = await post(client, tenant, "retry-me", failing)
    assert_error(first, 404)
    again = await post(client, tenant, "retry-me", failing)
    assert_error(again, 404)
    assert not replayed(again)

    fixed = await post(client, tenant, "retry-me", BODY_A)
    assert fixed.status_code == 201, fixed.text
    assert not replayed(fixed)
    replay = await post(client, tenant, "retry-me", BODY_A)
    assert replayed(replay) and replay.content == fixed.content
    # Now that it succeeded, the key is taken: the failing body is a conflict, not a 404.
    assert_error(await post(client, tenant, "retry-me", failing), 409)


async def test_a_validation_error_in_the_service_releases_the_key(
    tenant: Tenant, client: Client
) -> None:
    bad_phone = msgspec.json.encode(
        {"customer_email": "marjorie@acme.com", "customer_phone": "555-0132", "send_email": False}
    )
    assert_error(await post(client, tenant, "phone", bad_phone), 400)
    fixed = await post(client, tenant, "phone", BODY_A)
    assert fixed.status_code == 201, fixed.text


async def test_a_key_in_flight_is_a_409(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    fingerprint = request_fingerprint("POST", "/v1/invitations", BODY_A)
    claimed = await ravepilot.idempotency.begin(tenant.workspace_id, "busy", fingerprint)
    assert claimed is None  # we now hold the key, as a request still running would

    message = assert_error(await post(client, tenant, "busy", BODY_A), 409)["error"]
    assert "progress" in message
    assert_error(await post(client, tenant, "busy", BODY_B), 409)
    assert await submission_ids(client, tenant) == []

    # Once the first request finishes, its response is what the key replays.
    await ravepilot.idempotency.complete(
        tenant.workspace_id,
        "busy",
        201,
        b'{"ok":true,"note":"from the first request"}',
    )
    replay = await post(client, tenant, "busy", BODY_A)
    assert replay.status_code == 201 and replayed(replay)
    assert replay.json() == {"ok": True, "note": "from the first request"}


async def test_concurrent_requests_with_one_key_create_once(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    responses: list[httpx.Response] = []

    async def send() -> None:
        responses.append(await post(client, tenant, "rush", BODY_A))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(send)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    fresh = [r for r in responses if r.status_code == 201 and not replayed(r)]
    assert len(fresh) == 1
    assert all(r.content == fresh[0].content for r in responses if r.status_code == 201)
    assert all(replayed(r) for r in responses if r.status_code == 201 and r is not fresh[0])
    assert await submission_ids(client, tenant) == [fresh[0].json()["submission"]["id"]]
    events = await ravepilot.storage.list_events(tenant.workspace_id)
    assert len(events) == 1


# -- expiry ----------------------------------------------------------------------------------------


@dataclass
class Frozen:
    client: Client
    tenant: Tenant
    clock: FrozenClock


@pytest.fixture
async def frozen(tmp_path: Path) -> AsyncIterator[Frozen]:
    clock = FrozenClock()
    async with serve_tenant(tmp_path / "frozen", "frozen", clock=clock) as (client, tenant):
        yield Frozen(client=client, tenant=tenant, clock=clock)


async def test_keys_are_forgotten_after_24_hours(frozen: Frozen) -> None:
    client, tenant, clock = frozen.client, frozen.tenant, frozen.clock
    first = await post(client, tenant, "daily", BODY_A)
    assert first.status_code == 201, first.text

    clock.advance(timedelta(hours=23, minutes=59, seconds=59))
    assert_error(await post(client, tenant, "daily", BODY_B), 409)
    still = await post(client, tenant, "daily", BODY_A)
    assert still.status_code == 201 and replayed(still)
    assert still.content == first.content

    clock.advance(timedelta(seconds=2))  # 24 h + 1 s after the first request
    fresh = await post(client, tenant, "daily", BODY_B)
    assert fresh.status_code == 201, fresh.text
    assert not replayed(fresh)
    assert fresh.json()["submission"]["customer"]["email"] == "otto@acme.com"
    assert len(await submission_ids(client, tenant)) == 2
    # The key now belongs to the new request.
    assert replayed(await post(client, tenant, "daily", BODY_B))
    assert_error(await post(client, tenant, "daily", BODY_A), 409)
