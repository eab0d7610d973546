"""The ffmpeg renderer: its contract, what its frames show, and every way it fails.

Frames are compared with the same cut rendered without branding: a region where something was
drawn differs from it by far more than x264's noise, a region where nothing was drawn does not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from ravepilot_core.backends import open_backend
from ravepilot_core.errors import ConfigurationError, MediaProcessingError
from ravepilot_core.ffmpeg import find_ffmpeg
from ravepilot_core.ffmpeg_renderer import FfmpegRenderer, find_font, open_ffmpeg_renderer
from ravepilot_core.models import Brand, RenderClip, RenderRequest, Transcript, TranscriptWord
from ravepilot_core.render_graph import LAYOUTS, ClipSource, Layout, filter_graph, filter_value
from ravepilot_core.render_overlay import (
    NAME_FADE_MS,
    NAME_SHOWN_MS,
    TimedText,
    ass_document,
    ass_text,
    caption_lines,
)
from ravepilot_core.testing import RendererContract
from ravepilot_core.testing.renderer_contract import inspect_video, make_clip
from tests.conftest import require

pytestmark = pytest.mark.anyio

BRAND = Brand(name="Acme Bikes", primary_color="#E11D48")
LOGO_RGB = (255, 0, 255)
NOISE = 4.0  # mean absolute difference (0-255) between frames where nothing was drawn
DRAWN = 15.0  # ... and the least where something was
Box = tuple[int, int, int, int]  # x, y, width, height


def _have_ffmpeg() -> bool:
    try:
        find_ffmpeg()
    except ConfigurationError:
        return False
    return True


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _tools() -> None:
    require(_have_ffmpeg(), "no ffmpeg: pip install imageio-ffmpeg")
    require(shutil.which("flite") is not None, "no flite: apt-get install flite")
    require(find_font() is not None, "no DejaVu Sans Bold: apt-get install fonts-dejavu-core")


class TestFfmpegRenderer(RendererContract):
    pytestmark = pytest.mark.slow

    @pytest.fixture
    async def renderer(self) -> AsyncIterator[FfmpegRenderer]:
        renderer = open_ffmpeg_renderer("ffmpeg://?preset=ultrafast")
        yield renderer
        await renderer.close()


# -- the frames ---------------------------------------------------------------------------------


def region(video: Path, at_s: float, box: Box, size: tuple[int, int] = (64, 32)) -> bytes:
    """The RGB pixels of ``box`` in the frame at ``at_s``, averaged down to ``size``."""
    x, y, w, h = box
    result = subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-ss", f"{at_s:.3f}",
         "-i", str(video), "-frames:v", "1",
         "-vf", f"crop={w}:{h}:{x}:{y},scale={size[0]}:{size[1]}:flags=area",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert len(result.stdout) == size[0] * size[1] * 3
    return result.stdout


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference per channel value."""
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def mean_rgb(pixels: bytes) -> tuple[float, float, float]:
    count = len(pixels) // 3
    return (sum(pixels[0::3]) / count, sum(pixels[1::3]) / count, sum(pixels[2::3]) / count)


def name_box(layout: Layout) -> Box:
    """Where the lower-third's box starts: its left part, which any name covers."""
    return (layout.margin, layout.name_top, 240, layout.name_box_height)


def caption_box(layout: Layout) -> Box:
    """The band the captions' lines sit in, above the lower-third."""
    height = 2 * layout.caption_size
    return (layout.margin, layout.caption_bottom - height, layout.width - 2 * layout.margin, height)


