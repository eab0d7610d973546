"""The whisper:// URL: a local model directory and how to run it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ravepilot_core.errors import ConfigurationError

__all__ = ["COMPUTE_TYPES", "DEVICES", "WhisperSettings", "check_model_dir", "parse_whisper_url"]

DEVICES = ("cpu", "cuda", "auto")
#: CTranslate2's compute types; int8 is the fast one on a CPU.
COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
#: What a faster-whisper (CTranslate2) model directory holds. Without tokenizer.json
#: faster-whisper would fetch one from the Hugging Face hub, which this plugin never does.
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
GET_A_MODEL = (
    "get one with: huggingface-cli download Systran/faster-whisper-small --local-dir DIR "
    "(or convert an OpenAI Whisper model with ct2-transformers-converter)"
)
_LANGUAGE = re.compile(r"[a-z]{2,3}|auto")
_EXAMPLE = "whisper:///var/lib/ravepilot/whisper-small?device=cpu&compute_type=int8"


@dataclass(frozen=True)
class WhisperSettings:
    """How to run Whisper; see the README for each field."""

    model_dir: Path
    device: str = "cpu"
    compute_type: str = "int8"
    language: str | None = None  # None: the language RavePilot asks for; "auto": detect it
    beam_size: int = 5
    cpu_threads: int = 0  # 0: CTranslate2's default (4, or fewer cores)


def _whole_number(url: str, name: str, value: str, least: int) -> int:
    if not value.isdigit() or int(value) < least:
        raise ConfigurationError(
            f"transcriber URL {url!r}: {name}={value!r} must be a whole number, at least {least}"
        )
    return int(value)


def parse_whisper_url(url: str) -> WhisperSettings:
    """Read ``whisper:///abs/model/dir?device=&compute_type=&language=&beam_size=&cpu_threads=``.

    Raises:
        ConfigurationError: The URL is not one, or a parameter is unknown or out of range.
    """
    parts = urlsplit(url)
    if parts.scheme != "whisper":
        raise ConfigurationError(f"not a whisper:// URL: {url!r}; for example {_EXAMPLE}")
    path = unquote(parts.path)
    if parts.netloc or not path.startswith("/") or path == "/":
        raise ConfigurationError(
            f"transcriber URL {url!r}: name the model directory by its absolute path after "
            f"three slashes, for example {_EXAMPLE}"
        )
    options: dict[str, str | int | None] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "device" and value in DEVICES:
            options[name] = value
        elif name == "compute_type" and value in COMPUTE_TYPES:
            options[name] = value
        elif name == "language" and _LANGUAGE.fullmatch(value):
            options[name] = value
        elif name == "beam_size":
            options[name] = _whole_number(url, name, value, 1)
        elif name == "cpu_threads":
            options[name] = _whole_number(url, name, value, 0)
        elif name in ("device", "compute_type", "language"):
            allowed = {
                "device": ", ".join(DEVICES),
                "compute_type": ", ".join(COMPUTE_TYPES),
                "language": "a code such as en, de, fr, or auto",
            }[name]
            raise ConfigurationError(f"transcriber URL {url!r}: {name}={value!r}; use {allowed}")
        else:
            raise ConfigurationError(
                f"transcriber URL {url!r}: unknown parameter {name!r} (whisper:// knows device, "
                "compute_type, language, beam_size, cpu_threads)"
            )
    return WhisperSettings(model_dir=Path(path), **options)  # type: ignore[arg-type]


def check_model_dir(model_dir: Path) -> None:
    """Raise ConfigurationError unless ``model_dir`` holds a faster-whisper model."""
    if not model_dir.is_dir():
        raise ConfigurationError(
            f"the whisper model directory {model_dir} does not exist; {GET_A_MODEL}"
        )
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ConfigurationError(
            f"{model_dir} is not a faster-whisper model directory (no {', '.join(missing)}); "
            + GET_A_MODEL
        )
