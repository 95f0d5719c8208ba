"""Peak resident memory (RSS) of one diarization, each in a fresh process.

    python bench/memory.py [--runs community-1:30 community-1:240 precision-2:30]

MODEL:MINUTES pairs; the input is the dev clips repeated into one 16 kHz WAV on disk, so the
file is decoded as a stream, as a user's would be.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
from common import dev_files, machine

from diarist.audio import load_audio

CHILD = """
import resource, sys, time, torch
torch.set_num_threads(2)
import diarist
from diarist.engine import python_engine
python_engine().load()
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = diarist.diarize(sys.argv[1], model=sys.argv[2])
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(idle / 1024, peak / 1024, elapsed, len(result.speakers))
"""


def write_long_wav(path: Path, minutes: float) -> None:
    clips = [(np.clip(load_audio(f), -1, 1) * 32767).astype("<i2").tobytes() for f in dev_files()]
    remaining = int(minutes * 60 * 16000) * 2
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        while remaining > 0:
            for clip in clips:
                out.writeframes(clip[:remaining])
                remaining -= min(len(clip), remaining)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", nargs="+", default=["community-1:30", "precision-2:30", "community-1:240"])
    args = parser.parse_args()
    print(f"{machine()}; 2 threads\n")
    print("| model | input | RSS after loading models (MB) | peak RSS (MB) | time (s) | speakers |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            model, minutes = run.split(":")
            wav = Path(tmp) / f"{minutes}.wav"
            if not wav.exists():
                write_long_wav(wav, float(minutes))
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(wav), model], capture_output=True, text=True, check=True
            )
            idle, peak, elapsed, speakers = (float(v) for v in out.stdout.split())
            print(f"| {model} | {minutes} min WAV | {idle:.0f} | {peak:.0f} | {elapsed:.0f} | {speakers:.0f} |")


if __name__ == "__main__":
    main()
