"""Cross-validated DER and speaker counts over every corpus with a reference, both models and senko.

    python bench/cv.py [--model community-1 precision-2] [--threads 2] [--cache DIR] [--no-senko]

Input: the 21 recordings of `bench/data/dev` and `bench/data/wide`, in three corpora: AMI (12
meeting clips), calls (6 HarperValleyBank calls and the pyannote sample) and other (a
two-person conversation in English, a short French exchange).

Folds: one per AMI meeting series (its clips share participants), one for the calls, one for the
other recordings. For each fold, the grid point with the lowest pooled DER on every other fold's
files is chosen, then scored on the held-out files: each file is scored exactly once, by a setting
chosen without it, and the pool of those scores is the cross-validated DER. A second scheme holds
out a whole corpus at a time (3 folds): tuned on the meetings alone, how does it do on calls?

Printed per corpus and pooled: DER with false alarm, miss and confusion, the 0.25 s collar figure,
and the speaker count (files exactly right, mean absolute error), for the cross-validated runs,
the shipped configs (in-sample) and senko 0.2.2 (when installed: `pip install -r
bench/requirements.txt`), all in this one run.

The last table also gives, per file, the most speakers any clustering could find: the number of
reference speakers who are the main voice of at least one local speaker of the segmentation (a
speaker who never is cannot get a cluster of window embeddings). Its total is the ceiling of
"count exactly right" for a clustering of those embeddings, however good.

Segmentation and embeddings run once per file and model (cached under `--cache` when given); each
grid point re-runs only clustering and reconstruction, through the engine's own functions.
"""

from __future__ import annotations

import argparse
import itertools
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import COLLAR_0_25, corpus, der_metric, eval_files, fold, load_rttm, machine, percentages, to_annotation
from pyannote.core import Annotation

from diarist.audio import load_audio
from diarist.pipeline import WindowAnalysis, analyse_windows, find_speakers
from diarist.pipeline.clustering import SpeakerBounds
from diarist.pipeline.config import CONFIGS, PipelineConfig
from diarist.pipeline.reconstruction import frame_time, reconstruct

# How embeddings are grouped into speakers (linkage and its euclidean cut between unit vectors),
# how much lower narrow-band audio is cut, then the knobs that need no new segmentation. A fold
# with no narrow-band audio to tune on leaves the shift at 0, the first value.
GRID = {
    "clustering": [("centroid", t) for t in (0.7, 0.75, 0.8, 0.85)] + [("average", t) for t in (0.84, 0.87, 0.9, 0.93)],
    "narrowband_threshold_shift": [0.0, -0.05],
    "min_clean_speech": [0.5, 1.0],
    "min_duration_off": [0.0, 0.25],
    "refinement_rounds": [0, 1],
    "score_smoothing_frames": [1, 5],
}
RESEGMENTATION_GRID = {"resegmentation_switch_penalty": [0.05, 0.2]}
CORPORA = ("AMI", "calls", "other")
FILES = {wav.stem: wav for wav in eval_files()}
REFERENCES = {stem: load_rttm(wav.with_suffix(".rttm")) for stem, wav in FILES.items()}


def configured(shipped: PipelineConfig, point: dict) -> PipelineConfig:
    """`shipped` with one grid point's values."""
    point = dict(point)
    linkage, threshold = point.pop("clustering")
    return replace(shipped, clustering_linkage=linkage, clustering_threshold=threshold, **point)


def grid_points(config: PipelineConfig) -> list[dict]:
    knobs = GRID | (RESEGMENTATION_GRID if config.resegmentation else {})
    return [dict(zip(knobs, values, strict=True)) for values in itertools.product(*knobs.values())]


def analyses(model: str, cache: Path | None) -> dict[str, WindowAnalysis]:
    """Segmentation and embeddings of every file, with the bandwidth that chooses its cut: the
    expensive part, done once (per cache)."""
    path = cache / f"{model}.pkl" if cache else None
    if path and path.exists():
        return pickle.loads(path.read_bytes())
    with torch.inference_mode():
        out = {stem: analyse_windows([load_audio(wav)], CONFIGS[model]) for stem, wav in FILES.items()}
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


def hypothesis(analysis: WindowAnalysis, config: PipelineConfig, uri: str) -> Annotation:
    """Clustering and reconstruction only, as `diarist.diarize` runs them with no speaker count."""
    bounds = SpeakerBounds()
    activity, clustering = find_speakers(analysis, bounds, config)
    result = reconstruct(activity, analysis.certainty, clustering, analysis.num_samples, bounds, config)
    return to_annotation(result.turns, uri)


def details(hypotheses: dict[str, Annotation], collar: float = 0.0) -> dict[str, dict]:
    """pyannote's detailed DER of each file's hypothesis; `percentages` pools them."""
    metric = der_metric(collar)
    return {stem: metric(REFERENCES[stem], h, detailed=True) for stem, h in hypotheses.items()}


def pooled_der(scores: dict[str, dict], stems: list[str]) -> float:
    return percentages([scores[stem] for stem in stems])["der"]


def cross_validate(runs: list[dict[str, Annotation]], groups: dict[str, list[str]]) -> tuple[dict, dict]:
    """Hold out each group in turn: the point best on the rest, scored on it. Returns the held-out
    hypotheses and, per group, the chosen point's index."""
    scores = [details(run) for run in runs]
    held_out, chosen = {}, {}
    for name, test in groups.items():
        rest = [stem for stem in FILES if stem not in test]
        best = min(range(len(runs)), key=lambda i: pooled_der(scores[i], rest))  # ties: the first in grid order
        chosen[name] = best
        held_out.update({stem: runs[best][stem] for stem in test})
    return held_out, chosen


