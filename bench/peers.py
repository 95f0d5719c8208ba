"""senko 0.2.2 on CPU, the peer every benchmark compares against (pip install -r bench/requirements.txt)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from diarist.result import Turn


@cache
def _diarizer():
    import senko

    return senko.Diarizer(device="cpu", warmup=True, quiet=True)


def senko_diarize(wav: Path) -> list[Turn]:
    """Turns from senko for a 16 kHz mono 16-bit WAV (its only accepted input)."""
    result = _diarizer().diarize(str(wav))
    segments = result["merged_segments"] if result else []
    return [Turn(s["start"], s["end"], str(s["speaker"])) for s in segments]
