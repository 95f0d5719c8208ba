"""Where the live engine's DER gap to offline comes from, on the 20-minute long-form.

    python bench/live_gap.py [--seeds 0 1 2] [--latency 2 9] [--model community-1]

The live engine runs once per seed and its windows (segmentation, embeddings, clean speech) are
kept. They are then played again through the engine's own aggregation and turn building at each
`--latency`, the local speakers mapped to global speakers two ways:

- online: the engine's own incremental clustering (what a stream gets);
- offline-clustered: every window's embeddings clustered at once, after the stream, by the
  offline pipeline's `cluster_embeddings` (the model's config at the live step): what the best
  clustering of the same windows could give, knowing the whole stream in advance.

Next to them, `diarist.diarize` of the same audio. The steps from offline to live are then: the
live windows (offline-clustered, latency 9 s, against offline), the latency (offline-clustered
at `--latency` against 9 s) and the online clustering (online against offline-clustered at the
same latency). DER pooled per seed, no collar, overlap scored.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from common import der_metric, machine, percentages, to_annotation
from live import FRAME
from longform import long_recording

import diarist
from diarist.engine import Engine
from diarist.nets.pyannet import SAMPLE_RATE
from diarist.pipeline.clustering import SpeakerBounds, cluster_embeddings
from diarist.pipeline.config import CONFIGS
from diarist.pipeline.streaming import StreamingDiarizer, turns_from_events


class RecordingDiarizer(StreamingDiarizer):
    """The live engine, keeping each window's (activity, embeddings, clean speech)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.windows: dict[int, tuple] = {}

    def _add_scores(self, window, activity, assignment):
        self.windows.setdefault(window, (activity.copy(), None, None))
        super()._add_scores(window, activity, assignment)

    def _assign(self, activity, embeddings, clean):
        self.windows[self._next_window] = (activity.copy(), embeddings.copy(), clean.copy())
        return super()._assign(activity, embeddings, clean)


class ReplayDiarizer(StreamingDiarizer):
    """The live engine fed recorded windows instead of audio; `table` (window -> assignment), when
    given, replaces the online clustering."""

    def __init__(self, model, latency, engine, windows, table=None, speakers=0):
        super().__init__(model, latency, engine)
        self.windows, self.table = windows, table
        if table is not None:
            self._centroids = np.ones((speakers, self._centroids.shape[1]), np.float32)

    def _process_window(self):
        k = self._next_window
        activity, embeddings, clean = self.windows[k]
        if embeddings is None:
            assignment = np.full(activity.shape[1], -1)
        elif self.table is not None:
            assignment = self.table[k]
        else:
            assignment = self._assign(activity, embeddings, clean)
        self._add_scores(k, activity, assignment)
        self._next_window += 1
        self._audio, self._audio_base = self._audio[:0], self._num_samples  # never read here


def turns_of(diarizer: StreamingDiarizer, num_samples: int, audio: np.ndarray | None = None) -> list:
    """Feed 100 ms frames (of `audio`, or of silence for a replay) and rebuild the client's turns."""
    events = []
    for start in range(0, num_samples, FRAME):
        chunk = audio[start : start + FRAME] if audio is not None else np.zeros(min(FRAME, num_samples - start))
        events += diarizer.feed(chunk)
    events += diarizer.finish()
    return turns_from_events(events, diarizer.duration)


def offline_table(windows: dict, model: str, step_frames: int) -> tuple[dict, int]:
    """Each embedded window's assignment by the offline clustering of all of them at once."""
    embedded = sorted(k for k, (_, e, _) in windows.items() if e is not None)
    embeddings = np.stack([windows[k][1] for k in embedded])
    clean = np.stack([windows[k][2] for k in embedded])
    config = replace(CONFIGS[model], step_frames=step_frames)
    clustering = cluster_embeddings(embeddings, clean, SpeakerBounds(), config)
    return {k: clustering.assignment[i] for i, k in enumerate(embedded)}, clustering.num_speakers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latency", type=float, nargs="+", default=[2.0, 9.0])
    parser.add_argument("--model", default="community-1")
    args = parser.parse_args()
    engine = Engine(device="cpu", threads=1)
    engine.load()
    print(f"{machine()}; 1 torch thread; model {args.model}")
    for seed in args.seeds:
        audio, reference = long_recording(3, seed)

        def score(turns: list, reference=reference) -> str:
            p = percentages([der_metric()(reference, to_annotation(turns, "longform"), detailed=True)])
            parts = f"FA {p['false alarm']:4.1f}, miss {p['missed detection']:4.1f}, conf {p['confusion']:4.1f}"
            return f"{p['der']:5.1f} % ({parts})"

        with torch.inference_mode():
            offline = diarist.diarize(audio, model=args.model, sample_rate=SAMPLE_RATE, engine=engine).turns
        print(f"seed {seed}  offline diarize                 {score(offline)}", flush=True)
        recorder = RecordingDiarizer(args.model, max(args.latency), engine)
        turns_of(recorder, len(audio), audio)
        table, speakers = offline_table(recorder.windows, args.model, recorder.config.step_frames)
        for latency in args.latency:
            online = ReplayDiarizer(args.model, latency, engine, recorder.windows)
            clustered = ReplayDiarizer(args.model, latency, engine, recorder.windows, table, speakers)
            print(f"seed {seed}  latency {latency:g} s  online          {score(turns_of(online, len(audio)))}")
            print(f"seed {seed}  latency {latency:g} s  offline-clustered {score(turns_of(clustered, len(audio)))}")


if __name__ == "__main__":
    main()
