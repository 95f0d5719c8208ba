"""What a diarization returns, and its pyannoteAI JSON and RTTM forms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from diarist.audio import Peaks


@dataclass(frozen=True)
class Turn:
    """One speaker speaking from `start` to `end` (seconds)."""

    start: float
    end: float
    speaker: str
    # 0-100 score for each speaker that this turn belongs to them.
    confidence: dict[str, int] | None = None

    def to_dict(self, with_confidence: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"speaker": self.speaker, "start": round(self.start, 3), "end": round(self.end, 3)}
        if with_confidence and self.confidence is not None:
            out["confidence"] = self.confidence
        return out


@dataclass
class DiarizationResult:
    """Who spoke when. `turns` may overlap; `exclusive_turns` never do."""

    turns: list[Turn]
    exclusive_turns: list[Turn]
    speakers: list[str]
    duration: float
    confidence: list[int] = field(default_factory=list)  # 0-100, one value per `confidence_resolution` s
    confidence_resolution: float = 0.02
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per pipeline stage
    # Each speaker's voice: a unit embedding (the centroid of its window embeddings), for identification.
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    # The waveform overview, from the same decode (a file input only): the web page draws it.
    peaks: Peaks | None = None

    def to_dict(
        self, exclusive: bool = False, confidence: bool = False, turn_level_confidence: bool = False
    ) -> dict[str, Any]:
        """The pyannoteAI diarization job output; optional parts as a job would request them."""
        out: dict[str, Any] = {"diarization": [t.to_dict(turn_level_confidence) for t in self.turns]}
        if exclusive:
            out["exclusiveDiarization"] = [t.to_dict(turn_level_confidence) for t in self.exclusive_turns]
        if confidence:
            out["confidence"] = {"score": self.confidence, "resolution": self.confidence_resolution}
        if self.warnings:
            out["warning"] = " ".join(self.warnings)
        return out

    def to_rttm(self, uri: str = "audio", exclusive: bool = False) -> str:
        """NIST RTTM, one SPEAKER line per turn."""
        return to_rttm(self.exclusive_turns if exclusive else self.turns, uri)


def to_rttm(turns: list[Turn], uri: str = "audio") -> str:
    """NIST RTTM of `turns`, one SPEAKER line each (the CLI's --format rttm and the API's export).

    RTTM fields are split at whitespace: a name like "John Doe" is written John_Doe.
    """
    uri = _rttm_field(uri)
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {_rttm_field(t.speaker)} <NA> <NA>\n"
        for t in turns
    )


def _rttm_field(text: str) -> str:
    return "_".join(text.split()) or "_"


def rebuild_turns(events: list[dict], duration: float) -> list[Turn]:
    """The turns a live client rebuilds from its `diarization_speaker_start` / `_end` events (as JSON):
    each start paired with the same speaker's next end, an end without a start ignored, a start still
    open closed at `duration`."""
    opened: dict[str, float] = {}
    turns = []
    for event in events:
        speaker, timestamp = event["data"]["speaker"], event["data"]["timestamp"]
        if event["type"] == "diarization_speaker_start":
            opened.setdefault(speaker, timestamp)
        elif event["type"] == "diarization_speaker_end" and speaker in opened:
            turns.append(Turn(opened.pop(speaker), timestamp, speaker))
    turns += [Turn(start, duration, speaker) for speaker, start in opened.items()]
    return sorted(turns, key=lambda turn: (turn.start, turn.end))
