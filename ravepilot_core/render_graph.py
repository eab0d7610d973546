"""The ffmpeg renderer's filter graph: per-format layout, framing, joining, logo, overlay.

A pure function of the probed clips: :mod:`ravepilot_core.ffmpeg_renderer` runs ffmpeg with it.
The lower-third and the captions come from an ASS file (:mod:`ravepilot_core.render_overlay`)
that libass draws, so the customer's name never passes through ffmpeg's filter syntax; only
file paths do, escaped by :func:`filter_value`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FPS", "LAYOUTS", "ClipSource", "Layout", "filter_graph", "filter_value"]

FPS = 30
# A clip whose shape is this close to the frame's is cropped to fill it (losing at most a
# quarter of its width or height); anything wider or taller sits on a blurred copy of itself.
CROP_LIMIT = 1.34
_BLUR_DOWNSCALE = 8  # blur a small copy and scale it up: a full-size blur costs a core alone


@dataclass(frozen=True)
class Layout:
    """Where things go in one output format, in output pixels."""

    width: int
    height: int
    name_size: int  # font size of the lower-third
    name_padding: int  # brand-coloured box around the name
    name_bottom: int  # from the frame's bottom edge to the lower-third's box
    caption_size: int
    caption_chars: int  # most characters in one caption; libass wraps a longer one upwards
    margin: int  # from the frame's sides (and top, for the logo)

    @property
    def name_box_height(self) -> int:
        """Height of the lower-third's box (one line of text and its padding)."""
        return round(self.name_size * 1.25) + 2 * self.name_padding

    @property
    def name_top(self) -> int:
        """The y of the lower-third box's top edge."""
        return self.height - self.name_bottom - self.name_box_height

    @property
    def caption_bottom(self) -> int:
        """The y of the captions' bottom edge: clear of the lower-third by half a line."""
        return self.name_top - self.caption_size // 2

    @property
    def logo_width(self) -> int:
        """The logo's width: 12% of the frame's, even (yuv420p needs even sizes)."""
        return round(self.width * 0.12 / 2) * 2


LAYOUTS: dict[str, Layout] = {
    # Vertical feeds cover the bottom ~15% with their own buttons: keep the name above that.
    "9:16": Layout(1080, 1920, 56, 22, 300, 60, 32, 64),
    "1:1": Layout(1080, 1080, 44, 18, 60, 46, 36, 56),
    "16:9": Layout(1920, 1080, 46, 18, 64, 50, 56, 72),
}


@dataclass(frozen=True)
class ClipSource:
    """One input clip as the graph needs it."""

    duration_ms: int
    width: int
    height: int
    has_audio: bool = True


def filter_value(value: str) -> str:
    """Escape ``value`` (a file path) as one option value inside a filter graph.

    A graph is parsed twice: first into filters (where ``[ ] , ;`` and quotes matter), then
    each filter's ``key=value:key=value`` list (where ``:`` and quotes matter); each level's
    special characters are backslash-escaped, the option level first.
    """
    option = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", option)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _crop(width: int, height: int, aspect: float) -> str:
    """``crop`` cutting the middle of a ``width``x``height`` picture to ``aspect`` (w/h)."""
    if width / height > aspect:
        return f"crop={round(height * aspect / 2) * 2}:{height}"
    return f"crop={width}:{round(width / aspect / 2) * 2}"


def _framing(clip: ClipSource, layout: Layout, n: int) -> str:
    """Filters taking ``[fN]`` (one clip's frames) to ``[vN]``: the frame filled, yuv420p.

    Crops come before scales, so no pixel is scaled only to be cut away. Everything stays in
    yuv420p (overlays are told so): with alpha in play, ffmpeg would otherwise carry an alpha
    plane through the whole chain and convert every frame back at the end.
    """
    w, h = layout.width, layout.height
    aspect = w / h
    ratio = (clip.width / clip.height) / aspect
    done = f"setsar=1,format=yuv420p[v{n}]"
    if abs(math.log(ratio)) < 0.01:  # the right shape: a no-op when the size is right too
        return f"[f{n}]scale={w}:{h}:flags=bilinear,{done}"
    fill = f"{_crop(clip.width, clip.height, aspect)},scale={w}:{h}:flags=bilinear"
    if max(ratio, 1 / ratio) <= CROP_LIMIT:
        return f"[f{n}]{fill},{done}"
    small = f"{w // _BLUR_DOWNSCALE}:{h // _BLUR_DOWNSCALE}"
    return (
        f"[f{n}]split[fg{n}][bg{n}];"
        f"[bg{n}]{_crop(clip.width, clip.height, aspect)},scale={small}:flags=bilinear,"
        f"boxblur=6:2,scale={w}:{h}:flags=fast_bilinear,setsar=1,format=yuv420p[blur{n}];"
        f"[fg{n}]scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2:"
        f"flags=bilinear,setsar=1[fit{n}];"
        f"[blur{n}][fit{n}]overlay=(W-w)/2:(H-h)/2:format=yuv420,{done}"
    )


def filter_graph(
    layout: Layout,
    clips: Sequence[ClipSource],
    *,
    logo_input: int | None = None,
    ass_path: str | None = None,
    fonts_dir: str | None = None,
) -> str:
    """Return a ``-filter_complex`` graph joining ``clips`` (inputs 0…n-1) into ``[vout][aout]``.

    Each clip is cut or held to exactly its ``duration_ms`` (so caption times add up), set to
    30 fps, filled to the frame (scaled, cropped, or fitted on a blurred copy), with 48 kHz
    stereo audio (silence when it has none); then the clips are joined, the logo (input
    ``logo_input``) goes in the top right corner and the ASS file is burned in.
    """
    parts = []
    joined = ""
    for n, clip in enumerate(clips):
        seconds = _seconds(clip.duration_ms)
        # The first picture and sound streams (not a cover picture); square pixels first (a
        # no-op unless the original has none); tpad holds the last frame should the video end
        # before the clip's duration.
        parts.append(
            f"[{n}:V:0]setpts=PTS-STARTPTS,scale=trunc(iw*sar/2)*2:ih,setsar=1,fps={FPS},"
            f"tpad=stop_mode=clone:stop_duration={seconds},"
            f"trim=duration={seconds},setpts=PTS-STARTPTS[f{n}]"
        )
        parts.append(_framing(clip, layout, n))
        audio = (
            f"[{n}:a:0]asetpts=PTS-STARTPTS," if clip.has_audio else "anullsrc=r=48000:cl=stereo,"
        )
        parts.append(
            f"{audio}aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"apad=whole_dur={seconds},atrim=duration={seconds}[a{n}]"
        )
        joined += f"[v{n}][a{n}]"
    parts.append(f"{joined}concat=n={len(clips)}:v=1:a=1[joined][aout]")
    video = "joined"
    if logo_input is not None:
        # Converted once (the logo is one frame, repeated by overlay), not per frame.
        parts.append(f"[{logo_input}:v]scale={layout.logo_width}:-2,setsar=1,format=yuva420p[logo]")
        parts.append(
            f"[{video}][logo]overlay=x=W-w-{layout.margin}:y={layout.margin}:format=yuv420[branded]"
        )
        video = "branded"
    if ass_path is not None:
        options = f"filename={filter_value(ass_path)}"
        if fonts_dir is not None:
            options += f":fontsdir={filter_value(fonts_dir)}"
        parts.append(f"[{video}]ass={options}[captioned]")
        video = "captioned"
    parts.append(f"[{video}]format=yuv420p[vout]")
    return ";".join(parts)
