"""The media steps on real ffmpeg, on media made here (a browser-like webm, tones, silence)."""

from __future__ import annotations

import itertools
import os
import re
import stat
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ravepilot_core.errors import ConfigurationError, MediaProcessingError
from ravepilot_core.ffmpeg import (
    SILENCE_DB,
    _channels,
    extract_speech,
    find_ffmpeg,
    max_volume_db,
    normalise,
    poster,
    private_copy,
    probe,
    run_ffmpeg,
)
from tests.conftest import require

pytestmark = pytest.mark.anyio

PATTERN = "testsrc2=size={size}:rate={rate}"


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    try:
        return find_ffmpeg()
    except ConfigurationError as exc:
        require(False, str(exc))
        raise


def make(ffmpeg: str, target: Path, *args: str) -> Path:
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *args, str(target)]
    subprocess.run(command, check=True, timeout=120)
    return target


def listing(ffmpeg: str, path: Path) -> str:
    """What ``ffmpeg -i`` says about a file (it exits 1: no output was asked for)."""
    run = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return run.stderr


def browser_webm(ffmpeg: str, target: Path, *, seconds: float = 2.0, size: str = "640x360") -> Path:
    """VP9 + Opus written as a live stream, like MediaRecorder: no duration in the header."""
    return make(
        ffmpeg,
        target,
        *("-f", "lavfi", "-i", PATTERN.format(size=size, rate=30)),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", str(seconds), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"),
        *("-b:v", "500k", "-c:a", "libopus", "-live", "1", "-f", "webm"),
    )


