"""Test media, made on the spot with ffmpeg (and flite for speech): nothing is downloaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ravepilot_core.ffmpeg import find_ffmpeg
from tests.conftest import require


def speech(path: Path, text: str) -> Path:
    """Write ``text`` spoken by flite's rms voice (it transcribes cleanly) to a WAV file."""
    require(shutil.which("flite") is not None, "no flite: apt-get install flite")
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(path)], check=True, timeout=60)
    return path


def recording(
    path: Path,
    *,
    seconds: float = 2.0,
    size: str = "320x240",
    audio: Path | None = None,
    tone: bool = True,
) -> Path:
    """Write a browser-like webm (VP8 + Opus) of a test pattern with a tone, speech or silence."""
    command = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    if audio is not None:
        command += ["-i", str(audio)]
    elif tone:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    else:
        command += ["-f", "lavfi", "-i", f"anullsrc=r=48000:cl=mono:d={seconds}"]
    # Pad the sound with silence so the clip lasts exactly ``seconds`` whatever was said.
    command += ["-af", "apad", "-t", str(seconds)]
    command += ["-c:v", "libvpx", "-b:v", "500k", "-deadline", "realtime", "-c:a", "libopus"]
    command.append(str(path))
    subprocess.run(command, check=True, timeout=120)
    return path
