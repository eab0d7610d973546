"""RavePilot's Whisper transcriber: ``RAVEPILOT_TRANSCRIBER_URL=whisper:///path/to/model``.

Installed, it serves the ``whisper`` scheme of the ``ravepilot.transcriber`` entry-point group,
so the core finds it by URL. It runs faster-whisper on a model directory on this machine and
never downloads one::

    transcriber = await open_backend("transcriber", "whisper:///models/small?compute_type=int8")
"""

from __future__ import annotations

from ravepilot_whisper.settings import WhisperSettings, check_model_dir, parse_whisper_url
from ravepilot_whisper.transcriber import (
    WhisperTranscriber,
    open_whisper_transcriber,
    to_transcript,
)

__all__ = [
    "WhisperSettings",
    "WhisperTranscriber",
    "check_model_dir",
    "open_whisper_transcriber",
    "parse_whisper_url",
    "to_transcript",
]
