"""/v1/collectors: the primary collector, defaults, changes, validation and custom hosts."""

from __future__ import annotations

from typing import Any

import pytest

from ravepilot_core import RavePilot
from tests.server.conftest import Tenant
from tests.server.helpers import Client, assert_error, expect

pytestmark = pytest.mark.anyio

SCRIPT = [
    {"key": "who", "prompt": "Who are you?", "max_seconds": 20},
    {"key": "why", "prompt": "Why did you choose us?", "max_seconds": 90},
]


async def create(client: Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Spring campaign")
    return expect(await client.post("/v1/collectors", json=body, headers=tenant.headers), 201)


async def get(client: Client, tenant: Tenant, collector_id: str) -> dict[str, Any]:
    return expect(await client.get(f"/v1/collectors/{collector_id}", headers=tenant.headers))


# -- reading ---------------------------------------------------------------------------------------


async def test_list_includes_the_primary_collector(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    primary = await ravepilot.collectors.primary(tenant.workspace_id)
    response = await client.get("/v1/collectors", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_more"] is False
    assert [c["id"] for c in body["data"]] == [primary.id]
    listed = body["data"][0]
    assert listed["primary"] is True
    assert listed["id"].startswith("col_")
    assert listed["brand"]["name"] == "acme"
    assert listed["script"]
    assert "acme" in listed["consent_text"]
    assert await get(client, tenant, primary.id) == listed


async def test_unknown_collector_is_a_404(tenant: Tenant, client: Client) -> None:
    for method, body in (("GET", None), ("PATCH", {"name": "x"})):
        response = await client.request(
            method, "/v1/collectors/col_DOESNOTEXIST", json=body, headers=tenant.headers
        )
        assert_error(response, 404)


# -- creating --------------------------------------------------------------------------------------


async def test_create_with_defaults(tenant: Tenant, client: Client) -> None:
    created = await create(client, tenant, name="Spring campaign")
    assert created["id"].startswith("col_")
    assert created["name"] == "Spring campaign"
    assert created["primary"] is False
    assert created["brand"]["name"] == "Spring campaign"
    assert created["brand"]["logo_url"] is None
    assert created["brand"]["primary_color"].startswith("#")
    assert len(created["brand"]["primary_color"]) == 7
    assert created["host"] is None
    assert isinstance(created["script"], list) and created["script"]
    for prompt in created["script"]:
        assert prompt["key"] and prompt["prompt"].strip()
        assert 5 <= prompt["max_seconds"] <= 600
    assert "Spring campaign" in created["consent_text"]
    assert created["auto_render"] is False
    assert created["render_formats"]
    assert created["locale"] == "en"
    assert created["created_at"].endswith("Z")

    assert await get(client, tenant, created["id"]) == created
    listed = (await client.get("/v1/collectors", headers=tenant.headers)).json()["data"]
    assert len(listed) == 2
    assert listed[0] == created  # newest first
    assert listed[1]["primary"] is True


async def test_consent_text_mentions_the_brand(tenant: Tenant, client: Client) -> None:
    created = await create(
        client,
        tenant,
        name="Spring campaign",
        brand={"name": "Acme Rockets", "primary_color": "#FF6600"},
    )
    assert created["brand"] == {
        "name": "Acme Rockets",
        "logo_url": None,
        "primary_color": "#FF6600",
    }
    assert "Acme Rockets" in created["consent_text"]


async def test_create_with_everything(tenant: Tenant, client: Client) -> None:
    created = await create(
        client,
        tenant,
        name="Enterprise",
        brand={
            "name": "Acme",
            "logo_url": "https://cdn.acme.com/logo.png",
            "primary_color": "#123abc",
        },
        host="reviews.acme.com",
        consent_text="I agree that Acme may use my video.",
        script=SCRIPT,
        auto_render=True,
        render_formats=["9:16", "1:1"],
        locale="de",
    )
    assert created["host"] == "reviews.acme.com"
    assert created["consent_text"] == "I agree that Acme may use my video."
    assert created["script"] == SCRIPT
    assert created["auto_render"] is True
    assert created["render_formats"] == ["9:16", "1:1"]
    assert created["locale"] == "de"
    assert await get(client, tenant, created["id"]) == created


# -- changing --------------------------------------------------------------------------------------


async def test_patch_changes_brand_host_and_script(tenant: Tenant, client: Client) -> None:
    created = await create(client, tenant)

    response = await client.patch(
        f"/v1/collectors/{created['id']}",
        json={"brand": {"name": "Acme Rockets", "primary_color": "#00AA55"}},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["brand"]["primary_color"] == "#00AA55"
    assert response.json()["brand"]["name"] == "Acme Rockets"
    assert response.json()["script"] == created["script"]  # untouched

    response = await client.patch(
        f"/v1/collectors/{created['id']}", json={"host": "reviews.acme.com"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["host"] == "reviews.acme.com"
    assert response.json()["brand"]["primary_color"] == "#00AA55"  # kept

    response = await client.patch(
        f"/v1/collectors/{created['id']}", json={"script": SCRIPT}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["script"] == SCRIPT

    stored = await get(client, tenant, created["id"])
    assert stored == response.json()
    assert stored["brand"] == {"name": "Acme Rockets", "logo_url": None, "primary_color": "#00AA55"}
    assert stored["host"] == "reviews.acme.com"
    assert stored["name"] == created["name"]
    assert stored["created_at"] == created["created_at"]
    assert stored["primary"] is False


async def test_host_null_clears_the_host(tenant: Tenant, client: Client) -> None:
    created = await create(client, tenant, host="reviews.acme.com")
    assert created["host"] == "reviews.acme.com"
    response = await client.patch(
        f"/v1/collectors/{created['id']}", json={"host": None}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["host"] is None
    assert (await get(client, tenant, created["id"]))["host"] is None


async def test_patch_without_host_keeps_it(tenant: Tenant, client: Client) -> None:
    created = await create(client, tenant, host="reviews.acme.com")
    response = await client.patch(
        f"/v1/collectors/{created['id']}", json={"name": "Renamed"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"
    assert response.json()["host"] == "reviews.acme.com"


async def test_primary_collector_can_be_changed_but_stays_primary(
    tenant: Tenant, client: Client, ravepilot: RavePilot
) -> None:
    primary = await ravepilot.collectors.primary(tenant.workspace_id)
    response = await client.patch(
        f"/v1/collectors/{primary.id}",
        json={"brand": {"name": "Acme Inc", "primary_color": "#000000"}},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["primary"] is True
    assert response.json()["brand"]["name"] == "Acme Inc"


# -- validation ------------------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"brand": {"name": "Acme", "primary_color": "red"}}, "primary_color"),
    ({"brand": {"name": "Acme", "primary_color": "#12345"}}, "primary_color"),
    ({"brand": {"name": "Acme", "primary_color": "#GGGGGG"}}, "primary_color"),
    ({"host": "https://x.com"}, "host"),
    ({"host": "X.COM/path"}, "host"),
    ({"host": "reviews.acme.com:8443"}, "host"),
    ({"host": "localhost"}, "host"),
    (
        {
            "script": [
                {"key": "intro", "prompt": "Hi?", "max_seconds": 30},
                {"key": "intro", "prompt": "Hi again?", "max_seconds": 30},
            ]
        },
        "script",
    ),
    ({"script": []}, "script"),
    ({"script": [{"key": "intro", "prompt": "Hi?", "max_seconds": 4}]}, "max_seconds"),
    ({"script": [{"key": "intro", "prompt": "Hi?", "max_seconds": 601}]}, "max_seconds"),
    ({"script": [{"key": "Intro Key", "prompt": "Hi?", "max_seconds": 30}]}, "script"),
    ({"script": [{"key": "intro", "prompt": "   ", "max_seconds": 30}]}, "script"),
    ({"render_formats": ["4:3"]}, "render_formats"),
    ({"colour": "#FF0000"}, "colour"),
]
INVALID_IDS = [
    "colour-word",
    "colour-short",
    "colour-not-hex",
    "host-scheme",
    "host-upper-path",
    "host-port",
    "host-single-label",
    "script-duplicate-keys",
    "script-empty",
    "max-seconds-low",
    "max-seconds-high",
    "script-bad-key",
    "script-blank-prompt",
    "render-format",
    "unknown-field",
]


@pytest.mark.parametrize(("body", "field"), INVALID, ids=INVALID_IDS)
async def test_invalid_create_is_a_400_naming_the_field(
    tenant: Tenant, client: Client, body: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/v1/collectors", json={"name": "Bad", **body}, headers=tenant.headers
    )
    message = assert_error(response, 400)["error"]
    assert field in message, message
    listed = (await client.get("/v1/collectors", headers=tenant.headers)).json()["data"]
    assert len(listed) == 1  # only the primary


@pytest.mark.parametrize(("body", "field"), INVALID, ids=INVALID_IDS)
async def test_invalid_patch_is_a_400_and_changes_nothing(
    tenant: Tenant, client: Client, body: dict[str, Any], field: str
) -> None:
    created = await create(client, tenant)
    response = await client.patch(
        f"/v1/collectors/{created['id']}", json=body, headers=tenant.headers
    )
    message = assert_error(response, 400)["error"]
    assert field in message, message
    assert await get(client, tenant, created["id"]) == created


async def test_name_is_required(tenant: Tenant, client: Client) -> None:
    response = await client.post("/v1/collectors", json={}, headers=tenant.headers)
    assert "name" in assert_error(response, 400)["error"]
    response = await client.post("/v1/collectors", json={"name": ""}, headers=tenant.headers)
    assert "name" in assert_error(response, 400)["error"]


async def test_primary_cannot_be_set_by_the_client(tenant: Tenant, client: Client) -> None:
    response = await client.post(
        "/v1/collectors", json={"name": "Sneaky", "primary": True}, headers=tenant.headers
    )
    assert "primary" in assert_error(response, 400)["error"]


# -- links on a custom host ------------------------------------------------------------------------


async def test_invitation_to_a_collector_with_a_host_links_there(
    tenant: Tenant, client: Client
) -> None:
    collector = await create(client, tenant, host="reviews.acme.com")
    response = await client.post(
        "/v1/invitations",
        json={
            "customer_email": "marjorie@acme.com",
            "collector_id": collector["id"],
            "send_email": False,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["link"] == f"https://reviews.acme.com/r/{result['invite_token']}"
    assert result["submission"]["link"] == result["link"]
    assert result["submission"]["collector_id"] == collector["id"]
    submission_id = result["submission"]["id"]
    stored = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert stored.json()["link"] == result["link"]

    # The same customer on the primary collector is another submission on the default host.
    default = await client.post(
        "/v1/invitations",
        json={"customer_email": "marjorie@acme.com", "send_email": False},
        headers=tenant.headers,
    )
    assert default.status_code == 201, default.text
    assert default.json()["submission"]["id"] != submission_id
    assert default.json()["link"].startswith("https://reviews.example.test/r/")

    # Clearing the host moves the collector's links back to the public URL.
    cleared = await client.patch(
        f"/v1/collectors/{collector['id']}", json={"host": None}, headers=tenant.headers
    )
    assert cleared.status_code == 200, cleared.text
    stored = await client.get(f"/v1/submissions/{submission_id}", headers=tenant.headers)
    assert stored.json()["link"] == f"https://reviews.example.test/r/{result['invite_token']}"
