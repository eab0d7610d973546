"""Running ffmpeg: which binary, one way to call it that fails with a reason, and the media steps.

The static binary in the ``imageio-ffmpeg`` wheel comes first: it has drawtext, libass, x264,
vpx and opus on every machine pip reaches, whatever the system's ffmpeg was built with. The
system ``ffmpeg`` on PATH is the fallback (``RAVEPILOT_FFMPEG`` names another). That wheel has no
ffprobe, so :func:`probe` reads what ``ffmpeg -i`` reports instead.

The steps a clip goes through: :func:`probe` the upload, :func:`max_volume_db` to refuse a silent
one, :func:`normalise` it to mp4, take a :func:`poster` frame, :func:`extract_speech` for the
transcriber. Each writes its output under a temporary name beside the target and renames it into
place, so a crash never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from ravepilot_core.errors import ConfigurationError, MediaProcessingError

__all__ = [
    "PLAYBACK_LONG_SIDE",
    "SILENCE_DB",
    "Probe",
    "extract_speech",
    "find_ffmpeg",
    "max_volume_db",
    "normalise",
    "poster",
    "probe",
    "run_ffmpeg",
]

DEFAULT_TIMEOUT = 600.0
_STDERR_TAIL = 1500
_INSTALL_HINT = "pip install imageio-ffmpeg (or apt-get install ffmpeg)"

#: A clip whose loudest moment is quieter than this (dBFS) has no usable sound. A muted, denied
#: or unplugged microphone records digital silence, which reads -91 dB; browsers' noise
#: suppression pulls an empty room down to -70 dB or so; speech peaks above -30 dB even from
#: across a room. -50 dB sits between the two, so it catches a dead microphone, not a quiet
#: speaker (a clip of room noise may pass: its empty transcript tells the reviewer).
SILENCE_DB = -50.0

# Chosen for speed, since every clip goes through it on upload. The normalised clip is the
# playback copy reviewers watch, so its long side is capped at PLAYBACK_LONG_SIDE (720p):
# encoding a phone's 1080x1920 at full size costs 2.25x the pixels, and renders do not need it
# (they are cut from the customer's original). The scale keeps the aspect ratio (and the pixel
# aspect) and rounds to even sizes, which yuv420p needs; "area" averages the pixels a downscale
# drops, and costs a third less than bilinear. ffmpeg applies the rotation metadata itself
# before these filters (and drops it from the output).
# x264's ultrafast preset is the only one near 8x real time on two cores (superfast manages
# 4-5x). A constant quantiser instead of CRF skips x264's per-frame look-ahead analysis, which
# at ultrafast is a third of the encoder's CPU; files come out no bigger (its rate control only
# moved quality between frames: SSIM 0.9965 against CRF's 0.9974 on the benchmark's clip). The
# in-loop deblocking is switched back on: it costs ~5 % and removes the blockiness ultrafast is
# known for. A key frame every 2 s lets players seek.
PLAYBACK_LONG_SIDE = 1280
_FIT = f"min(1,{PLAYBACK_LONG_SIDE}/max(iw*sar,ih))"
_VIDEO_FILTER = (
    f"scale=w='trunc(iw*sar*{_FIT}/2)*2':h='trunc(ih*{_FIT}/2)*2':flags=area,"
    "setsar=1,fps=30,format=yuv420p"
)
_VIDEO_CODEC = (
    *("-c:v", "libx264", "-preset", "ultrafast", "-x264-params", "deblock=0,0"),
    *("-qp", "23", "-g", "60"),
)
# Sound keeps the source's channels, mono or stereo (anything more is mixed down to stereo): a
# microphone records one voice, and encoding it twice as stereo doubles the AAC encoder's work.
_AUDIO_CODEC = ("-c:a", "aac", "-ar", "48000")
_AAC_BITRATE_PER_CHANNEL = 64  # kb/s

_STREAM = re.compile(r"^\s*Stream #0:\d+[^:]*: (Video|Audio): (.*)$")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_TIME = re.compile(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_SIZE = re.compile(r", (\d+)x(\d+)\b")
_FPS = re.compile(r", (\d+(?:\.\d+)?)(k?) fps\b")
_CHANNELS = re.compile(r" Hz, ([^,]+?)(?:,|$)")
_SAR = re.compile(r"\[SAR (\d+):(\d+) ")
_FORMAT = re.compile(r"^Input #0, (.+?), from ", re.MULTILINE)
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_OPEN_ERROR = re.compile(r"Error opening input[^:\n]*: (.+)$", re.MULTILINE)
_MAX_VOLUME = re.compile(r"max_volume: (-?\d+(?:\.\d+)?|-inf) dB")


class Probe(msgspec.Struct, frozen=True, kw_only=True):
    """What a media file holds, as ffmpeg reads it.

    ``duration_ms`` is measured by reading the file through (:func:`probe`), so browser
    recordings (which carry no duration) get one too. ``width`` and ``height`` are as
    displayed: a phone's portrait clip stored sideways with rotation metadata reports its
    upright size, and a picture of non-square pixels its width once they are square. The video
    fields are None without a video track, the audio ones without a sound track.
    """

    duration_ms: int | None
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    fps: float | None
    audio_channels: int | None = None


@functools.cache
def find_ffmpeg() -> str:
    """Return the ffmpeg executable to use, or raise ConfigurationError saying how to get one."""
    chosen = os.environ.get("RAVEPILOT_FFMPEG")
    if chosen:
        if shutil.which(chosen) is None:
            raise ConfigurationError(
                f"RAVEPILOT_FFMPEG={chosen!r} is not an executable; point it at an ffmpeg, or "
                f"unset it to use the one from {_INSTALL_HINT}"
            )
        return chosen
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    system = shutil.which("ffmpeg")
    if system is None:
        raise ConfigurationError(f"ffmpeg was not found: {_INSTALL_HINT}")
    return system


async def _ffmpeg(args: tuple[str, ...], timeout: float, what: str) -> tuple[int, str]:
    """Run ffmpeg; return its exit code and stderr (decoded)."""
    executable = find_ffmpeg()
    command = [executable, "-hide_banner", "-nostdin", *args]
    try:
        with anyio.fail_after(timeout):
            result = await anyio.run_process(
                command, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
    except TimeoutError:
        raise MediaProcessingError(f"{what} took longer than {timeout:.0f} s") from None
    except OSError as exc:  # deleted or unusable since it was found: look again next time
        find_ffmpeg.cache_clear()
        raise ConfigurationError(
            f"cannot run ffmpeg {executable!r} ({exc}): {_INSTALL_HINT}"
        ) from exc
    return result.returncode, result.stderr.decode(errors="replace")


def _reason(stderr: str) -> str:
    """The end of ffmpeg's own message, without its progress lines."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr)]
    lines = [line for line in lines if line and not line.startswith(("frame=", "size="))]
    return "; ".join(lines[-3:])[-_STDERR_TAIL:]


