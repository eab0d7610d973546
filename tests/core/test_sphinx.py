"""The default transcriber: the Transcriber contract on PocketSphinx, its URL and its errors."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.errors import ConfigurationError, MediaProcessingError
from ravepilot_core.protocols import Transcriber
from ravepilot_core.sphinx import PocketSphinxTranscriber, open_sphinx_transcriber
from ravepilot_core.testing import TranscriberContract
from ravepilot_core.testing.transcriber_contract import make_silence, make_speech

pytestmark = pytest.mark.anyio


class TestPocketSphinxTranscriber(TranscriberContract):
    @pytest.fixture
    async def transcriber(self) -> AsyncIterator[Transcriber]:
        transcriber = open_sphinx_transcriber("sphinx://")
        yield transcriber
        await transcriber.close()


async def test_found_by_its_scheme() -> None:
    transcriber = await open_backend("transcriber", "sphinx://")
    assert isinstance(transcriber, PocketSphinxTranscriber)
    await transcriber.close()
    (info,) = [b for b in installed_backends() if b.kind == "transcriber" and b.scheme == "sphinx"]
    assert (info.distribution, info.target) == (
        "ravepilot",
        "ravepilot_core.sphinx:open_sphinx_transcriber",
    )


@pytest.mark.parametrize(
    "url", ["sphinx://", "sphinx:///", "sphinx://?decoders=0", "sphinx://?decoders=4"]
)
def test_urls_it_takes(url: str) -> None:
    assert isinstance(open_sphinx_transcriber(url), PocketSphinxTranscriber)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sphinx://?lang=de", "unknown parameter 'lang'"),
        ("sphinx://?decoders=two", "decoders='two' must be a whole number"),
        ("sphinx://?decoders=-1", "decoders='-1' must be a whole number"),
        ("sphinx://host", "write it as sphinx://"),
        ("sphinx:///models/en", "write it as sphinx://"),
        ("whisper://", "write it as sphinx://"),
    ],
)
def test_urls_it_refuses(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        open_sphinx_transcriber(url)


async def test_only_english() -> None:
    transcriber = PocketSphinxTranscriber()
    with pytest.raises(MediaProcessingError, match=r"only English.*ravepilot-whisper"):
        await transcriber.transcribe(Path("unused.wav"), language="de")


async def test_english_variants_are_english(tmp_path: Path) -> None:
    transcript = await PocketSphinxTranscriber().transcribe(
        make_silence(tmp_path), language="en-GB"
    )
    assert transcript.language == "en" and transcript.words == ()


async def test_a_file_that_is_not_wav(tmp_path: Path) -> None:
    audio = tmp_path / "speech.wav"
    audio.write_bytes(b"ID3 not a wave file at all")
    with pytest.raises(MediaProcessingError, match=r"cannot read the speech file speech\.wav"):
        await PocketSphinxTranscriber().transcribe(audio)


async def test_wav_in_another_format_says_what_to_use(tmp_path: Path) -> None:
    audio = tmp_path / "speech.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(bytes(44100 * 4))
    with pytest.raises(MediaProcessingError, match=r"not 16 kHz mono 16-bit WAV.*extract_speech"):
        await PocketSphinxTranscriber().transcribe(audio)


async def test_speech_after_silence_is_timed_from_the_start_of_the_file(tmp_path: Path) -> None:
    speech = make_speech(tmp_path, "Good morning.")
    padded = tmp_path / "padded.wav"
    with wave.open(str(speech), "rb") as said, wave.open(str(padded), "wb") as out:
        out.setparams(said.getparams())
        out.writeframes(bytes(2 * 16000 * 2))  # two seconds of silence first
        out.writeframes(said.readframes(said.getnframes()))
    alone = await PocketSphinxTranscriber().transcribe(speech)
    later = await PocketSphinxTranscriber().transcribe(padded)
    assert alone.text == later.text == "good morning"
    for first, second in zip(alone.words, later.words, strict=True):
        assert abs(second.start_ms - first.start_ms - 2000) <= 60


@pytest.mark.parametrize("kept", [0, 1])
async def test_decoders_kept_between_transcriptions(tmp_path: Path, kept: int) -> None:
    speech = make_speech(tmp_path, "Good morning.")
    transcriber = open_sphinx_transcriber(f"sphinx://?decoders={kept}")
    async with anyio.create_task_group() as group:  # two at once: two decoders
        for _ in range(2):
            group.start_soon(transcriber.transcribe, speech)
    assert len(transcriber._idle) == kept
    assert (await transcriber.transcribe(speech)).text == "good morning"
    await transcriber.close()
    assert transcriber._idle == []


def cut(speech: Path, target: Path, samples: int) -> Path:
    with wave.open(str(speech), "rb") as said, wave.open(str(target), "wb") as out:
        out.setparams(said.getparams())
        out.writeframes(said.readframes(samples))
    return target


@pytest.mark.parametrize(
    "samples", [16000 * 3, 16000 * 3 + 123], ids=["whole-frames", "short-frame"]
)
async def test_speech_running_to_the_end_of_the_file(tmp_path: Path, samples: int) -> None:
    speech = make_speech(
        tmp_path, "I drink a cup of coffee every morning, and this product saves me."
    )
    transcript = await PocketSphinxTranscriber().transcribe(
        cut(speech, tmp_path / "cut.wav", samples)
    )
    assert {"coffee", "morning"} <= set(transcript.text.split()), transcript.text
    assert transcript.words[-1].end_ms <= samples // 16 + 100


async def test_long_speech_without_a_pause_is_cut_into_utterances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speech = make_speech(tmp_path)
    whole = await PocketSphinxTranscriber().transcribe(speech)
    monkeypatch.setattr("ravepilot_core.sphinx._MAX_UTTERANCE_BYTES", 2 * 16000 * 2)  # 2 s
    pieces = await PocketSphinxTranscriber().transcribe(speech)
    starts = [w.start_ms for w in pieces.words]
    assert starts == sorted(starts)
    assert (
        len(set(pieces.text.split()) & set(whole.text.split())) >= len(set(whole.text.split())) - 4
    )
    assert pieces.words[-1].end_ms == pytest.approx(whole.words[-1].end_ms, abs=150)
