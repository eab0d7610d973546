"""The ravepilot CLI, in-process with click's runner and, for serve, as a real process."""

from __future__ import annotations

import asyncio
import email
import gc
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ravepilot_core import Settings
from ravepilot_server import cli as cli_module
from ravepilot_server.app import app_from_env
from ravepilot_server.cli import _run, main
from ravepilot_server.process import GC_YOUNG_THRESHOLD
from tests.processes import free_port

KEY_PATTERN = re.compile(r"^\s*(rp_live_[A-Za-z0-9_-]{43})\s*$", re.MULTILINE)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAVEPILOT_DATA_DIR", str(tmp_path / "data"))
    for name in ("RAVEPILOT_DATABASE_URL", "RAVEPILOT_MAILER_URL", "RAVEPILOT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield CliRunner()


def test_workspace_and_key_lifecycle(cli: CliRunner, tmp_path: Path) -> None:
    created = cli.invoke(main, ["workspaces", "create", "acme", "--name", "Acme Inc."])
    assert created.exit_code == 0, created.output
    assert re.fullmatch(r"ws_[0-9A-Z]{26}\n", created.stdout)

    key = cli.invoke(main, ["keys", "create", "--workspace", "acme", "--scope", "submissions"])
    assert key.exit_code == 0, key.output
    assert KEY_PATTERN.fullmatch(key.stdout), "keys create prints the key alone"

    duplicate = cli.invoke(main, ["workspaces", "create", "acme"])
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output

    unknown = cli.invoke(main, ["keys", "create", "--workspace", "nope"])
    assert unknown.exit_code == 1
    assert "no workspace with slug 'nope'" in unknown.output

    bad_scope = cli.invoke(main, ["keys", "create", "--workspace", "acme", "--scope", "root"])
    assert bad_scope.exit_code == 2
    assert "root" in bad_scope.output

    assert (tmp_path / "data" / "ravepilot.db").exists()
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_workspace_notify_email(cli: CliRunner) -> None:
    created = cli.invoke(main, ["workspaces", "create", "acme", "--notify-email", "Ops@Acme.com"])
    assert created.exit_code == 0, created.output
    shown = cli.invoke(main, ["workspaces", "update", "acme", "--name", "Acme Inc."])
    assert shown.exit_code == 0, shown.output
    assert "name 'Acme Inc.', notify email ops@acme.com" in shown.stdout
    cleared = cli.invoke(main, ["workspaces", "update", "acme", "--notify-email", ""])
    assert "notify email None" in cleared.stdout
    bad = cli.invoke(main, ["workspaces", "update", "acme", "--notify-email", "not-an-address"])
    assert bad.exit_code == 1
    assert "notify email 'not-an-address' is not a valid email address" in bad.output
    missing = cli.invoke(main, ["workspaces", "update", "nope", "--name", "x"])
    assert missing.exit_code == 1 and "no workspace with slug 'nope'" in missing.output


def test_revoke_by_key_id(cli: CliRunner) -> None:
    assert cli.invoke(main, ["workspaces", "create", "acme"]).exit_code == 0
    assert cli.invoke(main, ["keys", "create", "--workspace", "acme"]).exit_code == 0
    missing = cli.invoke(main, ["keys", "revoke", "key_01NOSUCHKEY0000000000000000"])
    assert missing.exit_code == 1
    assert "no API key" in missing.output


def test_commands_run_on_uvloop_as_serve_does(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")  # uvicorn[standard] brings it wherever it has a build

    async def loop_kind(_: object) -> str:
        return type(asyncio.get_running_loop()).__module__

    # A worker's time is mostly event-loop and socket work, which uvloop does for less CPU.
    assert _run(Settings(data_dir=tmp_path), loop_kind).startswith("uvloop")


@pytest.fixture
def gc_threshold() -> Iterator[None]:
    """Put the test process's collector back as it was."""
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("gc_threshold")
def test_serving_processes_collect_young_garbage_less_often(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    gc.set_threshold(700, 10, 10)  # Python's defaults
    served: list[tuple[int, int, int]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(gc.get_threshold()))
    assert cli.invoke(main, ["serve"]).exit_code == 0
    assert served == [(GC_YOUNG_THRESHOLD, 10, 10)]  # set before the server ran

    gc.set_threshold(700, 10, 10)
    worked: list[tuple[int, int, int]] = []
    monkeypatch.setattr(cli_module, "_run", lambda *args: worked.append(gc.get_threshold()))
    assert cli.invoke(main, ["worker"]).exit_code == 0
    assert worked == [(GC_YOUNG_THRESHOLD, 10, 10)]

    gc.set_threshold(700, 10, 10)
    app_from_env()  # what each process of `serve --workers N` builds its app with
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)


def test_migrate_is_repeatable(cli: CliRunner) -> None:
    for _ in range(2):
        result = cli.invoke(main, ["migrate"])
        assert result.exit_code == 0, result.output


def test_plugins_lists_the_embedded_defaults(cli: CliRunner) -> None:
    result = cli.invoke(main, ["plugins"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "SCHEME", "ENTRY", "POINT", "DISTRIBUTION"]
    assert any(line.split()[:2] == ["storage", "sqlite://"] for line in lines)
    assert any(line.split()[:2] == ["mailer", "outbox://"] for line in lines)


def test_unknown_backend_scheme_names_what_is_installed(cli: CliRunner) -> None:
    result = cli.invoke(main, ["migrate", "--database-url", "mysql://localhost/rp"])
    assert result.exit_code == 1
    assert "no storage backend for mysql://" in result.output
    assert "sqlite" in result.output


def _request(
    url: str, key: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_first_start_prints_a_key_that_creates_invitations(tmp_path: Path) -> None:
    """What a new user does: start the server, then the README's curl."""
    port = free_port()
    env = {**os.environ, "RAVEPILOT_DATA_DIR": str(tmp_path / "data")}
    env.pop("RAVEPILOT_SECRET_KEY", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "ravepilot_server.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert server.stdout is not None
        key = None
        deadline = time.monotonic() + 30
        while key is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            output.append(line)
            if match := KEY_PATTERN.match(line):
                key = match.group(1)
        assert key, "serve must print the key on first start:\n" + "".join(output)

        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if _request(f"{base}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        status, body = _request(
            f"{base}/v1/invitations",
            key,
            {"customer_email": "marjorie@acme.com", "customer_name": "Marjorie Ellison"},
        )
        assert status == 201, body
        link = body["link"]
        assert isinstance(link, str) and link.startswith("http://127.0.0.1:8000/r/")

        outbox = tmp_path / "data" / "outbox"
        while time.monotonic() < deadline and not list(outbox.glob("*.eml")):
            time.sleep(0.05)
        (eml,) = outbox.glob("*.eml")
        message = email.message_from_bytes(eml.read_bytes())
        assert message["To"] == "marjorie@acme.com"
        assert link in eml.read_text()
    finally:
        server.terminate()
        try:
            server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()

    # A second start on the same data dir creates nothing and prints no key.
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            "import anyio\n"
            "from ravepilot_core import RavePilot, Settings\n"
            "from ravepilot_server.cli import initialise\n"
            "async def main():\n"
            "    async with await RavePilot.from_settings(Settings.from_env()) as rp:\n"
            "        print(await initialise(rp))\n"
            "anyio.run(main)\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert again.stdout.strip() == "None"


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_worker_stops_cleanly_on_a_signal(tmp_path: Path, signal_name: str) -> None:
    import signal

    env = {**os.environ, "RAVEPILOT_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [sys.executable, "-c", "from ravepilot_server.cli import main; main()", "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "worker started" in process.stderr.readline()
        process.send_signal(getattr(signal, signal_name))
        assert process.wait(timeout=15) == 0
        rest = process.stderr.read()
        assert f"{signal_name}: stopping after started work" in rest
        assert "worker stopped" in rest
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