def groups_by(key) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for stem, wav in FILES.items():
        grouped.setdefault(key(wav), []).append(stem)
    return grouped


def count_summary(hypotheses: dict[str, Annotation], stems: list[str]) -> str:
    """Files whose number of speakers is exactly the reference's, and the mean absolute error."""
    errors = [abs(len(hypotheses[s].labels()) - len(REFERENCES[s].labels())) for s in stems]
    return f"{sum(e == 0 for e in errors)}/{len(stems)} | {sum(errors) / len(stems):.2f}"


def table(systems: dict[str, dict[str, Annotation]]) -> None:
    """DER (parts, collar) and count per corpus and pooled, one row per system and corpus."""
    columns = ("DER %", "false alarm", "miss", "confusion", "DER %, 0.25 s collar", "count exactly right", "count MAE")
    print("| system | corpus | " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, hypotheses in systems.items():
        full, collared = details(hypotheses), details(hypotheses, COLLAR_0_25)
        for part in (*CORPORA, "pooled"):
            stems = [s for s in FILES if part in ("pooled", corpus(FILES[s]))]
            p = percentages([full[s] for s in stems])
            c = percentages([collared[s] for s in stems])["der"]
            parts = (p["der"], p["false alarm"], p["missed detection"], p["confusion"], c)
            row = " | ".join(f"{v:.1f}" for v in parts)
            print(f"| {name} | {part} | {row} | {count_summary(hypotheses, stems)} |")


def reachable_speakers(analysis: WindowAnalysis, config: PipelineConfig, reference: Annotation) -> int:
    """Reference speakers who are the main voice of at least one (window, local speaker): the
    most that any clustering of the window embeddings can tell apart."""
    owners = set()
    times = frame_time(np.arange(analysis.activity.shape[1]))
    for window, local in np.argwhere(analysis.activity.any(axis=1)):
        spoken = window * config.step_seconds + times[analysis.activity[window, :, local]]
        heard = dict.fromkeys(reference.labels(), 0)
        for segment, _, label in reference.itertracks(yield_label=True):
            heard[label] += int(((spoken >= segment.start) & (spoken < segment.end)).sum())
        if heard and max(heard.values()) > 0:
            owners.add(max(heard, key=heard.get))
    return len(owners)


def counts(systems: dict[str, dict[str, Annotation]], reachable: dict[str, dict[str, int]]) -> None:
    """Speakers found in each file by each system, against the reference and against the most
    each model's segmentation leaves reachable."""
    print("| file | reference | " + " | ".join([*systems, *(f"{m}, reachable" for m in reachable)]) + " |")
    print("|---|---|" + "---|" * (len(systems) + len(reachable)))
    for stem in FILES:
        found = [str(len(h[stem].labels())) for h in systems.values()] + [str(r[stem]) for r in reachable.values()]
        print(f"| {stem} | {len(REFERENCES[stem].labels())} | {' | '.join(found)} |")
    for model, reached in reachable.items():
        right = sum(reached[stem] == len(REFERENCES[stem].labels()) for stem in FILES)
        print(f"\n{model}: a perfect clustering could count {right}/{len(FILES)} files right")


def evaluate(model: str, windows: dict[str, WindowAnalysis]) -> dict[str, dict[str, Annotation]]:
    """Cross-validated and shipped hypotheses of one model, with the choices each fold made."""
    shipped = CONFIGS[model]
    points = grid_points(shipped)
    runs = [{stem: hypothesis(a, configured(shipped, p), stem) for stem, a in windows.items()} for p in points]
    out = {}
    print(f"\n### {model}: the point each fold chose\n")
    print("| scheme | held out | " + " | ".join(points[0]) + " |")
    print("|---|---|" + "---|" * len(points[0]))
    for scheme, key in (("folds", fold), ("corpora", corpus)):
        held_out, chosen = cross_validate(runs, groups_by(key))
        for name, best in chosen.items():
            print(f"| {scheme} | {name} | " + " | ".join(str(v) for v in points[best].values()) + " |")
        out[f"{model}, cross-validated by {scheme}"] = held_out
    out[f"{model}, shipped (in-sample)"] = {stem: hypothesis(a, shipped, stem) for stem, a in windows.items()}
    return out


def senko_run() -> dict[str, dict[str, Annotation]]:
    try:
        from peers import senko_diarize
    except ImportError:
        return {}
    try:
        return {"senko 0.2.2": {stem: to_annotation(senko_diarize(wav), stem) for stem, wav in FILES.items()}}
    except ImportError as error:
        print(f"\nsenko not run ({error}): pip install -r bench/requirements.txt")
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep each model's window analyses here")
    parser.add_argument("--no-senko", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads; {machine()}; {len(FILES)} files")
    systems: dict[str, dict[str, Annotation]] = {}
    reachable: dict[str, dict[str, int]] = {}
    for model in args.model:
        windows = analyses(model, args.cache)
        systems |= evaluate(model, windows)
        reachable[model] = {s: reachable_speakers(a, CONFIGS[model], REFERENCES[s]) for s, a in windows.items()}
    if not args.no_senko:
        systems |= senko_run()
    print("\n### DER and speaker count per corpus\n")
    table(systems)
    print("\n### Speakers found per file\n")
    counts(systems, reachable)


if __name__ == "__main__":
    main()
