"""Collectors: campaigns with their own branding, consent text and script."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ravepilot_core.context import Context
from ravepilot_core.errors import InvalidRequest, NotFound
from ravepilot_core.ids import new_id
from ravepilot_core.models import Brand, Collector, ScriptPrompt

__all__ = [
    "DEFAULT_CONSENT_TEXT",
    "CollectorChanges",
    "CollectorService",
    "NewCollector",
    "default_collector",
]

DEFAULT_CONSENT_TEXT = (
    "I agree that {brand} may record, store and publish the video clips I record here, with my "
    "name, in its marketing. I can withdraw this consent at any time before publication."
)
DEFAULT_SCRIPT = (
    ScriptPrompt(key="intro", prompt="Tell us your name and what you do.", max_seconds=30),
    ScriptPrompt(key="problem", prompt="What problem were you trying to solve?", max_seconds=60),
    ScriptPrompt(key="result", prompt="What changed after working with us?", max_seconds=60),
)
RenderFormat = Literal["9:16", "1:1", "16:9"]
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_SCRIPT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class NewCollector(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body that creates a collector; everything but ``name`` has a default."""

    name: Name
    brand: Brand | None = None
    host: str | None = None
    consent_text: Annotated[str, msgspec.Meta(min_length=1, max_length=5000)] | None = None
    script: list[ScriptPrompt] | None = None
    auto_render: bool = False
    render_formats: list[RenderFormat] | None = None
    locale: Annotated[str, msgspec.Meta(min_length=2, max_length=35)] = "en"
    min_clip_seconds: Annotated[int, msgspec.Meta(ge=0, le=60)] = 1


class CollectorChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update: fields left out keep their value; ``host: null`` clears the host."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    brand: Brand | msgspec.UnsetType = msgspec.UNSET
    host: str | msgspec.UnsetType | None = msgspec.UNSET
    consent_text: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=5000)] | msgspec.UnsetType
    ) = msgspec.UNSET
    script: list[ScriptPrompt] | msgspec.UnsetType = msgspec.UNSET
    auto_render: bool | msgspec.UnsetType = msgspec.UNSET
    render_formats: list[RenderFormat] | msgspec.UnsetType = msgspec.UNSET
    locale: Annotated[str, msgspec.Meta(min_length=2, max_length=35)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    min_clip_seconds: Annotated[int, msgspec.Meta(ge=0, le=60)] | msgspec.UnsetType = msgspec.UNSET


def default_collector(brand_name: str, now: datetime) -> Collector:
    """Return the primary collector a new workspace starts with."""
    return Collector(
        id=new_id("col", now),
        name="Primary",
        primary=True,
        brand=Brand(name=brand_name),
        consent_text=DEFAULT_CONSENT_TEXT.format(brand=brand_name),
        script=DEFAULT_SCRIPT,
        created_at=now,
    )


def _check(collector: Collector) -> Collector:
    """Validate what msgspec's types cannot express; return the collector unchanged."""
    if not collector.brand.name.strip():
        raise InvalidRequest("brand.name must not be empty")
    if not _COLOR.match(collector.brand.primary_color):
        raise InvalidRequest(
            f"brand.primary_color {collector.brand.primary_color!r} must look like #RRGGBB"
        )
    logo = collector.brand.logo_url
    if logo is not None and not logo.startswith("https://"):
        # The portal's CSP loads images over https only, and renders fetch logos under the
        # webhook URL policy (https): a plain-http logo would silently never show.
        raise InvalidRequest("brand.logo_url must be an https:// URL")
    if collector.host is not None and not _HOST.match(collector.host):
        raise InvalidRequest(
            f"host {collector.host!r} must be a lowercase DNS name such as reviews.example.com "
            "(no scheme, port or path)"
        )
    if not collector.script:
        raise InvalidRequest("script must have at least one prompt")
    if len(collector.script) > 20:
        raise InvalidRequest("script may have at most 20 prompts")
    keys = [prompt.key for prompt in collector.script]
    for prompt in collector.script:
        if not _SCRIPT_KEY.match(prompt.key):
            raise InvalidRequest(
                f"script key {prompt.key!r} must be 1-40 lowercase letters, digits, - or _"
            )
        if not prompt.prompt.strip():
            raise InvalidRequest(f"script prompt {prompt.key!r} must have text")
        if not 5 <= prompt.max_seconds <= 600:
            raise InvalidRequest(f"script prompt {prompt.key!r}: max_seconds must be 5-600")
    if len(set(keys)) != len(keys):
        raise InvalidRequest("script keys must be unique")
    if not collector.render_formats:
        raise InvalidRequest("render_formats must name at least one format")
    shortest = min(prompt.max_seconds for prompt in collector.script)
    if collector.min_clip_seconds >= shortest:
        raise InvalidRequest(
            f"min_clip_seconds ({collector.min_clip_seconds}) must be below every prompt's "
            f"max_seconds (the shortest is {shortest})"
        )
    return collector


class CollectorService:
    """Create, change and look up collectors."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    async def create(self, workspace_id: str, spec: NewCollector) -> Collector:
        """Create a non-primary collector from ``spec``."""
        now = self._ctx.clock.now()
        brand = spec.brand or Brand(name=spec.name)
        collector = _check(
            Collector(
                id=new_id("col", now),
                name=spec.name,
                primary=False,
                brand=brand,
                host=spec.host,
                consent_text=spec.consent_text or DEFAULT_CONSENT_TEXT.format(brand=brand.name),
                script=DEFAULT_SCRIPT if spec.script is None else tuple(spec.script),
                auto_render=spec.auto_render,
                render_formats=("9:16",)
                if spec.render_formats is None
                else tuple(dict.fromkeys(spec.render_formats)),
                locale=spec.locale,
                min_clip_seconds=spec.min_clip_seconds,
                created_at=now,
            )
        )
        await self._ctx.storage.create_collector(workspace_id, collector)
        return collector

    async def update(
        self, workspace_id: str, collector_id: str, changes: CollectorChanges
    ) -> Collector:
        """Apply ``changes`` to a collector and return the result."""
        current = await self.get(workspace_id, collector_id)
        values = {
            name: value
            for name in changes.__struct_fields__
            if (value := getattr(changes, name)) is not msgspec.UNSET
        }
        if "script" in values:
            values["script"] = tuple(values["script"])
        if "render_formats" in values:
            values["render_formats"] = tuple(dict.fromkeys(values["render_formats"]))
        updated = _check(msgspec.structs.replace(current, **values))
        await self._ctx.storage.update_collector(workspace_id, updated)
        return updated

    async def get(self, workspace_id: str, collector_id: str) -> Collector:
        """Return the collector or raise NotFound."""
        collector = await self._ctx.storage.get_collector(workspace_id, collector_id)
        if collector is None:
            raise NotFound(f"no collector {collector_id!r} in this workspace")
        return collector

    async def primary(self, workspace_id: str) -> Collector:
        """Return the workspace's primary collector."""
        collector = await self._ctx.storage.get_primary_collector(workspace_id)
        if collector is None:
            raise NotFound("this workspace has no primary collector")
        return collector

    async def list(self, workspace_id: str) -> list[Collector]:
        """Return the workspace's collectors, newest first."""
        return await self._ctx.storage.list_collectors(workspace_id)
