"""API key authentication and scope checks for the ``/v1`` routes.

One guard does both: it authenticates the key (401), then checks the scope the route declares in
its ``opt={"scope": ...}`` (403). Guards run before the body is parsed, so a bad key is always a
401, never a 400.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from ravepilot_core import RavePilot
from ravepilot_core.api_keys import require_scope
from ravepilot_core.models import Principal

__all__ = [
    "PrincipalDep",
    "RavePilotDep",
    "authenticate",
    "provide_principal",
    "provide_ravepilot",
]

RavePilotDep = NamedDependency[RavePilot]
"""A handler parameter ``ravepilot: RavePilotDep`` receives the app's RavePilot."""
PrincipalDep = NamedDependency[Principal]
"""A handler parameter ``principal: PrincipalDep`` receives the authenticated caller."""


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """Return the key from ``Authorization: Bearer`` or ``X-API-Key``, if any."""
    authorization = connection.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip() or None
        return authorization.strip()  # malformed: let authenticate() say so
    return connection.headers.get("x-api-key")


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: authenticate the caller and check the route's scope."""
    ravepilot: RavePilot = connection.app.state.ravepilot
    principal = await ravepilot.api_keys.authenticate(presented_key(connection))
    scope = handler.opt.get("scope")
    if scope is not None:
        require_scope(principal, scope)
    connection.state.principal = principal


def provide_principal(
    request: ASGIConnection[Any, Any, Any, Any], ravepilot: RavePilotDep
) -> Principal:
    """Dependency: the authenticated caller (set by the guard).

    It takes ``ravepilot`` only so that Litestar resolves the two one after the other:
    independent dependencies are resolved in a task group spawned per request, which cost
    ~0.1 ms of an invitation's ~0.5 ms.
    """
    principal: Principal = request.state.principal
    return principal


def provide_ravepilot(request: ASGIConnection[Any, Any, Any, Any]) -> RavePilot:
    """Dependency: the application's RavePilot instance."""
    ravepilot: RavePilot = request.app.state.ravepilot
    return ravepilot
