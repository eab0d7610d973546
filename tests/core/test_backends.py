"""Finding backends through entry points, with real distributions installed on a path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ravepilot_core import backends
from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.errors import BackendNotFound, ConfigurationError
from ravepilot_core.testing import MemoryStorage

pytestmark = pytest.mark.anyio

Install = Callable[[str, dict[str, str]], None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Install a fake distribution (metadata only) that registers ``{group: "name = target"}``."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, entry_points: dict[str, str]) -> None:
        info = tmp_path / f"{name.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(
            "".join(f"[{group}]\n{line}\n" for group, line in entry_points.items())
        )

    return make


def unpackaged_storage(url: str) -> MemoryStorage:
    """A factory reached through the module:factory escape hatch."""
    assert url == f"{__name__}:unpackaged_storage"
    return MemoryStorage()


async def test_a_scheme_opens_its_backend_and_the_escape_hatch_loads_a_factory() -> None:
    assert isinstance(await open_backend("storage", "memory://"), MemoryStorage)
    escape_hatch = await open_backend("storage", f"{__name__}:unpackaged_storage")
    assert isinstance(escape_hatch, MemoryStorage)


async def test_a_missing_scheme_names_the_installed_ones_and_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on a machine without the S3 plugin (the test environment installs every plugin).
    every = backends._entry_points
    monkeypatch.setattr(
        backends, "_entry_points", lambda kind: [ep for ep in every(kind) if ep.name != "s3"]
    )
    installed = sorted({b.scheme for b in installed_backends() if b.kind == "media"})
    assert "s3" not in installed
    with pytest.raises(BackendNotFound) as caught:
        await open_backend("media", "s3://bucket/prefix")
    assert f"installed: {', '.join(installed) or 'none'}" in str(caught.value)
    assert "install it with: pip install ravepilot-s3" in str(caught.value)
    with pytest.raises(BackendNotFound, match=r"no storage backend for nosuch://.*sqlite"):
        await open_backend("storage", "nosuch://x")


async def test_two_distributions_claiming_one_scheme_is_an_error_naming_both(
    install: Install,
) -> None:
    install("ravepilot-fax-a", {"ravepilot.mailer": "fax = fax_a:open_mailer"})
    install("ravepilot-fax-b", {"ravepilot.mailer": "fax = fax_b:open_mailer"})
    with pytest.raises(ConfigurationError, match="ravepilot-fax-a, ravepilot-fax-b"):
        await open_backend("mailer", "fax://555")
    listed = [(b.scheme, b.distribution, b.version) for b in installed_backends()]
    assert ("fax", "ravepilot-fax-a", "1.2.3") in listed
    assert ("fax", "ravepilot-fax-b", "1.2.3") in listed


async def test_only_the_backend_asked_for_is_imported(install: Install) -> None:
    # A broken plugin (its module is missing) costs nothing until someone asks for its scheme.
    install("ravepilot-broken", {"ravepilot.mailer": "broken = not_a_module_here:open_mailer"})
    assert "broken" in {b.scheme for b in installed_backends()}
    assert (await open_backend("mailer", "memory://")) is not None
    with pytest.raises(ConfigurationError, match="from ravepilot-broken failed to load"):
        await open_backend("mailer", "broken://x")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("just-a-path.db", "no scheme"),
        ("nowhere.module:factory", "cannot load"),
    ],
)
async def test_urls_without_a_scheme_say_how_to_write_one(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await open_backend("storage", url)
