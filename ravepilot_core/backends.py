"""Find backends by URL scheme through entry points (the fsspec way).

Each group maps a scheme to a factory ``factory(url: str) -> backend`` (sync or async). Only the
entry point asked for is imported. ``module:factory`` in place of a URL's scheme-registered plugin
is the escape hatch for a backend that is not packaged::

    await open_backend("storage", "sqlite:///data/ravepilot.db")
    await open_backend("mailer", "myproject.mail:make_mailer")
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from ravepilot_core.errors import BackendNotFound, ConfigurationError

__all__ = ["BACKEND_KINDS", "BackendInfo", "installed_backends", "open_backend"]

BackendKind = Literal["storage", "mailer", "media", "transcriber", "renderer"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("storage", "mailer", "media", "transcriber", "renderer")
_INSTALL_HINTS = {
    ("storage", "postgresql"): "pip install ravepilot-postgres",
    ("storage", "postgres"): "pip install ravepilot-postgres",
    ("mailer", "smtp"): "pip install ravepilot-smtp",
    ("media", "s3"): "pip install ravepilot-s3",
    ("transcriber", "whisper"): "pip install ravepilot-whisper",
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class BackendInfo:
    """One installed backend: its scheme and where it comes from."""

    kind: BackendKind
    scheme: str
    target: str
    distribution: str
    version: str


def _entry_points(kind: BackendKind) -> list[EntryPoint]:
    return list(entry_points(group=f"ravepilot.{kind}"))


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


def installed_backends() -> list[BackendInfo]:
    """Return every installed backend of every kind, sorted by kind and scheme."""
    found = []
    for kind in BACKEND_KINDS:
        for ep in _entry_points(kind):
            name, version = _distribution(ep)
            found.append(BackendInfo(kind, ep.name, ep.value, name, version))
    return sorted(found, key=lambda b: (BACKEND_KINDS.index(b.kind), b.scheme, b.distribution))


def _find_factory(kind: BackendKind, url: str) -> Any:
    if _IMPORT_PATH.match(url) and "://" not in url:
        module_name, _, attribute = url.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot load {kind} backend {url!r}: {exc}") from None
    scheme = url.partition(":")[0].lower()
    if not scheme or "://" not in url:
        raise ConfigurationError(
            f"{kind} URL {url!r} has no scheme; write it like scheme://... or module:factory"
        )
    candidates = [ep for ep in _entry_points(kind) if ep.name == scheme]
    if not candidates:
        installed = sorted({ep.name for ep in _entry_points(kind)})
        hint = _INSTALL_HINTS.get((kind, scheme))
        raise BackendNotFound(
            f"no {kind} backend for {scheme}:// is installed "
            f"(installed: {', '.join(installed) or 'none'})"
            + (f"; install it with: {hint}" if hint else "")
        )
    distributions = sorted({_distribution(ep)[0] for ep in candidates})
    if len(distributions) > 1:
        raise ConfigurationError(
            f"{kind} scheme {scheme}:// is claimed by several distributions: "
            f"{', '.join(distributions)}; uninstall all but one"
        )
    try:
        return candidates[0].load()
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"the {kind} backend for {scheme}:// from {distributions[0]} failed to load "
            f"({candidates[0].value}): {exc}; reinstall or upgrade that distribution"
        ) from exc


async def open_backend(kind: BackendKind, url: str) -> Any:
    """Create the backend of ``kind`` that serves ``url``."""
    factory = _find_factory(kind, url)
    backend = factory(url)
    if inspect.isawaitable(backend):
        backend = await backend
    return backend
