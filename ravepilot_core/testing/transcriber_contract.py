"""The Transcriber contract suite: a pytest class any transcriber subclasses to prove it hears.

It needs one fixture, ``transcriber``, a fresh transcriber closed after the test::

    import pytest
    from ravepilot_core.testing import TranscriberContract

    class TestMyTranscriber(TranscriberContract):
        @pytest.fixture
        async def transcriber(self):
            transcriber = open_my_transcriber("mine://")
            yield transcriber
            await transcriber.close()

The speech is made on the spot by flite's ``rms`` voice (``apt-get install flite``) and ffmpeg,
as the 16 kHz mono 16-bit WAV RavePilot hands a transcriber. Without flite or ffmpeg the tests
skip, or fail under ``RAVEPILOT_TEST_REQUIRE_ALL=1``.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.ffmpeg import find_ffmpeg
from ravepilot_core.models import Transcript
from ravepilot_core.protocols import Transcriber
from ravepilot_core.testing.components import require_component

__all__ = ["KEYWORDS", "SENTENCE", "TranscriberContract", "make_silence", "make_speech"]

#: What the test speech says, and the words a transcriber must hear most of (PocketSphinx, the
#: weakest we ship, gets all five from flite's rms voice).
SENTENCE = "I drink a cup of coffee every morning, and this product saves me hours every week."
KEYWORDS = ("coffee", "morning", "product", "hours", "week")
MUST_HEAR = 4  # of the KEYWORDS
TIMING_SLACK_MS = 250  # word ends may run a little past the audio (frame and token rounding)


def _ffmpeg() -> str:
    try:
        return find_ffmpeg()
    except ConfigurationError as exc:
        require_component(False, str(exc))
        raise  # require_component skipped or failed the test


def _to_speech_wav(ffmpeg: str, args: list[str], target: Path) -> Path:
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args]
    command += ["-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(target)]
    subprocess.run(command, check=True, timeout=60)
    return target


def make_speech(directory: Path, text: str = SENTENCE) -> Path:
    """Write ``text`` spoken by flite's rms voice as a 16 kHz mono 16-bit WAV file."""
    flite = shutil.which("flite")
    require_component(flite is not None, "no flite to make test speech: apt-get install flite")
    assert flite is not None
    spoken = directory / "flite.wav"
    subprocess.run([flite, "-voice", "rms", "-t", text, "-o", str(spoken)], check=True, timeout=60)
    return _to_speech_wav(_ffmpeg(), ["-i", str(spoken)], directory / "speech.wav")


def make_silence(directory: Path, seconds: float = 3.0) -> Path:
    """Write ``seconds`` of digital silence as a 16 kHz mono 16-bit WAV file."""
    source = ["-f", "lavfi", "-i", f"anullsrc=r=16000:cl=mono:d={seconds}"]
    return _to_speech_wav(_ffmpeg(), source, directory / "silence.wav")


def _made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]
) -> Path:
    """Make the test audio once per test run, in pytest's temporary directory."""
    directory = tmp_path_factory.getbasetemp() / f"transcriber-contract-{name}"
    made = directory / "made.wav"
    if not made.exists():
        directory.mkdir(exist_ok=True)
        make(directory).replace(made)
    return made


def _duration_ms(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() * 1000 // wav.getframerate()


def _heard(transcript: Transcript) -> set[str]:
    return set(re.findall(r"[a-z']+", transcript.text.lower()))


class TranscriberContract:
    """Behaviour every :class:`~ravepilot_core.protocols.Transcriber` must have.

    Subclass it in a class named ``Test...`` and override ``transcriber``.
    """

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def transcriber(self) -> Transcriber:
        """Override this fixture: yield a fresh transcriber and close it after the test."""
        raise NotImplementedError(
            "subclass TranscriberContract and override the `transcriber` fixture"
        )

    @pytest.fixture
    def speech(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return _made_once(tmp_path_factory, "speech", make_speech)

    @pytest.fixture
    def silence(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return _made_once(tmp_path_factory, "silence", make_silence)

    async def test_is_a_transcriber(self, transcriber: Transcriber) -> None:
        assert isinstance(transcriber, Transcriber)

    async def test_hears_the_words_said(self, transcriber: Transcriber, speech: Path) -> None:
        transcript = await transcriber.transcribe(speech, language="en")
        heard = _heard(transcript) & set(KEYWORDS)
        assert len(heard) >= MUST_HEAR, f"heard {sorted(heard)} of {KEYWORDS}: {transcript.text!r}"
        assert transcript.language == "en"

    async def test_words_are_timed_in_order_within_the_audio(
        self, transcriber: Transcriber, speech: Path
    ) -> None:
        transcript = await transcriber.transcribe(speech, language="en")
        words = transcript.words
        assert words, "the transcript has no word timings"
        assert all(w.word and w.word == w.word.strip() for w in words), words
        assert all(0 <= w.start_ms <= w.end_ms for w in words), words
        starts = [w.start_ms for w in words]
        assert starts == sorted(starts), "words are not in time order"
        assert words[-1].end_ms <= _duration_ms(speech) + TIMING_SLACK_MS
        timed = {w.word.lower().strip(".,!?") for w in words}
        assert len(timed & set(KEYWORDS)) >= MUST_HEAR, "the words heard are not all timed"

    async def test_silence_yields_no_words(self, transcriber: Transcriber, silence: Path) -> None:
        transcript = await transcriber.transcribe(silence, language="en")
        assert transcript.text.strip() == ""
        assert transcript.words == ()

    async def test_the_same_audio_gives_the_same_transcript(
        self, transcriber: Transcriber, speech: Path, silence: Path
    ) -> None:
        first = await transcriber.transcribe(speech, language="en")
        await transcriber.transcribe(silence, language="en")  # state left by another clip
        assert (await transcriber.transcribe(speech, language="en")).text == first.text

    async def test_concurrent_transcriptions_do_not_mix(
        self, transcriber: Transcriber, speech: Path, silence: Path
    ) -> None:
        results: dict[str, Transcript] = {}

        async def run(name: str, audio: Path) -> None:
            results[name] = await transcriber.transcribe(audio, language="en")

        async with anyio.create_task_group() as group:
            group.start_soon(run, "speech", speech)
            group.start_soon(run, "silence", silence)
            group.start_soon(run, "speech again", speech)
        assert results["speech"].text == results["speech again"].text
        assert len(_heard(results["speech"]) & set(KEYWORDS)) >= MUST_HEAR
        assert results["silence"].words == ()

    async def test_close_twice_is_harmless(self, transcriber: Transcriber) -> None:
        await transcriber.close()
        await transcriber.close()
