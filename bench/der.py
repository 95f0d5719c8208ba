"""DER of diarist (and optionally senko) on the dev set, pooled and per file.

python bench/der.py [--model community-1 precision-2] [--senko]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import der_metric, dev_files, load_rttm, to_annotation

import diarist


def score(name: str, run) -> None:
    metric = der_metric()
    start = time.perf_counter()
    rows = []
    for wav in dev_files():
        hypothesis = run(wav)
        reference = load_rttm(wav.with_suffix(".rttm"))
        rows.append((wav.stem, metric(reference, hypothesis, detailed=True)))
    elapsed = time.perf_counter() - start
    print(f"\n## {name}  ({elapsed:.1f} s for {len(rows)} files)")
    print("| file | DER % | false alarm % | miss % | confusion % |")
    print("|---|---|---|---|---|")
    for stem, d in rows:
        total = d["total"] or 1
        print(
            f"| {stem} | {100 * d['diarization error rate']:.1f} | {100 * d['false alarm'] / total:.1f} | "
            f"{100 * d['missed detection'] / total:.1f} | {100 * d['confusion'] / total:.1f} |"
        )
    t = abs(metric)
    d = metric[:]  # accumulated components
    total = d["total"]
    print(
        f"| **pooled** | **{100 * t:.1f}** | {100 * d['false alarm'] / total:.1f} | "
        f"{100 * d['missed detection'] / total:.1f} | {100 * d['confusion'] / total:.1f} |"
    )


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
