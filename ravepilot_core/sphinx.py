"""The default transcriber: CMU PocketSphinx, English, offline (its wheel carries the model).

``RAVEPILOT_TRANSCRIBER_URL=sphinx://`` (the ``sphinx`` scheme of ``ravepilot.transcriber``)::

    transcriber = await open_backend("transcriber", "sphinx://?decoders=1")
    transcript = await transcriber.transcribe(Path("speech.wav"))  # 16 kHz mono 16-bit

Its accuracy is that of an older recogniser (no neural network): clear speech in a quiet room
comes out mostly right, accents and noise less so. For better transcripts (and other languages)
use ravepilot-whisper.
"""

from __future__ import annotations

import re
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread

from ravepilot_core.errors import ConfigurationError, MediaProcessingError
from ravepilot_core.models import Transcript, TranscriptWord

__all__ = ["PocketSphinxTranscriber", "open_sphinx_transcriber"]

SAMPLE_RATE = 16_000
_FRAME_MS = 10  # PocketSphinx cuts audio into 100 frames a second
# The search is tuned for speed. Measured on flite sentences on a 2-core machine, the default
# (at most 30,000 active HMMs a frame) decodes at 4-6x real time; 4,000 gives ~8x with the same
# words. Narrower beams (1e-40) were faster still but lost words; dropping the second (flat
# lexicon) pass lost words too.
_SEARCH = {"maxhmmpf": 4000}
# Speech is cut into utterances at pauses (PocketSphinx's voice activity detector) and each is
# decoded whole: cepstral mean normalisation then uses the whole utterance, which gets its first
# words right where the running estimate of block-by-block decoding often does not, memory stays
# bounded by one utterance, and silence is never searched (decoded whole, it yields noise words).
# An utterance is cut at 30 s even without a pause, because the search slows on longer ones.
_MAX_UTTERANCE_BYTES = 30 * SAMPLE_RATE * 2
_ALTERNATE = re.compile(r"\(\d+\)$")  # "before(2)": the dictionary's second pronunciation


def _is_filler(word: str) -> bool:
    # <s>, </s>, <sil>, [NOISE], [SPEECH], ++BREATH++: the model's silences and noises.
    return word.startswith(("<", "[", "+"))


@dataclass
class _Loaded:
    decoder: Any  # pocketsphinx.Decoder: not thread-safe, so one thread uses it at a time
    cmn_prior: str  # its starting estimate of the cepstral mean, restored before each clip


class PocketSphinxTranscriber:
    """Transcribes English speech with PocketSphinx, in worker threads.

    Loading the model takes 0.3-1 s and ~90 MB, so up to ``decoders`` loaded decoders are kept
    between transcriptions; transcriptions running at once each use their own.
    """

    def __init__(self, *, decoders: int = 2) -> None:
        self._keep = decoders
        self._idle: list[_Loaded] = []
        self._lock = threading.Lock()

    async def transcribe(self, audio: Path, *, language: str = "en") -> Transcript:
        """Return what is said in ``audio``, a 16 kHz mono 16-bit WAV file, with word timings.

        Raises:
            MediaProcessingError: ``language`` is not English, or ``audio`` is not such a file.
        """
        if re.split(r"[-_]", language.lower())[0] != "en":  # en, en-GB, en_US
            raise MediaProcessingError(
                f"the sphinx transcriber knows only English, not {language!r}; "
                "ravepilot-whisper transcribes other languages"
            )
        return await anyio.to_thread.run_sync(self._transcribe, audio)

    async def close(self) -> None:
        """Unload the kept decoders (a later transcription loads one again)."""
        with self._lock:
            self._idle.clear()

    def _take(self) -> _Loaded:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        from pocketsphinx import Decoder  # imported on first use: it loads a C library

        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="ERROR", **_SEARCH)
        return _Loaded(decoder, decoder.get_cmn())

    def _give_back(self, loaded: _Loaded) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(loaded)

    def _transcribe(self, audio: Path) -> Transcript:
        try:
            wav = wave.open(str(audio), "rb")
        except (OSError, EOFError, wave.Error) as exc:
            raise MediaProcessingError(f"cannot read the speech file {audio.name}: {exc}") from exc
        with wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                raise MediaProcessingError(
                    f"{audio.name} is not 16 kHz mono 16-bit WAV "
                    "(ravepilot_core.ffmpeg.extract_speech makes one)"
                )
            loaded = None
            words: list[TranscriptWord] = []
            for start_s, pcm in _utterances(wav):
                loaded = loaded or self._take()
                words += _decode(loaded, pcm, round(start_s * 1000 / _FRAME_MS))
        if loaded is not None:
            self._give_back(loaded)  # not after a failure: a decoder stopped midway is dropped
        return Transcript(text=" ".join(w.word for w in words), language="en", words=tuple(words))


