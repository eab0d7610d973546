"""RavePilot's reference server: a Litestar app and the ``ravepilot`` CLI."""

from __future__ import annotations

from ravepilot_server.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
