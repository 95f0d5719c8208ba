"""Speaker-attributed transcripts as SubRip (SRT), WebVTT and plain text.

Turns without words (identification, which has no transcript) are written as their speaker alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from diarist.transcription.attribution import Utterance

MAX_CUE_SECONDS = 7.0  # a subtitle longer than this, or than MAX_CUE_CHARS, is split between words
MAX_CUE_CHARS = 84


def _clock(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"


Fits = Callable[[Utterance], bool]  # whether a cue is short enough to show whole
Layout = Callable[[str], str]  # a cue's text as the lines to show


def short_enough(cue: Utterance) -> bool:
    return len(cue.text.strip()) <= MAX_CUE_CHARS


def unwrapped(text: str) -> str:
    return text


def cues(words: Sequence[Utterance], fits: Fits = short_enough) -> Iterator[Utterance]:
    """Subtitle-sized pieces of each speaker's turns: one speaker per cue, cut between words where a
    cue would last over MAX_CUE_SECONDS or no longer `fits` (a single word always makes a cue)."""
    cue: Utterance | None = None
    for word in words:
        longer = None if cue is None else Utterance(cue.start, word.end, cue.text + word.text, cue.speaker)
        if cue is not None and (
            word.speaker != cue.speaker or word.end - cue.start > MAX_CUE_SECONDS or not fits(longer)
        ):
            yield cue
            cue = None
        cue = word if cue is None else longer
    if cue is not None:
        yield cue


def _said(cue: Utterance, separator: str) -> str:
    """`separator` and the cue's words; nothing for a turn without words."""
    text = cue.text.strip()
    return f"{separator}{text}" if text else ""


def srt_text(cue: Utterance) -> str:
    """What an SRT cue shows: `[SPEAKER] words`."""
    return f"[{cue.speaker}]{_said(cue, ' ')}"


def write_srt(items: Iterable[Utterance], layout: Layout = unwrapped) -> str:
    """SubRip with one block per item, as they are given (`to_srt` makes subtitle-sized cues of words)."""
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{layout(srt_text(c))}\n" for i, c in enumerate(items, 1)
    ]
    return "\n".join(blocks)


def _vtt_text(text: str) -> str:
    """`text` as WebVTT cue text or voice annotation: & < > escaped, so that a name or a word cannot end the
    voice tag, open another, or hold the "-->" that ends a cue's payload."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(items: Iterable[Utterance], layout: Layout = unwrapped) -> str:
    """WebVTT with one cue per item, as they are given (`to_vtt` makes subtitle-sized cues of words)."""
    # WebVTT's voice span names the speaker, so players can style or filter by it; players show only
    # the span's text, so a turn without words shows the name.
    blocks = [
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n<v {_vtt_text(c.speaker)}>{_vtt_text(layout(vtt_text(c)))}\n"
        for c in items
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def vtt_text(cue: Utterance) -> str:
    """What a WebVTT cue shows: its words (players show the voice span's text, not its name), or the
    speaker of a turn without words."""
    return cue.text.strip() or cue.speaker


def to_srt(words: Sequence[Utterance], fits: Fits = short_enough, layout: Layout = unwrapped) -> str:
    return write_srt(cues(words, fits), layout)


def to_vtt(words: Sequence[Utterance], fits: Fits = short_enough, layout: Layout = unwrapped) -> str:
    return write_vtt(cues(words, fits), layout)


def to_text(turns: Sequence[Utterance]) -> str:
    return "".join(f"[{_clock(t.start, '.')}] {t.speaker}{_said(t, ': ')}\n" for t in turns)


def talk_time_summary(seconds: dict[str, float]) -> str:
    """A text block of each speaker's talk time and share of all talk, one line each; nothing without speech."""
    total = sum(seconds.values())
    if not total:
        return ""
    width = max(len(name) for name in seconds)
    lines = [f"{name:<{width}}  {_clock(talk, '.')}  {100 * talk / total:3.0f} %" for name, talk in seconds.items()]
    return "\nTalk time:\n" + "".join(f"{line}\n" for line in lines)
