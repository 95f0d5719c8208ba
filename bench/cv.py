"""Cross-validated DER on the dev set: hyperparameters tuned on some meetings, scored on others.

    python bench/cv.py [--model community-1 precision-2] [--threads 2]

Folds: leave one meeting out. The 13 dev files come from 8 recordings (7 AMI meeting series,
whose clips share participants, and the pyannote sample); each fold holds out one of them. For
each fold, the grid point with the lowest pooled DER on the other folds' files is chosen, then
scored on the held-out files. Each file is scored exactly once, so the pool of the held-out
scores is the cross-validated DER. Beside it: the shipped config (tuned on the whole set) and
the best grid point on the whole set, both in-sample.

The window step stays the model's own (it is what sets the two models apart, and changing it
means segmenting again). Segmentation and embeddings run once per file and model; each grid
point re-runs only clustering and reconstruction.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import torch
from common import COLLAR_0_25, der_metric, dev_files, load_rttm, machine, meeting, percentages, to_annotation
from pyannote.core import Annotation

from diarist.audio import load_audio
from diarist.pipeline import WindowAnalysis, analyse_windows, find_speakers
from diarist.pipeline.clustering import SpeakerBounds
from diarist.pipeline.config import CONFIGS, PipelineConfig
from diarist.pipeline.reconstruction import reconstruct

# The knobs the shipped configs are tuned on that need no new segmentation: 160 points, and
# twice that for a model that resegments.
GRID = {
    "clustering_threshold": [0.7, 0.75, 0.8, 0.85, 0.9],
    "min_clean_speech": [0.5, 1.0],
    "min_duration_off": [0.0, 0.25],
    "refinement_rounds": [0, 1],
    "score_smoothing_frames": [1, 5],
    "min_duration_on": [0.1, 0.25],
}
RESEGMENTATION_GRID = {"resegmentation_switch_penalty": [0.05, 0.2]}
SHORT_NAMES = {"clustering_threshold": "threshold", "min_clean_speech": "min clean s", "min_duration_off": "gap fill s"}
SHORT_NAMES |= {"score_smoothing_frames": "smoothing frames", "min_duration_on": "shortest turn s"}
SHORT_NAMES |= {"resegmentation_switch_penalty": "reseg penalty"}


def grid(config: PipelineConfig) -> dict[str, list]:
    """The knobs tuned for `config`: resegmentation's only where the model resegments."""
    return GRID | (RESEGMENTATION_GRID if config.resegmentation else {})


def analyse(wav: Path, config: PipelineConfig) -> WindowAnalysis:
    """Segmentation and embeddings of one file: the expensive part, done once."""
    with torch.inference_mode():
        return analyse_windows([load_audio(wav)], config)


def hypothesis(analysis: WindowAnalysis, config: PipelineConfig, uri: str) -> Annotation:
    """Clustering and reconstruction only, as `diarist.diarize` runs them with no speaker count."""
    bounds = SpeakerBounds()
    activity, clustering = find_speakers(analysis, bounds, config)
    result = reconstruct(activity, analysis.certainty, clustering, analysis.num_samples, bounds, config)
    return to_annotation(result.turns, uri)


REFERENCES = {wav.stem: load_rttm(wav.with_suffix(".rttm")) for wav in dev_files()}


def details(hypotheses: dict[str, Annotation], collar: float = 0.0) -> dict[str, dict]:
    """pyannote's detailed DER of each file's hypothesis; `percentages` pools them."""
    metric = der_metric(collar)
    return {stem: metric(REFERENCES[stem], h, detailed=True) for stem, h in hypotheses.items()}


def pooled(hypotheses: dict[str, Annotation], collar: float = 0.0) -> float:
    return percentages(list(details(hypotheses, collar).values()))["der"]


def folds() -> dict[str, list[str]]:
    """The dev files' stems grouped by the meeting they come from."""
    grouped: dict[str, list[str]] = {}
    for wav in dev_files():
        grouped.setdefault(meeting(wav), []).append(wav.stem)
    return grouped


def leave_one_meeting_out(scores: list[dict[str, dict]]) -> dict[str, tuple[int, float, float]]:
    """For each held-out meeting: the grid point (index into `scores`) with the lowest pooled DER on
    the other meetings' files, that DER, and the point's pooled DER on the held-out files."""
    chosen = {}
    for name, test in folds().items():
        tuning = [percentages([d for stem, d in s.items() if stem not in test])["der"] for s in scores]
        best = min(range(len(scores)), key=tuning.__getitem__)  # ties: the first in grid order
        chosen[name] = (best, tuning[best], percentages([scores[best][stem] for stem in test])["der"])
    return chosen


def cross_validate(model: str) -> None:
    shipped = CONFIGS[model]
    analyses = {wav.stem: analyse(wav, shipped) for wav in dev_files()}
    knobs = grid(shipped)
    points = [dict(zip(knobs, values, strict=True)) for values in itertools.product(*knobs.values())]
    runs = [{stem: hypothesis(a, replace(shipped, **p), stem) for stem, a in analyses.items()} for p in points]
    scores = [details(run) for run in runs]  # every grid point on every file
    shipped_run = {stem: hypothesis(a, shipped, stem) for stem, a in analyses.items()}

    print(f"\n## {model} (step {shipped.step_seconds:.2f} s)\n")
    names = " | ".join(SHORT_NAMES.get(k, k) for k in knobs)
    print(f"| held-out meeting | files | {names} | tuning DER % | held-out DER % | shipped config on it, DER % |")
    print("|---|---|" + "---|" * len(knobs) + "---|---|---|")
    held_out: dict[str, Annotation] = {}
    for name, (best, tuning, tested) in leave_one_meeting_out(scores).items():
        test = folds()[name]
        held_out.update({stem: runs[best][stem] for stem in test})
        values = " | ".join(f"{v:g}" for v in points[best].values())
        in_sample = percentages(list(details({stem: shipped_run[stem] for stem in test}).values()))["der"]
        print(f"| {name} | {len(test)} | {values} | {tuning:.1f} | {tested:.1f} | {in_sample:.1f} |")

    whole = [percentages(list(s.values()))["der"] for s in scores]
    best = min(range(len(points)), key=whole.__getitem__)
    values = ", ".join(f"{SHORT_NAMES.get(k, k)} {v:g}" for k, v in points[best].items())
    print(f"\n| {model}, pooled over the {len(analyses)} files | DER % | DER % (0.25 s collar) |")
    print("|---|---|---|")
    for name, run in (
        ("**cross-validated**", held_out),
        ("shipped config (tuned on the whole set)", shipped_run),
        (f"best grid point on the whole set ({values})", runs[best]),
    ):
        print(f"| {name} | {pooled(run):.1f} | {pooled(run, COLLAR_0_25):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    knobs = "; ".join(f"{k} {v}" for k, v in (GRID | RESEGMENTATION_GRID).items())
    print(f"{args.threads} threads; {machine()}\ngrid: {knobs}")
    for model in args.model:
        cross_validate(model)


if __name__ == "__main__":
    main()
