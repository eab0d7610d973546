"""POST /v1/invitations and POST /v1/invitations/link over HTTP (real SQLite, real outbox)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from ravepilot_core import RavePilot
from ravepilot_core.invitations import InvitationRequest
from ravepilot_core.testing import FrozenClock
from tests.server.conftest import PUBLIC_URL, Tenant, open_ravepilot
from tests.server.helpers import Client, assert_error

pytestmark = pytest.mark.anyio


async def invite(
    client: Client, tenant: Tenant, path: str = "/v1/invitations", **body: Any
) -> httpx.Response:
    body.setdefault("customer_email", "marjorie@acme.com")
    return await client.post(path, json=body, headers=tenant.headers)


async def wait_for_email_status(
    client: Client, tenant: Tenant, submission_id: str, wanted: str, timeout: float = 5.0
) -> dict[str, Any]:
    """Poll GET /v1/submissions/{id} until invitation_email.status is ``wanted``."""
    submission: dict[str, Any] = {}
    with anyio.move_on_after(timeout):
        while True:
            response = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
            assert response.status_code == 200, response.text
            submission = response.json()
            if submission["invitation_email"]["status"] == wanted:
                return submission
            await anyio.sleep(0.05)
    pytest.fail(
        f"invitation_email of {submission_id} never became {wanted!r}: "
        f"{submission.get('invitation_email')}"
    )


def outbox_messages(tmp_path: Path) -> list[EmailMessage]:
    outbox = tmp_path / "outbox"
    if not outbox.exists():
        return []
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


# -- created, then reused --------------------------------------------------------------------------


async def test_first_post_creates_and_second_reuses_the_same_link(
    tenant: Tenant, client: Client
) -> None:
    first = await invite(client, tenant, customer_name="Marjorie Stone", send_email=False)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["ok"] is True
    assert created["reused"] is False
    token = created["invite_token"]
    assert token
    assert created["link"] == f"{PUBLIC_URL}/r/{token}"
    submission = created["submission"]
    assert submission["id"].startswith("sub_")
    assert submission["status"] == "invited"
    assert submission["link"] == created["link"]
    assert submission["customer"] == {
        "email": "marjorie@acme.com",
        "name": "Marjorie Stone",
        "phone": None,
    }

    second = await invite(client, tenant, customer_name="Marjorie Stone", send_email=False)
    assert second.status_code == 200, second.text
    reused = second.json()
    assert reused["ok"] is True
    assert reused["reused"] is True
    assert reused["link"] == created["link"]
    assert reused["invite_token"] == token
    assert reused["submission"]["id"] == submission["id"]

    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert [s["id"] for s in listed.json()["data"]] == [submission["id"]]


async def test_email_is_matched_case_insensitively(tenant: Tenant, client: Client) -> None:
    first = await invite(client, tenant, customer_email="Marjorie@ACME.com", send_email=False)
    assert first.status_code == 201, first.text
    assert first.json()["submission"]["customer"]["email"] == "marjorie@acme.com"

    second = await invite(client, tenant, customer_email="marjorie@acme.com", send_email=False)
    assert second.status_code == 200, second.text
    assert second.json()["reused"] is True
    assert second.json()["submission"]["id"] == first.json()["submission"]["id"]
    assert second.json()["link"] == first.json()["link"]


async def test_different_customers_get_different_links(tenant: Tenant, client: Client) -> None:
    one = await invite(client, tenant, customer_email="one@acme.com", send_email=False)
    two = await invite(client, tenant, customer_email="two@acme.com", send_email=False)
    assert one.status_code == two.status_code == 201
    assert one.json()["submission"]["id"] != two.json()["submission"]["id"]
    assert one.json()["invite_token"] != two.json()["invite_token"]


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["(415) 555-0132", "415.555.0132", "+1 415 555 0132"])
async def test_phone_spellings_are_stored_as_e164(
    tenant: Tenant, client: Client, phone: str
) -> None:
    response = await invite(client, tenant, customer_phone=phone, send_email=False)
    assert response.status_code == 201, response.text
    assert response.json()["submission"]["customer"]["phone"] == "+14155550132"
    submission_id = response.json()["submission"]["id"]
    stored = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert stored.json()["customer"]["phone"] == "+14155550132"


@pytest.mark.parametrize(
    "phone", ["555-0132", "+44 20 7946 0958", "not a phone", "415-555-013", "+1 415 555 01320"]
)
async def test_phones_that_are_not_ten_digit_north_american_are_rejected(
    tenant: Tenant, client: Client, phone: str
) -> None:
    response = await invite(client, tenant, customer_phone=phone, send_email=False)
    body = assert_error(response, 400)
    assert "customer_phone" in body["error"]
    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert listed.json()["data"] == []


@pytest.mark.parametrize("address", ["not-an-email", "marjorie@", "@acme.com", "a b@acme.com", ""])
async def test_invalid_email_is_a_400_naming_customer_email(
    tenant: Tenant, client: Client, address: str
) -> None:
    response = await invite(client, tenant, customer_email=address, send_email=False)
    body = assert_error(response, 400)
    assert "customer_email" in body["error"]


async def test_missing_email_is_a_400_naming_customer_email(tenant: Tenant, client: Client) -> None:
    response = await client.post(
        "/v1/invitations", json={"customer_name": "Nobody"}, headers=tenant.headers
    )
    body = assert_error(response, 400)
    assert "customer_email" in body["error"]


async def test_unknown_collector_is_a_404(tenant: Tenant, client: Client) -> None:
    response = await invite(client, tenant, collector_id="col_DOESNOTEXIST", send_email=False)
    assert_error(response, 404)
    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_another_workspaces_collector_is_a_404(
    tenant: Tenant, other_tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    theirs = await ravepilot.collectors.primary(other_tenant.workspace_id)
    response = await invite(client, tenant, collector_id=theirs.id, send_email=False)
    assert_error(response, 404)
    for who in (tenant, other_tenant):
        listed = await client.get("/v1/submissions", headers=who.headers)
        assert listed.json()["data"] == []


async def test_explicit_primary_collector_is_the_same_as_the_default(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    primary = await ravepilot.collectors.primary(tenant.workspace_id)
    first = await invite(client, tenant, send_email=False)
    second = await invite(client, tenant, collector_id=primary.id, send_email=False)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["submission"]["id"] == first.json()["submission"]["id"]
    assert first.json()["submission"]["collector_id"] == primary.id


# -- email or not ----------------------------------------------------------------------------------


async def test_send_email_false_sends_nothing(
    tenant: Tenant, client: Client, ravepilot: RavePilot, tmp_path: Path
) -> None:
    quiet = await invite(client, tenant, customer_email="quiet@acme.com", send_email=False)
    assert quiet.status_code == 201, quiet.text
    quiet_submission = quiet.json()["submission"]
    assert quiet_submission["invitation_email"]["status"] == "not_sent"
    assert await ravepilot.storage.list_jobs(quiet_submission["id"]) == []

    # A barrier: once another customer's email went out, the worker has had every chance.
    loud = await invite(client, tenant, customer_email="loud@acme.com")
    assert loud.status_code == 201, loud.text
    await wait_for_email_status(client, tenant, loud.json()["submission"]["id"], "sent")

    messages = outbox_messages(tmp_path)
    assert [m["To"] for m in messages] == ["loud@acme.com"]
    again = await client.get(f"/v1/submissions/{quiet_submission['id']}", headers=tenant.headers)
    assert again.json()["invitation_email"]["status"] == "not_sent"


async def test_link_endpoint_never_sends(
    tenant: Tenant, client: Client, ravepilot: RavePilot, tmp_path: Path
) -> None:
    first = await invite(client, tenant, path="/v1/invitations/link", customer_name="Marjorie")
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["ok"] is True and result["reused"] is False
    assert result["link"] == f"{PUBLIC_URL}/r/{result['invite_token']}"
    assert result["submission"]["invitation_email"]["status"] == "not_sent"

    second = await invite(client, tenant, path="/v1/invitations/link")
    assert second.status_code == 200, second.text
    assert second.json()["reused"] is True
    assert second.json()["link"] == result["link"]
    assert second.json()["submission"]["invitation_email"]["status"] == "not_sent"

    assert await ravepilot.storage.list_jobs(result["submission"]["id"]) == []
    assert outbox_messages(tmp_path) == []


async def test_link_endpoint_rejects_send_email(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    response = await invite(client, tenant, path="/v1/invitations/link", send_email=True)
    body = assert_error(response, 400)
    assert "send_email" in body["error"]
    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_unknown_fields_are_rejected(tenant: Tenant, client: Client) -> None:
    response = await invite(client, tenant, customer_emial="typo@acme.com")
    body = assert_error(response, 400)
    assert "customer_emial" in body["error"]


async def test_link_and_invitation_share_the_same_submission(
    tenant: Tenant, client: Client
) -> None:
    link = await invite(client, tenant, path="/v1/invitations/link")
    invitation = await invite(client, tenant, send_email=False)
    assert link.status_code == 201
    assert invitation.status_code == 200
    assert invitation.json()["submission"]["id"] == link.json()["submission"]["id"]
    assert invitation.json()["link"] == link.json()["link"]


async def test_invitation_email_is_sent_by_the_worker(tenant: Tenant, client: Client) -> None:
    response = await invite(client, tenant)
    assert response.status_code == 201, response.text
    assert response.json()["submission"]["invitation_email"]["status"] in ("queued", "sent")
    submission = await wait_for_email_status(
        client, tenant, response.json()["submission"]["id"], "sent"
    )
    assert submission["invitation_email"]["sent_at"] is not None
    assert submission["invitation_email"]["error"] is None


async def test_outbox_email_holds_the_link(tenant: Tenant, client: Client, tmp_path: Path) -> None:
    collector = await client.post(
        "/v1/collectors",
        json={"name": "Spring campaign", "brand": {"name": "Acme Rockets"}},
        headers=tenant.headers,
    )
    assert collector.status_code == 201, collector.text
    response = await invite(
        client,
        tenant,
        customer_email="Marjorie@ACME.com",
        customer_name="Marjorie",
        collector_id=collector.json()["id"],
    )
    assert response.status_code == 201, response.text
    link = response.json()["link"]
    await wait_for_email_status(client, tenant, response.json()["submission"]["id"], "sent")

    messages = outbox_messages(tmp_path)
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "marjorie@acme.com"
    assert "Acme Rockets" in message["Subject"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    assert link in plain.get_content()
    assert f'href="{link}"' in html.get_content()


# -- the resend throttle ---------------------------------------------------------------------------


async def test_reposting_right_away_does_not_send_again(
    tenant: Tenant, client: Client, ravepilot: RavePilot, tmp_path: Path
) -> None:
    first = await invite(client, tenant)
    assert first.status_code == 201, first.text
    submission_id = first.json()["submission"]["id"]
    await wait_for_email_status(client, tenant, submission_id, "sent")

    second = await invite(client, tenant)
    assert second.status_code == 200, second.text
    assert second.json()["reused"] is True
    # Not re-queued: the state still says the first email went out.
    assert second.json()["submission"]["invitation_email"]["status"] == "sent"

    jobs = await ravepilot.storage.list_jobs(submission_id)
    assert len(jobs) == 1
    assert len(outbox_messages(tmp_path)) == 1


@pytest.fixture
async def frozen(tmp_path: Path) -> AsyncIterator[tuple[RavePilot, FrozenClock]]:
    clock = FrozenClock()
    async with open_ravepilot(tmp_path / "frozen", clock=clock) as instance:
        yield instance, clock


async def test_resend_after_the_throttle_window(frozen: tuple[RavePilot, FrozenClock]) -> None:
    rp, clock = frozen
    workspace = await rp.workspaces.create("frozen")
    request = InvitationRequest(customer_email="marjorie@acme.com")

    first = await rp.invitations.create(workspace.id, request)
    assert first.reused is False
    submission_id = first.submission.id
    assert len(await rp.storage.list_jobs(submission_id)) == 1

    clock.advance(timedelta(minutes=9, seconds=59))
    within = await rp.invitations.create(workspace.id, request)
    assert within.reused is True
    assert within.submission.id == submission_id
    assert len(await rp.storage.list_jobs(submission_id)) == 1

    clock.advance(timedelta(seconds=2))  # 10:01 after the first email was requested
    after = await rp.invitations.create(workspace.id, request)
    assert after.reused is True
    assert after.link == first.link
    assert after.submission.invitation_email.status == "queued"
    jobs = await rp.storage.list_jobs(submission_id)
    assert len(jobs) == 2
    assert jobs[1].run_at == clock.now()

    # ... and the window starts again from that resend.
    again = await rp.invitations.create(workspace.id, request)
    assert again.reused is True
    assert len(await rp.storage.list_jobs(submission_id)) == 2


async def test_reuse_with_send_email_false_never_queues(
    frozen: tuple[RavePilot, FrozenClock],
) -> None:
    rp, clock = frozen
    workspace = await rp.workspaces.create("frozen")
    first = await rp.invitations.create(
        workspace.id, InvitationRequest(customer_email="marjorie@acme.com", send_email=False)
    )
    clock.advance(timedelta(hours=1))
    again = await rp.invitations.create(
        workspace.id, InvitationRequest(customer_email="marjorie@acme.com", send_email=False)
    )
    assert again.reused is True
    assert again.submission.invitation_email.status == "not_sent"
    assert await rp.storage.list_jobs(first.submission.id) == []


# -- concurrency and the event ---------------------------------------------------------------------


async def test_concurrent_identical_posts_create_exactly_one_submission(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    body = {"customer_email": "rush@acme.com", "customer_name": "Rush"}
    responses: list[httpx.Response] = []

    async def post() -> None:
        response = await client.post("/v1/invitations", json=body, headers=tenant.headers)
        responses.append(response)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(post)

    statuses = [r.status_code for r in responses]
    assert len(statuses) == 50
    assert set(statuses) <= {200, 201}, [r.text for r in responses if r.status_code >= 300]
    assert statuses.count(201) == 1
    assert len({r.json()["submission"]["id"] for r in responses}) == 1
    assert len({r.json()["link"] for r in responses}) == 1

    listed = await client.get("/v1/submissions", headers=tenant.headers)
    assert len(listed.json()["data"]) == 1
    submission_id = listed.json()["data"][0]["id"]

    events = await ravepilot.storage.list_events(tenant.workspace_id)
    assert [e.type for e in events] == ["invitation.created"]
    # The resend throttle holds under the rush too: one email job, not fifty.
    assert len(await ravepilot.storage.list_jobs(submission_id)) == 1


async def test_invitation_created_event_payload(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    response = await invite(client, tenant, customer_name="Marjorie", customer_phone="415.555.0132")
    assert response.status_code == 201, response.text
    submission = response.json()["submission"]

    events = await ravepilot.storage.list_events(tenant.workspace_id)
    assert len(events) == 1
    record = events[0]
    assert record.type == "invitation.created"
    payload = msgspec.json.decode(record.payload)
    assert set(payload) == {"id", "type", "created_at", "workspace_id", "data"}
    assert payload["id"] == record.id
    assert payload["id"].startswith("evt_")
    assert payload["type"] == "invitation.created"
    assert payload["workspace_id"] == tenant.workspace_id
    assert payload["created_at"] == submission["created_at"]
    assert payload["data"] == submission

    # Reusing the invitation fires no second event.
    again = await invite(client, tenant, customer_name="Marjorie")
    assert again.status_code == 200
    assert len(await ravepilot.storage.list_events(tenant.workspace_id)) == 1


async def test_events_belong_to_their_workspace(
    tenant: Tenant, other_tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    assert (await invite(client, tenant, send_email=False)).status_code == 201
    other = await invite(client, other_tenant, send_email=False)
    assert other.status_code == 201  # the same email in another workspace is another customer
    ours = await ravepilot.storage.list_events(tenant.workspace_id)
    theirs = await ravepilot.storage.list_events(other_tenant.workspace_id)
    assert len(ours) == len(theirs) == 1
    assert msgspec.json.decode(theirs[0].payload)["data"]["id"] == other.json()["submission"]["id"]
