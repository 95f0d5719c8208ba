"""Speaker-attributed transcripts as SubRip (SRT), WebVTT and plain text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from diarist.transcription.attribution import Utterance

MAX_CUE_SECONDS = 7.0  # a subtitle longer than this, or than MAX_CUE_CHARS, is split between words
MAX_CUE_CHARS = 84


def _clock(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"


def cues(words: Sequence[Utterance]) -> Iterator[Utterance]:
    """Subtitle-sized pieces of each speaker's turns: one speaker per cue, cut between words."""
    cue: Utterance | None = None
    for word in words:
        if cue is not None and (
            word.speaker != cue.speaker
            or word.end - cue.start > MAX_CUE_SECONDS
            or len((cue.text + word.text).strip()) > MAX_CUE_CHARS
        ):
            yield cue
            cue = None
        cue = word if cue is None else Utterance(cue.start, word.end, cue.text + word.text, cue.speaker)
    if cue is not None:
        yield cue


def to_srt(words: Sequence[Utterance]) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n[{c.speaker}] {c.text.strip()}\n"
        for i, c in enumerate(cues(words), 1)
    ]
    return "\n".join(blocks)


def to_vtt(words: Sequence[Utterance]) -> str:
    # WebVTT's voice span names the speaker, so players can style or filter by it.
    blocks = [
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n<v {c.speaker}>{c.text.strip()}\n" for c in cues(words)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_text(turns: Sequence[Utterance]) -> str:
    return "".join(f"[{_clock(t.start, '.')}] {t.speaker}: {t.text.strip()}\n" for t in turns)
