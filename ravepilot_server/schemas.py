"""Response bodies that only the HTTP API has (lists and the one-time secret)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ravepilot_core.models import Collector, Delivery, Submission, WebhookEndpoint

__all__ = [
    "CollectorList",
    "CreatedWebhookEndpoint",
    "DeliveryList",
    "Health",
    "Recovered",
    "RotatedSecret",
    "SubmissionList",
    "TestQueued",
    "WebhookEndpointList",
]


class SubmissionList(msgspec.Struct, kw_only=True):
    """A page of submissions."""

    data: list[Submission]
    has_more: bool
    next_cursor: str | None = None


class CollectorList(msgspec.Struct, kw_only=True):
    """The workspace's collectors."""

    data: list[Collector]
    has_more: bool = False
    next_cursor: str | None = None


class WebhookEndpointList(msgspec.Struct, kw_only=True):
    """The workspace's endpoints and every event name they may subscribe to."""

    data: list[WebhookEndpoint]
    events: list[str]


class CreatedWebhookEndpoint(WebhookEndpoint, kw_only=True, frozen=True):
    """A new endpoint with its signing secret: the only time the secret is shown."""

    secret: str


class DeliveryList(msgspec.Struct, kw_only=True):
    """An endpoint's most recent deliveries."""

    data: list[Delivery]
    has_more: bool = False
    next_cursor: str | None = None


class Health(msgspec.Struct, kw_only=True):
    """Liveness and storage reachability."""

    status: str
    storage: str
    version: str


class RotatedSecret(msgspec.Struct, kw_only=True):
    """A new signing secret: shown only this once; the old one signs too for 24 hours."""

    secret: str
    previous_secret_expires_at: datetime


class TestQueued(msgspec.Struct, kw_only=True):
    """A test event queued for one endpoint."""

    delivery_id: str
    event_type: str


class Recovered(msgspec.Struct, kw_only=True):
    """How many failed or held deliveries were queued again."""

    queued: int
