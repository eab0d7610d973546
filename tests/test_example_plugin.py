"""The example plugin of docs/writing-a-plugin.md, installed as its own distribution.

``docs/examples/daily-mailer`` must be installed (tox does it; by hand:
``pip install -e docs/examples/daily-mailer``): these tests find it the way RavePilot does,
through its entry point, and prove it with the Mailer contract suite.
"""

from __future__ import annotations

import ast
import logging
import mailbox
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from click.testing import CliRunner

from ravepilot_core.backends import BackendInfo, installed_backends, open_backend
from ravepilot_core.errors import BackendError, ConfigurationError
from ravepilot_core.protocols import Mailer
from ravepilot_core.testing import FrozenClock, MailerContract
from ravepilot_core.testing.components import require_component
from ravepilot_core.testing.mailer_contract import Received, make_email
from ravepilot_server.cli import main

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "ravepilot-daily-mailer"
NOT_INSTALLED = "the example plugin is not installed: pip install -e docs/examples/daily-mailer"

try:
    version(DISTRIBUTION)
    INSTALLED = True
except PackageNotFoundError:
    INSTALLED = False

if INSTALLED:
    import ravepilot_daily_mailer
    from ravepilot_daily_mailer import DailyMailer, open_daily_mailer


@pytest.fixture(autouse=True)
def _example_installed() -> None:
    """Skip every test here without the example (fail in CI, where it must be installed)."""
    require_component(INSTALLED, NOT_INSTALLED)


def day_files(directory: Path) -> dict[str, list[mailbox.mboxMessage]]:
    """Every ``*.mbox`` file in ``directory`` with its messages, read by the standard library."""
    found: dict[str, list[mailbox.mboxMessage]] = {}
    for path in sorted(directory.glob("*.mbox")):
        box = mailbox.mbox(path, create=False)
        try:
            found[path.name] = list(box)
        finally:
            box.close()
    return found


def message_ids(messages: list[mailbox.mboxMessage]) -> list[str]:
    return [str(message["Message-ID"]).strip("<>") for message in messages]


# -- found the way RavePilot finds it --------------------------------------------------------------
def test_is_discovered_through_its_entry_point() -> None:
    assert (
        BackendInfo(
            kind="mailer",
            scheme="dailymail",
            target="ravepilot_daily_mailer:open_daily_mailer",
            distribution=DISTRIBUTION,
            version="0.1.0",
        )
        in installed_backends()
    )
    claims = [b for b in installed_backends() if (b.kind, b.scheme) == ("mailer", "dailymail")]
    assert len(claims) == 1, "one distribution, one claim on dailymail://"


@pytest.mark.anyio
async def test_open_backend_returns_the_plugins_mailer(tmp_path: Path) -> None:
    mailer = await open_backend("mailer", f"dailymail://{tmp_path}")
    assert isinstance(mailer, DailyMailer) and isinstance(mailer, Mailer)
    assert mailer.directory == tmp_path
    assert mailer.keep_days is None
    await mailer.close()


def test_ravepilot_plugins_lists_it() -> None:
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [
        "mailer",
        "dailymail://",
        "ravepilot_daily_mailer:open_daily_mailer",
        "ravepilot-daily-mailer",
        "0.1.0",
    ] in rows


def test_imports_only_the_core_the_standard_library_and_anyio() -> None:
    """The rule of docs/writing-a-plugin.md: a plugin never imports the server."""
    allowed = {"ravepilot_core", "ravepilot_daily_mailer", "anyio"} | sys.stdlib_module_names
    package = Path(ravepilot_daily_mailer.__file__).parent
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.partition(".")[0])
    assert "ravepilot_core" in imported
    assert imported <= allowed, sorted(imported - allowed)


# -- the Mailer contract ---------------------------------------------------------------------------
class TestDailyMailer(MailerContract):
    @pytest.fixture
    async def mailer(self, tmp_path: Path) -> AsyncIterator[Mailer]:
        mailer = await open_backend("mailer", f"dailymail://{tmp_path}/mail")
        yield mailer
        await mailer.close()

    @pytest.fixture
    def received(self, tmp_path: Path) -> Received:
        async def read() -> list[bytes]:
            files = day_files(tmp_path / "mail")
            return [message.as_bytes() for messages in files.values() for message in messages]

        return read


