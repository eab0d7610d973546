"""The Whisper transcriber: faster-whisper (CTranslate2) on a local model, in worker threads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.models import Transcript, TranscriptWord
from ravepilot_whisper.settings import WhisperSettings, check_model_dir, parse_whisper_url

__all__ = ["WhisperTranscriber", "open_whisper_transcriber", "to_transcript"]


class _Word(Protocol):
    """What faster-whisper's ``Word`` has that we use."""

    word: str
    start: float
    end: float


class _Segment(Protocol):
    """What faster-whisper's ``Segment`` has that we use."""

    text: str
    words: list[Any] | None


def to_transcript(segments: Iterable[_Segment], language: str) -> Transcript:
    """Turn faster-whisper's segments (decoded as they are iterated) into a Transcript.

    Whisper's words carry their leading space and punctuation (" coffee,"): the space goes,
    the punctuation stays, so captions read like sentences.
    """
    texts: list[str] = []
    words: list[TranscriptWord] = []
    for segment in segments:
        if segment.text.strip():
            texts.append(segment.text.strip())
        for word in segment.words or ():
            token = word.word.strip()
            if token:
                start = max(round(word.start * 1000), 0)
                words.append(
                    TranscriptWord(
                        word=token, start_ms=start, end_ms=max(round(word.end * 1000), start)
                    )
                )
    words.sort(key=lambda w: w.start_ms)  # stable: ties keep Whisper's order
    return Transcript(text=" ".join(texts), language=language, words=tuple(words))


class WhisperTranscriber:
    """Transcribes with a loaded faster-whisper model (made by :func:`open_whisper_transcriber`).

    CTranslate2 runs transcriptions from several threads at once (queued on its workers), so
    calls are not serialised here.
    """

    def __init__(self, model: Any, settings: WhisperSettings) -> None:
        self._model: Any | None = model
        self.settings = settings

    async def transcribe(self, audio: Path, *, language: str = "en") -> Transcript:
        """Return what is said in ``audio`` with word timings.

        The URL's ``language`` wins over ``language`` (RavePilot asks for English); with
        ``language=auto`` Whisper detects it, and the transcript says which it found.
        """
        chosen = self.settings.language or language
        return await anyio.to_thread.run_sync(
            self._transcribe, audio, None if chosen == "auto" else chosen.split("-")[0].lower()
        )

    def _transcribe(self, audio: Path, language: str | None) -> Transcript:
        model = self._model
        if model is None:
            raise ConfigurationError("the whisper transcriber is closed")
        segments, info = model.transcribe(
            str(audio),
            language=language,
            beam_size=self.settings.beam_size,
            word_timestamps=True,
            # Whisper makes up words in silence ("Thank you."); the bundled Silero voice
            # activity detector keeps silence away from it.
            vad_filter=True,
            # Each window decoded on its own: a mistake cannot snowball into repeated lines.
            condition_on_previous_text=False,
        )
        return to_transcript(segments, info.language)

    async def close(self) -> None:
        """Drop the model (its memory is freed when no transcription uses it any more)."""
        self._model = None


def _load(settings: WhisperSettings) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ConfigurationError(
            f"faster-whisper is not installed ({exc}): pip install ravepilot-whisper"
        ) from exc
    try:
        return WhisperModel(
            str(settings.model_dir),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            local_files_only=True,  # never fetch anything from the Hugging Face hub
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigurationError(
            f"cannot load the whisper model in {settings.model_dir}: {exc}"
        ) from exc


async def open_whisper_transcriber(url: str) -> WhisperTranscriber:
    """Load the model named by ``url`` (in a thread: it takes seconds) and return a transcriber.

    Raises:
        ConfigurationError: The URL is wrong, the directory holds no model, or it fails to load.
    """
    settings = parse_whisper_url(url)
    check_model_dir(settings.model_dir)
    model = await anyio.to_thread.run_sync(_load, settings)
    return WhisperTranscriber(model, settings)
