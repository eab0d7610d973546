"""From faster-whisper's segments to a Transcript, and the transcriber around a model double."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.models import Transcript, TranscriptWord
from ravepilot_core.protocols import Transcriber
from ravepilot_whisper import WhisperSettings, WhisperTranscriber, to_transcript

pytestmark = pytest.mark.anyio


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Segment:
    text: str
    words: list[Any] | None = None


@dataclass
class Info:
    language: str


@dataclass
class ModelDouble:
    """Answers like faster-whisper's WhisperModel; remembers how it was called."""

    segments: list[Segment]
    detected: str = "en"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def transcribe(self, audio: str, **options: Any) -> tuple[Any, Info]:
        self.calls.append({"audio": audio, **options})
        return iter(self.segments), Info(options["language"] or self.detected)


SAID = [
    Segment(" I love this coffee.", [Word(" I", 0.0, 0.2), Word(" love", 0.2, 0.5),
                                     Word(" this", 0.5, 0.7), Word(" coffee.", 0.7, 1.24)]),
    Segment(" Every morning!", [Word(" Every", 2.0, 2.3), Word(" morning!", 2.3, 2.9)]),
]  # fmt: skip


def test_words_lose_their_space_and_keep_their_punctuation() -> None:
    transcript = to_transcript(SAID, "en")
    assert transcript.text == "I love this coffee. Every morning!"
    assert transcript.language == "en"
    assert [w.word for w in transcript.words] == [
        "I",
        "love",
        "this",
        "coffee.",
        "Every",
        "morning!",
    ]
    assert transcript.words[3] == TranscriptWord(word="coffee.", start_ms=700, end_ms=1240)


def test_odd_timings_are_made_sane() -> None:
    segments = [
        Segment(
            " late early", [Word(" late", 1.0, 1.5), Word(" early", 0.5, 0.4), Word(" ", 0.1, 0.2)]
        )
    ]
    transcript = to_transcript(segments, "en")
    assert [(w.word, w.start_ms, w.end_ms) for w in transcript.words] == [
        ("early", 500, 500),
        ("late", 1000, 1500),
    ]


def test_no_segments_is_silence() -> None:
    assert to_transcript([], "en") == Transcript(text="", language="en")
    assert to_transcript([Segment(" ", None)], "de") == Transcript(text="", language="de")


async def test_asks_for_word_timings_with_voice_detection(tmp_path: Path) -> None:
    model = ModelDouble(SAID)
    transcriber = WhisperTranscriber(model, WhisperSettings(model_dir=tmp_path, beam_size=2))
    assert isinstance(transcriber, Transcriber)
    transcript = await transcriber.transcribe(tmp_path / "speech.wav", language="en-US")
    assert transcript.text.startswith("I love")
    (call,) = model.calls
    assert call["audio"] == str(tmp_path / "speech.wav")
    assert call["language"] == "en" and call["beam_size"] == 2
    assert call["word_timestamps"] is True and call["vad_filter"] is True


@pytest.mark.parametrize(
    ("configured", "asked", "sent", "reported"),
    [(None, "en", "en", "en"), ("de", "en", "de", "de"), ("auto", "en", None, "fr")],
)
async def test_the_url_language_wins_and_auto_detects(
    tmp_path: Path, configured: str | None, asked: str, sent: str | None, reported: str
) -> None:
    model = ModelDouble(SAID, detected="fr")
    transcriber = WhisperTranscriber(
        model, WhisperSettings(model_dir=tmp_path, language=configured)
    )
    transcript = await transcriber.transcribe(tmp_path / "speech.wav", language=asked)
    assert model.calls[0]["language"] == sent
    assert transcript.language == reported


async def test_closed_it_refuses_and_closing_twice_is_harmless(tmp_path: Path) -> None:
    transcriber = WhisperTranscriber(ModelDouble(SAID), WhisperSettings(model_dir=tmp_path))
    await transcriber.close()
    await transcriber.close()
    with pytest.raises(ConfigurationError, match="closed"):
        await transcriber.transcribe(tmp_path / "speech.wav")
