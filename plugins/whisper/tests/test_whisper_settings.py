"""The whisper:// URL, the model directory checks and discovery: no model needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ravepilot_core.backends import installed_backends, open_backend
from ravepilot_core.errors import ConfigurationError
from ravepilot_whisper import (
    WhisperSettings,
    check_model_dir,
    open_whisper_transcriber,
    parse_whisper_url,
)

pytestmark = pytest.mark.anyio


def fake_model(directory: Path) -> Path:
    """Files named like a model's, holding nothing a model loader accepts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.bin").write_bytes(b"not weights")
    (directory / "config.json").write_text("{}")
    (directory / "tokenizer.json").write_text("{}")
    return directory


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("whisper:///models/small", WhisperSettings(model_dir=Path("/models/small"))),
        (
            "whisper:///models/small?device=cuda&compute_type=float16&language=de&beam_size=1",
            WhisperSettings(
                model_dir=Path("/models/small"),
                device="cuda",
                compute_type="float16",
                language="de",
                beam_size=1,
            ),
        ),
        (
            "whisper:///srv/my%20models/base.en?cpu_threads=2&language=auto",
            WhisperSettings(
                model_dir=Path("/srv/my models/base.en"), cpu_threads=2, language="auto"
            ),
        ),
    ],
)
def test_urls_it_reads(url: str, settings: WhisperSettings) -> None:
    assert parse_whisper_url(url) == settings


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sphinx://", "not a whisper:// URL"),
        ("whisper://", "absolute path after three slashes"),
        ("whisper:///", "absolute path after three slashes"),
        ("whisper://models/small", "absolute path after three slashes"),
        ("whisper:///m?device=gpu", "device='gpu'; use cpu, cuda, auto"),
        ("whisper:///m?compute_type=int4", "compute_type='int4'; use default"),
        ("whisper:///m?language=English", "language='English'; use a code such as en"),
        ("whisper:///m?beam_size=0", "beam_size='0' must be a whole number, at least 1"),
        ("whisper:///m?cpu_threads=many", "cpu_threads='many' must be a whole number"),
        ("whisper:///m?model=small", "unknown parameter 'model'"),
    ],
)
def test_urls_it_refuses(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem.replace("?", r"\?").replace("(", r"\(")):
        parse_whisper_url(url)


def test_a_missing_model_directory_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"does not exist; get one with: huggingface-cli"):
        check_model_dir(tmp_path / "nowhere")


def test_a_directory_without_a_model_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"no config\.json, tokenizer\.json\); get one"):
        check_model_dir(tmp_path)


async def test_found_by_its_scheme_and_checks_the_model_at_start_up(tmp_path: Path) -> None:
    (info,) = [b for b in installed_backends() if b.kind == "transcriber" and b.scheme == "whisper"]
    assert (info.distribution, info.target) == (
        "ravepilot-whisper",
        "ravepilot_whisper:open_whisper_transcriber",
    )
    with pytest.raises(ConfigurationError, match="does not exist"):
        await open_backend("transcriber", f"whisper://{tmp_path}/none")


async def test_a_model_that_does_not_load_is_a_configuration_error(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "broken")
    with pytest.raises(ConfigurationError, match=f"cannot load the whisper model in {model}"):
        await open_whisper_transcriber(f"whisper://{model}")
