"""One controller per API resource."""

from __future__ import annotations

from ravepilot_server.controllers.collectors import CollectorController
from ravepilot_server.controllers.health import health, metrics
from ravepilot_server.controllers.invitations import InvitationController
from ravepilot_server.controllers.submissions import SubmissionController
from ravepilot_server.controllers.webhooks import DeliveryController, WebhookController

__all__ = [
    "CollectorController",
    "DeliveryController",
    "InvitationController",
    "SubmissionController",
    "WebhookController",
    "health",
    "metrics",
]
