"""Live diarization: audio in as it arrives, speaker start and end events out (pyannoteAI's streaming protocol).

A rolling 10 s window ends at the newest audio and moves on every `step`. Each window is
segmented by the offline pipeline's model (`segment_windows`), each of its active local speakers
is embedded (`pool_embeddings`) from CAM++ backbone features computed once per piece of new audio,
and the local speakers are mapped onto global speakers incrementally (diart's online clustering:
a Hungarian assignment per window to centroids that only well-embedded speakers create or move;
two speakers whose centroids come to share a voice are merged).
Each global speaker's activity is averaged over the windows covering a frame, and a frame is
decided, for good, once the audio `latency` seconds past it has been seen.

The stream's first windows are zero-padded on the left, so a window is ready as soon as its
last `step` of audio has arrived; all windows sit on the offline pipeline's 16.875 ms frame grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from diarist.engine import Engine, python_engine
from diarist.nets.pyannet import (
    FRAME_STEP_SAMPLES,
    LOCAL_SPEAKERS,
    RECEPTIVE_FIELD_SAMPLES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
)
from diarist.pipeline.config import CONFIGS
from diarist.pipeline.embedding import FEATURE_CHANNELS, FEATURE_STEP_SAMPLES, backbone_features, pool_embeddings
from diarist.pipeline.segmentation import FRAMES_PER_WINDOW, frame_count, segment_windows
from diarist.result import Turn, rebuild_turns

START, END = "diarization_speaker_start", "diarization_speaker_end"
FRAME_STEP = FRAME_STEP_SAMPLES / SAMPLE_RATE
DEFAULT_LATENCY = 2.0  # seconds: bench/live.py, docs/benchmarks.md ("Live streaming engine")
MAX_SPEAKERS = 32  # speakers a stream can have (pyannoteAI tracks 8 at once)
EMBEDDING_SIZE = 192  # CAM++


@dataclass(frozen=True)
class SpeakerEvent:
    """A speaker starting or stopping to talk, `timestamp` seconds from the stream's start."""

    type: str  # START or END
    timestamp: float  # rounded to the millisecond
    speaker: str  # SPEAKER_00, SPEAKER_01, ... in order of first speech, stable for the stream

    def to_json(self) -> dict:
        """The protocol's message: {"type": ..., "data": {"timestamp": ..., "speaker": ...}}."""
        return {"type": self.type, "data": {"timestamp": self.timestamp, "speaker": self.speaker}}


