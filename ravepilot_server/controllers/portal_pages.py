"""``GET /r/{invite_token}``: the customer's branded recording page, and its static assets.

The page is rendered on the server (Jinja2) with everything the recorder needs embedded as JSON;
the recorder itself is a handful of plain ES modules under ``/r-static/`` (no build step). The
JSON calls and the tus upload endpoint live in ``portal_api`` and ``uploads``.

Every portal page carries a strict Content-Security-Policy (scripts only from this origin, no
inline script; the one inline ``<style>`` that sets the brand colour is allowed by a per-response
nonce), ``Referrer-Policy: no-referrer`` because the invite token is the URL, and
``X-Robots-Tag: noindex`` so a link pasted somewhere public is not indexed.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Controller, Request, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.params import FromPath
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from ravepilot_core import __version__
from ravepilot_core.errors import BackendError, NotFound
from ravepilot_core.models import PortalSession
from ravepilot_server.request import RavePilotRequest

__all__ = [
    "PortalPageController",
    "available_locales",
    "load_strings",
    "portal_static_router",
    "portal_template_config",
    "readable_colors",
]

PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
STATIC_PATH = "/r-static"
DEFAULT_LOCALE = "en"
DEFAULT_BRAND_COLOR = "#4F46E5"
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_LOCALE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


# -- locales -------------------------------------------------------------------------------------


@functools.cache
def available_locales() -> frozenset[str]:
    """The locale names that have a strings file (``en``, ``es``, ...), read once."""
    return frozenset(path.stem.lower() for path in (PORTAL_DIR / "locales").glob("*.json"))


@functools.cache
def _strings_file(locale: str) -> dict[str, str]:
    data = json.loads((PORTAL_DIR / "locales" / f"{locale}.json").read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if isinstance(value, str)}


def resolve_locale(*candidates: str | None) -> str:
    """The first candidate with a strings file: ``es-MX`` tries ``es-mx`` then ``es``; else en.

    Only names found in the locales folder are ever used as file names, so a collector's locale
    cannot reach outside it.
    """
    known = available_locales()
    for candidate in candidates:
        if not candidate or not _LOCALE_TAG.match(candidate):
            continue
        tag = candidate.lower().replace("_", "-")
        for name in (tag, tag.split("-", 1)[0]):
            if name in known:
                return name
    return DEFAULT_LOCALE


def load_strings(locale: str) -> dict[str, str]:
    """Every user-visible string in ``locale``; a key the locale lacks falls back to English."""
    strings = dict(_strings_file(DEFAULT_LOCALE))
    if locale != DEFAULT_LOCALE and locale in available_locales():
        strings.update(_strings_file(locale))
    return strings


def _accepted_languages(request: Request[Any, Any, Any]) -> list[str]:
    """The Accept-Language tags in the order the browser prefers them (for the 404 page)."""
    weighted = []
    for position, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag:
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


def translator(strings: dict[str, str]) -> Callable[..., str]:
    """``t("key", name=...)`` for templates: the string with ``{name}`` placeholders filled.

    Placeholders are replaced one by one (not ``str.format``) so a translation with a stray brace
    cannot break the page.
    """

    def translate(key: str, **values: object) -> str:
        text = strings.get(key, key)
        for name, value in values.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    return translate


def size_label(strings: dict[str, str], size: int) -> str:
    """``20 MB`` or ``1 GB`` (binary units, as the recorder script shows them too)."""
    if size >= 1024**3:
        gigabytes = round(size / 1024**3, 1)
        return strings["size_gb"].replace("{n}", f"{gigabytes:g}")
    return strings["size_mb"].replace("{n}", str(max(1, round(size / 1024**2))))


# -- colours -------------------------------------------------------------------------------------


def _luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``#RRGGBB``."""
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two ``#RRGGBB`` colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def readable_colors(brand_color: str | None) -> dict[str, str]:
    """The brand colour and the colours that stay readable with it, whatever it is.

    Returns ``brand`` (the colour itself, or the default when it is not ``#RRGGBB``), ``on_brand``
    (text on a brand-coloured button: near-black or white, whichever contrasts more; at least
    4.5:1 for any colour) and ``ink`` (the brand colour darkened until it reaches 4.5:1 on white,
    for links, focus rings and progress bars on the page's white background).
    """
    brand = brand_color if brand_color and _HEX_COLOR.match(brand_color) else DEFAULT_BRAND_COLOR
    brand = brand.lower()
    dark, light = "#111111", "#ffffff"
    on_brand = dark if contrast_ratio(brand, dark) >= contrast_ratio(brand, light) else light
    red, green, blue = (int(brand[i : i + 2], 16) for i in (1, 3, 5))
    ink = brand
    factor = 1.0
    while contrast_ratio(ink, light) < 4.5:
        factor -= 0.05
        ink = "#{:02x}{:02x}{:02x}".format(*(round(c * factor) for c in (red, green, blue)))
    return {"brand": brand, "on_brand": on_brand, "ink": ink}


