"""What a diarization returns, and its pyannoteAI JSON and RTTM forms."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyannote.core import Annotation

    from diarist.audio import Peaks
    from diarist.transcription import AttributedTranscript


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


@dataclass(frozen=True)
class VoiceSegments:
    """Short-segment embeddings of the speakers' voices, and where each was heard.

    Segment i covers `starts[i]` to `ends[i]` (seconds) of the speech of `labels[i]`, the speaker
    who talks alone at its middle; `vectors[i]` is its unit embedding (float16). Identification
    uses them to find a matched speaker that holds a second voice (`voiceprints.second_voices`):
    diarization sometimes gives two people one speaker.
    """

    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    # (segments, 2): the segmentation's window and local speaker each was embedded from. The
    # segmentation tells the people of one window apart: two local speakers are two people.
    sources: np.ndarray | None = None


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
    # Resegmentation's 1.5 s segment embeddings of those voices (precision-2 only), for identification.
    voice_segments: VoiceSegments | None = None
    # The waveform overview, from the same decode (a file input only): the web page draws it.
    peaks: Peaks | None = None
    # The words and turns with their speakers, where speech recognition ran (`diarize(transcription=True)`).
    transcript: AttributedTranscript | None = None

    def to_dict(
        self, exclusive: bool = False, confidence: bool = False, turn_level_confidence: bool = False
    ) -> dict[str, Any]:
        """The pyannoteAI diarization job output; optional parts as a job would request them."""
        out: dict[str, Any] = {"diarization": [t.to_dict(turn_level_confidence) for t in self.turns]}
        if exclusive:
            out["exclusiveDiarization"] = [t.to_dict(turn_level_confidence) for t in self.exclusive_turns]
        if confidence:
            out["confidence"] = {"score": self.confidence, "resolution": self.confidence_resolution}
        out["talkTime"] = [{"speaker": name, "seconds": round(s, 3)} for name, s in self.talk_time().items()]
        if self.warnings:
            out["warning"] = " ".join(self.warnings)
        return out

    def to_rttm(self, uri: str = "audio", exclusive: bool = False) -> str:
        """NIST RTTM, one SPEAKER line per turn."""
        return to_rttm(self.exclusive_turns if exclusive else self.turns, uri)

    def talk_time(self) -> dict[str, float]:
        """Seconds each speaker talks, overlapping speech included, most talkative first."""
        return talk_time(self.turns)

    def to_annotation(self, uri: str = "audio", exclusive: bool = False) -> Annotation:
        """The turns (`exclusive`: the exclusive ones) as a pyannote.core Annotation, as pyannote.audio gives."""
        from pyannote.core import Annotation, Segment

        annotation = Annotation(uri=uri)
        for track, turn in enumerate(self.exclusive_turns if exclusive else self.turns):
            annotation[Segment(turn.start, turn.end), track] = turn.speaker
        return annotation

    def to_srt(self) -> str:
        """SubRip subtitles: the transcript's words with their speakers where there is a transcript,
        else one cue per exclusive turn naming its speaker (the API's export)."""
        from diarist.exports import render

        return render(self.to_dict(), "srt", transcript=self.transcript, result=self)


def talk_time(turns: Iterable[Turn]) -> dict[str, float]:
    """Seconds each speaker talks in `turns` (one speaker's turns never overlap), most talkative first."""
    seconds: dict[str, float] = {}
    for turn in turns:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.end - turn.start
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


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
