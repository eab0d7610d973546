"""One controller per API resource."""

from __future__ import annotations

from ravepilot_server.controllers.collectors import CollectorController
from ravepilot_server.controllers.health import health, metrics
from ravepilot_server.controllers.invitations import InvitationController
from ravepilot_server.controllers.media import media
from ravepilot_server.controllers.portal_api import PortalApiController
from ravepilot_server.controllers.portal_pages import PortalPageController
from ravepilot_server.controllers.review import ClipController
from ravepilot_server.controllers.submissions import RenderController, SubmissionController
from ravepilot_server.controllers.uploads import TusController
from ravepilot_server.controllers.webhooks import DeliveryController, WebhookController

__all__ = [
    "ClipController",
    "CollectorController",
    "DeliveryController",
    "InvitationController",
    "PortalApiController",
    "PortalPageController",
    "RenderController",
    "SubmissionController",
    "TusController",
    "WebhookController",
    "health",
    "media",
    "metrics",
]
