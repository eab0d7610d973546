"""Captions: grouping words into readable cues, and writing WebVTT and SRT."""

from __future__ import annotations

import re

import pytest

from ravepilot_core.captions import MIN_CUE_MS, PAUSE_MS, Cue, cues, to_srt, to_vtt
from ravepilot_core.models import Transcript, TranscriptWord


def spoken(*timed: tuple[str, int, int]) -> Transcript:
    words = tuple(TranscriptWord(word=w, start_ms=s, end_ms=e) for w, s, e in timed)
    return Transcript(text=" ".join(w for w, _, _ in timed), language="en", words=words)


def steady(text: str, *, start_ms: int = 0, word_ms: int = 300) -> Transcript:
    """Words one after another, each ``word_ms`` long, no pauses."""
    return spoken(
        *(
            (word, start_ms + i * word_ms, start_ms + (i + 1) * word_ms)
            for i, word in enumerate(text.split())
        )
    )


def test_short_speech_is_one_cue() -> None:
    assert cues(steady("I love this coffee")) == [
        Cue(start_ms=0, end_ms=1200, text="I love this coffee")
    ]


def test_lines_break_before_max_chars() -> None:
    made = cues(steady("this product saved me hours every single week of my working life"))
    assert [c.text for c in made] == [
        "this product saved me hours",
        "every single week of my working",
        "life",
    ]
    assert all(len(c.text) <= 32 for c in made)
    assert made[0].end_ms == made[1].start_ms == 1500  # back to back, no gap, no overlap


def test_a_word_longer_than_a_line_gets_its_own_cue() -> None:
    made = cues(steady("a pneumonoultramicroscopicsilicovolcanoconiosis case"))
    assert [c.text for c in made] == ["a", "pneumonoultramicroscopicsilicovolcanoconiosis", "case"]


def test_lines_break_at_max_duration() -> None:
    made = cues(steady("so um well I mean yes", word_ms=1000), max_ms=3500)
    assert [c.text for c in made] == ["so um well", "I mean yes"]
    assert all(c.end_ms - c.start_ms <= 3500 for c in made)


def test_lines_break_at_a_long_pause_but_not_a_short_one() -> None:
    transcript = spoken(
        ("good", 0, 400),
        ("morning", 500, 900),  # 100 ms: a breath
        ("I", 900 + PAUSE_MS, 1000 + PAUSE_MS),  # a real pause
        ("drink", 1000 + PAUSE_MS, 1400 + PAUSE_MS),
    )
    assert [c.text for c in cues(transcript)] == ["good morning", "I drink"]


def test_lines_break_after_a_sentence_ends() -> None:
    transcript = steady("It works. Really well!")
    assert [c.text for c in cues(transcript)] == ["It works.", "Really well!"]


def test_a_quick_word_stays_up_long_enough_to_read_but_never_overlaps() -> None:
    transcript = spoken(("yes", 0, 200), ("no", 1200 + PAUSE_MS, 1400 + PAUSE_MS))
    first, second = cues(transcript)
    assert first.end_ms == MIN_CUE_MS
    assert second.end_ms == second.start_ms + MIN_CUE_MS
    transcript = spoken(("yes", 0, 200), ("no", 1000, 1200))
    first, second = cues(transcript, max_chars=3)
    assert first.end_ms == second.start_ms == 1000


def test_the_last_cue_does_not_run_past_the_clip() -> None:
    (cue,) = cues(spoken(("bye", 4800, 4950)), duration_ms=5000)
    assert (cue.start_ms, cue.end_ms) == (4800, 5000)


def test_words_out_of_order_or_blank_are_tidied() -> None:
    transcript = spoken(("world", 400, 800), (" ", 100, 200), ("hello", 0, 400))
    assert [c.text for c in cues(transcript)] == ["hello world"]


def test_no_words_and_no_text_make_no_cues() -> None:
    silent = Transcript(text="", language="en")
    assert cues(silent) == []
    assert to_vtt(silent) == "WEBVTT\n"
    assert to_srt(silent) == ""


def test_text_without_word_timings_is_one_cue_over_the_clip() -> None:
    transcript = Transcript(text="  Great   service,\nwould buy again. ", language="en")
    assert cues(transcript, duration_ms=8000) == [
        Cue(start_ms=0, end_ms=8000, text="Great service, would buy again.")
    ]
    (guess,) = cues(transcript)  # length unknown: as long as it takes to read
    assert guess.end_ms == len("Great service, would buy again.") * 1000 // 15


def test_vtt() -> None:
    transcript = spoken(("hello", 1500, 1900), ("again", 3_723_000, 3_723_400))
    assert to_vtt(transcript) == (
        "WEBVTT\n\n00:00:01.500 --> 00:00:02.500\nhello\n\n01:02:03.000 --> 01:02:04.000\nagain\n"
    )


def test_srt() -> None:
    transcript = spoken(("hello", 1500, 1900), ("again", 3_723_000, 3_723_400))
    assert to_srt(transcript) == (
        "1\n00:00:01,500 --> 00:00:02,500\nhello\n\n2\n01:02:03,000 --> 01:02:04,000\nagain\n"
    )


@pytest.mark.parametrize(
    ("said", "written"),
    [("R&D", "R&amp;D"), ("<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"), ("a-->b", "a--&gt;b")],
)
def test_vtt_escapes_what_would_be_markup(said: str, written: str) -> None:
    vtt = to_vtt(spoken((said, 0, 500)))
    assert vtt.splitlines()[3] == written
    assert to_srt(spoken((said, 0, 500))).splitlines()[2] == said


def test_a_long_transcript_round_trips_through_vtt_timings() -> None:
    transcript = steady(" ".join(["word"] * 200), start_ms=250, word_ms=280)
    vtt = to_vtt(transcript)
    stamps = re.findall(
        r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$", vtt, re.M
    )
    made = cues(transcript)
    assert len(stamps) == len(made)
    for (h1, m1, s1, ms1, h2, m2, s2, ms2), cue in zip(stamps, made, strict=True):
        assert int(h1) * 3_600_000 + int(m1) * 60_000 + int(s1) * 1000 + int(ms1) == cue.start_ms
        assert int(h2) * 3_600_000 + int(m2) * 60_000 + int(s2) * 1000 + int(ms2) == cue.end_ms
    assert " ".join(c.text for c in made) == transcript.text