@dataclass(frozen=True)
class StreamingConfig:
    """The live engine's tunables; frame counts are of the 16.875 ms segmentation grid."""

    # Windows every 60 frames (1.01 s). bench/live.py at 2 s latency, pooled DER on 21 recordings:
    # 30 frames 23.6 %, 60 frames 22.2 %, 90 frames 25.5 %; 60 also costs half of 30 per second.
    step_frames: int = 60
    # The backbone runs on each piece of new audio with this much audio before it (its fbank
    # is normalised over the piece and CAM++ gates on means over its input, so a piece needs
    # some history), and runs again on the last `backbone_redo` s of the previous piece, which
    # had no audio after it. Not tuned: the backbone's cost is about half the segmentation's at these values.
    backbone_context: float = 1.5
    backbone_redo: float = 0.5
    # A local speaker needs this much speech without overlap in its window to create a global
    # speaker or move its centroid (the offline `min_clean_speech` of both models).
    min_clean_speech: float = 1.0
    # Cosine distance from every centroid past which a well-embedded local speaker is a new
    # speaker; nearer, the Hungarian assignment may map it to that centroid. bench/live.py at 2 s
    # latency, 30-frame step: 0.35 29.1 %, 0.45 25.3 %, 0.6 24.3 %, 0.7 23.7 %, 0.8 23.6 %; at the
    # 60-frame step 0.6 and 0.8 both give 22.2 % on the 21 recordings, and on the 20-minute long-form
    # (24 voices, `--longform 0` / `1`, with 32 speakers allowed) 0.5 37.3 %, 0.6 33.9 / 42.6 %, 0.7 36.0 %,
    # against 48.4 / 43.1 % for 0.8 with 8 speakers.
    delta_new: float = 0.6
    # A well-embedded local speaker moves its centroid only when nearer than this: a voice taken in
    # because nothing was nearer (under `delta_new`) must not drag a speaker's centroid towards it,
    # or the centroid becomes a mix that draws in more voices. bench/live.py at 2 s latency, long-form
    # seeds 0 / 1 / 2: none 33.9 / 42.6 / 37.2 %, 0.5 30.8 / 40.6 / 34.3 %, 0.4 30.7 / 40.3 / 31.8 %,
    # 0.3 29.6 / 48.1 / 31.8 %; the 21 recordings 22.2 % at 0.4 as without it.
    delta_update: float = 0.4
    # A frame is a speaker's when it is in this share of the covering windows' activity (0.4
    # measured 25.1 % against 0.5's 23.6 % at 2 s latency, 30-frame step: more false alarm).
    onset: float = 0.5
    # A window's activity counts less for its last frames, which it saw with little audio after
    # them: `edge_weight` at its right edge, rising to 1 at `edge_ramp` s from it. Below 2 s of
    # latency a frame is decided from one or two windows, one of them seeing it at its very edge.
    # bench/live.py, 21 recordings, leave-one-corpus-out over a 7-point grid: 25.3 -> 22.9 % at
    # 0.5 s, 25.6 -> 22.1 % at 1 s, 22.2 -> 22.6 % at 2 s, 19.9 -> 19.3 % at 5 s; (1.0, 0.5) was
    # chosen in 9 of the 12 folds.
    edge_weight: float = 0.5
    edge_ramp: float = 1.0
    # Two speakers whose centroids come within this cosine distance are one voice that the stream
    # split (a second speaker made while the first was taken by another local speaker of a window):
    # the newer one is retired and its voice goes to the older from then on. Only speakers with this
    # much centroid weight (the norm of a sum of unit embeddings: about as many agreeing voices) are
    # merged, and only while the stream has `merge_min_speakers` or more, since a two-person call
    # whose first centroid is a mix of both would merge into one. bench/live_gap.py-style replays at
    # 2 s latency, long-form seeds 0 / 1 / 2: 30.6 / 40.1 / 31.7 % without merging, 30.5 / 33.5 / 30.1 %
    # with (0.22, 3, 3), chosen in each leave-one-seed-out fold; the 21 recordings stay at 22.1 %.
    delta_merge: float = 0.22
    merge_min_weight: float = 3.0
    merge_min_speakers: int = 3
    # Gaps shorter than this inside a speaker's speech are filled, then turns shorter than
    # `min_duration_on` dropped: the offline community-1 values (its cross-validation).
    min_duration_off: float = 0.25
    min_duration_on: float = 0.1
    # Global speakers a stream can have in all; a voice past them goes to the nearest one. pyannoteAI
    # tracks 8 at once; a long meeting has more people (at delta_new 0.6, the long-form's seed 0 went
    # from 43.0 % with 8 to 33.9 % with 32).
    max_speakers: int = MAX_SPEAKERS


@dataclass
class _Track:
    """One global speaker's turn-building state over the decided frames."""

    label: str | None = None  # given at its first emitted start
    open: bool = False  # a start was emitted and no end yet
    run_start: int | None = None  # first frame of the current run of speech (not yet long enough)
    gap_start: int | None = None  # first frame of the current silence inside an open turn


def _frame_start(frame: int) -> float:
    """Start time (s) of audio frame `frame`: its centre less half a step."""
    return (frame * FRAME_STEP_SAMPLES + RECEPTIVE_FIELD_SAMPLES / 2) / SAMPLE_RATE - FRAME_STEP / 2