def logo_box(layout: Layout) -> Box:
    width = layout.logo_width
    return (layout.width - layout.margin - width, layout.margin, width, width // 2)


SAID = "Hello, I really love this shop."


@dataclass(frozen=True)
class Cuts:
    branded: Path
    plain: Path
    speech_s: tuple[float, float]  # when the first clip's words are said
    layout: Layout


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderClip | Path]:
    require(_have_ffmpeg(), "no ffmpeg: pip install imageio-ffmpeg")
    require(shutil.which("flite") is not None, "no flite: apt-get install flite")
    folder = tmp_path_factory.mktemp("renderer-media")
    logo = folder / "logo.png"
    subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "color=c=0xFF00FF:s=200x100", "-frames:v", "1", str(logo)],
        check=True, timeout=60,
    )  # fmt: skip
    return {
        "talk": make_clip(folder / "talk.mp4", seconds=3.0, size="540x960", text=SAID),
        "wide": make_clip(folder / "wide.mp4", seconds=3.0, size="640x360"),  # silent
        "short": make_clip(folder / "short.mp4", seconds=1.0, size="320x240"),
        "logo": logo,
    }


def _clips(media: dict[str, RenderClip | Path], *names: str) -> tuple[RenderClip, ...]:
    clips = tuple(media[name] for name in names)
    assert all(isinstance(clip, RenderClip) for clip in clips)
    return clips  # type: ignore[return-value]


@pytest.fixture(scope="module")
async def cuts(
    media: dict[str, RenderClip | Path], tmp_path_factory: pytest.TempPathFactory
) -> Cuts:
    """The same two clips (talking portrait, silent landscape) cut branded and plain, 9:16."""
    folder = tmp_path_factory.mktemp("renderer-cuts")
    clips = _clips(media, "talk", "wide")
    renderer = open_ffmpeg_renderer("ffmpeg://")  # the default settings, as shipped
    branded = RenderRequest(
        format="9:16",
        clips=clips,
        customer_name="Zoë O'Brien",
        brand=BRAND,
        logo_path=str(media["logo"]),
    )
    plain = RenderRequest(format="9:16", clips=clips, brand=BRAND, captions=False)
    await renderer.render(branded, folder / "branded.mp4")
    await renderer.render(plain, folder / "plain.mp4")
    transcript = clips[0].transcript
    assert transcript is not None
    said = (transcript.words[0].start_ms / 1000, transcript.words[-1].end_ms / 1000)
    return Cuts(folder / "branded.mp4", folder / "plain.mp4", said, LAYOUTS["9:16"])


