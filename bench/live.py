"""The live streaming engine against the offline pipeline: DER, speakers found and speed per latency.

    python bench/live.py [--model community-1] [--latency 0.5 1 2 5] [--threads 1] [--files N]
                         [--set name=value ...] [--no-offline] [--longform SEED]

Input: the 21 recordings of `bench/data/dev` and `bench/data/wide` that have a reference; with
`--longform SEED`, instead the 20-minute recording of `longform.py` (the dev clips three times each,
shuffled by SEED, the same voices coming back: the speakers must stay stable for 20 minutes).
Each file is played through `StreamingDiarizer` in 100 ms frames (1600 samples), as the service
receives them, and the events are turned back into turns as a client does
(`streaming.turns_from_events`). Printed per latency: pooled DER (no collar, overlap scored) with
false alarm, miss and confusion, next to `diarist.diarize` of the same model on the same files;
the files whose speaker count is right; and the streaming engine's compute time per second of
audio (real-time factor, on `--threads` torch threads: one stream's share of the machine).
`--set` overrides a `StreamingConfig` field, for tuning.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace

import torch
from common import der_metric, eval_files, load_rttm, machine, percentages, to_annotation
from longform import long_recording

import diarist
from diarist.audio import load_audio
from diarist.engine import Engine
from diarist.pipeline.streaming import StreamingConfig, StreamingDiarizer, turns_from_events

FRAME = 1600  # 100 ms at 16 kHz: the protocol's frame


def stream(audio, model: str, latency: float, engine: Engine, config: StreamingConfig) -> tuple[list, float]:
    """The turns rebuilt from one file's events, and the engine's compute seconds."""
    diarizer = StreamingDiarizer(model, latency, engine, config)
    events, spent = [], 0.0
    for start in range(0, len(audio), FRAME):
        began = time.perf_counter()
        events += diarizer.feed(audio[start : start + FRAME])
        spent += time.perf_counter() - began
    began = time.perf_counter()
    events += diarizer.finish()
    spent += time.perf_counter() - began
    return turns_from_events(events, diarizer.duration), spent


def parse_set(items: list[str]) -> dict:
    kinds = {f.name: f.type for f in fields(StreamingConfig)}
    out = {}
    for item in items:
        name, value = item.split("=", 1)
        if name not in kinds:
            raise SystemExit(f"no StreamingConfig field {name!r}")
        out[name] = int(value) if kinds[name] in ("int", int) else float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="community-1")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--files", type=int, default=None, help="only the first N files (quick looks)")
    parser.add_argument("--set", nargs="*", default=[], help="StreamingConfig overrides, name=value")
    parser.add_argument("--no-offline", action="store_true")
    parser.add_argument("--longform", type=int, metavar="SEED", help="the 20-minute long-form recording instead")
    args = parser.parse_args()
    config = replace(StreamingConfig(), **parse_set(args.set))
    engine = Engine(device="cpu", threads=args.threads)
    engine.load()
    if args.longform is not None:
        long_audio, long_reference = long_recording(3, args.longform)
        audio, references = {"longform": long_audio}, {"longform": long_reference}
    else:
        files = eval_files()[: args.files]
        audio = {wav.stem: load_audio(wav) for wav in files}
        references = {wav.stem: load_rttm(wav.with_suffix(".rttm")) for wav in files}
    seconds = sum(len(a) for a in audio.values()) / 16000
    print(f"{len(audio)} files, {seconds:.0f} s of audio; {machine()}; {args.threads} torch thread(s)")
    print(f"config: {config}")

    def score(name: str, hypotheses: dict, spent: float | None) -> None:
        metric = der_metric()
        details = [metric(references[s], hypotheses[s], detailed=True) for s in hypotheses]
        p = percentages(details)
        right = sum(len(hypotheses[s].labels()) == len(references[s].labels()) for s in hypotheses)
        rtf = f"{spent / seconds:.3f}" if spent is not None else "-"
        print(
            f"{name:>14}  DER {p['der']:5.1f} %  (FA {p['false alarm']:4.1f}, miss {p['missed detection']:4.1f},"
            f" conf {p['confusion']:4.1f})  count right {right:2d}/{len(hypotheses)}  RTF {rtf}",
            flush=True,
        )

    if not args.no_offline:
        with torch.inference_mode():
            offline = {
                s: to_annotation(diarist.diarize(a, model=args.model, sample_rate=16000, engine=engine).turns, s)
                for s, a in audio.items()
            }
        score("offline", offline, None)
    for latency in args.latency:
        hypotheses, spent = {}, 0.0
        for stem, samples in audio.items():
            turns, took = stream(samples, args.model, latency, engine, config)
            hypotheses[stem] = to_annotation(turns, stem)
            spent += took
        score(f"live {latency:g} s", hypotheses, spent)


if __name__ == "__main__":
    main()