class StreamingDiarizer:
    """Diarize one live stream: `feed` it audio as it comes, `finish` it at the end.

    `model` picks the offline config whose models it shares (both use the same networks);
    `latency` (seconds) is how much audio past a moment is seen before it is decided; `engine`
    holds the models (default: the Python API's).
    """

    def __init__(
        self,
        model: str = "community-1",
        latency: float = DEFAULT_LATENCY,
        engine: Engine | None = None,
        config: StreamingConfig | None = None,
    ):
        if model not in CONFIGS:
            raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(CONFIGS)}")
        if latency < 0:
            raise ValueError("latency must be 0 or more seconds")
        self.model, self.latency = model, latency
        self.config = config or StreamingConfig()
        self.engine = engine or python_engine()
        self._segmentation = self.engine.segmentation()
        self._embedding = self.engine.embedding()
        self._backbone = self.engine.backbone()
        self._step = self.config.step_frames * FRAME_STEP_SAMPLES
        # Window k covers padded samples [k * step, k * step + 10 s) of the stream after `_pad`
        # zeros: the most whole steps that leave the first window some audio.
        self._pad = (WINDOW_SAMPLES - 1) // self._step * self._step
        self._audio = np.zeros(0, dtype=np.float32)  # samples [_audio_base, _num_samples)
        self._audio_base = 0
        self._num_samples = 0
        self._next_window = 0
        # Backbone features of audio feature frames [_feature_base, _feature_base + width), valid below _features_done.
        self._features = torch.zeros(FEATURE_CHANNELS, 0)
        self._feature_base = 0
        self._features_done = 0
        # Speaker activity summed over windows, and the windows counted, for audio frames from _score_base.
        self._scores = np.zeros((0, self.config.max_speakers), dtype=np.float32)
        self._coverage = np.zeros(0, dtype=np.float32)
        self._score_base = 0
        self._decided = 0  # audio frames decided so far
        self._centroids = np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)  # sums of unit embeddings
        self._retired: set[int] = set()  # speakers merged into an older one: never assigned again
        to_edge = (FRAMES_PER_WINDOW - 1 - np.arange(FRAMES_PER_WINDOW)) * FRAME_STEP
        ramp = self.config.edge_weight + (1 - self.config.edge_weight) * to_edge / max(self.config.edge_ramp, 1e-9)
        self._frame_weights = np.minimum(ramp, 1.0).astype(np.float32)
        self._tracks = [_Track() for _ in range(self.config.max_speakers)]
        self._labels = 0
        self._pending: list[tuple[float, int, int]] = []  # (timestamp, END 0 / START 1, speaker): not yet safe to emit
        self._finished = False

    @property
    def duration(self) -> float:
        """Seconds of audio fed so far."""
        return self._num_samples / SAMPLE_RATE

    @property
    def lag(self) -> float:
        """Seconds of audio fed but not yet decided."""
        if self._finished:
            return 0.0
        return max(0.0, self.duration - max(0.0, _frame_start(self._decided)))

    def feed(self, samples: np.ndarray) -> list[SpeakerEvent]:
        """Any number of float32 16 kHz mono samples (not only whole frames); returns the events now certain."""
        if self._finished:
            raise RuntimeError("the stream is finished")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(samples):
            self._audio = np.concatenate([self._audio, samples])
            self._num_samples += len(samples)
        with torch.inference_mode():
            while self._window_end(self._next_window) <= self._num_samples:
                self._process_window()
        horizon = self._window_end(self._next_window - 1) - self.latency * SAMPLE_RATE
        return self._decide(frame_count(int(horizon)) if horizon > 0 else 0)

    def finish(self) -> list[SpeakerEvent]:
        """End of stream: decide the rest and close every open turn at the stream's duration."""
        if self._finished:
            return []
        total = frame_count(self._num_samples)
        with torch.inference_mode():
            # Zero-padded windows until the last audio frame is covered by one.
            while self._window_first_frame(self._next_window - 1) + FRAMES_PER_WINDOW < total:
                self._process_window()
        events = self._decide(total)
        last = self.duration
        for speaker, track in enumerate(self._tracks):
            if track.open:
                end = _frame_start(track.gap_start) if track.gap_start is not None else last
                self._queue(END, min(end, last), speaker)
                track.open = False
        self._finished = True
        return events + self._release(float("inf"))

    # Windows

    def _window_end(self, window: int) -> int:
        """Audio sample at which window `window` ends (the stream's start counts as sample 0)."""
        return window * self._step + WINDOW_SAMPLES - self._pad

    def _window_first_frame(self, window: int) -> int:
        return (window * self._step - self._pad) // FRAME_STEP_SAMPLES

    def _process_window(self) -> None:
        """Segment, embed and assign the next window, and add its activity to the frame scores."""
        k = self._next_window
        start = k * self._step - self._pad
        window = self._samples(start, start + WINDOW_SAMPLES)
        segmentation = segment_windows(self._segmentation, torch.from_numpy(window), [0])
        activity = segmentation.activity  # (1, 589, 3)
        assignment = np.full(LOCAL_SPEAKERS, -1)
        if activity.any():
            self._compute_features(min(start + WINDOW_SAMPLES, self._num_samples))
            offset = start - self._feature_base * FEATURE_STEP_SAMPLES
            # Frames past the audio or the features hold nothing to pool.
            usable = activity.copy()
            valid_end = min(self._num_samples, self._features_done * FEATURE_STEP_SAMPLES) - start
            usable[:, max(0, valid_end // FRAME_STEP_SAMPLES) :] = False
            embeddings, clean = pool_embeddings(self._embedding, self._features, [offset], usable)
            assignment = self._assign(activity[0], embeddings[0], clean[0])
        self._add_scores(k, activity[0], assignment)
        self._next_window += 1
        self._trim(start + self._step)

    def _samples(self, start: int, end: int) -> np.ndarray:
        """Audio samples [start, end), zeros before the stream's start and after its end so far."""
        out = np.zeros(end - start, dtype=np.float32)
        lo, hi = max(start, self._audio_base), min(end, self._num_samples)
        if hi > lo:
            out[lo - start : hi - start] = self._audio[lo - self._audio_base : hi - self._audio_base]
        return out

    def _compute_features(self, end: int) -> None:
        """Backbone features up to audio sample `end`: new frames, and the last ones again."""
        wanted = end // FEATURE_STEP_SAMPLES
        redo = round(self.config.backbone_redo * SAMPLE_RATE / FEATURE_STEP_SAMPLES)
        context = round(self.config.backbone_context * SAMPLE_RATE / FEATURE_STEP_SAMPLES)
        # After silent windows (not embedded), only the last 10 s are needed.
        first = max(0, min(self._features_done, wanted) - redo, wanted - WINDOW_SAMPLES // FEATURE_STEP_SAMPLES - 1)
        if wanted <= first:
            return
        begin = max(0, first - context)
        chunk = self._samples(begin * FEATURE_STEP_SAMPLES, end)
        features = backbone_features(self._backbone, chunk, np.ones(wanted - begin, dtype=bool), 1e9, 0.0)
        # Keep 10 s of features before the newest frames: the oldest a window still pools.
        keep_from = max(0, wanted - WINDOW_SAMPLES // FEATURE_STEP_SAMPLES - context - 1)
        if keep_from > self._feature_base:
            self._features = self._features[:, keep_from - self._feature_base :]
            self._feature_base = keep_from
        width = wanted - self._feature_base
        if self._features.shape[1] < width:
            grown = torch.zeros(FEATURE_CHANNELS, width)
            grown[:, : self._features.shape[1]] = self._features
            self._features = grown
        new = features[:, first - begin : wanted - begin]
        self._features[:, first - self._feature_base : first - self._feature_base + new.shape[1]] = new
        self._features_done = first + new.shape[1]

    def _trim(self, keep_from: int) -> None:
        """Forget audio before sample `keep_from`, less the backbone's context."""
        config = self.config
        context = int((config.backbone_context + config.backbone_redo) * SAMPLE_RATE) + 2 * FEATURE_STEP_SAMPLES
        keep_from = min(keep_from, self._features_done * FEATURE_STEP_SAMPLES) - context
        if keep_from > self._audio_base:
            self._audio = self._audio[keep_from - self._audio_base :]
            self._audio_base = keep_from

    # Online clustering

    def _assign(self, activity: np.ndarray, embeddings: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """The global speaker of each local speaker of a window (-1: none).

        The Hungarian assignment on cosine distances keeps two local speakers off one global
        speaker; pairs farther than `delta_new` are refused. A refused speaker with enough clean
        speech becomes a new speaker while there is room; one without goes to the nearest
        centroid no local speaker took, as diart does, so short turns of known voices are kept.
        Only well-embedded speakers (clean speech) near their centroid (`delta_update`) move it.
        """
        config = self.config
        assignment = np.full(LOCAL_SPEAKERS, -1)
        active = [k for k in range(LOCAL_SPEAKERS) if activity[:, k].any() and not np.isnan(embeddings[k]).any()]
        if not active:
            return assignment
        vectors = embeddings[active] / np.linalg.norm(embeddings[active], axis=1, keepdims=True)
        strong = clean[active] >= config.min_clean_speech
        speakers = [c for c in range(len(self._centroids)) if c not in self._retired]
        if speakers:
            centroids = self._centroids[speakers] / np.linalg.norm(self._centroids[speakers], axis=1, keepdims=True)
            distances = 1.0 - vectors @ centroids.T
            rows, cols = linear_sum_assignment(distances)
            for r, c in zip(rows, cols, strict=True):
                if distances[r, c] <= config.delta_new:
                    assignment[active[r]] = speakers[c]
        for i, local in enumerate(active):
            if assignment[local] >= 0 or not strong[i] or len(self._centroids) >= config.max_speakers:
                continue
            assignment[local] = len(self._centroids)
            self._centroids = np.concatenate([self._centroids, np.zeros((1, vectors.shape[1]), np.float32)])
        taken = set(assignment[assignment >= 0].tolist())
        for i, local in enumerate(active):
            if assignment[local] >= 0:
                continue
            free = [c for c in range(len(self._centroids)) if c not in taken and c not in self._retired]
            if free:
                nearest = min(free, key=lambda c: 1.0 - vectors[i] @ self._unit(c))
                assignment[local] = nearest
                taken.add(nearest)
        for i, local in enumerate(active):
            speaker = assignment[local]
            if speaker < 0 or not strong[i]:
                continue
            new = not self._centroids[speaker].any()
            if new or 1.0 - vectors[i] @ self._unit(speaker) <= config.delta_update:
                self._centroids[speaker] += vectors[i]
        self._merge_close_speakers()
        return assignment

    def _merge_close_speakers(self) -> None:
        """Retire the newer of two speakers within `delta_merge`, its centroid added to the older's.

        Its label stays (the events already sent keep it); only the voices still to come change
        speaker. Nearest pairs first, until no pair of well-weighted speakers is that close.
        """
        config = self.config
        while True:
            speakers = [c for c in range(len(self._centroids)) if c not in self._retired and self._centroids[c].any()]
            if len(speakers) < max(2, config.merge_min_speakers):
                return
            sums = self._centroids[speakers]
            weights = np.linalg.norm(sums, axis=1)
            units = sums / weights[:, None]
            distances = 1.0 - units @ units.T
            light = weights < config.merge_min_weight
            distances[light, :] = distances[:, light] = np.inf
            np.fill_diagonal(distances, np.inf)
            i, j = np.unravel_index(np.argmin(distances), distances.shape)
            if distances[i, j] > config.delta_merge:
                return
            older, newer = sorted((speakers[i], speakers[j]))
            self._centroids[older] += self._centroids[newer]
            self._retired.add(newer)

    def _unit(self, speaker: int) -> np.ndarray:
        centroid = self._centroids[speaker]
        return centroid / max(float(np.linalg.norm(centroid)), 1e-9)

    # Aggregation and turns

    def _add_scores(self, window: int, activity: np.ndarray, assignment: np.ndarray) -> None:
        """Add a window's activity, per global speaker and weighted by its frames' distance from
        its right edge, to the frames it covers."""
        first = self._window_first_frame(window) - self._score_base
        end = first + FRAMES_PER_WINDOW
        if end > len(self._coverage):
            grow = end - len(self._coverage)
            self._scores = np.concatenate([self._scores, np.zeros((grow, self.config.max_speakers), np.float32)])
            self._coverage = np.concatenate([self._coverage, np.zeros(grow, np.float32)])
        lo = max(first, 0)  # frames before the stream's start are padding
        weights = self._frame_weights[lo - first :]
        self._coverage[lo:end] += weights
        for local, speaker in enumerate(assignment):
            if speaker >= 0:
                self._scores[lo:end, speaker] += activity[lo - first :, local] * weights

    def _decide(self, until: int) -> list[SpeakerEvent]:
        """Decide audio frames up to `until` (exclusive) and return the events now safe to emit."""
        config = self.config
        on_frames = max(1, round(config.min_duration_on / FRAME_STEP))
        off_frames = max(1, round(config.min_duration_off / FRAME_STEP))
        if until > self._decided:
            rows = slice(self._decided - self._score_base, until - self._score_base)
            coverage = np.maximum(self._coverage[rows], 1)
            speaking = self._scores[rows] / coverage[:, None] >= config.onset
            for speaker, track in enumerate(self._tracks):
                if speaker >= len(self._centroids) and not track.open and track.run_start is None:
                    continue
                for i, talking in enumerate(speaking[:, speaker]):
                    self._step_track(speaker, track, self._decided + i, bool(talking), on_frames, off_frames)
            self._decided = until
            drop = until - self._score_base
            self._scores, self._coverage = self._scores[drop:], self._coverage[drop:]
            self._score_base = until
        # An event before this time can no longer be preceded by one still to come.
        safe = _frame_start(self._decided - max(on_frames, off_frames) + 1)
        return self._release(safe)

    def _step_track(
        self, speaker: int, track: _Track, frame: int, talking: bool, on_frames: int, off_frames: int
    ) -> None:
        """One decided frame of one speaker: open a turn once speech lasts `on_frames`, close it once
        silence lasts `off_frames`."""
        if not track.open:
            if not talking:
                track.run_start = None
                return
            if track.run_start is None:
                track.run_start = frame
            if frame - track.run_start + 1 >= on_frames:
                self._queue(START, _frame_start(track.run_start), speaker)
                track.open, track.run_start = True, None
            return
        if talking:
            track.gap_start = None
            return
        if track.gap_start is None:
            track.gap_start = frame
        if frame - track.gap_start + 1 >= off_frames:
            self._queue(END, _frame_start(track.gap_start), speaker)
            track.open, track.gap_start = False, None

    def _queue(self, kind: str, time: float, speaker: int) -> None:
        timestamp = round(min(max(time, 0.0), self.duration), 3)
        # Ends before starts at one timestamp: a speaker's turn closes before the next opens.
        self._pending.append((timestamp, 0 if kind == END else 1, speaker))

    def _release(self, safe: float) -> list[SpeakerEvent]:
        """The pending events before `safe` (seconds), in time order; speakers are named in
        the order they first speak."""
        self._pending.sort()
        safe = round(safe, 3)  # any event still to come is at `safe` or later, once rounded too
        ready = [item for item in self._pending if item[0] < safe]
        self._pending = self._pending[len(ready) :]
        events = []
        for timestamp, order, speaker in ready:
            track = self._tracks[speaker]
            if track.label is None:
                track.label = f"SPEAKER_{self._labels:02d}"
                self._labels += 1
            events.append(SpeakerEvent(END if order == 0 else START, timestamp, track.label))
        return events


def turns_from_events(events: list[SpeakerEvent], duration: float) -> list[Turn]:
    """The turns a client rebuilds from these events (`result.rebuild_turns`)."""
    return rebuild_turns([event.to_json() for event in events], duration)
