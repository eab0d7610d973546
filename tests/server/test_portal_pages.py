"""GET /r/{token}: the rendered page, its security headers, locales, colours and static assets.

No browser here: these run everywhere. The recording itself is tested in tests/browser.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

from ravepilot_core import RavePilot
from ravepilot_core.errors import BackendError
from ravepilot_server.controllers.portal_pages import (
    PORTAL_DIR,
    available_locales,
    contrast_ratio,
    load_strings,
    readable_colors,
    resolve_locale,
)
from tests.server.conftest import Tenant
from tests.server.helpers import Client, expect

pytestmark = pytest.mark.anyio


async def invite(
    client: Client, tenant: Tenant, *, collector: dict[str, Any] | None = None, **body: Any
) -> dict[str, Any]:
    """An invitation (no email), to a new collector made from ``collector`` when given."""
    if collector is not None:
        created = await client.post(
            "/v1/collectors", json={"name": "Campaign", **collector}, headers=tenant.headers
        )
        body["collector_id"] = expect(created, 201)["id"]
    body.setdefault("customer_email", "marjorie@acme.com")
    body["send_email"] = False
    return expect(await client.post("/v1/invitations", json=body, headers=tenant.headers), 201)


def page_data(text: str) -> dict[str, Any]:
    """The JSON the page hands its script."""
    match = re.search(
        r'<script type="application/json" id="portal-data">(.*?)</script>', text, re.S
    )
    assert match, text
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def csp(response: Any) -> dict[str, str]:
    directives = response.headers["content-security-policy"].split(";")
    return {d.strip().split(" ", 1)[0]: d.strip().partition(" ")[2] for d in directives}


async def test_the_page_renders_the_brand_the_customer_and_the_script(
    client: Client, tenant: Tenant
) -> None:
    invitation = await invite(
        client,
        tenant,
        customer_name="Marjorie Ellison",
        collector={
            "brand": {"name": "Acme Coffee", "primary_color": "#FFD60A"},
            "script": [{"key": "love", "prompt": "What do you love about it?", "max_seconds": 30}],
        },
    )
    response = await client.get(f"/r/{invitation['invite_token']}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    assert "<title>Record a video for Acme Coffee</title>" in text
    assert "Hi Marjorie Ellison!" in text
    assert "What do you love about it?" in text
    assert '<html lang="en">' in text
    # The brand colour, and dark text for buttons on this light yellow.
    assert "--brand: #ffd60a; --on-brand: #111111;" in text
    data = page_data(text)
    assert data["api_base"] == f"/r/{invitation['invite_token']}/api"
    assert data["session"]["brand"]["name"] == "Acme Coffee"
    assert data["session"]["script"][0]["key"] == "love"
    assert data["session"]["upload_url"] == f"/r/{invitation['invite_token']}/uploads/"
    assert data["strings"]["consent_submit"] == "Agree and continue"
    assert '<script type="module" src="/r-static/portal.js' in text
    # The exact consent text is on the page for the customer to read.
    assert html.escape(data["session"]["consent_text"], quote=True) in text


async def test_portal_pages_carry_a_strict_csp_and_privacy_headers(
    client: Client, tenant: Tenant
) -> None:
    invitation = await invite(client, tenant)
    for path in (f"/r/{invitation['invite_token']}", "/r/not-a-token"):
        response = await client.get(path)
        policy = csp(response)
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"  # no inline script, no eval
        assert policy["connect-src"] == "'self'"
        assert policy["media-src"] == "'self' blob:"
        assert policy["img-src"] == "'self' https:"
        assert policy["frame-ancestors"] == "'none'"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-robots-tag"].startswith("noindex")
        assert response.headers["cache-control"] == "no-store"
        # The one inline style element is allowed by this response's nonce, and only it.
        nonce = re.search(r"'nonce-([^']+)'", policy["style-src"])
        assert nonce, policy
        styles = re.findall(r"<style([^>]*)>", response.text)
        assert all(f'nonce="{nonce.group(1)}"' in attributes for attributes in styles)
        assert "<script>" not in response.text and " style=" not in response.text
    first = csp(await client.get(f"/r/{invitation['invite_token']}"))["style-src"]
    second = csp(await client.get(f"/r/{invitation['invite_token']}"))["style-src"]
    assert first != second  # a fresh nonce per response


async def test_unknown_and_withdrawn_links_get_a_friendly_neutral_404(
    client: Client, tenant: Tenant, ravepilot: RavePilot
) -> None:
    invitation = await invite(client, tenant, collector={"brand": {"name": "Secret Brand Ltd"}})
    unknown = await client.get("/r/this-token-does-not-exist")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "This link doesn&#39;t work" in unknown.text
    assert '<html lang="en">' in unknown.text

    token = invitation["invite_token"]
    await ravepilot.portal.consent(token, accepted=True)
    await ravepilot.portal.withdraw(token)
    withdrawn = await client.get(f"/r/{token}")
    assert withdrawn.status_code == 404
    # Brand-neutral: nothing says whose link it was.
    assert "Secret Brand Ltd" not in withdrawn.text
    assert "This link doesn&#39;t work" in withdrawn.text


async def test_a_storage_outage_shows_a_try_again_page(
    client: Client, tenant: Tenant, ravepilot: RavePilot, monkeypatch: pytest.MonkeyPatch
) -> None:
    invitation = await invite(client, tenant)

    async def unavailable(token: str) -> None:
        raise BackendError("storage unreachable")

    monkeypatch.setattr(ravepilot.portal, "session", unavailable)
    response = await client.get(f"/r/{invitation['invite_token']}")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "We&#39;ll be right back" in response.text
    assert "storage unreachable" not in response.text


async def test_the_404_page_speaks_the_browsers_language(client: Client) -> None:
    response = await client.get("/r/nope", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.8"})
    assert response.status_code == 404
    assert '<html lang="es">' in response.text
    assert "Este enlace no funciona" in response.text
    french = await client.get("/r/nope", headers={"Accept-Language": "fr-FR"})
    assert '<html lang="en">' in french.text


async def test_the_page_uses_the_collectors_locale_with_english_as_fallback(
    client: Client, tenant: Tenant
) -> None:
    spanish = await invite(client, tenant, customer_name="Ana", collector={"locale": "es-MX"})
    response = await client.get(f"/r/{spanish['invite_token']}")
    assert '<html lang="es">' in response.text
    assert "¡Hola, Ana!" in response.text
    assert page_data(response.text)["strings"]["consent_submit"] == "Aceptar y continuar"

    other = await invite(
        client, tenant, customer_email="jean@example.com", collector={"locale": "fr"}
    )
    response = await client.get(f"/r/{other['invite_token']}")
    assert '<html lang="en">' in response.text
    assert "Get started" in response.text


async def test_customer_supplied_text_is_escaped(client: Client, tenant: Tenant) -> None:
    invitation = await invite(client, tenant, customer_name="<script>alert(1)</script>")
    text = (await client.get(f"/r/{invitation['invite_token']}")).text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # Inside the JSON script element too: no way to close the element early.
    raw = re.search(r'id="portal-data">(.*?)</script>', text, re.S).group(1)  # type: ignore[union-attr]
    assert "</script" not in raw.lower() and "<script" not in raw.lower()


async def test_static_assets_are_served_with_cache_headers(client: Client) -> None:
    for name, media_type in (
        ("portal.js", "javascript"),
        ("recorder.js", "javascript"),
        ("tus.js", "javascript"),
        ("store.js", "javascript"),
        ("portal.css", "text/css"),
    ):
        response = await client.get(f"/r-static/{name}")
        assert response.status_code == 200, name
        assert media_type in response.headers["content-type"], (name, response.headers)
        assert "max-age=600" in response.headers["cache-control"]
        assert response.headers.get("etag")
    assert (await client.get("/r-static/../controllers/portal_pages.py")).status_code == 404


# -- the helpers, directly ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "color", ["#4F46E5", "#FFD60A", "#FFF9C4", "#FFFFFF", "#000000", "#00FF00", "#808080"]
)
def test_readable_colors_reach_wcag_contrast_for_any_brand(color: str) -> None:
    colors = readable_colors(color)
    assert colors["brand"] == color.lower()
    assert contrast_ratio(colors["on_brand"], colors["brand"]) >= 4.5
    assert contrast_ratio(colors["ink"], "#ffffff") >= 4.5


def test_a_malformed_brand_color_falls_back_to_the_default() -> None:
    assert readable_colors("red; } body { display: none")["brand"] == "#4f46e5"
    assert readable_colors(None)["brand"] == "#4f46e5"


def test_every_locale_has_every_string() -> None:
    assert {"en", "es"} <= available_locales()
    english = json.loads((PORTAL_DIR / "locales" / "en.json").read_text(encoding="utf-8"))
    for locale in available_locales():
        strings = json.loads((PORTAL_DIR / "locales" / f"{locale}.json").read_text("utf-8"))
        assert set(strings) == set(english), locale
        for key, text in strings.items():
            # The same placeholders as the English string, so none is left unfilled.
            assert set(re.findall(r"{\w+}", text)) == set(re.findall(r"{\w+}", english[key])), (
                locale,
                key,
            )


def test_locale_resolution_never_leaves_the_locales_folder() -> None:
    assert resolve_locale("es-MX") == "es"
    assert resolve_locale("ES_es") == "es"
    assert resolve_locale("../../etc/passwd") == "en"
    assert resolve_locale("de", "es") == "es"
    assert resolve_locale(None) == "en"
    assert load_strings("xx")["welcome_start"] == "Get started"


def test_every_string_the_templates_use_exists() -> None:
    english = load_strings("en")
    used: set[str] = set()
    for template in (PORTAL_DIR / "templates").glob("*.html"):
        used |= set(re.findall(r"""t\(["'](\w+)["']""", template.read_text("utf-8")))
    script = (PORTAL_DIR / "static" / "portal.js").read_text("utf-8")
    used |= set(re.findall(r"""\bt\(\s*["'](\w+)["']""", script))
    assert used, "no strings found: the pattern is out of date"
    assert used - set(english) == set()


def test_static_files_ship_in_the_package() -> None:
    names = {path.name for path in (PORTAL_DIR / "static").iterdir()}
    assert {"portal.js", "recorder.js", "store.js", "tus.js", "portal.css"} <= names
