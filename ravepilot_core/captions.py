"""Captions from a transcript: readable cues, written as WebVTT or SubRip (SRT).

Words are grouped into cues of one short line each (at most ``max_chars`` characters and
``max_ms`` long), and a new cue starts after a pause of :data:`PAUSE_MS` or a sentence's end, so a
caption never runs across a silence. Each cue stays up for at least :data:`MIN_CUE_MS` (unless the
next one starts sooner), so one quick word does not flash by.

A transcript without word timings (some transcribers give only text) becomes one cue with all
of its text, from the start to ``duration_ms`` when the caller knows the clip's length, else for
as long as the text takes to read at :data:`READING_CHARS_PER_S`::

    to_vtt(clip.transcript, duration_ms=clip.duration_ms)
"""

from __future__ import annotations

import msgspec

from ravepilot_core.models import Transcript, TranscriptWord

__all__ = ["MIN_CUE_MS", "PAUSE_MS", "READING_CHARS_PER_S", "Cue", "cues", "to_srt", "to_vtt"]

PAUSE_MS = 700  # a breath between sentences is ~300-500 ms; longer means the speaker stopped
MIN_CUE_MS = 1000  # the least time anyone can read a short line in (broadcast guides say ~1 s)
READING_CHARS_PER_S = 15  # a comfortable caption reading speed (guides give 12-17 chars/s)
_SENTENCE_ENDS = (".", "?", "!")


class Cue(msgspec.Struct, frozen=True, kw_only=True):
    """One caption: a line of text shown from ``start_ms`` until ``end_ms``."""

    start_ms: int
    end_ms: int
    text: str


def _line(words: list[TranscriptWord]) -> str:
    return " ".join(word.word for word in words)


def cues(
    transcript: Transcript,
    *,
    max_chars: int = 32,
    max_ms: int = 3500,
    duration_ms: int | None = None,
) -> list[Cue]:
    """Group ``transcript``'s words into caption cues, in time order.

    Args:
        transcript: What was said, ideally with word timings.
        max_chars: The longest line; a single longer word gets a cue of its own.
        max_ms: The longest a cue may stay up.
        duration_ms: The clip's length, if known: the last cue ends by then, and a transcript
            without word timings is shown for all of it.

    Returns:
        The cues; none for a transcript without words or text.
    """
    words = sorted(
        (
            TranscriptWord(word=" ".join(w.word.split()), start_ms=w.start_ms, end_ms=w.end_ms)
            for w in transcript.words
            if w.word.strip()
        ),
        key=lambda w: w.start_ms,
    )
    if not words:
        return _untimed(transcript.text, duration_ms)
    groups: list[list[TranscriptWord]] = [[words[0]]]
    for word in words[1:]:
        group = groups[-1]
        if (
            len(_line(group)) + 1 + len(word.word) > max_chars
            or word.end_ms - group[0].start_ms > max_ms
            or word.start_ms - group[-1].end_ms >= PAUSE_MS
            or group[-1].word.endswith(_SENTENCE_ENDS)
        ):
            groups.append([word])
        else:
            group.append(word)
    made: list[Cue] = []
    for index, group in enumerate(groups):
        start = max(group[0].start_ms, 0)
        end = max(max(word.end_ms for word in group), start + MIN_CUE_MS)
        if index + 1 < len(groups):  # linger, but never over the next cue
            end = max(min(end, groups[index + 1][0].start_ms), start + 1)
        elif duration_ms:  # nor past the clip's end
            end = max(min(end, duration_ms), start + 1)
        made.append(Cue(start_ms=start, end_ms=end, text=_line(group)))
    return made


def _untimed(text: str, duration_ms: int | None) -> list[Cue]:
    text = " ".join(text.split())
    if not text:
        return []
    end = duration_ms if duration_ms else len(text) * 1000 // READING_CHARS_PER_S
    return [Cue(start_ms=0, end_ms=max(end, MIN_CUE_MS), text=text)]


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(ms, 0), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _escape_vtt(text: str) -> str:
    # & and < start entities and tags in WebVTT; > would let "-->" end a cue's timing line.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript, *, duration_ms: int | None = None) -> str:
    """Return ``transcript`` as a WebVTT file (``text/vtt``), for ``<track>`` in a browser.

    Args:
        transcript: What was said.
        duration_ms: The clip's length, for a transcript without word timings.
    """
    blocks = ["WEBVTT\n"]
    for cue in cues(transcript, duration_ms=duration_ms):
        timing = f"{_timestamp(cue.start_ms, '.')} --> {_timestamp(cue.end_ms, '.')}"
        blocks.append(f"{timing}\n{_escape_vtt(cue.text)}\n")
    return "\n".join(blocks)


def to_srt(transcript: Transcript, *, duration_ms: int | None = None) -> str:
    """Return ``transcript`` as a SubRip file (``application/x-subrip``), for video editors.

    SRT has no escaping: players read ``<i>``-style tags in it, so text is written as it is.

    Args:
        transcript: What was said.
        duration_ms: The clip's length, for a transcript without word timings.
    """
    blocks = []
    for number, cue in enumerate(cues(transcript, duration_ms=duration_ms), start=1):
        timing = f"{_timestamp(cue.start_ms, ',')} --> {_timestamp(cue.end_ms, ',')}"
        blocks.append(f"{number}\n{timing}\n{cue.text}\n")
    return "\n".join(blocks)
