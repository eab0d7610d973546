"""The Renderer contract suite: a pytest class any renderer subclasses to prove it cuts videos.

One fixture, ``renderer``, gives a renderer and closes it afterwards::

    import pytest
    from ravepilot_core.testing import RendererContract

    class TestMyRenderer(RendererContract):
        @pytest.fixture
        async def renderer(self):
            renderer = open_my_renderer("mine://")
            yield renderer
            await renderer.close()

The input clips are made once per class the way RavePilot hands them over (the customer's
originals: a browser's VP8/Opus webm and an h264/aac mp4, with speech from flite and a
transcript), and the output is inspected with
ffmpeg, so the suite needs ffmpeg (the ``imageio-ffmpeg`` wheel has one) and ``flite``.
"""

# The tests are public methods whose names say what they check; docstrings would only repeat them.
# ruff: noqa: D102

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from ravepilot_core.errors import ConfigurationError
from ravepilot_core.ffmpeg import find_ffmpeg
from ravepilot_core.models import Brand, RenderClip, RenderRequest, Transcript, TranscriptWord
from ravepilot_core.protocols import Renderer
from ravepilot_core.testing.components import require_component

__all__ = ["FORMAT_SIZES", "RendererContract", "VideoFacts", "inspect_video", "make_clip"]

#: The frame every format must have.
FORMAT_SIZES = {"9:16": (1080, 1920), "1:1": (1080, 1080), "16:9": (1920, 1080)}
DURATION_TOLERANCE_MS = 150
_BRAND = Brand(name="Acme Bikes", primary_color="#E11D48")


def make_clip(
    path: Path, *, seconds: float = 2.0, size: str = "480x854", text: str | None = None
) -> RenderClip:
    """Write a recording (testsrc2, flite speech or silence) and return it for a request.

    ``path``'s suffix picks the kind: ``.webm`` is VP8/Opus as a browser records it, anything
    else an h264/aac mp4 as a phone's camera app writes it.

    The transcript spreads the words of ``text`` evenly over the speech, which is close enough
    for captions: a renderer only has to show them while they are said.
    """
    command = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    transcript = None
    if text:
        require_component(shutil.which("flite") is not None, "no flite: apt-get install flite")
        speech = path.with_suffix(".wav")
        subprocess.run(
            ["flite", "-voice", "rms", "-t", text, "-o", str(speech)], check=True, timeout=60
        )
        with wave.open(str(speech)) as wav:
            spoken_ms = min(int(wav.getnframes() * 1000 / wav.getframerate()), int(seconds * 1000))
        words = text.split()
        step = spoken_ms // len(words)
        transcript = Transcript(
            text=text,
            language="en",
            words=tuple(
                TranscriptWord(word=word, start_ms=n * step, end_ms=(n + 1) * step)
                for n, word in enumerate(words)
            ),
        )
        command += ["-i", str(speech)]
    else:
        command += ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]
    command += ["-filter_complex", f"[1:a]apad,atrim=duration={seconds}[a]", "-map", "0:v"]
    command += ["-map", "[a]", "-t", str(seconds)]
    if path.suffix == ".webm":  # as Chrome's MediaRecorder writes it: VP8 and Opus, mono
        command += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
        command += ["-c:a", "libopus", "-ac", "1", str(path)]
    else:
        command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-r", "30"]
        command += ["-c:a", "aac", "-ar", "48000", "-ac", "2", "-movflags", "+faststart", str(path)]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    return RenderClip(path=str(path), duration_ms=round(seconds * 1000), transcript=transcript)


@dataclass(frozen=True)
class VideoFacts:
    """What a rendered file is, as ffmpeg reads it."""

    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    duration_ms: int
    fast_start: bool  # the moov box comes before the media data


def _top_level_boxes(path: Path) -> list[str]:
    boxes = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            if len(header) < 8:
                break
            size, kind = int.from_bytes(header[:4], "big"), header[4:].decode("latin-1")
            boxes.append(kind)
            if size == 1:  # a 64-bit size follows the type
                size = int.from_bytes(handle.read(8), "big") - 8
            elif size == 0:
                break
            handle.seek(size - 8, 1)
    return boxes


def inspect_video(path: Path) -> VideoFacts:
    """Read a video's size, codecs, duration and box order with ``ffmpeg -i``."""
    result = subprocess.run(
        [find_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, timeout=60
    )
    text = result.stderr.decode(errors="replace")
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d+)x(\d+)", text)
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    assert video and duration, f"ffmpeg cannot read {path.name} as a video: {text[-800:]}"
    hours, minutes, seconds = duration.groups()
    boxes = _top_level_boxes(path)
    return VideoFacts(
        width=int(video[2]),
        height=int(video[3]),
        video_codec=video[1],
        audio_codec=audio[1] if audio else None,
        duration_ms=round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000),
        fast_start="moov" in boxes
        and "mdat" in boxes
        and boxes.index("moov") < boxes.index("mdat"),
    )


def _leftovers(directory: Path, expected: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in expected)


