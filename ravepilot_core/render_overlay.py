"""The ASS file libass draws over a cut: the customer's name as a lower-third, and captions.

libass measures an ASS file against its ``PlayResX``/``PlayResY`` (384x288 when absent); this
one sets them to the output frame, so every size is in output pixels and the fonts are scaled
per format by the format's :class:`~ravepilot_core.render_graph.Layout`. Text is escaped for
ASS (:func:`ass_text`), so a name shows exactly as written, whatever it contains.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ravepilot_core.captions import cues
from ravepilot_core.models import RenderRequest
from ravepilot_core.render_graph import Layout

__all__ = [
    "NAME_FADE_MS",
    "NAME_SHOWN_MS",
    "TimedText",
    "ass_colour",
    "ass_document",
    "ass_text",
    "caption_lines",
]

NAME_SHOWN_MS = 4000  # the lower-third shows over the first 4 s, fading in and out
NAME_FADE_MS = 500
_NAME_EM = 0.68  # mean advance of DejaVu Sans Bold per font size, for fitting a long name
_NAME_MIN_SCALE = 0.6
_BREAKS = ("Cc", "Zl", "Zp")
_HEX_COLOUR = re.compile(r"#([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class TimedText:
    """A line of text on the joined timeline."""

    start_ms: int
    end_ms: int
    text: str


def ass_colour(hex_colour: str) -> str:
    """``#RRGGBB`` as an opaque ASS colour, ``&H00BBGGRR``.

    Raises:
        ValueError: When ``hex_colour`` is not ``#RRGGBB``.
    """
    match = _HEX_COLOUR.fullmatch(hex_colour)
    if match is None:
        raise ValueError(f"the brand colour {hex_colour!r} is not #RRGGBB")
    red, green, blue = match.groups()
    return f"&H00{blue}{green}{red}".upper()


def _is_light(hex_colour: str) -> bool:
    # WCAG relative luminance: white text stays readable on anything darker than ~0.4.
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] > 0.4


def ass_text(text: str) -> str:
    r"""Escape ``text`` so libass shows it as written, on one line.

    ``{`` opens an override block and ``\N``, ``\n``, ``\h`` are line breaks and spaces, so
    braces are escaped (``\{``) and every backslash gets an invisible word joiner after it,
    which no escape sequence starts with.
    """
    # Control characters and line or paragraph separators become spaces: a name is one line.
    text = "".join(" " if unicodedata.category(ch) in _BREAKS else ch for ch in text)
    text = text.replace("\\", "\\\u2060")
    return text.replace("{", "\\{").replace("}", "\\}")


def _timestamp(ms: int) -> str:
    centiseconds = max(ms, 0) // 10
    hours, rest = divmod(centiseconds, 360000)
    minutes, rest = divmod(rest, 6000)
    seconds, cs = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{cs:02d}"


def _fitted_name(layout: Layout, name: str) -> str:
    """The name's ASS text, scaled down (then cut short) to fit the frame on one line."""
    name = " ".join(name.split())
    room = layout.width - 2 * (layout.margin + layout.name_padding)
    per_char = _NAME_EM * layout.name_size
    most = int(room / (per_char * _NAME_MIN_SCALE))
    if len(name) > most:
        name = name[: most - 1].rstrip() + "…"
    scale = min(1.0, room / (per_char * max(len(name), 1)))
    tags = "\\q2"  # never wrap: a second line would grow into the captions
    if scale < 1.0:
        percent = max(round(scale * 100), round(_NAME_MIN_SCALE * 100))
        tags += f"\\fscx{percent}\\fscy{percent}"
    return f"{{{tags}\\fad({NAME_FADE_MS},{NAME_FADE_MS})}}{ass_text(name)}"


def ass_document(
    layout: Layout,
    *,
    font: str,
    name: str | None,
    brand_colour: str,
    captions: Sequence[TimedText],
    total_ms: int,
) -> str:
    """Return the ASS file drawing the lower-third (``name`` on ``brand_colour``) and captions.

    Args:
        layout: The output format's layout.
        font: The font family libass asks for (bold).
        name: The customer's name, or None for no lower-third.
        brand_colour: ``#RRGGBB``; the name's text is white, or near-black on a light colour.
        captions: Caption lines on the joined timeline.
        total_ms: The cut's length; the lower-third ends by then.
    """
    box = ass_colour(brand_colour)
    ink = "&H00111111" if _is_light(brand_colour) else "&H00FFFFFF"
    side = layout.margin + layout.name_padding
    # BorderStyle 3 draws an opaque box in OutlineColour around the text, Outline px wide.
    name_style = (
        f"Style: Name,{font},{layout.name_size},{ink},{ink},{box},{box},1,0,0,0,100,100,0,0,"
        f"3,{layout.name_padding},0,1,{side},{side},{layout.name_bottom + layout.name_padding},1"
    )
    outline = max(2, layout.caption_size // 15)
    caption_style = (
        f"Style: Caption,{font},{layout.caption_size},&H00FFFFFF,&H00FFFFFF,&H00000000,"
        f"&H80000000,1,0,0,0,100,100,0,0,1,{outline},0,2,{layout.margin},{layout.margin},"
        f"{layout.height - layout.caption_bottom},1"
    )
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {layout.width}",
        f"PlayResY: {layout.height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        name_style,
        caption_style,
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    if name and name.strip():
        end = _timestamp(min(NAME_SHOWN_MS, total_ms))
        lines.append(f"Dialogue: 1,0:00:00.00,{end},Name,,0,0,0,,{_fitted_name(layout, name)}")
    for cue in captions:
        if cue.end_ms > cue.start_ms and cue.text.strip():
            start, end = _timestamp(cue.start_ms), _timestamp(cue.end_ms)
            lines.append(f"Dialogue: 0,{start},{end},Caption,,0,0,0,,{ass_text(cue.text)}")
    return "\n".join(lines) + "\n"


def caption_lines(
    request: RenderRequest, durations: Sequence[int], max_chars: int
) -> list[TimedText]:
    """The request's captions on the joined timeline, none when it asks for none.

    Word times in a transcript count from the start of its clip: each clip's cues are shifted
    by the durations of the clips before it, and cut at its end so that a caption never runs
    into the next answer.
    """
    if not request.captions:
        return []
    lines = []
    offset = 0
    for clip, duration in zip(request.clips, durations, strict=True):
        if clip.transcript is not None:
            for cue in cues(clip.transcript, max_chars=max_chars, duration_ms=duration):
                end = min(cue.end_ms, duration)
                if cue.start_ms < end:
                    lines.append(TimedText(offset + cue.start_ms, offset + end, cue.text))
        offset += duration
    return lines
