"""Speaker counting from 1 to 8 voices and 30 s to 2 minutes: recordings built from real voices.

    python bench/voices.py [--model community-1 precision-2] [--voices 1 2 3 4 6 8]
                           [--seconds 30 60 120] [--seeds 0 1 2 3 4] [--threads 2] [--cache DIR]

The recordings with a reference hold 1 to 4 speakers each, with 2 most of the time: too few to
see how the count behaves with 6 voices in 30 s, or 1 voice for two minutes. Here each recording
is a sequence of turns by `voices` people drawn at random (seeded) from everyone in
`bench/data/dev` and `bench/data/wide` with 6 s or more of speech alone, outside the calls: eight
AMI participants (their ids hold across meetings) and one ELAN speaker, all wideband. The calls
are left out: HarperValleyBank's callers and agents are a small pool of people who made many
calls (two "different" callers came out as one voice to both models), and a recording that
mixes telephone and wideband voices would be easier than any real one.
Turns are 2-8 s of one person's speech without overlap, cut in order from their own recordings
(starting over when they run out), the people taking turns in shuffled rounds, 0.2 s of silence
between turns, until the length is reached and everyone has spoken. The reference is exact by
construction.

Printed: per number of voices and length, the share of recordings whose count is exactly right,
the mean count found and the pooled DER.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch
from common import clean_speech, corpus, der_metric, eval_files, load_rttm, machine, percentages
from cv import hypothesis
from pyannote.core import Annotation, Segment

from diarist.audio import load_audio
from diarist.pipeline import WindowAnalysis, analyse_windows
from diarist.pipeline.config import CONFIGS, PipelineConfig

SAMPLE_RATE = 16000
GAP = np.zeros(int(0.2 * SAMPLE_RATE), dtype=np.float32)
MIN_SOLO_SECONDS = 6.0


def person(wav: Path, label: str) -> str:
    """Who `label` of recording `wav` is, across recordings: AMI's participant ids hold across meetings."""
    return label if corpus(wav) == "AMI" else f"{wav.stem}:{label}"


def voices() -> dict[str, list[np.ndarray]]:
    """Each person's pieces of speech alone (0.5 s or longer), in recording order."""
    pieces: dict[str, list[np.ndarray]] = {}
    for wav in eval_files():
        if corpus(wav) == "calls":  # their callers and agents may be one person in several calls
            continue
        audio, reference = load_audio(wav), load_rttm(wav.with_suffix(".rttm"))
        for label in reference.labels():
            segments = clean_speech(reference, label, min_duration=0.5)
            pieces.setdefault(person(wav, label), []).extend(
                audio[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)] for s in segments
            )
    return {who: p for who, p in pieces.items() if sum(map(len, p)) >= MIN_SOLO_SECONDS * SAMPLE_RATE}


def sequence(pool: dict[str, list[np.ndarray]], count: int, seconds: float, seed: int) -> tuple[np.ndarray, Annotation]:
    """`seconds` of turns by `count` people of `pool`, and the reference."""
    rng = np.random.default_rng(1000 * count + seed)
    people = [sorted(pool)[i] for i in rng.choice(len(pool), count, replace=False)]
    streams = {who: np.concatenate(pool[who]) for who in people}
    read = dict.fromkeys(people, 0)
    parts, reference, offset = [], Annotation(uri=f"{count}v-{seconds:g}s-{seed}"), 0
    first_round = True
    while offset < seconds * SAMPLE_RATE:
        for who in rng.permutation(people):
            if offset >= seconds * SAMPLE_RATE and not first_round:  # everyone speaks at least once
                break
            length = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
            stream = streams[who]
            start = read[who] % len(stream)
            turn = stream[start : start + length]
            read[who] = start + len(turn)
            reference[Segment(offset / SAMPLE_RATE, (offset + len(turn)) / SAMPLE_RATE)] = who
            parts += [turn, GAP]
            offset += len(turn) + len(GAP)
        first_round = False
    return np.concatenate(parts), reference


def analysed(
    model: str, recordings: dict[str, tuple[np.ndarray, Annotation]], cache: Path | None
) -> dict[str, WindowAnalysis]:
    path = cache / f"voices-{model}.pkl" if cache else None
    done: dict[str, WindowAnalysis] = pickle.loads(path.read_bytes()) if path and path.exists() else {}
    with torch.inference_mode():
        for name, (audio, _) in recordings.items():
            if name not in done:
                done[name] = analyse_windows([audio], CONFIGS[model])
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(done))
    return done


def count_and_der(analysis: WindowAnalysis, reference: Annotation, config: PipelineConfig) -> tuple[int, dict]:
    found = hypothesis(analysis, config, reference.uri)
    return len(found.labels()), der_metric()(reference, found, detailed=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=list(CONFIGS))
    parser.add_argument("--voices", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 60, 120])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the window analyses here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = voices()
    print(f"{args.threads} threads; {machine()}; {len(pool)} people with {MIN_SOLO_SECONDS:g} s or more alone")
    grid = [(n, s, seed) for n in args.voices for s in args.seconds for seed in args.seeds]
    recordings = {f"{n}v-{s:g}s-{seed}": sequence(pool, n, s, seed) for n, s, seed in grid}
    for model in args.model:
        windows = analysed(model, recordings, args.cache)
        print(f"\n### {model}\n")
        print("| voices | seconds | count exactly right | mean count found | DER % |\n|---|---|---|---|---|")
        right = 0
        for n in args.voices:
            for s in args.seconds:
                names = [f"{n}v-{s:g}s-{seed}" for seed in args.seeds]
                scored = [count_and_der(windows[name], recordings[name][1], CONFIGS[model]) for name in names]
                found = [c for c, _ in scored]
                right += sum(c == n for c in found)
                der = percentages([d for _, d in scored])["der"]
                print(f"| {n} | {s:g} | {sum(c == n for c in found)}/{len(found)} | {np.mean(found):.1f} | {der:.1f} |")
        print(f"\n{model}: count exactly right on {right} of {len(grid)} recordings")


if __name__ == "__main__":
    main()