async def run_ffmpeg(
    *args: str, timeout: float = DEFAULT_TIMEOUT, what: str = "processing the media"
) -> str:
    """Run ``ffmpeg -hide_banner -nostdin <args>``; return its stderr (where it reports).

    Raises :class:`MediaProcessingError` naming ``what`` and the end of ffmpeg's own message
    when it fails or runs past ``timeout`` seconds.
    """
    code, stderr = await _ffmpeg(args, timeout, what)
    if code != 0:
        raise MediaProcessingError(f"{what} failed: {_reason(stderr)}")
    return stderr


def _seconds(match: re.Match[str]) -> float:
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _streams(stderr: str) -> tuple[str | None, str | None, float]:
    """The first video and audio stream lines of input #0, and the video's rotation."""
    listing = stderr.partition("Input #0")[2].partition("Stream mapping:")[0]
    video = audio = None
    rotation = 0.0
    in_video = False
    for line in listing.splitlines():
        if match := _STREAM.match(line):
            kind, details = match.groups()
            in_video = kind == "Video" and video is None and "(attached pic)" not in details
            if in_video:
                video = details
            elif kind == "Audio" and audio is None:
                audio = details
        elif in_video and (match := _ROTATION.search(line)):
            rotation = float(match.group(1))
    return video, audio, rotation


def _codec(details: str | None) -> str | None:
    return details.split(maxsplit=1)[0].rstrip(",") if details else None


def _channels(details: str | None) -> int | None:
    """The channel count of an audio stream line, or None when its layout is not one we count.

    ffmpeg names the layout: ``mono``, ``stereo``, ``3 channels (FL+FR+LFE)``, ``5.1(side)``;
    named multichannel layouts (quad, hexagonal, ambisonic ...) give None, which normalise()
    treats like any other layout of more than one channel.
    """
    match = _CHANNELS.search(details or "")
    if match is None:
        return None
    layout = match.group(1).strip()
    if layout in ("mono", "stereo"):
        return 1 if layout == "mono" else 2
    if counted := re.match(r"(\d+) channels\b", layout):
        return int(counted.group(1))
    if numbered := re.fullmatch(r"(\d+)\.(\d+)(?:\(\w+\))?", layout):  # 5.1, 7.1(wide)
        return int(numbered.group(1)) + int(numbered.group(2))
    return None


