"""RavePilot's framework-agnostic core: models, services, storage and the background worker."""

from __future__ import annotations

from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.clock import SystemClock
from ravepilot_core.collectors import CollectorChanges, NewCollector
from ravepilot_core.config import Settings
from ravepilot_core.errors import (
    AuthenticationFailed,
    BackendError,
    BackendNotFound,
    ConfigurationError,
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    InvalidSignature,
    JobAbandoned,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RavePilotError,
)
from ravepilot_core.events import EVENT_TYPES
from ravepilot_core.facade import RavePilot
from ravepilot_core.invitations import InvitationRequest, LinkRequest
from ravepilot_core.models import (
    ALL_SCOPES,
    ApiKey,
    Collector,
    Delivery,
    InvitationResult,
    Page,
    Principal,
    Submission,
    WebhookEndpoint,
    Workspace,
)
from ravepilot_core.protocols import Clock, Mailer, Storage
from ravepilot_core.webhooks import NewWebhookEndpoint, WebhookChanges

__version__ = "0.1.0"

__all__ = [
    "ALL_SCOPES",
    "EVENT_TYPES",
    "ApiKey",
    "AuthenticationFailed",
    "BackendError",
    "BackendNotFound",
    "Clock",
    "Collector",
    "CollectorChanges",
    "ConfigurationError",
    "Conflict",
    "Delivery",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidSignature",
    "InvitationRequest",
    "InvitationResult",
    "JobAbandoned",
    "LinkRequest",
    "Mailer",
    "NewCollector",
    "NewWebhookEndpoint",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "Principal",
    "RateLimited",
    "RavePilot",
    "RavePilotError",
    "Settings",
    "Storage",
    "Submission",
    "SystemClock",
    "WebhookChanges",
    "WebhookEndpoint",
    "Workspace",
    "__version__",
    "installed_backends",
    "open_backend",
]