# -- responses -----------------------------------------------------------------------------------


def security_headers(nonce: str) -> dict[str, str]:
    """The headers of every portal page; ``nonce`` allows the page's one inline style element."""
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src 'self' https:",  # the collector's logo may live on any https origin
            "media-src 'self' blob:",  # the live preview and the take are blob: URLs
            "connect-src 'self'",
            "font-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",  # no clickjacking of the consent checkbox
        )
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",  # the invite token is in the URL
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
        "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
        "Cache-Control": "no-store",  # personal: never kept by a shared cache
    }


def _initial_step(session: PortalSession) -> str:
    """Where the page opens before its script runs (the script decides from then on)."""
    if session.status == "invited" or session.consent is None:
        return "welcome"
    if session.status == "recording":
        return "record"
    return "thanks"


def _page_data(token: str, session: PortalSession, strings: dict[str, str]) -> dict[str, Any]:
    """What the recorder script reads from the page (JSON in a non-executed script element)."""
    return {
        "api_base": f"/r/{token}/api",
        "session": msgspec.to_builtins(session),
        "strings": strings,
    }


def _error_page(request: Request[Any, Any, Any], status: int, kind: str) -> Template:
    locale = resolve_locale(*_accepted_languages(request))
    strings = load_strings(locale)
    nonce = secrets.token_urlsafe(16)
    return Template(
        template_name="not_found.html",
        context={
            "lang": locale,
            "t": translator(strings),
            "kind": kind,
            "nonce": nonce,
            "static": STATIC_PATH,
            "version": __version__,
        },
        status_code=status,
        headers=security_headers(nonce),
        media_type="text/html",
    )


class PortalPageController(Controller):
    """The customer's recording page, reached through the personal invite link."""

    path = "/r"
    include_in_schema = False

    @get("/{invite_token:str}", media_type="text/html")
    async def portal_page(self, request: RavePilotRequest, invite_token: FromPath[str]) -> Template:
        """Render the recording page, or a friendly 404 for an unknown or withdrawn link."""
        try:
            session = await request.ravepilot.portal.session(invite_token)
        except NotFound:
            return _error_page(request, 404, "not_found")
        except BackendError:
            return _error_page(request, 503, "unavailable")
        locale = resolve_locale(session.locale)
        strings = load_strings(locale)
        nonce = secrets.token_urlsafe(16)
        return Template(
            template_name="portal.html",
            context={
                "lang": locale,
                "t": translator(strings),
                "session": session,
                "brand": session.brand,
                "colors": readable_colors(session.brand.primary_color),
                "initial_step": _initial_step(session),
                "max_size": size_label(strings, session.max_upload_bytes),
                "page_data": _page_data(invite_token, session, strings),
                "nonce": nonce,
                "static": STATIC_PATH,
                "version": __version__,
            },
            headers=security_headers(nonce),
            media_type="text/html",
        )


def portal_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 over ``ravepilot_server/portal/templates`` (autoescaping on)."""
    return TemplateConfig(directory=PORTAL_DIR / "templates", engine=JinjaTemplateEngine)


def portal_static_router() -> Router:
    """``/r-static/``: the portal's CSS and ES modules.

    The file names carry no content hash (there is no build step), so browsers keep them only
    for a short while and then revalidate them against their ETag: an upgrade reaches every
    customer within ten minutes and a revisit costs a 304.
    """
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[PORTAL_DIR / "static"],
        cache_control=CacheControlHeader(public=True, max_age=600),
        include_in_schema=False,
        name="portal-static",
    )
