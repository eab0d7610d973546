"""The default renderer: one ffmpeg run joins, frames, brands and captions the approved clips.

``ffmpeg://`` in the ``ravepilot.renderer`` group; ``?preset=…&crf=…`` tune x264::

    renderer = await open_ffmpeg_renderer("ffmpeg://?preset=veryfast&crf=21")
    duration_ms = await renderer.render(request, Path("cut.mp4"))

The clips (the customer's originals, whatever ffmpeg reads) are cut to their durations, filled
to the format's frame and joined; the logo is laid over the top right corner and one ASS file,
drawn by libass, carries the lower-third and the captions (:mod:`ravepilot_core.render_graph`
builds the filter graph, :mod:`ravepilot_core.render_overlay` the ASS file). ffmpeg writes a
hidden temporary file next to ``output``, renamed into place only once it is complete.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.to_thread

from ravepilot_core.errors import ConfigurationError, MediaProcessingError
from ravepilot_core.ffmpeg import find_ffmpeg, probe, run_ffmpeg
from ravepilot_core.models import RenderRequest
from ravepilot_core.render_graph import FPS, LAYOUTS, ClipSource, filter_graph
from ravepilot_core.render_overlay import ass_colour, ass_document, caption_lines
from ravepilot_core.scratch import scratch_directory

__all__ = ["FONT_FILES", "FfmpegRenderer", "find_font", "open_ffmpeg_renderer"]

log = logging.getLogger("ravepilot.renderer")

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower")
# x264 is most of a render's CPU: at 1080x1920, ultrafast (deblocking back on, as normalise has
# it) takes ~3 CPU-s per 10 s of video and superfast twice that, which two cores cannot finish
# at 3x real time once decoding and the filters are added (benchmarks/media.py). Slower presets
# make smaller files at the same quality: choose one with ?preset= when renders can wait.
DEFAULT_PRESET = "ultrafast"
DEFAULT_CRF = 23
FONT_FAMILY = "DejaVu Sans"
#: Where DejaVu Sans Bold lives on common systems; libass is pointed at the first one found.
FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf",  # Fedora
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",  # RHEL, CentOS, Alpine
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",  # Arch
    "/usr/local/share/fonts/DejaVuSans-Bold.ttf",
    "/Library/Fonts/DejaVuSans-Bold.ttf",  # macOS, installed by hand or Homebrew
)
_FONT_HINT = "apt-get install fonts-dejavu-core (or dnf install dejavu-sans-fonts)"


def find_font() -> Path | None:
    """Return the DejaVu Sans Bold file libass draws with, or None when there is none.

    libass asks fontconfig too, but a slim container may have no fonts at all, and libass then
    draws nothing: looking for the file first turns captions silently missing into an error.
    """
    for candidate in FONT_FILES:
        if os.path.isfile(candidate):
            return Path(candidate)
    return None


class FfmpegRenderer:
    """Renders with ffmpeg (x264 + aac, libass); see the module docstring.

    Args:
        preset: x264's speed/size trade-off (:data:`PRESETS`).
        crf: x264's constant quality, 0 (lossless) to 51; 23 is its default.
    """

    def __init__(self, *, preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF) -> None:
        self.preset = preset
        self.crf = crf

    async def render(self, request: RenderRequest, output: Path) -> int:
        """Write the cut of ``request`` to ``output`` and return its duration in milliseconds.

        Raises:
            MediaProcessingError: A clip is missing or unreadable, the font is missing, or
                ffmpeg failed; ``output`` is left as it was and no temporary file remains.
            ConfigurationError: ffmpeg cannot be found.
        """
        layout = LAYOUTS.get(request.format)
        if layout is None:
            raise MediaProcessingError(
                f"unknown format {request.format!r}: choose one of {', '.join(LAYOUTS)}"
            )
        if not request.clips:
            raise MediaProcessingError("a render needs at least one clip")
        sources = [
            await _clip_source(n, clip.path, clip.duration_ms)
            for n, clip in enumerate(request.clips, start=1)
        ]
        durations = [source.duration_ms for source in sources]
        captions = caption_lines(request, durations, layout.caption_chars)
        logo = await _usable_logo(request.logo_path)
        output = Path(output)
        async with scratch_directory() as scratch:
            ass_path = fonts_dir = None
            if request.customer_name or captions:
                font = find_font()
                if font is None:
                    raise MediaProcessingError(f"no font to draw names and captions: {_FONT_HINT}")
                fonts_dir = str(font.parent)
                ass_path = str(scratch / "overlay.ass")
                document = ass_document(
                    layout,
                    font=FONT_FAMILY,
                    name=request.customer_name,
                    brand_colour=_checked_colour(request.brand.primary_color),
                    captions=captions,
                    total_ms=sum(durations),
                )
                await anyio.Path(ass_path).write_text(document, encoding="utf-8")
            inputs = [clip.path for clip in request.clips] + ([logo] if logo else [])
            graph = filter_graph(
                layout,
                sources,
                logo_input=len(sources) if logo else None,
                ass_path=ass_path,
                fonts_dir=fonts_dir,
            )
            return await self._encode(inputs, graph, output, sum(durations))

    async def _encode(self, inputs: list[str], graph: str, output: Path, total_ms: int) -> int:
        """Run ffmpeg into a hidden file beside ``output``; rename it there once it is whole."""
        partial = output.with_name(f".{output.name}.{secrets.token_hex(6)}.part")
        # file: keeps a path that looks like a URL or protocol ("http:", "concat:") a file name.
        args = [arg for path in inputs for arg in ("-i", f"file:{path}")]
        args += ["-filter_complex", graph, "-map", "[vout]", "-map", "[aout]"]
        args += ["-map_metadata", "-1", "-map_chapters", "-1"]  # no GPS, no device names
        args += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf)]
        # Deblocking stays on even at ultrafast (it costs ~5 %); a key frame every 2 s.
        args += ["-x264-params", "deblock=0,0", "-g", str(2 * FPS), "-pix_fmt", "yuv420p"]
        args += ["-r", str(FPS), "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
        args += ["-movflags", "+faststart", "-f", "mp4", "-y", f"file:{partial}"]
        try:
            # Generous: a loaded machine may fall to real time; a hung ffmpeg must still end.
            await run_ffmpeg(*args, timeout=120 + 5 * total_ms / 1000, what="rendering the cut")
            made = await probe(partial)
            if not (made.has_video and made.has_audio and made.duration_ms):
                raise MediaProcessingError("rendering the cut failed: ffmpeg wrote no video")
            # On disk before the rename, so a power cut cannot leave an empty file there.
            await anyio.to_thread.run_sync(_fsync, partial)
            await anyio.Path(partial).replace(output)
        except BaseException:
            # Failed, timed out or cancelled: never leave half a video behind.
            with anyio.CancelScope(shield=True):
                await anyio.Path(partial).unlink(missing_ok=True)
            raise
        return made.duration_ms

    async def close(self) -> None:
        """Nothing to release: each render is one ffmpeg process, gone when it ends."""


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _checked_colour(colour: str) -> str:
    # Collectors validate it; one stored before that check fails the render with a reason.
    try:
        ass_colour(colour)
    except ValueError as exc:
        raise MediaProcessingError(f"{exc}: fix the collector's brand colour") from None
    return colour


async def _clip_source(number: int, path: str, duration_ms: int) -> ClipSource:
    """Probe clip ``number``; its size and sound decide how it is framed and mixed."""
    name = f"clip {number} ({Path(path).name})"
    if not await anyio.Path(path).is_file():
        raise MediaProcessingError(f"{name} is missing")
    try:
        found = await probe(Path(path))
    except MediaProcessingError as exc:
        raise MediaProcessingError(f"{name}: {exc.message}") from None
    if not (found.has_video and found.width and found.height):
        raise MediaProcessingError(f"{name} has no picture")
    duration = duration_ms if duration_ms > 0 else (found.duration_ms or 0)
    if duration <= 0:
        raise MediaProcessingError(f"{name} is empty")
    return ClipSource(duration, found.width, found.height, has_audio=found.has_audio)


async def _usable_logo(path: str | None) -> str | None:
    """The logo's path if ffmpeg reads a picture in it; a broken logo is left out, not fatal."""
    if path is None:
        return None
    try:
        found = await probe(Path(path))
    except MediaProcessingError as exc:
        log.warning("the logo %s is unreadable (%s); rendering without it", path, exc.message)
        return None
    return path if found.has_video else None


