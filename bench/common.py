"""Shared helpers for the benchmarks: the dev set, scoring and long test inputs."""

from __future__ import annotations

import platform
import wave
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

DEV = Path(__file__).parent / "data" / "dev"


def dev_files() -> list[Path]:
    return sorted(DEV.glob("*.wav"))


def load_rttm(path: Path) -> Annotation:
    annotation = Annotation(uri=path.stem)
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            annotation[Segment(start, start + duration)] = fields[7]
    return annotation


def to_annotation(turns, uri: str) -> Annotation:
    annotation = Annotation(uri=uri)
    for turn in turns:
        annotation[Segment(turn.start, turn.end)] = turn.speaker
    return annotation


def der_metric() -> DiarizationErrorRate:
    """The 'full' condition: no collar, overlapped speech scored."""
    return DiarizationErrorRate(collar=0.0, skip_overlap=False)


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