# -- one file per UTC day --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_one_file_per_utc_day_with_the_time_of_sending(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC))
    mailer = open_daily_mailer(f"dailymail://{tmp_path}", clock=clock)
    before_midnight, after_midnight = make_email(), make_email()
    await mailer.send(before_midnight)
    clock.advance(seconds=1)
    await mailer.send(after_midnight)

    files = day_files(tmp_path)
    assert {name: message_ids(messages) for name, messages in files.items()} == {
        "2026-03-01.mbox": [before_midnight.message_id],
        "2026-03-02.mbox": [after_midnight.message_id],
    }
    (first,) = files["2026-03-01.mbox"]
    assert first["Date"] == "Sun, 01 Mar 2026 23:59:59 +0000"
    # The mbox "From " line: the envelope sender and the same time.
    assert first.get_from() == "noreply@example.com Sun Mar  1 23:59:59 2026"


@pytest.mark.anyio
async def test_the_day_is_the_utc_day_whatever_zone_the_clock_tells(tmp_path: Path) -> None:
    class KarachiClock:
        def now(self) -> datetime:  # 01:30 on 2 March in UTC+5 is 20:30 on 1 March in UTC
            return datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=5)))

    mailer = DailyMailer(tmp_path, clock=KarachiClock())
    await mailer.send(make_email())
    assert list(day_files(tmp_path)) == ["2026-03-01.mbox"]


@pytest.mark.anyio
async def test_a_sender_address_with_a_space_gets_mailer_daemon(tmp_path: Path) -> None:
    mailer = open_daily_mailer(f"dailymail://{tmp_path}", clock=FrozenClock())
    email = make_email(sender='Team <"john doe"@example.com>')  # would split the "From " line
    await mailer.send(email)
    ((message,),) = day_files(tmp_path).values()
    assert message.get_from().startswith("MAILER-DAEMON ")
    assert message_ids([message]) == [email.message_id]


# -- keep_days -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_keep_days_prunes_old_day_files_on_the_first_send_of_a_day(tmp_path: Path) -> None:
    not_day_files = ["notes.txt", "inbox.mbox", "2026-13-01.mbox", "2026-01-01.mbox.lock"]
    for name in [*not_day_files, "2025-12-31.mbox"]:
        (tmp_path / name).write_text("")
    clock = FrozenClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    mailer = open_daily_mailer(f"dailymail://{tmp_path}?keep_days=2", clock=clock)

    def days() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name not in not_day_files)

    await mailer.send(make_email())  # the first send of this process prunes too
    assert days() == ["2026-03-01.mbox"]
    for _ in range(2):
        clock.advance(days=1)
        await mailer.send(make_email())
    assert days() == ["2026-03-01.mbox", "2026-03-02.mbox", "2026-03-03.mbox"]

    clock.advance(days=1)  # 4 March keeps 2 March and later
    await mailer.send(make_email())
    assert days() == ["2026-03-02.mbox", "2026-03-03.mbox", "2026-03-04.mbox"]

    (tmp_path / "2026-03-01.mbox").write_text("")  # turns up later the same day...
    clock.advance(hours=1)
    await mailer.send(make_email())
    assert "2026-03-01.mbox" in days()  # ...and stays: pruning runs once a day

    clock.advance(days=1)
    await mailer.send(make_email())
    assert days() == ["2026-03-03.mbox", "2026-03-04.mbox", "2026-03-05.mbox"]
    assert all((tmp_path / name).exists() for name in not_day_files)
    assert len(day_files(tmp_path)["2026-03-04.mbox"]) == 2


@pytest.mark.anyio
async def test_keep_days_zero_keeps_only_today_and_no_keep_days_keeps_all(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
    keep_today = open_daily_mailer(f"dailymail://{tmp_path}/today?keep_days=0", clock=clock)
    keep_all = open_daily_mailer(f"dailymail://{tmp_path}/all", clock=clock)
    for _ in range(3):
        await keep_today.send(make_email())
        await keep_all.send(make_email())
        clock.advance(days=1)
    assert list(day_files(tmp_path / "today")) == ["2026-03-03.mbox"]
    assert len(day_files(tmp_path / "all")) == 3


@pytest.mark.anyio
async def test_a_failed_prune_does_not_fail_the_send_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "2026-01-01.mbox").write_text("")
    clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
    mailer = open_daily_mailer(f"dailymail://{tmp_path}?keep_days=7", clock=clock)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(f"cannot delete {self}")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "unlink", refuse)
        email = make_email()
        with caplog.at_level(logging.WARNING, logger="ravepilot_daily_mailer"):
            await mailer.send(email)  # written; failing now would make the job send it twice
    assert "could not delete old day files" in caplog.text
    assert message_ids(day_files(tmp_path)["2026-03-01.mbox"]) == [email.message_id]

    await mailer.send(make_email())  # the same day: the prune is tried again
    assert list(day_files(tmp_path)) == ["2026-03-01.mbox"]


