"""RavePilot's Transcriber contract on a real Whisper model, when one is on this machine.

No model ships with the plugin and none is downloaded here: point RAVEPILOT_TEST_WHISPER_MODEL at
a faster-whisper model directory to run these (CI does not).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ravepilot_core.protocols import Transcriber
from ravepilot_core.testing import TranscriberContract
from ravepilot_whisper import open_whisper_transcriber
from ravepilot_whisper.settings import MODEL_FILES

MODEL_VARIABLE = "RAVEPILOT_TEST_WHISPER_MODEL"
HOW_TO = (
    f"set {MODEL_VARIABLE} to a faster-whisper model directory to run the Transcriber contract "
    "on Whisper, e.g. after: huggingface-cli download Systran/faster-whisper-tiny.en "
    "--local-dir /tmp/whisper-tiny.en"
)


def model_dir() -> Path:
    """The test model's directory, or skip (a plain skip: CI does not require a model)."""
    named = os.environ.get(MODEL_VARIABLE, "")
    if not named:
        pytest.skip(HOW_TO)
    path = Path(named)
    if not all((path / name).is_file() for name in MODEL_FILES):
        pytest.skip(f"{MODEL_VARIABLE}={named!r} is not a faster-whisper model directory; {HOW_TO}")
    return path.resolve()


class TestWhisperTranscriber(TranscriberContract):
    @pytest.fixture
    async def transcriber(self) -> AsyncIterator[Transcriber]:
        transcriber = await open_whisper_transcriber(f"whisper://{model_dir()}?compute_type=int8")
        yield transcriber
        await transcriber.close()


class TestWhisperDetectingTheLanguage(TranscriberContract):
    @pytest.fixture
    async def transcriber(self) -> AsyncIterator[Transcriber]:
        transcriber = await open_whisper_transcriber(f"whisper://{model_dir()}?language=auto")
        yield transcriber
        await transcriber.close()
