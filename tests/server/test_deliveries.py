"""Deliveries over HTTP: the worker sends them, and operators test, rotate, retry and recover.

The server runs its real background worker (SystemClock) against a receiver on loopback; the
retry schedule and the other time rules are tested with the injected clock in tests/core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from ravepilot_core import RavePilot
from ravepilot_core.signing import verify_signature
from tests.server.conftest import Receiver, Tenant, make_tenant
from tests.server.helpers import Client, assert_error, expect, new_submission

pytestmark = pytest.mark.anyio


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (the worker runs concurrently)."""
    with anyio.fail_after(timeout):
        while True:
            result = await check()
            if result:
                return result
            await anyio.sleep(0.02)


async def register(client: Client, tenant: Tenant, url: str) -> dict[str, Any]:
    return expect(await client.post("/v1/webhooks", json={"url": url}, headers=tenant.headers), 201)


async def deliveries(client: Client, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers)
    data: list[dict[str, Any]] = expect(response)["data"]
    return data


async def settled(client: Client, tenant: Tenant, endpoint_id: str) -> list[dict[str, Any]]:
    """Wait until the endpoint has deliveries and none of them is waiting for its first try."""

    async def check() -> list[dict[str, Any]]:
        found = await deliveries(client, tenant, endpoint_id)
        return found if found and all(d["attempts"] for d in found) else []

    result: list[dict[str, Any]] = await eventually(check)
    return result