def _parse(stderr: str) -> Probe:
    video, audio, rotation = _streams(stderr)
    width = height = None
    fps = None
    if video is not None:
        if size := _SIZE.search(video):
            width, height = int(size.group(1)), int(size.group(2))
            if (sar := _SAR.search(video)) and int(sar.group(2)):  # non-square pixels (DV, HDV)
                width = round(width * int(sar.group(1)) / int(sar.group(2)))
            if round(rotation / 90) % 2:
                width, height = height, width
        if rate := _FPS.search(video):
            fps = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    # The time ffmpeg reached reading the file through is the real length; the header's
    # Duration is missing in browser recordings and wrong in a truncated upload.
    reached = list(_TIME.finditer(stderr))
    header = _DURATION.search(stderr)
    seconds = _seconds(reached[-1]) if reached else 0.0
    if seconds <= 0 and header is not None:
        seconds = _seconds(header)
    return Probe(
        duration_ms=round(seconds * 1000) if seconds > 0 else None,
        has_video=video is not None,
        has_audio=audio is not None,
        width=width,
        height=height,
        video_codec=_codec(video),
        audio_codec=_codec(audio),
        fps=fps,
        audio_channels=_channels(audio),
    )


async def probe(path: Path) -> Probe:
    """Read what ``path`` holds; raise MediaProcessingError when it is not a readable video.

    The file is read through once without decoding (a stream copy to nowhere), which is how a
    recording without a duration in its header gets one.
    """
    return await _inspect(path, read_through=True)


async def _inspect(path: Path, *, read_through: bool) -> Probe:
    """Probe ``path``; without ``read_through`` only its header is read (and its duration)."""
    args: tuple[str, ...] = ("-i", str(path))
    if read_through:
        args += ("-map", "0:V?", "-map", "0:a?", "-c", "copy", "-f", "null", "-")
    code, stderr = await _ffmpeg(args, DEFAULT_TIMEOUT, "reading the file")
    if "Input #0" not in stderr:
        opened = _OPEN_ERROR.search(stderr)
        reason = opened.group(1).strip() if opened else _reason(stderr)
        raise MediaProcessingError(f"the file is not a readable video: {reason}")
    found = _parse(stderr)
    if not (found.has_video or found.has_audio):
        raise MediaProcessingError("the file is not a readable video: it has no picture or sound")
    if read_through and code != 0:
        raise MediaProcessingError(f"the file is not a readable video: {_reason(stderr)}")
    return found


