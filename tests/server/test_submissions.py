"""GET /v1/submissions (filters, bounds, offset, cursor pagination) and GET /v1/submissions/{id}."""

from __future__ import annotations

from typing import Any

import pytest

from ravepilot_core import RavePilot
from ravepilot_core.crypto import hash_secret
from ravepilot_core.ids import new_id
from ravepilot_core.invitations import InvitationRequest
from ravepilot_core.models import Customer, InvitationEmail, SubmissionRecord, SubmissionStatus
from tests.server.conftest import Tenant
from tests.server.helpers import Client, assert_error, expect, new_submission

pytestmark = pytest.mark.anyio


async def invite_many(client: Client, tenant: Tenant, count: int, prefix: str = "c") -> list[str]:
    """Invite ``count`` customers over HTTP; return the submission ids in creation order."""
    return [await new_submission(client, tenant, f"{prefix}{n}@acme.com") for n in range(count)]


async def seed(ravepilot: RavePilot, tenant: Tenant, count: int) -> list[str]:
    """Create ``count`` submissions through the core service (fast); ids in creation order."""
    ids = []
    for n in range(count):
        result = await ravepilot.invitations.create(
            tenant.workspace_id,
            InvitationRequest(customer_email=f"seed{n}@acme.com", send_email=False),
        )
        ids.append(result.submission.id)
    return ids


async def store_with_status(
    ravepilot: RavePilot, tenant: Tenant, email: str, status: SubmissionStatus
) -> str:
    """Store a submission already in ``status`` (the portal that moves it is not under test)."""
    collector = await ravepilot.collectors.primary(tenant.workspace_id)
    now = ravepilot.context.clock.now()
    submission_id = new_id("sub", now)
    token = ravepilot.context.keyring.invite_token(submission_id)
    record = SubmissionRecord(
        id=submission_id,
        workspace_id=tenant.workspace_id,
        collector_id=collector.id,
        status=status,
        customer=Customer(email=email),
        token_hash=hash_secret(token),
        invitation_email=InvitationEmail(status="not_sent"),
        created_at=now,
        updated_at=now,
    )
    _, created = await ravepilot.storage.create_submission(record)
    assert created
    return submission_id


async def list_ids(
    client: Client, tenant: Tenant, query: str = ""
) -> tuple[list[str], dict[str, Any]]:
    body = expect(await client.get(f"/v1/submissions{query}", headers=tenant.headers))
    assert set(body) == {"data", "has_more", "next_cursor"}
    return [s["id"] for s in body["data"]], body


# -- listing ---------------------------------------------------------------------------------------


async def test_empty_list(tenant: Tenant, client: Client) -> None:
    ids, body = await list_ids(client, tenant)
    assert ids == []
    assert body["has_more"] is False
    assert body["next_cursor"] is None


async def test_list_is_newest_first(tenant: Tenant, client: Client) -> None:
    created = await invite_many(client, tenant, 4)
    ids, body = await list_ids(client, tenant)
    assert ids == list(reversed(created))
    assert body["has_more"] is False
    assert body["next_cursor"] is None
    emails = [s["customer"]["email"] for s in body["data"]]
    assert emails == ["c3@acme.com", "c2@acme.com", "c1@acme.com", "c0@acme.com"]


async def test_status_filter(tenant: Tenant, client: Client, ravepilot: RavePilot) -> None:
    invited = await invite_many(client, tenant, 2)
    submitted = await store_with_status(ravepilot, tenant, "done@acme.com", "submitted")
    withdrawn = await store_with_status(ravepilot, tenant, "gone@acme.com", "withdrawn")

    ids, _ = await list_ids(client, tenant, "?status=invited")
    assert ids == list(reversed(invited))
    ids, body = await list_ids(client, tenant, "?status=submitted")
    assert ids == [submitted]
    assert body["data"][0]["status"] == "submitted"
    ids, body = await list_ids(client, tenant, "?status=withdrawn")
    assert ids == [withdrawn]
    assert body["data"][0]["link"] is None  # a withdrawn submission has no live link
    ids, _ = await list_ids(client, tenant, "?status=rendered")
    assert ids == []
    ids, _ = await list_ids(client, tenant)
    assert set(ids) == {*invited, submitted, withdrawn}


@pytest.mark.parametrize("status", ["bogus", "INVITED", "sent"])
async def test_invalid_status_is_a_400(tenant: Tenant, client: Client, status: str) -> None:
    response = await client.get(f"/v1/submissions?status={status}", headers=tenant.headers)
    message = assert_error(response, 400)["error"]
    assert "status" in message


@pytest.mark.parametrize("limit", ["0", "201", "-1", "1000", "ten"])
async def test_limit_out_of_bounds_is_a_400(tenant: Tenant, client: Client, limit: str) -> None:
    response = await client.get(f"/v1/submissions?limit={limit}", headers=tenant.headers)
    message = assert_error(response, 400)["error"]
    assert "limit" in message


@pytest.mark.parametrize("offset", ["-1", "x"])
async def test_bad_offset_is_a_400(tenant: Tenant, client: Client, offset: str) -> None:
    response = await client.get(f"/v1/submissions?offset={offset}", headers=tenant.headers)
    assert "offset" in assert_error(response, 400)["error"]