async def test_an_invitation_is_delivered_with_an_attempt_log(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    submission_id = await new_submission(client, tenant)
    [delivery] = await settled(client, tenant, endpoint["id"])
    assert (delivery["status"], delivery["attempts"], delivery["response_status"]) == (
        "succeeded",
        1,
        204,
    )
    detail = expect(await client.get(f"/v1/deliveries/{delivery['id']}", headers=tenant.headers))
    [attempt] = detail.pop("attempt_log")
    assert detail == delivery
    assert attempt["number"] == 1
    assert attempt["target_ip"] == "127.0.0.1"
    assert attempt["status_code"] == 204
    assert attempt["error"] is None
    assert attempt["latency_ms"] >= 0
    [(headers, body)] = receiver.received
    assert headers["X-RavePilot-Delivery"] == delivery["id"]
    assert headers["X-RavePilot-Event"] == "invitation.created"
    assert headers["User-Agent"].startswith("RavePilot-Webhooks/")
    assert submission_id.encode() in body


async def test_test_sends_a_synthetic_event_to_one_endpoint(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    target = await register(client, tenant, receiver.url)
    bystander = await register(client, tenant, receiver.url + "/other")
    response = await client.post(f"/v1/webhooks/{target['id']}/test", headers=tenant.headers)
    queued = expect(response, 202)
    assert queued["event_type"] == "webhook.test"
    [delivery] = await settled(client, tenant, target["id"])
    assert (delivery["id"], delivery["status"]) == (queued["delivery_id"], "succeeded")
    assert await deliveries(client, tenant, bystander["id"]) == []
    [headers] = receiver.headers_of("webhook.test")
    verify_signature(receiver.received[0][1], headers["X-RavePilot-Signature"], target["secret"])

    named = await client.post(
        f"/v1/webhooks/{target['id']}/test",
        json={"event": "clip.approved"},
        headers=tenant.headers,
    )
    assert expect(named, 202)["event_type"] == "clip.approved"


@pytest.mark.parametrize(
    ("body", "words"),
    [({"event": "clip.exploded"}, "unknown event name"), ({"evnt": "x"}, "evnt")],
)
async def test_test_with_a_bad_body_is_a_400(
    tenant: Tenant, client: Client, body: dict[str, str], words: str
) -> None:
    endpoint = await register(client, tenant, "https://hooks.example.com/x")
    response = await client.post(
        f"/v1/webhooks/{endpoint['id']}/test", json=body, headers=tenant.headers
    )
    assert words in assert_error(response, 400)["error"]


async def test_rotation_signs_with_both_secrets(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    rotated = expect(
        await client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=tenant.headers),
        201,
    )
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_expires_at"].endswith("Z")
    await client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=tenant.headers)
    await settled(client, tenant, endpoint["id"])
    [(headers, body)] = receiver.received
    assert headers["X-RavePilot-Signature"].count("v1=") == 2
    for secret in (endpoint["secret"], rotated["secret"]):
        verify_signature(body, headers["X-RavePilot-Signature"], secret)


async def test_retry_sends_a_failed_delivery_again(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    receiver.status = 500
    endpoint = await register(client, tenant, receiver.url)
    await new_submission(client, tenant)
    [failed] = await settled(client, tenant, endpoint["id"])
    assert (failed["status"], failed["response_status"]) == ("pending", 500)  # retry scheduled
    assert failed["error"] == "HTTP 500"

    receiver.status = 200
    retried = expect(
        await client.post(f"/v1/deliveries/{failed['id']}/retry", headers=tenant.headers), 202
    )
    assert retried["status"] == "pending"

    async def succeeded() -> bool:
        [delivery] = await deliveries(client, tenant, endpoint["id"])
        return bool(delivery["status"] == "succeeded")

    await eventually(succeeded)
    detail = expect(await client.get(f"/v1/deliveries/{failed['id']}", headers=tenant.headers))
    assert [a["status_code"] for a in detail["attempt_log"]] == [500, 200]
    ids = {h["X-RavePilot-Delivery"] for h, _ in receiver.received}
    assert ids == {failed["id"]}  # the same delivery id on every attempt


async def test_recover_and_retry_need_an_active_endpoint(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    await new_submission(client, tenant)
    [delivery] = await settled(client, tenant, endpoint["id"])
    off = await client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"active": False}, headers=tenant.headers
    )
    expect(off)
    response = await client.post(f"/v1/deliveries/{delivery['id']}/retry", headers=tenant.headers)
    assert "disabled" in assert_error(response, 409)["error"]
    response = await client.post(
        f"/v1/webhooks/{endpoint['id']}/recover",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert "disabled" in assert_error(response, 409)["error"]


async def test_recover_requeues_held_deliveries(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    expect(
        await client.patch(
            f"/v1/webhooks/{endpoint['id']}", json={"active": False}, headers=tenant.headers
        )
    )
    # Manually disabled: new events are not even queued for it ...
    await new_submission(client, tenant, "a@example.com")
    assert await deliveries(client, tenant, endpoint["id"]) == []
    expect(
        await client.patch(
            f"/v1/webhooks/{endpoint['id']}", json={"active": True}, headers=tenant.headers
        )
    )
    # ... but re-enabling sent a webhook.test first, which succeeded.
    assert len(receiver.headers_of("webhook.test")) == 1
    response = await client.post(
        f"/v1/webhooks/{endpoint['id']}/recover",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert expect(response, 202) == {"queued": 0}


@pytest.mark.parametrize(
    "body", [{}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00"}, {"since": 5}]
)
async def test_recover_with_a_bad_since_is_a_400(
    tenant: Tenant, client: Client, body: dict[str, Any]
) -> None:
    endpoint = await register(client, tenant, "https://hooks.example.com/x")
    response = await client.post(
        f"/v1/webhooks/{endpoint['id']}/recover", json=body, headers=tenant.headers
    )
    assert "since" in assert_error(response, 400)["error"]


async def test_re_enabling_a_failing_endpoint_is_a_409(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    path = f"/v1/webhooks/{endpoint['id']}"
    expect(await client.patch(path, json={"active": False}, headers=tenant.headers))
    receiver.status = 503
    response = await client.patch(path, json={"active": True}, headers=tenant.headers)
    assert "HTTP 503" in assert_error(response, 409)["error"]
    stored = expect(await client.get(path, headers=tenant.headers))
    assert (stored["active"], stored["disabled_reason"]) == (False, "manual")
    assert stored["last_status_code"] == 503


async def test_unknown_ids_are_404_and_other_workspaces_are_invisible(
    tenant: Tenant, client: Client, receiver: Receiver, ravepilot: RavePilot
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    await new_submission(client, tenant)
    [delivery] = await settled(client, tenant, endpoint["id"])
    other = await make_tenant(ravepilot, "globex")
    for headers, missing in [(other.headers, delivery["id"]), (tenant.headers, "dlv_NOPE")]:
        assert_error(await client.get(f"/v1/deliveries/{missing}", headers=headers), 404)
        assert_error(await client.post(f"/v1/deliveries/{missing}/retry", headers=headers), 404)
    for action in ("rotate-secret", "test", "recover"):
        response = await client.post(
            f"/v1/webhooks/{endpoint['id']}/{action}",
            json={"since": "2026-01-01T00:00:00Z"} if action == "recover" else None,
            headers=other.headers,
        )
        assert_error(response, 404)


async def test_delivery_routes_need_the_webhooks_scope(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    _, key = await ravepilot.api_keys.create(tenant.workspace_id, scopes=["submissions"])
    headers = {"Authorization": f"Bearer {key}"}
    for method, path in [
        ("GET", "/v1/deliveries/dlv_x"),
        ("POST", "/v1/deliveries/dlv_x/retry"),
        ("POST", "/v1/webhooks/we_x/test"),
        ("POST", "/v1/webhooks/we_x/rotate-secret"),
        ("POST", "/v1/webhooks/we_x/recover"),
    ]:
        response = await client.request(method, path, headers=headers)
        assert "webhooks" in assert_error(response, 403)["error"]
        assert_error(await client.request(method, path), 401)


async def test_metrics_count_attempts_and_show_the_queue(
    tenant: Tenant, client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, tenant, receiver.url)
    await new_submission(client, tenant)
    await settled(client, tenant, endpoint["id"])
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'ravepilot_webhook_attempts_total{outcome="succeeded"} 1.0' in lines
    assert "ravepilot_webhook_queue_depth 0.0" in lines
    assert "ravepilot_webhook_oldest_pending_age_seconds 0.0" in lines
    assert any(line.startswith("ravepilot_webhook_latency_seconds_bucket") for line in lines)
