"""Response bodies that only the HTTP API has (lists and the one-time secret)."""

from __future__ import annotations

import msgspec

from ravepilot_core.models import Collector, Delivery, Submission, WebhookEndpoint

__all__ = [
    "CollectorList",
    "CreatedWebhookEndpoint",
    "DeliveryList",
    "Health",
    "SubmissionList",
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
