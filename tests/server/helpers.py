"""What the server tests share on the client side: serving an app, the error contract, requests."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from litestar import Litestar

if TYPE_CHECKING:
    from tests.server.conftest import Tenant

Client = httpx.AsyncClient

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[Client]:
    """Serve ``app`` (lifespan and background worker included) on the test's own event loop.

    Core calls can then be awaited directly next to HTTP requests, and requests started at once
    (in a task group) really overlap.
    """
    async with app.lifespan():
        # Litestar's ASGI types are narrower than httpx's, though the two are compatible.
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check the error contract exactly; return the body (the message is ``["error"]``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) in ({"error", "status"}, {"error", "status", "code"}), body
    assert isinstance(body["error"], str) and body["error"].strip()
    assert type(body["status"]) is int and body["status"] == status
    if "code" in body:
        assert isinstance(body["code"], str) and SNAKE_CASE.match(body["code"]), body
    return body


def expect(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """Assert the status of a successful response; return its JSON object."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def new_submission(client: Client, tenant: Tenant, email: str = "marjorie@acme.com") -> str:
    """Invite a new customer over HTTP without an email; return the submission id."""
    response = await client.post(
        "/v1/invitations",
        json={"customer_email": email, "send_email": False},
        headers=tenant.headers,
    )
    submission_id: str = expect(response, 201)["submission"]["id"]
    return submission_id
