"""Shared helpers for the benchmarks: the dev set, scoring and long test inputs."""

from __future__ import annotations

import platform
import wave
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

DEV = Path(__file__).parent / "data" / "dev"
WIDE = Path(__file__).parent / "data" / "wide"


def dev_files() -> list[Path]:
    return sorted(DEV.glob("*.wav"))


def eval_files() -> list[Path]:
    """Every recording with a reference: the dev set (AMI clips, the sample) and the wide set (calls, conversations)."""
    return dev_files() + sorted(WIDE.glob("*.wav"))


def corpus(path: Path) -> str:
    """The corpus a recording comes from: AMI meetings, telephone calls (HarperValleyBank and the
    pyannote sample, a call) or the other conversations."""
    if path.stem.startswith("ami-"):
        return "AMI"
    return "calls" if path.stem.startswith("hvb_") or path.stem == "pyannote-sample" else "other"


def load_rttm(path: Path) -> Annotation:
    annotation = Annotation(uri=path.stem)
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            annotation[Segment(start, start + duration)] = fields[7]
    return annotation


def clean_speech(annotation: Annotation, speaker: str, min_duration: float = 0.0) -> list[Segment]:
    """The segments where `speaker` talks and nobody else does, in time order.

    Pieces shorter than `min_duration` seconds are left out (a word clipped by overlap on both
    sides is mostly boundary).
    """
    others = Timeline(uri=annotation.uri)
    for label in annotation.labels():
        if label != speaker:
            others.update(annotation.label_timeline(label, copy=False))
    alone = annotation.label_timeline(speaker).support().extrude(others.support())
    return [segment for segment in alone if segment.duration >= min_duration]


def cut(samples: np.ndarray, segments: list[Segment], seconds: float | None = None, skip: float = 0.0) -> np.ndarray:
    """The audio of `segments` (16 kHz `samples`) concatenated, from `skip` s in, `seconds` s long (None: all)."""
    audio = np.concatenate([samples[int(s.start * 16000) : int(s.end * 16000)] for s in segments] or [samples[:0]])
    start = int(skip * 16000)
    return audio[start:] if seconds is None else audio[start : start + int(seconds * 16000)]


def to_annotation(turns, uri: str) -> Annotation:
    annotation = Annotation(uri=uri)
    for turn in turns:
        annotation[Segment(turn.start, turn.end)] = turn.speaker
    return annotation


# pyannote.metrics' collar is the whole width centred on each reference boundary: 0.5 forgives
# 0.25 s either side, the "0.25 s collar" of NIST md-eval and of most papers.
COLLAR_0_25 = 0.5


def der_metric(collar: float = 0.0) -> DiarizationErrorRate:
    """The 'full' condition by default: no collar, overlapped speech scored."""
    return DiarizationErrorRate(collar=collar, skip_overlap=False)


def meeting(path: Path) -> str:
    """The recording a dev file comes from: its AMI meeting series (ami-EN2001b-0-30 -> EN2001) or its stem.

    The clips of one series share their participants, so cross-validation keeps them together.
    """
    parts = path.stem.split("-")
    return parts[1][:6] if parts[0] == "ami" else path.stem


def fold(path: Path) -> str:
    """The cross-validation fold of a recording: its AMI meeting series, else its whole corpus."""
    return meeting(path) if corpus(path) == "AMI" else corpus(path)


def percentages(details: list[dict]) -> dict[str, float]:
    """Pooled DER and its components, in % of reference speech, from pyannote's detailed results."""
    total = sum(d["total"] for d in details) or 1.0
    parts = {k: 100 * sum(d[k] for d in details) / total for k in ("false alarm", "missed detection", "confusion")}
    return {"der": sum(parts.values()), **parts}


def concatenated_dev(minutes: float) -> np.ndarray:
    """A long input made by repeating the dev clips (fine for timing, not for accuracy)."""
    from diarist.audio import load_audio

    clips = [load_audio(f) for f in dev_files()]
    parts, total, target = [], 0, int(minutes * 60 * 16000)
    while total < target:
        for clip in clips:
            parts.append(clip)
            total += len(clip)
    return np.concatenate(parts)[:target]


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