class RendererContract:
    """Behaviour every :class:`~ravepilot_core.protocols.Renderer` must have.

    Subclass it in a class named ``Test...`` and override ``renderer``.
    """

    pytestmark = pytest.mark.anyio

    @pytest.fixture
    def renderer(self) -> Renderer:
        """Override this fixture: yield a renderer and close it after the test."""
        raise NotImplementedError("subclass RendererContract and override `renderer`")

    @pytest.fixture(scope="class")
    @classmethod
    def clips(cls, tmp_path_factory: pytest.TempPathFactory) -> tuple[RenderClip, ...]:
        """Two 2 s clips, portrait and landscape: an mp4 and a browser's webm."""
        try:
            find_ffmpeg()
        except ConfigurationError as exc:
            require_component(False, exc.message)
        folder = tmp_path_factory.mktemp("renderer-clips")
        logo = folder / "logo.png"
        subprocess.run(
            [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             "color=c=0x4F46E5:s=240x120", "-frames:v", "1", str(logo)],
            check=True, timeout=60,
        )  # fmt: skip
        return (
            make_clip(folder / "portrait.mp4", size="480x854", text="Hello, I love this shop."),
            make_clip(folder / "landscape.webm", size="640x360", text="Tell your friends."),
        )

    def branded_request(
        self, clips: tuple[RenderClip, ...], render_format: str, **fields: object
    ) -> RenderRequest:
        """A branded request for ``clips``: name, brand colour, logo and captions."""
        logo = Path(clips[0].path).parent / "logo.png"
        values: dict[str, object] = {
            "format": render_format,
            "clips": clips,
            "customer_name": "Zoë O'Brien",
            "brand": _BRAND,
            "logo_path": str(logo),
            "captions": True,
        }
        values.update(fields)
        return RenderRequest(**values)  # type: ignore[arg-type]

    async def test_is_a_renderer(self, renderer: Renderer) -> None:
        assert isinstance(renderer, Renderer)

    @pytest.mark.parametrize("render_format", list(FORMAT_SIZES))
    async def test_renders_each_format_as_fast_start_h264_aac(
        self, renderer: Renderer, clips: tuple[RenderClip, ...], render_format: str, tmp_path: Path
    ) -> None:
        output = tmp_path / "cut.mp4"
        duration = await renderer.render(self.branded_request(clips, render_format), output)
        facts = await anyio.to_thread.run_sync(inspect_video, output)
        assert (facts.width, facts.height) == FORMAT_SIZES[render_format]
        assert (facts.video_codec, facts.audio_codec) == ("h264", "aac")
        expected = sum(clip.duration_ms for clip in clips)
        assert abs(facts.duration_ms - expected) <= DURATION_TOLERANCE_MS, facts
        assert abs(duration - facts.duration_ms) <= DURATION_TOLERANCE_MS
        assert facts.fast_start, "the moov box must come first (-movflags +faststart)"
        assert _leftovers(tmp_path, {"cut.mp4"}) == []

    async def test_renders_without_branding_or_captions(
        self, renderer: Renderer, clips: tuple[RenderClip, ...], tmp_path: Path
    ) -> None:
        plain = tuple(RenderClip(path=c.path, duration_ms=c.duration_ms) for c in clips[:1])
        request = self.branded_request(
            plain, "1:1", customer_name=None, logo_path=None, captions=False
        )
        duration = await renderer.render(request, tmp_path / "plain.mp4")
        facts = await anyio.to_thread.run_sync(inspect_video, tmp_path / "plain.mp4")
        assert (facts.width, facts.height) == (1080, 1080)
        assert abs(duration - clips[0].duration_ms) <= DURATION_TOLERANCE_MS

    async def test_output_holds_the_old_file_or_the_whole_new_one(
        self, renderer: Renderer, clips: tuple[RenderClip, ...], tmp_path: Path
    ) -> None:
        # A retried render job writes over its last attempt's file; a reader (the upload to the
        # media store) must never see half a video in between.
        output = tmp_path / "cut.mp4"
        output.write_bytes(b"an earlier attempt")
        seen: set[bytes] = set()

        async def watch() -> None:
            while True:
                try:
                    with output.open("rb") as handle:
                        seen.add(handle.read(64))
                except FileNotFoundError:
                    seen.add(b"")
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            await renderer.render(self.branded_request(clips, "9:16"), output)
            tasks.cancel_scope.cancel()
        final = output.read_bytes()
        assert seen <= {b"an earlier attempt", final[:64]}, "output was seen half-written"
        assert inspect_video(output).height == 1920
        assert _leftovers(tmp_path, {"cut.mp4"}) == []

    async def test_missing_clip_fails_and_leaves_no_output(
        self, renderer: Renderer, clips: tuple[RenderClip, ...], tmp_path: Path
    ) -> None:
        gone = RenderClip(path=str(tmp_path / "gone.mp4"), duration_ms=2000)
        with pytest.raises(Exception) as failure:
            await renderer.render(
                self.branded_request((clips[0], gone), "9:16"), tmp_path / "cut.mp4"
            )
        assert str(failure.value), "the exception's message is the reason a user sees"
        assert _leftovers(tmp_path, set()) == []

    async def test_corrupt_clip_fails_and_leaves_no_output(
        self, renderer: Renderer, clips: tuple[RenderClip, ...], tmp_path: Path
    ) -> None:
        inputs = tmp_path / "in"
        inputs.mkdir()
        corrupt = inputs / "corrupt.mp4"
        corrupt.write_bytes(Path(clips[0].path).read_bytes()[:3000] + b"\0" * 5000)
        out = tmp_path / "out"
        out.mkdir()
        broken = RenderClip(path=str(corrupt), duration_ms=2000)
        with pytest.raises(Exception) as failure:
            await renderer.render(self.branded_request((broken, clips[1]), "16:9"), out / "cut.mp4")
        assert str(failure.value), "the exception's message is the reason a user sees"
        assert _leftovers(out, set()) == []
