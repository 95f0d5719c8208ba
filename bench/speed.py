"""Real-time factor with a per-stage breakdown, diarist's models against senko, in one process.

    python bench/speed.py [--minutes 30] [--threads 2] [--no-senko]
    python bench/speed.py --busy [--minutes 5] [--threads 2] [--no-senko]

The input is the dev clips concatenated into one 16 kHz WAV (timing only, not accuracy).
`--busy` times each system idle and beside 1 and 2 competing busy processes (a pure CPU spin
each, pinned to its own core, started here and killed after), and prints the slowdowns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import concatenated_dev, dev_files, machine, write_wav

import diarist

STAGES = ("decode", "segmentation", "embeddings", "clustering", "reconstruction")
SPIN = "while True: pass"


def senko_runner() -> Callable[[Path], int]:
    """senko's diarization as a function of the WAV, loaded and warmed up outside the timing."""
    from peers import _diarizer, senko_diarize

    _diarizer()
    return lambda wav: len({t.speaker for t in senko_diarize(wav)})


def diarist_runner(model: str) -> Callable[[Path], int]:
    return lambda wav: len(diarist.diarize(wav, model=model).speakers)


def start_busy(count: int) -> list[subprocess.Popen]:
    """`count` processes that spin on the CPU, each pinned to its own usable core."""
    cores = sorted(os.sched_getaffinity(0))
    spinners = []
    for i in range(count):
        spinner = subprocess.Popen([sys.executable, "-c", SPIN])
        os.sched_setaffinity(spinner.pid, {cores[i % len(cores)]})
        spinners.append(spinner)
    time.sleep(0.5)  # let them reach the spin
    return spinners


def stop_busy(spinners: list[subprocess.Popen]) -> None:
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def busy_table(wav: Path, runners: dict[str, Callable[[Path], int]]) -> None:
    """Each system idle, then beside 1 and 2 busy processes; times in seconds and slowdowns."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    loads = []
    for busy in (0, 1, 2):
        loads.append(load())
        spinners = start_busy(busy)
        try:
            for name, run in runners.items():
                start = time.perf_counter()
                run(wav)
                times[name].append(time.perf_counter() - start)
        finally:
            stop_busy(spinners)
    print("| system | idle s | 1 busy s | 2 busy s | slowdown, 1 busy | slowdown, 2 busy |")
    print("|---|---|---|---|---|---|")
    for name, (idle, one, two) in times.items():
        print(f"| {name} | {idle:.1f} | {one:.1f} | {two:.1f} | {one / idle:.2f}x | {two / idle:.2f}x |")
    print(f"\nload average (1/5/15 min) before the idle, 1 busy and 2 busy rounds: {'; '.join(loads)}")
    if "senko 0.2.2" in times:
        senko = times["senko 0.2.2"]
        for name, own in times.items():
            if name != "senko 0.2.2":
                ratio = (own[2] / own[0]) / (senko[2] / senko[0])
                print(f"{name}: slowdown with 2 busy / senko's = {ratio:.2f}")


def stage_table(wav: Path, seconds: float, with_senko: bool) -> None:
    """Each system once on an idle machine, with diarist's per-stage times."""
    print("| system | total s | RTF | decode | segmentation | embeddings | clustering | reconstruction | speakers |")
    print("|---|---|---|---|---|---|---|---|---|")
    times = {}
    for model in ("community-1", "precision-2"):
        start = time.perf_counter()
        result = diarist.diarize(wav, model=model)
        total = time.perf_counter() - start
        times[model] = total
        stages = " | ".join(f"{result.timings.get(k, 0):.1f}" for k in STAGES)
        print(f"| diarist {model} | {total:.1f} | {total / seconds:.4f} | {stages} | {len(result.speakers)} |")
    if with_senko:
        run = senko_runner()
        start = time.perf_counter()
        speakers = run(wav)
        total = time.perf_counter() - start
        print(f"| senko 0.2.2 | {total:.1f} | {total / seconds:.4f} | | | | | | {speakers} |")
        for model, own in times.items():
            print(f"\n{model} time / senko time = {own / total:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, help="input length (default: 30, or 5 with --busy)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", action="store_true", help="idle and with 1 and 2 competing busy processes")
    parser.add_argument("--no-senko", action="store_true")
    args = parser.parse_args()
    minutes = args.minutes or (5.0 if args.busy else 30.0)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        write_wav(wav, concatenated_dev(minutes))
        print(f"input: {minutes:g} min of concatenated dev clips; {args.threads} threads; {machine()}; load {load()}\n")
        diarist.diarize(dev_files()[0], model="community-1")  # models loaded and warm before any timing
        if not args.busy:
            stage_table(wav, minutes * 60, not args.no_senko)
            return
        runners = {f"diarist {m}": diarist_runner(m) for m in ("community-1", "precision-2")}
        if not args.no_senko:
            runners["senko 0.2.2"] = senko_runner()
        busy_table(wav, runners)


if __name__ == "__main__":
    main()