async def test_default_limit_is_50_and_200_is_allowed(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    created = await seed(ravepilot, tenant, 51)
    newest_first = list(reversed(created))

    ids, body = await list_ids(client, tenant)
    assert ids == newest_first[:50]
    assert body["has_more"] is True
    assert body["next_cursor"]

    ids, body = await list_ids(client, tenant, "?limit=200")
    assert ids == newest_first
    assert body["has_more"] is False
    assert body["next_cursor"] is None

    ids, body = await list_ids(client, tenant, "?limit=51")
    assert ids == newest_first
    assert body["has_more"] is False

    ids, body = await list_ids(client, tenant, "?limit=1")
    assert ids == newest_first[:1]
    assert body["has_more"] is True


async def test_offset(tenant: Tenant, client: Client, ravepilot: RavePilot) -> None:
    newest_first = list(reversed(await seed(ravepilot, tenant, 6)))
    ids, body = await list_ids(client, tenant, "?limit=2&offset=2")
    assert ids == newest_first[2:4]
    assert body["has_more"] is True
    ids, body = await list_ids(client, tenant, "?limit=2&offset=4")
    assert ids == newest_first[4:6]
    assert body["has_more"] is False
    ids, body = await list_ids(client, tenant, "?offset=6")
    assert ids == []
    assert body["has_more"] is False
    ids, _ = await list_ids(client, tenant, "?offset=0")
    assert ids == newest_first


async def test_cursor_walks_every_item_once(tenant: Tenant, client: Client) -> None:
    newest_first = list(reversed(await invite_many(client, tenant, 7)))
    seen: list[str] = []
    pages: list[int] = []
    query = "?limit=3"
    for _ in range(10):
        ids, body = await list_ids(client, tenant, query)
        seen.extend(ids)
        pages.append(len(ids))
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        assert isinstance(body["next_cursor"], str) and body["next_cursor"]
        query = f"?limit=3&cursor={body['next_cursor']}"
    else:
        pytest.fail("pagination never ended")
    assert pages == [3, 3, 1]
    assert seen == newest_first
    assert len(set(seen)) == len(seen)


async def test_cursor_is_stable_when_new_submissions_arrive(tenant: Tenant, client: Client) -> None:
    older = list(reversed(await invite_many(client, tenant, 5)))
    ids, body = await list_ids(client, tenant, "?limit=2")
    assert ids == older[:2]
    newer = await invite_many(client, tenant, 3, prefix="new")
    seen = list(ids)
    cursor = body["next_cursor"]
    while cursor:
        ids, body = await list_ids(client, tenant, f"?limit=2&cursor={cursor}")
        seen.extend(ids)
        cursor = body["next_cursor"]
    # Keyset pagination neither repeats an item nor skips one when new items arrive in front.
    assert seen == older
    assert set(seen).isdisjoint(newer)


async def test_cursor_with_status_filter(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    invited = list(reversed(await invite_many(client, tenant, 3)))
    await store_with_status(ravepilot, tenant, "done@acme.com", "submitted")
    ids, body = await list_ids(client, tenant, "?status=invited&limit=2")
    assert ids == invited[:2]
    ids, body = await list_ids(
        client, tenant, f"?status=invited&limit=2&cursor={body['next_cursor']}"
    )
    assert ids == invited[2:]
    assert body["has_more"] is False


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "!!!", "Y29sXzAxSkQ", "x" * 150],  # "Y29sXzAxSkQ" is base64 of "col_01JD"
)
async def test_garbage_cursor_is_a_400(tenant: Tenant, client: Client, cursor: str) -> None:
    await invite_many(client, tenant, 1)
    response = await client.get(f"/v1/submissions?cursor={cursor}", headers=tenant.headers)
    assert "cursor" in assert_error(response, 400)["error"]


async def test_cursor_and_offset_together_is_a_400(tenant: Tenant, client: Client) -> None:
    await invite_many(client, tenant, 3)
    _, body = await list_ids(client, tenant, "?limit=1")
    cursor = body["next_cursor"]
    assert cursor
    response = await client.get(
        f"/v1/submissions?limit=1&offset=1&cursor={cursor}", headers=tenant.headers
    )
    message = assert_error(response, 400)["error"]
    assert "cursor" in message and "offset" in message


# -- one submission --------------------------------------------------------------------------------


async def test_get_one(tenant: Tenant, client: Client) -> None:
    created = await client.post(
        "/v1/invitations",
        json={
            "customer_email": "Marjorie@ACME.com",
            "customer_name": "Marjorie Stone",
            "customer_phone": "(415) 555-0132",
            "send_email": False,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    submission_id = created.json()["submission"]["id"]

    response = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    submission = response.json()
    assert submission["id"] == submission_id
    assert submission["collector_id"].startswith("col_")
    assert submission["status"] == "invited"
    assert submission["customer"] == {
        "email": "marjorie@acme.com",
        "name": "Marjorie Stone",
        "phone": "+14155550132",
    }
    assert submission["link"] == created.json()["link"]
    assert submission["invitation_email"]["status"] == "not_sent"
    assert submission["consent"] is None
    assert submission["clips"] == []
    assert submission["renders"] == []
    assert submission["created_at"].endswith("Z")
    assert submission["updated_at"].endswith("Z")
    assert submission == created.json()["submission"]


@pytest.mark.parametrize("submission_id", ["sub_01JD0000000000000000000000", "nope", "col_x"])
async def test_unknown_submission_is_a_404(
    tenant: Tenant, client: Client, submission_id: str
) -> None:
    await invite_many(client, tenant, 1)
    response = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert_error(response, 404)
