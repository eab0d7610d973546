"""The docs and the public API stay in step with the code."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Protocol

import pytest

import ravepilot_core.protocols

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_PACKAGES = ["ravepilot_core", "ravepilot_server", "ravepilot_core.testing"]


def _protocols() -> list[str]:
    return [
        name
        for name in ravepilot_core.protocols.__all__
        if inspect.isclass(obj := getattr(ravepilot_core.protocols, name))
        and Protocol in getattr(obj, "__mro__", ())
    ]


def test_there_are_extension_points() -> None:
    assert {"Storage", "Mailer", "Clock"} <= set(_protocols())


@pytest.mark.parametrize("name", _protocols())
def test_every_extension_point_is_documented(name: str) -> None:
    protocol = getattr(ravepilot_core.protocols, name)
    assert protocol.__doc__ and "Example" in protocol.__doc__, f"{name} needs a docstring example"
    plugins_doc = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### {name}$", plugins_doc, re.MULTILINE), f"docs/plugins.md lacks {name}"


def _isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then everything else."""
    if name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_public_api_is_curated(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_style), f"{package}.__all__ must be sorted"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def test_core_imports_no_server_and_no_plugin() -> None:
    """Arrows point one way: server -> core <- plugins (import-linter checks this in tox too)."""
    offenders = []
    for path in (ROOT / "ravepilot_core").rglob("*.py"):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:from|import)\s+(ravepilot_\w+|litestar|uvicorn|click)\b", line)
            if match and match.group(1) != "ravepilot_core":
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not offenders


def test_readme_has_exactly_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    setup = [b.strip() for b in blocks if "python3 -m venv" in b]
    assert setup == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ravepilot serve",
        "python3 -m venv .venv && .venv/bin/pip install tox && .venv/bin/tox",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup[1] in ci, ".ci/run must run the README's test command"