# -- locks -----------------------------------------------------------------------------------------
SENDER_PROCESS = """
import sys
import anyio
from ravepilot_core.models import Email
from ravepilot_daily_mailer import open_daily_mailer

async def main(url: str, name: str, count: int) -> None:
    mailer = open_daily_mailer(url)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(count):
        await mailer.send(Email(sender="rp@example.com", to="c@example.com", subject=name,
                                text=f"{name} {i}", html="<p>hi</p>", message_id=f"{name}-{i}@t"))

anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def test_processes_sharing_a_directory_take_turns(tmp_path: Path) -> None:
    count = 60
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER_PROCESS, f"dailymail://{tmp_path}", name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        assert [process.wait(timeout=60) for process in processes] == [0, 0]
    finally:
        for process in processes:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
    messages = [m for messages in day_files(tmp_path).values() for m in messages]
    expected = {f"{name}-{i}@t" for name in ("first", "second") for i in range(count)}
    assert sorted(message_ids(messages)) == sorted(expected), "each message once, none torn"
    for message in messages:
        name, _, number = str(message["Message-ID"]).strip("<>").removesuffix("@t").partition("-")
        plain = message.get_payload(0)
        assert isinstance(plain, Message)
        assert plain.get_payload(decode=True) == f"{name} {number}".encode()


@pytest.mark.anyio
async def test_a_day_file_locked_too_long_fails_the_send_so_the_job_retries(
    tmp_path: Path,
) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, tzinfo=UTC))
    mailer = DailyMailer(tmp_path, clock=clock, lock_timeout=0.05)
    await mailer.send(make_email())
    stale = tmp_path / "2026-03-01.mbox.lock"  # what a process killed mid-send leaves behind
    stale.write_text("")
    with pytest.raises(BackendError, match=re.escape(f"{stale} behind (delete it)")):
        await mailer.send(make_email())
    assert len(day_files(tmp_path)["2026-03-01.mbox"]) == 1
    stale.unlink()
    await mailer.send(make_email())
    assert len(day_files(tmp_path)["2026-03-01.mbox"]) == 2


# -- URLs ------------------------------------------------------------------------------------------
def test_urls_name_an_absolute_or_a_relative_directory() -> None:
    assert open_daily_mailer("dailymail:///var/mail/ravepilot").directory == Path(
        "/var/mail/ravepilot"
    )
    assert open_daily_mailer("dailymail://mail/ravepilot").directory == Path("mail/ravepilot")
    spaced = open_daily_mailer("dailymail:///srv/team%20mail?keep_days=30")
    assert (spaced.directory, spaced.keep_days) == (Path("/srv/team mail"), 30)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("dailymail://", "needs the directory to write to, e.g. dailymail:///var/mail/ravepilot"),
        ("dailymail://?keep_days=3", "needs the directory to write to"),
        ("dailymail:///m?keep_days=soon", "keep_days=soon; keep_days must appear once, as a whole"),
        ("dailymail:///m?keep_days=-1", "keep_days=-1; keep_days must appear once"),
        ("dailymail:///m?keep_days=1.5", "keep_days=1.5; keep_days must appear once"),
        ("dailymail:///m?keep_days=", "has keep_days=; keep_days must appear once"),
        ("dailymail:///m?keep_days=1&keep_days=2", "keep_days=1&keep_days=2; keep_days must"),
        ("dailymail:///m?keep=3&days=1", "does not know the parameter(s) days, keep; the only"),
    ],
)
async def test_bad_urls_say_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        await open_backend("mailer", url)


def test_another_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"is not a dailymail:// URL"):
        open_daily_mailer("outbox:///var/mail")


# -- the chapter quotes the real code --------------------------------------------------------------
EXCERPT = re.compile(r"```(?:python|toml)\n# excerpt: (\S+)\n(.*?)```", re.DOTALL)


def test_the_chapters_excerpts_are_in_the_example() -> None:
    """Each excerpt in docs/writing-a-plugin.md is made of runs of lines of the file it names.

    An excerpt is a code block whose first line is ``# excerpt: <path from the repository root>``;
    a line ``# ...`` marks lines left out.
    """
    chapter = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    excerpts = EXCERPT.findall(chapter)
    assert len(excerpts) >= 4
    for name, body in excerpts:
        source = (ROOT / name).read_text()
        for run in re.split(r"^ *# \.\.\.\n", body, flags=re.MULTILINE):
            assert run in source, f"docs/writing-a-plugin.md quotes {name} wrongly:\n{run}"
