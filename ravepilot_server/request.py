"""The request every handler receives: Litestar's, plus the app's RavePilot and the caller.

Handlers read ``request.ravepilot`` and, on the ``/v1`` routes, ``request.principal`` (set by
the API key middleware in :mod:`ravepilot_server.auth`). Litestar's dependency injection did
the same for ~5% of an invitation's CPU: per request it validated every provider's arguments
and resolved the providers one by one.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from ravepilot_core import RavePilot
from ravepilot_core.models import Principal

__all__ = ["RavePilotRequest"]


class RavePilotRequest(Request[Any, Any, Any]):
    """``create_app`` makes this the request class of every route."""

    __slots__ = ()

    @property
    def ravepilot(self) -> RavePilot:
        """The application's RavePilot instance (opened by the app's lifespan)."""
        ravepilot: RavePilot = self.app.state.ravepilot
        return ravepilot

    @property
    def principal(self) -> Principal:
        """The authenticated caller of a route behind the API key middleware (``/v1``)."""
        try:
            principal: Principal = self.scope["state"]["principal"]
        except KeyError:
            raise RuntimeError(
                f"{self.url.path} is not behind ravepilot_server.auth.api_key_middleware, "
                "so it has no authenticated caller"
            ) from None
        return principal
