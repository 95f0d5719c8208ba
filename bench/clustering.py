"""Clustering methods compared on cached window analyses: cross-validated DER (dev and wide) and long-form.

    python bench/clustering.py [--model community-1 precision-2] [--seeds 0 1 2] [--repeats 3 9]

Segmentation and embeddings (the expensive part) run once per file, model and long recording
and are cached as .npz under --cache; each method then re-runs only clustering and
reconstruction, so a comparison takes minutes.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import der_metric, fold, machine, percentages
from cv import FILES, cross_validate, details, groups_by, hypothesis
from longform import long_recording
from pyannote.core import Annotation

from diarist.audio import load_audio
from diarist.pipeline import WindowAnalysis, analyse_windows
from diarist.pipeline.config import CONFIGS, PipelineConfig

NEVER = 10**9  # a `many_speakers` no recording reaches: the distance cut alone
# Each method: the fields it sets, and the grid cross-validation tunes it on.
METHODS: dict[str, tuple[dict, dict[str, list]]] = {
    "one cut, 2 % fold (before)": (
        {"many_speakers": NEVER, "min_cluster_share": 0.02},
        {"clustering_threshold": [0.7, 0.8, 0.9], "refinement_rounds": [0, 1]},
    ),
    "one cut, no fold": (
        {"many_speakers": NEVER, "min_cluster_share": 0.0},
        {"clustering_threshold": [0.7, 0.8, 0.9], "refinement_rounds": [0, 1]},
    ),
    "centred + VBx always": (
        {"many_speakers": 1, "many_speakers_min_duration": 0.0},
        {"vbx_init_threshold": [0.8, 0.85, 0.9, 1.0], "vbx_fa": [0.05, 0.07]},
    ),
    "adaptive: centred + VBx from 6 speakers and 5 minutes (shipped)": (
        {},
        {"clustering_threshold": [0.7, 0.8, 0.9], "refinement_rounds": [0, 1]},
    ),
}
CACHE = Path("/work/cache/cluster")


def cached(path: Path, compute) -> WindowAnalysis:
    """The WindowAnalysis stored at `path`, computed by `compute()` and stored if missing."""
    if path.exists():
        with np.load(path) as stored:
            return WindowAnalysis(
                stored["activity"],
                stored["certainty"],
                stored["embeddings"],
                stored["clean_seconds"],
                int(stored["num_samples"]),
            )
    analysis = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        activity=analysis.activity,
        certainty=analysis.certainty,
        embeddings=analysis.embeddings,
        clean_seconds=analysis.clean_seconds,
        num_samples=analysis.num_samples,
    )
    return analysis


def eval_analyses(config: PipelineConfig, cache: Path) -> dict[str, WindowAnalysis]:
    def analyse(wav: Path) -> WindowAnalysis:
        with torch.inference_mode():
            return analyse_windows([load_audio(wav)], config)

    return {stem: cached(cache / config.name / f"{stem}.npz", lambda w=wav: analyse(w)) for stem, wav in FILES.items()}


def longform_analysis(config: PipelineConfig, repeats: int, seed: int, cache: Path) -> WindowAnalysis:
    def compute() -> WindowAnalysis:
        audio, _ = long_recording(repeats, seed)
        with torch.inference_mode():
            return analyse_windows([audio], config, len(audio))

    return cached(cache / config.name / f"longform-r{repeats}-s{seed}.npz", compute)


def grid_points(fixed: dict, grid: dict[str, list]) -> list[dict]:
    return [fixed | dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def eval_comparison(config: PipelineConfig, analyses: dict[str, WindowAnalysis], points: list[dict]) -> tuple:
    """Cross-validated pooled DER (%) of a method's grid (cv.py's folds), and the point best on the whole set."""
    runs = [{stem: hypothesis(a, replace(config, **p), stem) for stem, a in analyses.items()} for p in points]
    held_out, _ = cross_validate(runs, groups_by(fold))
    whole = [percentages(list(details(run).values()))["der"] for run in runs]
    best = min(range(len(points)), key=whole.__getitem__)
    return percentages(list(details(held_out).values()))["der"], points[best], whole[best]


@functools.cache
def longform_reference(repeats: int, seed: int) -> Annotation:
    return long_recording(repeats, seed)[1]


def longform_scores(config: PipelineConfig, repeats: int, seeds: list[int], cache: Path) -> tuple:
    """Pooled long-form DER components (%), mean speakers found, and mean clustering seconds."""
    metric, found, seconds = der_metric(), [], []
    results = []
    for seed in seeds:
        analysis = longform_analysis(config, repeats, seed, cache)
        reference = longform_reference(repeats, seed)
        start = time.perf_counter()
        annotation = hypothesis(analysis, config, reference.uri)
        seconds.append(time.perf_counter() - start)
        results.append(metric(reference, annotation, detailed=True))
        found.append(len(annotation.labels()))
    return percentages(results), float(np.mean(found)), float(np.mean(seconds))


def compare(model: str, seeds: list[int], repeats_list: list[int], cache: Path) -> None:
    shipped = CONFIGS[model]
    analyses = eval_analyses(shipped, cache)
    print(f"\n### {model}\n")
    print(
        "| method | cross-validated DER % | chosen on the whole set | its DER % (in-sample) "
        "| minutes | long-form DER % | false alarm % | miss % | confusion % | speakers found (of 24) "
        "| clustering + reconstruction s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (fixed, grid) in METHODS.items():
        cross_validated, best, in_sample = eval_comparison(shipped, analyses, grid_points(fixed, grid))
        chosen = replace(shipped, **best)
        tuned = ", ".join(f"{k} {v:g}" for k, v in best.items() if k in grid)
        for repeats in repeats_list:
            p, found, seconds = longform_scores(chosen, repeats, seeds, cache)
            print(
                f"| {name} | {cross_validated:.1f} | {tuned} | {in_sample:.1f} | {20 * repeats // 3} "
                f"| {p['der']:.1f} | {p['false alarm']:.1f} | {p['missed detection']:.1f} | {p['confusion']:.1f} "
                f"| {found:.3g} | {seconds:.1f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 9])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--only-cache", action="store_true", help="build the cache and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads; {machine()}; seeds {args.seeds}")
    for method in set(METHODS) - set(args.methods):
        del METHODS[method]
    for model in args.model:
        if args.only_cache:
            config = CONFIGS[model]
            eval_analyses(config, args.cache)
            for repeats, seed in itertools.product(args.repeats, args.seeds):
                longform_analysis(config, repeats, seed, args.cache)
        else:
            compare(model, args.seeds, args.repeats, args.cache)


if __name__ == "__main__":
    main()