def open_ffmpeg_renderer(url: str) -> FfmpegRenderer:
    """Open the renderer ``url`` names: ``ffmpeg://`` with optional ``preset`` and ``crf``.

    Raises:
        ConfigurationError: The URL has other parts or parameters, a value is out of range, or
            ffmpeg cannot be found.
    """
    parts = urlsplit(url)
    if parts.scheme != "ffmpeg" or parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(
            f"renderer URL {url!r} must be ffmpeg:// with optional ?preset=…&crf=…"
        )
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - {"preset", "crf"})
    if unknown:
        raise ConfigurationError(
            f"unknown ffmpeg:// parameter {unknown[0]!r}: accepted are preset "
            f"({', '.join(PRESETS)}) and crf (0-51)"
        )
    preset = params.get("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise ConfigurationError(f"ffmpeg:// preset {preset!r} is not one of {', '.join(PRESETS)}")
    try:
        crf = int(params.get("crf", DEFAULT_CRF))
    except ValueError:
        crf = -1
    if not 0 <= crf <= 51:
        raise ConfigurationError(f"ffmpeg:// crf {params['crf']!r} must be a whole number 0-51")
    find_ffmpeg()  # fail at start-up, not at the first render
    if find_font() is None:
        log.warning(
            "no %s Bold font: renders with a name or captions will fail; %s",
            FONT_FAMILY,
            _FONT_HINT,
        )
    return FfmpegRenderer(preset=preset, crf=crf)