@pytest.fixture(scope="module")
def webm(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return browser_webm(ffmpeg, tmp_path_factory.mktemp("media") / "take.webm")


@pytest.fixture(scope="module")
def mute_video(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("media") / "mute.mp4"
    return make(ffmpeg, target, "-f", "lavfi", "-i", PATTERN.format(size="320x240", rate=25),
                "-t", "1.5", "-c:v", "libx264", "-preset", "ultrafast")  # fmt: skip


@pytest.fixture(scope="module")
def silent_webm(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("media") / "silent.webm"
    return make(
        ffmpeg,
        target,
        *("-f", "lavfi", "-i", PATTERN.format(size="320x240", rate=30)),
        *("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "1.5"),
        *("-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"),
    )


def mp4_boxes(path: Path) -> list[str]:
    """The top-level box types of an mp4, in file order."""
    boxes = []
    with path.open("rb") as file:
        while header := file.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", file.read(8))[0] - 8
            elif size == 0:
                boxes.append(kind.decode())
                break
            boxes.append(kind.decode())
            file.seek(size - 8, os.SEEK_CUR)
    return boxes


def frame_times(ffmpeg: str, path: Path) -> list[float]:
    command = [ffmpeg, "-hide_banner", "-i", str(path), "-map", "0:v", "-vf", "showinfo"]
    run = subprocess.run([*command, "-f", "null", "-"], capture_output=True, text=True, check=True)
    return [float(t) for t in re.findall(r"pts_time:([\d.]+)", run.stderr)]


# Probe


async def test_probe_reads_a_browser_recording_without_a_duration(ffmpeg: str, webm: Path) -> None:
    assert "Duration: N/A" in listing(ffmpeg, webm)  # as MediaRecorder writes them
    found = await probe(webm)
    assert found.duration_ms is not None and abs(found.duration_ms - 2000) <= 50
    assert (found.has_video, found.has_audio) == (True, True)
    assert (found.video_codec, found.audio_codec) == ("vp9", "opus")
    assert (found.width, found.height, found.fps) == (640, 360, 30.0)


async def test_probe_of_sound_only(ffmpeg: str, tmp_path: Path) -> None:
    wav = make(ffmpeg, tmp_path / "tone.wav", "-f", "lavfi", "-i", "sine=d=1.25")
    found = await probe(wav)
    assert found.has_audio and not found.has_video
    assert found.duration_ms == 1250
    assert found.audio_codec == "pcm_s16le"
    assert (found.width, found.height, found.video_codec, found.fps) == (None, None, None, None)


async def test_probe_reports_the_upright_size_of_a_rotated_video(
    ffmpeg: str, mute_video: Path, tmp_path: Path
) -> None:
    rotated = make(ffmpeg, tmp_path / "portrait.mp4",
                   "-display_rotation", "90", "-i", str(mute_video), "-c", "copy")  # fmt: skip
    assert re.search(r"rotation of -?90", listing(ffmpeg, rotated))
    found = await probe(rotated)
    assert (found.width, found.height) == (240, 320)


@pytest.mark.parametrize(
    ("line", "channels"),
    [
        ("opus, 48000 Hz, mono, fltp", 1),
        ("aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)", 2),
        ("eac3, 48000 Hz, 5.1(side), fltp, 640 kb/s", 6),
        ("flac, 96000 Hz, 7.1, s32 (24 bit)", 8),
        ("pcm_s16le, 48000 Hz, 3 channels (FL+FR+LFE), s16, 2304 kb/s", 3),
        ("pcm_s16le, 44100 Hz, 2 channels, s16", 2),
        ("pcm_s16le, 44100 Hz, mono", 1),  # nothing after the layout
        ("opus, 48000 Hz, quad, fltp", None),  # a named layout: "more than one"
        ("opus, 48000 Hz, ambisonic 1, fltp", None),  # four channels, not one
        (None, None),
    ],
)
def test_the_channel_count_of_an_audio_stream_line(line: str | None, channels: int | None) -> None:
    assert _channels(line) == channels


async def test_probe_reports_non_square_pixels_at_their_square_width(
    ffmpeg: str, tmp_path: Path
) -> None:
    dv = make(ffmpeg, tmp_path / "dv.mov", "-f", "lavfi", "-i",
              PATTERN.format(size="720x480", rate=30), "-t", "0.5", "-vf", "setsar=8/9",
              "-c:v", "libx264", "-preset", "ultrafast")  # fmt: skip
    assert "SAR 8:9" in listing(ffmpeg, dv)
    assert ((found := await probe(dv)).width, found.height) == (640, 480)  # 4:3 as shown
    result = await normalise(dv, tmp_path / "clip.mp4")
    assert (result.width, result.height) == (640, 480)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a video\n" * 100, b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40],
    ids=["empty", "text", "broken-webm-header"],
)
async def test_a_corrupt_file_is_not_a_readable_video(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.webm"
    path.write_bytes(content)
    with pytest.raises(MediaProcessingError, match=r"^the file is not a readable video: \S"):
        await probe(path)


async def test_a_truncated_upload_reports_what_is_really_there(ffmpeg: str, tmp_path: Path) -> None:
    whole = browser_webm(ffmpeg, tmp_path / "whole.webm", seconds=3.0)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    found = await probe(cut)
    assert found.duration_ms is not None and 500 < found.duration_ms < 2500


# Normalise


async def test_normalise_makes_a_fast_start_h264_aac_mp4_at_constant_30_fps(
    ffmpeg: str, webm: Path, tmp_path: Path
) -> None:
    target = tmp_path / "clip.mp4"
    result = await normalise(webm, target)
    assert result == await probe(target)
    assert (result.video_codec, result.audio_codec, result.fps) == ("h264", "aac", 30.0)
    assert (result.width, result.height) == (640, 360)
    assert result.duration_ms is not None and abs(result.duration_ms - 2000) <= 100
    boxes = mp4_boxes(target)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart
    info = listing(ffmpeg, target)
    assert "yuv420p" in info and "48000 Hz, mono" in info, info  # one microphone, one channel
    assert result.audio_channels == 1
    times = frame_times(ffmpeg, target)
    assert abs(len(times) - 60) <= 1
    steps = {round(b - a, 4) for a, b in itertools.pairwise(times)}
    assert steps == {round(1 / 30, 4)}, steps  # every frame lasts 1/30 s: constant frame rate
    assert not [p.name for p in tmp_path.iterdir() if p.name != "clip.mp4"]  # no temp file left


async def test_normalise_caps_the_long_side_keeps_the_aspect_and_rounds_to_even(
    ffmpeg: str, tmp_path: Path
) -> None:
    big = make(ffmpeg, tmp_path / "big.mkv", "-f", "lavfi", "-i",
               PATTERN.format(size="2400x1351", rate=24), "-t", "0.5", "-c:v", "ffv1")  # fmt: skip
    result = await normalise(big, tmp_path / "clip.mp4")
    assert (result.width, result.height) == (1280, 720)  # 720.5 rounded down to even
    assert result.fps == 30.0 and result.has_audio


@pytest.mark.parametrize(("layout", "channels"), [("stereo", 2), ("5.1", 2)])
async def test_normalise_keeps_stereo_and_mixes_more_channels_down_to_it(
    ffmpeg: str, tmp_path: Path, layout: str, channels: int
) -> None:
    sound = f"sine=f=440:sample_rate=48000,aformat=channel_layouts={layout}"
    source = make(ffmpeg, tmp_path / "phone.mp4",
                  *("-f", "lavfi", "-i", PATTERN.format(size="320x240", rate=30)),
                  *("-f", "lavfi", "-i", sound, "-t", "1"),
                  *("-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"))  # fmt: skip
    assert (await probe(source)).audio_channels == {"stereo": 2, "5.1": 6}[layout]
    result = await normalise(source, tmp_path / "clip.mp4")
    assert result.audio_channels == channels
    assert "48000 Hz, stereo" in listing(ffmpeg, tmp_path / "clip.mp4")


async def test_normalise_turns_a_rotated_video_upright(
    ffmpeg: str, mute_video: Path, tmp_path: Path
) -> None:
    rotated = make(ffmpeg, tmp_path / "portrait.mp4",
                   "-display_rotation", "90", "-i", str(mute_video), "-c", "copy")  # fmt: skip
    target = tmp_path / "clip.mp4"
    result = await normalise(rotated, target)
    assert (result.width, result.height) == (240, 320)
    assert "rotation" not in listing(ffmpeg, target).lower()  # turned, not just labelled


async def test_a_video_without_sound_gets_a_silent_track(mute_video: Path, tmp_path: Path) -> None:
    assert not (await probe(mute_video)).has_audio
    target = tmp_path / "clip.mp4"
    result = await normalise(mute_video, target)
    assert result.has_audio and result.audio_codec == "aac"
    assert result.duration_ms is not None and abs(result.duration_ms - 1500) <= 100
    loudest = await max_volume_db(target)
    assert loudest is not None and loudest < -90


async def test_normalise_refuses_sound_without_picture(ffmpeg: str, tmp_path: Path) -> None:
    wav = make(ffmpeg, tmp_path / "voice.wav", "-f", "lavfi", "-i", "sine=d=1")
    with pytest.raises(MediaProcessingError, match="no picture"):
        await normalise(wav, tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists()


async def test_a_failed_normalise_leaves_no_target_and_no_temporary_file(tmp_path: Path) -> None:
    broken = tmp_path / "upload.webm"
    broken.write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MediaProcessingError, match="not a readable video"):
        await normalise(broken, out / "clip.mp4")
    assert list(out.iterdir()) == []


async def test_normalise_replaces_an_older_target_whole(webm: Path, tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"an earlier attempt")
    await normalise(webm, target)
    assert mp4_boxes(target)[0] == "ftyp"


# Poster, volume, speech


async def test_a_private_copy_keeps_the_streams_and_rotation_but_not_the_metadata(
    ffmpeg: str, tmp_path: Path
) -> None:
    shot = make(ffmpeg, tmp_path / "shot.mp4",
                *("-f", "lavfi", "-i", PATTERN.format(size="320x240", rate=30)),
                *("-f", "lavfi", "-i", "sine=d=1", "-t", "1", "-c:v", "libx264"),
                *("-preset", "ultrafast", "-c:a", "aac"),
                *("-metadata", "location=+48.8577+002.2950/"),
                *("-metadata", "com.apple.quicktime.model=iPhone"))  # fmt: skip
    phone = make(ffmpeg, tmp_path / "phone.mp4",
                 "-display_rotation", "90", "-i", str(shot), "-c", "copy")  # fmt: skip
    assert "48.8577" in listing(ffmpeg, phone)
    copy = await private_copy(phone, tmp_path / "clip0")
    assert copy == tmp_path / "clip0.mov"
    info = listing(ffmpeg, copy)
    assert "48.8577" not in info and "iPhone" not in info, info
    assert re.search(r"rotation of -?90", info)
    found = await probe(copy)
    assert (found.video_codec, found.audio_codec) == ("h264", "aac")
    assert (found.width, found.height) == (240, 320)
    assert found.duration_ms is not None and abs(found.duration_ms - 1000) <= 50


async def test_a_private_copy_of_a_browser_recording_is_matroska(
    ffmpeg: str, webm: Path, tmp_path: Path
) -> None:
    copy = await private_copy(webm, tmp_path / "clip0")
    assert copy.suffix == ".mkv"
    found = await probe(copy)
    assert (found.video_codec, found.audio_codec) == ("vp9", "opus")
    assert found.duration_ms == (await probe(webm)).duration_ms


async def test_a_private_copy_of_a_corrupt_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaProcessingError, match="not a readable video"):
        await private_copy(broken, tmp_path / "clip0")


@pytest.mark.parametrize("at_ms", [500, 60_000], ids=["inside", "past-the-end"])
async def test_poster_is_a_jpeg_of_the_video(webm: Path, tmp_path: Path, at_ms: int) -> None:
    target = tmp_path / "poster.jpg"
    await poster(webm, target, at_ms=at_ms)
    data = target.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    assert len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["poster.jpg"]


async def test_poster_of_a_file_without_picture_fails(ffmpeg: str, tmp_path: Path) -> None:
    wav = make(ffmpeg, tmp_path / "voice.wav", "-f", "lavfi", "-i", "sine=d=1")
    with pytest.raises(MediaProcessingError, match="poster"):
        await poster(wav, tmp_path / "poster.jpg", at_ms=0)
    assert not (tmp_path / "poster.jpg").exists()


async def test_max_volume_tells_silence_from_sound(
    webm: Path, silent_webm: Path, mute_video: Path
) -> None:
    silent = await max_volume_db(silent_webm)
    loud = await max_volume_db(webm)
    assert silent is not None and silent < -90 < SILENCE_DB
    assert loud is not None and loud > SILENCE_DB + 20
    assert await max_volume_db(mute_video) is None


async def test_max_volume_of_a_corrupt_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "upload.webm"
    broken.write_bytes(b"nonsense" * 100)
    with pytest.raises(MediaProcessingError, match="measuring the sound failed"):
        await max_volume_db(broken)


async def test_extract_speech_writes_16khz_mono_16bit_wav(webm: Path, tmp_path: Path) -> None:
    target = tmp_path / "speech.wav"
    await extract_speech(webm, target)
    with wave.open(str(target), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert abs(wav.getnframes() - 32000) <= 800


async def test_extract_speech_from_a_video_without_sound_fails(
    mute_video: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaProcessingError, match="no sound"):
        await extract_speech(mute_video, tmp_path / "speech.wav")
    assert list(tmp_path.iterdir()) == []


# ffmpeg itself


@pytest.fixture
def fresh_lookup() -> Iterator[None]:
    find_ffmpeg.cache_clear()  # so RAVEPILOT_FFMPEG set by the test is read
    yield
    find_ffmpeg.cache_clear()  # so the next test finds the real one again


@pytest.mark.usefixtures("fresh_lookup")
async def test_a_missing_ffmpeg_says_how_to_install_one(
    monkeypatch: pytest.MonkeyPatch, webm: Path
) -> None:
    monkeypatch.setenv("RAVEPILOT_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(ConfigurationError, match="pip install imageio-ffmpeg") as raised:
        await probe(webm)
    assert "/nonexistent/ffmpeg" in str(raised.value)


@pytest.mark.usefixtures("fresh_lookup")
async def test_an_ffmpeg_that_vanished_after_it_was_found(
    monkeypatch: pytest.MonkeyPatch, webm: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("RAVEPILOT_FFMPEG", str(fake))
    assert find_ffmpeg() == str(fake)
    fake.unlink()
    with pytest.raises(ConfigurationError, match="apt-get install ffmpeg"):
        await probe(webm)


async def test_run_ffmpeg_stops_at_its_timeout() -> None:
    endless = ("-f", "lavfi", "-i", "testsrc2", "-f", "null", "-")
    with pytest.raises(MediaProcessingError, match="took longer than"):
        await run_ffmpeg(*endless, timeout=0.5, what="rendering forever")


async def test_run_ffmpeg_failure_names_the_step_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(MediaProcessingError, match=r"^joining clips failed: .*No such file"):
        await run_ffmpeg(
            "-i", str(tmp_path / "missing.mp4"), "-f", "null", "-", what="joining clips"
        )
