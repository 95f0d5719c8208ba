"""DER of diarist (and optionally senko) on the dev set, pooled and per file.

python bench/der.py [--model community-1 precision-2] [--senko]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import COLLAR_0_25, der_metric, dev_files, load_rttm, percentages, to_annotation

import diarist


def _row(name: str, plain: list[dict], collared: list[dict]) -> str:
    p, c = percentages(plain), percentages(collared)
    return (
        f"| {name} | {p['der']:.1f} | {p['false alarm']:.1f} | {p['missed detection']:.1f} | "
        f"{p['confusion']:.1f} | {c['der']:.1f} |"
    )


def score(name: str, run) -> None:
    """Print the per-file and pooled DER of `run` (a wav path -> hypothesis Annotation)."""
    plain, collared = der_metric(), der_metric(COLLAR_0_25)
    start = time.perf_counter()
    rows = []
    for wav in dev_files():
        hypothesis = run(wav)
        reference = load_rttm(wav.with_suffix(".rttm"))
        rows.append(
            (wav.stem, plain(reference, hypothesis, detailed=True), collared(reference, hypothesis, detailed=True))
        )
    elapsed = time.perf_counter() - start
    print(f"\n## {name}  ({elapsed:.1f} s for {len(rows)} files)")
    print("| file | DER % | false alarm % | miss % | confusion % | DER % (0.25 s collar) |")
    print("|---|---|---|---|---|---|")
    for stem, p, c in rows:
        print(_row(stem, [p], [c]))
    print(_row("**pooled**", [p for _, p, _ in rows], [c for _, _, c in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", nargs="+", default=["community-1", "precision-2"])
    parser.add_argument("--senko", action="store_true", help="also score senko 0.2.2 (needs bench extras)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for model in args.model:
        score(model, lambda wav, m=model: to_annotation(diarist.diarize(wav, model=m).turns, wav.stem))
    if args.senko:
        from peers import senko_diarize

        score("senko 0.2.2", lambda wav: to_annotation(senko_diarize(wav), wav.stem))


if __name__ == "__main__":
    main()