@pytest.mark.slow
async def test_ffprobe_reports_size_codecs_and_duration(cuts: Cuts) -> None:
    ffprobe = shutil.which("ffprobe")
    require(ffprobe is not None, "no ffprobe: apt-get install ffmpeg")
    assert ffprobe is not None
    result = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         str(cuts.branded)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    report = json.loads(result.stdout)
    video, audio = sorted(report["streams"], key=lambda s: s["codec_type"] != "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert video["pix_fmt"] == "yuv420p" and video["avg_frame_rate"] == "30/1"
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", "48000", 2)
    assert abs(float(report["format"]["duration"]) - 6.0) <= 0.15
    assert "tags" not in report["format"] or "location" not in report["format"]["tags"]


@pytest.mark.slow
async def test_lower_third_fades_in_shows_the_brand_colour_and_fades_out(cuts: Cuts) -> None:
    box = name_box(cuts.layout)
    shown = difference(region(cuts.branded, 2.0, box), region(cuts.plain, 2.0, box))
    assert shown > DRAWN
    fading_in = NAME_FADE_MS / 2000
    half = difference(region(cuts.branded, fading_in, box), region(cuts.plain, fading_in, box))
    assert 0.15 * shown < half < 0.85 * shown, (half, shown)
    gone_at = NAME_SHOWN_MS / 1000 + 0.5
    gone = difference(region(cuts.branded, gone_at, box), region(cuts.plain, gone_at, box))
    assert gone < NOISE
    # The box's left padding holds no text: it is the collector's colour itself.
    pad = (cuts.layout.margin + 4, cuts.layout.name_top + 8, cuts.layout.name_padding - 8, 40)
    red, green, blue = mean_rgb(region(cuts.branded, 2.0, pad, size=(4, 8)))
    assert abs(red - 0xE1) < 30 and abs(green - 0x1D) < 30 and abs(blue - 0x48) < 30


@pytest.mark.slow
async def test_captions_show_while_the_words_are_said_and_clear_the_lower_third(
    cuts: Cuts,
) -> None:
    box = caption_box(cuts.layout)
    start, end = cuts.speech_s
    during = (start + end) / 2
    said = difference(region(cuts.branded, during, box), region(cuts.plain, during, box))
    assert said > DRAWN / 2  # text covers part of the band
    silent = 4.5  # the second clip has no transcript
    quiet = difference(region(cuts.branded, silent, box), region(cuts.plain, silent, box))
    assert quiet < NOISE
    # Between the captions' band and the lower-third nothing is drawn, both showing.
    layout = cuts.layout
    gap = (
        layout.margin,
        layout.caption_bottom + 4,
        480,
        layout.name_top - layout.caption_bottom - 8,
    )
    between = difference(region(cuts.branded, during, gap), region(cuts.plain, during, gap))
    assert between < NOISE


@pytest.mark.slow
async def test_logo_sits_in_the_top_right_corner(cuts: Cuts) -> None:
    box = logo_box(cuts.layout)
    inner = (box[0] + 8, box[1] + 8, box[2] - 16, box[3] - 16)
    for at in (0.5, 5.5):
        red, green, blue = mean_rgb(region(cuts.branded, at, inner, size=(8, 4)))
        assert red > 200 and green < 60 and blue > 200, (at, red, green, blue)
    assert difference(region(cuts.plain, 0.5, inner), region(cuts.branded, 0.5, inner)) > DRAWN


@pytest.mark.slow
async def test_landscape_clip_sits_on_a_blurred_copy_of_itself(cuts: Cuts) -> None:
    # 640x360 fitted to 1080 wide is 608 high: the top ~650 rows are the blurred fill.
    band = region(cuts.plain, 4.5, (0, 0, 1080, 600), size=(32, 16))
    assert sum(band) / len(band) > 40, "the band above the clip is black"
    red, green, blue = mean_rgb(band)
    spread = max(band) - min(band)
    assert spread > 60, "the fill should carry the clip's colours, not one flat colour"
    assert (red, green, blue) != (0, 0, 0)
    # The portrait clip (540x960, 9:16 already) fills the frame: no band at all.
    top = region(cuts.plain, 1.0, (0, 0, 1080, 200), size=(32, 8))
    assert difference(top, region(cuts.branded, 1.0, (0, 0, 1080, 200), size=(32, 8))) < 2 * DRAWN


NASTY = 'Zoë "Zed" O\'Brien: {\\b1}50%, [x]; \\N a\\b $HOME 😀 \u200b\r\nnext'


@pytest.mark.slow
async def test_a_name_full_of_special_characters_renders(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    request = RenderRequest(
        format="1:1", clips=_clips(media, "talk", "wide"), customer_name=NASTY, brand=BRAND
    )
    duration = await open_ffmpeg_renderer("ffmpeg://?preset=ultrafast").render(
        request, tmp_path / "cut.mp4"
    )
    assert abs(duration - 6000) <= 150
    layout = LAYOUTS["1:1"]
    box = name_box(layout)
    cut = tmp_path / "cut.mp4"
    assert difference(region(cut, 2.0, box), region(cut, 5.0, box)) > DRAWN


# -- failures -----------------------------------------------------------------------------------


def _request(clips: tuple[RenderClip, ...], **fields: object) -> RenderRequest:
    values: dict[str, object] = {"format": "16:9", "clips": clips, "brand": BRAND}
    values.update(fields)
    return RenderRequest(**values)  # type: ignore[arg-type]


async def test_missing_clip_fails_with_its_name(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    gone = RenderClip(path=str(tmp_path / "gone.mp4"), duration_ms=1000)
    renderer = open_ffmpeg_renderer("ffmpeg://")
    with pytest.raises(MediaProcessingError, match=r"clip 2 \(gone.mp4\) is missing"):
        await renderer.render(_request((*_clips(media, "short"), gone)), tmp_path / "cut.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_corrupt_clip_fails_with_a_reason(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\0\0\0\x18ftypisom" + os.urandom(4000))
    clip = RenderClip(path=str(corrupt), duration_ms=1000)
    with pytest.raises(MediaProcessingError, match=r"clip 1 \(corrupt.mp4\)"):
        await open_ffmpeg_renderer("ffmpeg://").render(_request((clip,)), tmp_path / "cut.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mp4"]


@pytest.fixture
def crashing_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ffmpeg that probes like the real one but dies halfway through writing a render."""
    script = tmp_path / "bin" / "ffmpeg"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *-filter_complex*) ;; *) exec "$REAL_FFMPEG" "$@" ;; esac\n'
        'for last; do :; done\nhead -c 100000 /dev/urandom > "${last#file:}"\n'
        f'echo "${{last#file:}}" > {script.parent}/wrote\n'
        'echo "Segmentation fault in x264" >&2\nkill -SEGV $$\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("REAL_FFMPEG", find_ffmpeg())
    monkeypatch.setenv("RAVEPILOT_FFMPEG", str(script))
    find_ffmpeg.cache_clear()
    yield script
    find_ffmpeg.cache_clear()


async def test_crashing_ffmpeg_fails_the_render_and_keeps_the_old_output(
    media: dict[str, RenderClip | Path], tmp_path: Path, crashing_ffmpeg: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cut.mp4").write_bytes(b"the last good cut")
    with pytest.raises(MediaProcessingError, match="rendering the cut failed"):
        await open_ffmpeg_renderer("ffmpeg://").render(
            _request(_clips(media, "short")), out / "cut.mp4"
        )
    written = Path((crashing_ffmpeg.parent / "wrote").read_text().strip())
    assert written.parent == out and written.name.endswith(".part")  # half a video was written
    assert [p.name for p in out.iterdir()] == ["cut.mp4"]  # ... and removed
    assert (out / "cut.mp4").read_bytes() == b"the last good cut"


async def test_cancelled_render_leaves_no_file(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    renderer = open_ffmpeg_renderer("ffmpeg://?preset=veryfast")
    request = _request(_clips(media, "talk", "wide"), format="9:16")
    partial: list[str] = []

    async def cancel_once_writing(scope: anyio.CancelScope) -> None:
        while not partial:
            partial.extend(p.name for p in tmp_path.iterdir() if p.stat().st_size > 0)
            await anyio.sleep(0.02)
        scope.cancel()  # a worker shutting down, or the job's lease lost

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cancel_once_writing, tasks.cancel_scope)
            await renderer.render(request, tmp_path / "cut.mp4")
            pytest.fail("the render finished before it could be cancelled")
    assert partial and partial[0].endswith(".part"), partial
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_missing_ffmpeg_is_a_configuration_error(
    media: dict[str, RenderClip | Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = open_ffmpeg_renderer("ffmpeg://")
    monkeypatch.setenv("RAVEPILOT_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    find_ffmpeg.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="RAVEPILOT_FFMPEG"):
            open_ffmpeg_renderer("ffmpeg://")
        with pytest.raises(ConfigurationError, match="RAVEPILOT_FFMPEG"):
            await renderer.render(_request(_clips(media, "short")), tmp_path / "cut.mp4")
    finally:
        monkeypatch.undo()
        find_ffmpeg.cache_clear()
    assert not (tmp_path / "cut.mp4").exists()


async def test_missing_font_says_what_to_install(
    media: dict[str, RenderClip | Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ravepilot_core.ffmpeg_renderer.FONT_FILES", ())
    request = _request(_clips(media, "short"), customer_name="Ada")
    with pytest.raises(MediaProcessingError, match="apt-get install fonts-dejavu-core"):
        await open_ffmpeg_renderer("ffmpeg://").render(request, tmp_path / "cut.mp4")
    assert not (tmp_path / "cut.mp4").exists()


async def test_bad_brand_colour_fails_with_a_reason(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    request = _request(
        _clips(media, "short"), customer_name="Ada", brand=Brand(name="x", primary_color="red")
    )
    with pytest.raises(MediaProcessingError, match="not #RRGGBB"):
        await open_ffmpeg_renderer("ffmpeg://").render(request, tmp_path / "cut.mp4")


async def test_unreadable_logo_is_left_out(
    media: dict[str, RenderClip | Path], tmp_path: Path
) -> None:
    logo = tmp_path / "logo"
    logo.write_text("<html>not a picture</html>")
    request = _request(_clips(media, "short"), logo_path=str(logo), captions=False)
    renderer = open_ffmpeg_renderer("ffmpeg://?preset=ultrafast")
    assert abs(await renderer.render(request, tmp_path / "cut.mp4") - 1000) <= 150
    assert inspect_video(tmp_path / "cut.mp4").width == 1920


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ffmpeg://?speed=fast", "unknown ffmpeg:// parameter 'speed': accepted are preset"),
        ("ffmpeg://?preset=warp", "preset 'warp' is not one of ultrafast"),
        ("ffmpeg://?crf=99", "crf '99' must be a whole number 0-51"),
        ("ffmpeg://?crf=high", "crf 'high' must be a whole number 0-51"),
        ("ffmpeg://somehost", "must be ffmpeg:// with optional"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        open_ffmpeg_renderer(url)


async def test_is_found_by_its_scheme() -> None:
    renderer = await open_backend("renderer", "ffmpeg://?preset=veryfast&crf=20")
    assert isinstance(renderer, FfmpegRenderer)
    assert (renderer.preset, renderer.crf) == ("veryfast", 20)


def test_word_times_are_shifted_onto_the_joined_timeline() -> None:
    def said(*words: tuple[str, int, int]) -> Transcript:
        timed = tuple(TranscriptWord(word=w, start_ms=s, end_ms=e) for w, s, e in words)
        return Transcript(text=" ".join(w for w, _, _ in words), language="en", words=timed)

    clips = (
        RenderClip(path="a.mp4", duration_ms=2000, transcript=said(("Hi.", 100, 400))),
        RenderClip(path="b.mp4", duration_ms=3000),
        RenderClip(path="c.mp4", duration_ms=1500, transcript=said(("Bye", 200, 2400))),
    )
    request = _request(clips)
    lines = caption_lines(request, [2000, 3000, 1500], max_chars=32)
    assert [(line.start_ms, line.end_ms, line.text) for line in lines] == [
        (100, 1100, "Hi."),  # held for the minimum cue length
        (5200, 6500, "Bye"),  # 5000 + 200, cut at the clip's end
    ]
    assert caption_lines(_request(clips, captions=False), [2000, 3000, 1500], 32) == []


# -- the overlay and the graph, without rendering ---------------------------------------------


def test_ass_text_shows_names_literally() -> None:
    assert ass_text("{\\b1}Zoë") == "\\{\\\u2060b1\\}Zoë"  # no override block
    assert ass_text("a\\Nb\\h") == "a\\\u2060Nb\\\u2060h"  # no line break, no hard space
    assert ass_text("two\r\nlines\tand\0nul\u2028") == "two  lines and nul "


def test_ass_document_puts_the_name_on_the_brand_colour_then_the_captions() -> None:
    layout = LAYOUTS["1:1"]
    captions = [TimedText(500, 1500, "Hi {there}"), TimedText(5200, 6000, "Bye")]
    document = ass_document(
        layout, font="DejaVu Sans", name=NASTY, brand_colour="#E11D48", captions=captions,
        total_ms=3000,
    )  # fmt: skip
    assert "PlayResX: 1080\nPlayResY: 1080\n" in document  # sizes are in output pixels
    name_style = next(line for line in document.splitlines() if line.startswith("Style: Name"))
    assert ",&H00FFFFFF,&H00FFFFFF,&H00481DE1,&H00481DE1," in name_style  # white on #E11D48
    (name,) = [line for line in document.splitlines() if ",Name,," in line]
    assert name.startswith("Dialogue: 1,0:00:00.00,0:00:03.00,Name,,0,0,0,,{\\q2")
    assert "\\fad(500,500)}" in name and "\\{\\\u2060b1\\}50%" in name
    assert "\r" not in name and "\n" not in name
    assert "Dialogue: 0,0:00:00.50,0:00:01.50,Caption,,0,0,0,,Hi \\{there\\}" in document
    assert "Dialogue: 0,0:00:05.20,0:00:06.00,Caption,,0,0,0,,Bye" in document
    no_name = ass_document(
        layout, font="F", name=None, brand_colour="#FFEE00", captions=[], total_ms=1000
    )
    assert ",Name,," not in no_name
    assert "Style: Name,F,44,&H00111111," in no_name  # dark text on a light colour


def test_a_long_name_is_shrunk_then_cut_to_one_line() -> None:
    layout = LAYOUTS["9:16"]
    fits = ass_document(layout, font="F", name="Ada Lovelace", brand_colour="#000000",
                        captions=[], total_ms=9000)  # fmt: skip
    assert "\\fscx" not in fits and "0:00:04.00" in fits
    long = "Maximilian Alexander von Hohenzollern-Sigmaringen " * 3
    shrunk = ass_document(layout, font="F", name=long, brand_colour="#000000",
                          captions=[], total_ms=9000)  # fmt: skip
    scaled = re.search(r"\\fscx(\d+)\\fscy(\d+)", shrunk)
    assert scaled and 60 <= int(scaled[1]) < 70 and scaled[1] == scaled[2]
    assert "Hohenzollern-…" in shrunk and long.strip() not in shrunk


def test_layouts_keep_the_captions_clear_of_the_lower_third() -> None:
    for layout in LAYOUTS.values():
        assert layout.margin < layout.name_top < layout.height - layout.name_bottom
        caption_top = layout.caption_bottom - 2 * layout.caption_size  # two lines
        assert layout.margin + layout.logo_width // 2 < caption_top
        assert layout.caption_bottom < layout.name_top
        assert layout.logo_width % 2 == 0


def test_filter_value_survives_ffmpegs_parser(tmp_path: Path) -> None:
    folder = tmp_path / "it's: [odd], ;dir\\"
    folder.mkdir()
    ass = folder / "o.ass"
    ass.write_text(
        ass_document(LAYOUTS["1:1"], font="DejaVu Sans", name="Ada", brand_colour="#000000",
                     captions=[], total_ms=1000)
    )  # fmt: skip
    subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "color=c=white:s=1080x1080:d=0.1", "-vf", f"ass=filename={filter_value(str(ass))}",
         "-f", "null", "-"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def test_graph_frames_each_clip_by_its_shape() -> None:
    layout = LAYOUTS["9:16"]
    same = ClipSource(1000, 720, 1280)
    close = ClipSource(1000, 480, 640)  # 3:4: cropped
    wide = ClipSource(1000, 1280, 720, has_audio=False)  # 16:9: on a blurred copy
    graph = filter_graph(layout, [same, close, wide], logo_input=3, ass_path="/tmp/o.ass")
    chains = graph.split(";")
    assert "[f0]scale=1080:1920:flags=bilinear,setsar=1,format=yuv420p[v0]" in chains
    assert any(c.startswith("[f1]crop=360:640,scale=1080:1920") for c in chains)  # crop first
    assert any(c.startswith("[bg2]") and "boxblur" in c for c in chains)
    assert any(c.startswith("anullsrc=") and c.endswith("[a2]") for c in chains)
    assert "[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[joined][aout]" in chains
    assert "[3:v]scale=130:-2,setsar=1,format=yuva420p[logo]" in chains
    assert chains[-2:] == [
        "[branded]ass=filename=/tmp/o.ass[captioned]",
        "[captioned]format=yuv420p[vout]",
    ]