@contextlib.asynccontextmanager
async def _replacing(target: Path) -> AsyncIterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` if the block succeeds."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        yield temporary
        if not temporary.is_file() or temporary.stat().st_size == 0:
            raise MediaProcessingError(f"ffmpeg wrote nothing for {target.name}")
        # On disk before the rename, so a power cut cannot leave an empty file under the name.
        await anyio.to_thread.run_sync(_fsync, temporary)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def normalise(source: Path, target: Path, *, found: Probe | None = None) -> Probe:
    """Convert ``source`` to the clip's playback mp4; return the probe of the result.

    h264 (yuv420p, constant 30 fps, even sizes, long side at most :data:`PLAYBACK_LONG_SIDE`,
    upright) and AAC (48 kHz, 64 kb/s per channel, mono kept mono and anything more made
    stereo), with the index at the front (``+faststart``) so playback starts before the download
    ends. A clip without sound gets a silent mono track. Metadata (a phone's location, its
    model) is dropped. ``found`` is what :func:`probe` said of ``source``, if the caller has it;
    otherwise its header is read. The result's duration is the one its own header states:
    ffmpeg has just written it, so reading the file through adds nothing.

    Raises:
        MediaProcessingError: ``source`` is not a readable video, has no picture, or ffmpeg
            failed on it.
    """
    if found is None:
        found = await _inspect(source, read_through=False)  # the header says enough here
    if not found.has_video:
        raise MediaProcessingError("the file has no picture, only sound: record with the camera on")
    inputs: tuple[str, ...] = ("-i", str(source))
    audio = "0:a:0"
    if not found.has_audio:
        inputs += ("-f", "lavfi", "-i", "anullsrc=channel_layout=mono:sample_rate=48000")
        audio = "1:a:0"
    channels = 1 if found.audio_channels == 1 or not found.has_audio else 2
    bitrate = f"{_AAC_BITRATE_PER_CHANNEL * channels}k"
    length = (found.duration_ms or 0) / 1000
    async with _replacing(target) as temporary:
        await run_ffmpeg(
            "-y",
            *inputs,
            *("-map", "0:V:0", "-map", audio, "-vf", _VIDEO_FILTER),
            *_VIDEO_CODEC,
            *_AUDIO_CODEC,
            *("-ac", str(channels), "-b:a", bitrate),
            *("-map_metadata", "-1", "-map_chapters", "-1", "-movflags", "+faststart"),
            *(() if found.has_audio else ("-shortest",)),  # the silence never ends by itself
            *("-f", "mp4", str(temporary)),
            timeout=max(DEFAULT_TIMEOUT, 4 * length),
            what="converting the video",
        )
        result = await _inspect(temporary, read_through=False)
    return result


async def private_copy(source: Path, target: Path) -> Path:
    """Copy ``source``'s first picture and sound bit for bit, without its metadata.

    What a renderer is handed: the customer's original quality, but not the phone's location,
    its model or chapters. QuickTime and MP4 stay QuickTime (``.mov``), anything else becomes
    Matroska (``.mkv``, which holds any codec); both keep a phone's rotation. Returns the path
    written: ``target`` with that suffix, which names the container for renderers that go by it.

    Raises:
        MediaProcessingError: ``source`` is not a readable video, or ffmpeg failed on it.
    """
    _, stderr = await _ffmpeg(("-i", str(source)), DEFAULT_TIMEOUT, "reading the file")
    container = _FORMAT.search(stderr)
    if container is None:
        raise MediaProcessingError(f"the file is not a readable video: {_reason(stderr)}")
    quicktime = "mov" in container.group(1).split(",")
    written = target.with_suffix(".mov" if quicktime else ".mkv")
    await run_ffmpeg(
        *("-y", "-i", str(source), "-map", "0:V:0", "-map", "0:a:0?", "-c", "copy"),
        *("-map_metadata", "-1", "-map_chapters", "-1"),
        *("-f", "mov" if quicktime else "matroska", str(written)),
        what="copying the recording",
    )
    return written


async def poster(source: Path, target: Path, *, at_ms: int) -> None:
    """Write one frame of ``source``, at ``at_ms`` (or the first, past the end), as a JPEG."""
    async with _replacing(target) as temporary:
        try:
            await _frame(source, temporary, at_ms)
        except MediaProcessingError:
            # Past the end of a short clip ffmpeg finds no frame; the first one will do (and a
            # file that has none fails again, with its reason).
            await _frame(source, temporary, 0)


async def _frame(source: Path, target: Path, at_ms: int) -> None:
    await run_ffmpeg(
        *("-y", "-ss", f"{max(at_ms, 0) / 1000:.3f}", "-i", str(source), "-map", "0:V:0"),
        *("-frames:v", "1", "-q:v", "3", "-f", "mjpeg", str(target)),
        what="taking the poster frame",
    )


async def max_volume_db(source: Path) -> float | None:
    """Return the loudest sample of ``source``'s sound in dBFS, or None when it has no sound.

    Compare it with :data:`SILENCE_DB`: digital silence reads about -91 dB.
    """
    args = ("-i", str(source), "-map", "0:a:0?", "-af", "volumedetect", "-f", "null", "-")
    code, stderr = await _ffmpeg(args, DEFAULT_TIMEOUT, "measuring the sound")
    if "Input #0" in stderr and _streams(stderr)[1] is None:
        return None
    if code != 0:
        raise MediaProcessingError(f"measuring the sound failed: {_reason(stderr)}")
    match = _MAX_VOLUME.search(stderr)
    return float(match.group(1)) if match else None


async def extract_speech(source: Path, target: Path) -> None:
    """Write ``source``'s sound as a 16 kHz mono 16-bit WAV file, what transcribers take."""
    async with _replacing(target) as temporary:
        code, stderr = await _ffmpeg(
            (
                *("-y", "-i", str(source), "-map", "0:a:0", "-ac", "1", "-ar", "16000"),
                *("-c:a", "pcm_s16le", "-map_metadata", "-1", "-f", "wav", str(temporary)),
            ),
            DEFAULT_TIMEOUT,
            "extracting the speech",
        )
        if code != 0:
            if "Input #0" in stderr and _streams(stderr)[1] is None:
                raise MediaProcessingError("the clip has no sound to transcribe")
            raise MediaProcessingError(f"extracting the speech failed: {_reason(stderr)}")