def _utterances(wav: wave.Wave_read) -> Iterator[tuple[float, bytes]]:
    """Yield each stretch of speech in ``wav`` as (start in seconds, 16-bit samples)."""
    from pocketsphinx import Endpointer

    endpointer = Endpointer(sample_rate=SAMPLE_RATE)
    size = endpointer.frame_bytes
    pieces: list[bytes] = []
    held = 0
    start: float | None = None
    while frame := wav.readframes(size // 2):
        # end_stream takes the short last frame and closes an utterance still open.
        speech = endpointer.process(frame) if len(frame) == size else endpointer.end_stream(frame)
        if speech is None:
            continue
        if start is None:
            start = float(endpointer.speech_start)
        pieces.append(speech)
        held += len(speech)
        if not endpointer.in_speech:
            yield start, b"".join(pieces)
            pieces, held, start = [], 0, None
        elif held >= _MAX_UTTERANCE_BYTES:  # cut, and go on from where this piece ends
            yield start, b"".join(pieces)
            pieces, held, start = [], 0, start + held / (2 * SAMPLE_RATE)
    if pieces and start is not None:  # the file ended mid-speech on a whole frame
        yield start, b"".join(pieces)


def _decode(loaded: _Loaded, pcm: bytes, offset_frames: int) -> list[TranscriptWord]:
    """Decode one utterance; its words' times count from ``offset_frames``."""
    decoder = loaded.decoder
    # Without this, each utterance would start from the mean the previous one left behind, and
    # the same clip could come out differently depending on what was decoded before it.
    decoder.set_cmn(loaded.cmn_prior)
    decoder.start_utt()
    decoder.process_raw(pcm, False, True)  # full_utt: normalise over the whole utterance
    decoder.end_utt()
    return [
        TranscriptWord(
            word=_ALTERNATE.sub("", segment.word),
            start_ms=(segment.start_frame + offset_frames) * _FRAME_MS,
            end_ms=(segment.end_frame + 1 + offset_frames) * _FRAME_MS,  # end_frame is inside
        )
        for segment in decoder.seg()
        if not _is_filler(segment.word)
    ]


def open_sphinx_transcriber(url: str) -> PocketSphinxTranscriber:
    """Create the transcriber for ``sphinx://[?decoders=N]``.

    ``decoders`` is how many loaded decoders to keep between transcriptions (default 2, ~90 MB
    each; 0 loads the model for every clip).

    Raises:
        ConfigurationError: The URL has a host, a path or a parameter it does not know.
    """
    parts = urlsplit(url)
    if parts.scheme != "sphinx" or parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"transcriber URL {url!r}: write it as sphinx://[?decoders=N]")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "decoders":
            raise ConfigurationError(
                f"transcriber URL {url!r}: unknown parameter {name!r} (sphinx:// knows decoders)"
            )
        if not value.isdigit():
            raise ConfigurationError(
                f"transcriber URL {url!r}: decoders={value!r} must be a whole number (0 or more)"
            )
        options["decoders"] = int(value)
    return PocketSphinxTranscriber(**options)
