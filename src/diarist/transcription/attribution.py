"""Give each recognized word a speaker, then join a speaker's consecutive words into turns.

A word goes to the speaker of the exclusive diarization who is active during most of it. A
tie goes to the turn whose middle is nearest the word's middle; a word that overlaps no turn
goes to the nearest turn in time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diarist.result import Turn
from diarist.transcription.asr import Word

MAX_PAUSE = 1.0  # seconds of silence between two words of one speaker that still keep one turn
FALLBACK_SPEAKER = "SPEAKER_00"  # when the diarization found no speech but the recognizer found words


@dataclass(frozen=True)
class Utterance:
    """A word or a turn of transcript with its speaker; `text` keeps the recognizer's spacing."""

    start: float
    end: float
    text: str
    speaker: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text.strip(),
            "speaker": self.speaker,
        }


def _gap(turn: Turn, start: float, end: float) -> float:
    return max(turn.start - end, start - turn.end, 0.0)


def word_speaker(turns: Sequence[Turn], starts: Sequence[float], word: Word) -> str:
    """The speaker of one word; `turns` are exclusive (never overlapping), sorted, `starts` theirs."""
    if not turns:
        return FALLBACK_SPEAKER
    after = bisect_right(starts, word.end)  # turns from here on start after the word ends
    overlap: dict[str, float] = {}
    nearest: dict[str, float] = {}
    middle = (word.start + word.end) / 2
    i = after - 1
    while i >= 0 and turns[i].end > word.start:
        turn = turns[i]
        shared = min(turn.end, word.end) - max(turn.start, word.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
            distance = abs((turn.start + turn.end) / 2 - middle)
            nearest[turn.speaker] = min(nearest.get(turn.speaker, distance), distance)
        i -= 1
    if overlap:
        return max(overlap, key=lambda s: (round(overlap[s], 6), -nearest[s]))
    neighbours = [turns[j] for j in (after - 1, after) if 0 <= j < len(turns)]
    return min(neighbours, key=lambda t: _gap(t, word.start, word.end)).speaker


def attribute_words(words: Sequence[Word], turns: Sequence[Turn]) -> list[Utterance]:
    """Every word with its speaker, in time order."""
    ordered = sorted(turns, key=lambda t: t.start)
    starts = [t.start for t in ordered]
    return [Utterance(w.start, w.end, w.text, word_speaker(ordered, starts, w)) for w in words]


def join_turns(words: Sequence[Utterance], max_pause: float = MAX_PAUSE) -> list[Utterance]:
    """Consecutive words of one speaker as one turn, split at speaker changes and long pauses."""
    turns: list[Utterance] = []
    for word in words:
        last = turns[-1] if turns else None
        if last is not None and last.speaker == word.speaker and word.start - last.end <= max_pause:
            turns[-1] = Utterance(last.start, max(last.end, word.end), last.text + word.text, last.speaker)
        else:
            turns.append(Utterance(word.start, word.end, word.text, word.speaker))
    return turns
