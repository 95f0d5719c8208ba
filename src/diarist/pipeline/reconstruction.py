"""Step 4: from clustered windows back to speaker turns on the audio's timeline."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

from diarist.nets.pyannet import FRAME_STEP_SAMPLES, RECEPTIVE_FIELD_SAMPLES, SAMPLE_RATE
from diarist.pipeline.clustering import Clustering, SpeakerBounds, keep_requested_speakers, unit_vectors
from diarist.pipeline.config import PipelineConfig
from diarist.pipeline.segmentation import frame_count
from diarist.result import DiarizationResult, Turn, VoiceSegments

FRAME_STEP = FRAME_STEP_SAMPLES / SAMPLE_RATE
FRAME_CENTER = RECEPTIVE_FIELD_SAMPLES / 2 / SAMPLE_RATE
NO_SPEECH = "No speech was found in this audio."
RANKING_FRAMES = 65536  # frames ranked at once by `binarize` (18 minutes)


def frame_time(index: np.ndarray | int) -> np.ndarray | float:
    """Time (s) of the middle of global frame `index`."""
    return index * FRAME_STEP + FRAME_CENTER


@dataclass
class FrameScores:
    """Window outputs averaged onto the global frame grid."""

    speakers: np.ndarray  # (frames, speakers) share of covering windows where each speaker speaks
    count: np.ndarray  # (frames,) mean over covering windows of how many speakers speak at once
    certainty: np.ndarray  # (frames,) mean probability of the segmentation's decision

    def smoothed(self, frames: int) -> FrameScores:
        """Speaker scores and count averaged over `frames` consecutive frames (centred; 1: unchanged).

        The 10 s windows covering a frame each place a speaker change a frame or two apart, so
        their average is a few coarse levels (1/3, 2/3 under three windows) that trade places
        frame by frame around the change: ranked frame by frame, that gives 17 ms turns. Ranking
        a short running mean instead lets the neighbouring frames decide where the change falls.
        """
        if frames <= 1:
            return self
        return FrameScores(
            speakers=uniform_filter1d(self.speakers, frames, axis=0, mode="nearest"),
            count=uniform_filter1d(self.count, frames, mode="nearest"),
            certainty=self.certainty,
        )


def aggregate_windows(
    activity: np.ndarray, certainty: np.ndarray, clustering: Clustering, step_frames: int, num_frames: int
) -> FrameScores:
    """Average the per-window activity of each global speaker over the windows covering each frame."""
    windows, window_frames, _ = activity.shape
    total = (windows - 1) * step_frames + window_frames if windows else 0
    if total < num_frames:
        raise ValueError(f"{windows} windows cover {total} frames, fewer than the audio's {num_frames}")
    speakers = np.zeros((total, clustering.num_speakers), dtype=np.float32)
    coverage = np.zeros(total, dtype=np.float32)
    count = np.zeros(total, dtype=np.float32)
    certainty_sum = np.zeros(total, dtype=np.float32)
    for w in range(windows):
        frames = slice(w * step_frames, w * step_frames + window_frames)
        coverage[frames] += 1
        count[frames] += activity[w].sum(axis=1)
        certainty_sum[frames] += certainty[w]
        for local, speaker in enumerate(clustering.assignment[w]):
            if speaker >= 0:
                # Two local speakers sent to one global speaker count once.
                own = speakers[frames, speaker]
                own += activity[w, :, local] * (own < coverage[frames])
    # In place: a 4-hour file's speaker scores are 60 MB or more.
    coverage = coverage[:num_frames]
    speakers, count, certainty_sum = speakers[:num_frames], count[:num_frames], certainty_sum[:num_frames]
    speakers /= coverage[:, None]
    count /= coverage
    certainty_sum /= coverage
    return FrameScores(speakers=speakers, count=count, certainty=certainty_sum)


def binarize(scores: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(frames, speakers) bool: in each frame, the `count` highest-scoring speakers that have any score.

    `count` is rounded to the nearest whole number of speakers.
    """
    out = np.zeros(scores.shape, dtype=bool)
    wanted = np.rint(count)
    # In blocks of frames: the two int64 rank arrays of a whole 4-hour file would take 250 MB.
    for start in range(0, len(scores) if scores.shape[1] else 0, RANKING_FRAMES):
        part = scores[start : start + RANKING_FRAMES]
        ranks = np.argsort(np.argsort(-part, axis=1, kind="stable"), axis=1)
        out[start : start + len(part)] = (ranks < wanted[start : start + len(part), None]) & (part > 0)
    return out


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs where `active` is true."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs of equal values in `labels`."""
    change = np.flatnonzero(np.diff(labels)) + 1
    return list(zip(np.concatenate([[0], change]), np.concatenate([change, [len(labels)]]), strict=True))


def clean_exclusive(labels: np.ndarray, scores: np.ndarray, min_gap_frames: int, min_turn_frames: int) -> np.ndarray:
    """(frames,) speaker index per frame (-1: nobody) with short gaps and short turns absorbed.

    A silence shorter than `min_gap_frames` between two turns of one speaker becomes theirs.
    Then every turn shorter than `min_turn_frames` goes to a speaker talking right next to it
    (the one whose `scores` are higher over the turn when both sides talk), or to silence when
    nobody does; each such step merges two runs, so repeating it until no short turn is left
    ends.
    """
    out = labels.copy()
    for start, end in _segments(out)[1:-1]:
        if out[start] < 0 and out[start - 1] == out[end] and end - start < min_gap_frames:
            out[start:end] = out[end]
    while short := [(s, e) for s, e in _segments(out) if out[s] >= 0 and e - s < min_turn_frames]:
        for start, end in short:
            before = out[start - 1] if start > 0 else -1
            after = out[end] if end < len(out) else -1
            if before >= 0 and after >= 0 and before != after:
                span = scores[start:end]
                out[start:end] = before if span[:, before].sum() >= span[:, after].sum() else after
            else:
                out[start:end] = max(before, after)
    return out


def clean_overlapping(active: np.ndarray, min_gap_frames: int, min_turn_frames: int) -> np.ndarray:
    """One speaker's (frames,) activity with gaps shorter than `min_gap_frames` filled, then runs
    shorter than `min_turn_frames` dropped."""
    out = active.copy()
    runs = _runs(active)
    for (_, end), (start, _) in itertools.pairwise(runs):
        if start - end < min_gap_frames:
            out[end:start] = True
    for start, end in _runs(out):
        if end - start < min_turn_frames:
            out[start:end] = False
    return out


def _turn_confidence(
    speaker: int, start: int, end: int, activity: np.ndarray, clustering: Clustering, step_frames: int, sharpness: float
) -> np.ndarray:
    """0-1 probability per global speaker that frames [start, end) belong to them.

    Averages, over the windows that cover the turn, the softmax of the cosine similarities of
    the local speaker that was assigned to `speaker`, weighted by its speech inside the turn.
    """
    window_frames = activity.shape[1]
    first = max(0, -(-(start - window_frames + 1) // step_frames))
    last = min(len(activity) - 1, (end - 1) // step_frames)
    total = np.zeros(clustering.num_speakers)
    for w in range(first, last + 1):
        lo, hi = max(start - w * step_frames, 0), min(end - w * step_frames, window_frames)
        for local in np.flatnonzero(clustering.assignment[w] == speaker):
            weight = activity[w, lo:hi, local].sum()
            if weight:
                logits = sharpness * clustering.similarity[w, local]
                probabilities = np.exp(logits - logits.max())
                total += weight * probabilities / probabilities.sum()
    return total / total.sum() if total.sum() else total


def reconstruct(
    activity: np.ndarray,
    certainty: np.ndarray,
    clustering: Clustering,
    num_samples: int,
    bounds: SpeakerBounds,
    config: PipelineConfig,
    centroids: np.ndarray | None = None,
) -> DiarizationResult:
    """Turn per-window segmentation plus clustering into the final result.

    `centroids` (clustering speakers, dim), when given, become the result's `embeddings` under the
    labels the speakers get here.
    """
    duration = num_samples / SAMPLE_RATE
    scores = aggregate_windows(activity, certainty, clustering, config.step_frames, frame_count(num_samples))
    exclusive, overlapping = speaker_frames(scores.smoothed(config.score_smoothing_frames), bounds, config)
    # Label speakers in order of first speech; clusters that never win a frame disappear.
    first_frame = [
        np.argmax(overlapping[:, k]) if overlapping[:, k].any() else None for k in range(scores.speakers.shape[1])
    ]
    order = sorted((f, k) for k, f in enumerate(first_frame) if f is not None)
    names = {k: f"SPEAKER_{i:02d}" for i, (_, k) in enumerate(order)}

    def turns(binary: np.ndarray) -> list[Turn]:
        return _turns(binary, names, duration, activity, clustering, config)

    return DiarizationResult(
        turns=turns(overlapping),
        exclusive_turns=turns(exclusive),
        speakers=list(names.values()),
        duration=duration,
        confidence=_confidence_curve(scores.certainty, num_samples, config.confidence_resolution),
        confidence_resolution=config.confidence_resolution,
        warnings=_warnings(len(names), bounds, clustering),
        embeddings={} if centroids is None else {name: centroids[k] for k, name in names.items()},
    )


def speaker_segments(
    result: DiarizationResult, middles: np.ndarray, vectors: np.ndarray, hop: float, sources: np.ndarray | None = None
) -> VoiceSegments:
    """Resegmentation's short-segment embeddings (`middles`: the times of their middles, s), each given
    to the speaker who talks alone at its middle and covering `hop` s around it; those at no one's are left out.
    `sources`: the window and local speaker of each (`resegmentation.segment_sources`)."""
    starts = np.array([t.start for t in result.exclusive_turns])
    ends = np.array([t.end for t in result.exclusive_turns])
    turn = np.searchsorted(starts, middles, side="right") - 1  # exclusive turns neither overlap nor touch
    inside = (turn >= 0) & (middles < ends[np.maximum(turn, 0)]) if len(starts) else np.zeros(len(middles), bool)
    keep = np.flatnonzero(inside)
    return VoiceSegments(
        starts=np.maximum(middles[keep] - hop / 2, 0),
        ends=np.minimum(middles[keep] + hop / 2, result.duration),
        labels=np.array([result.exclusive_turns[i].speaker for i in turn[keep]], dtype=str),
        vectors=unit_vectors(vectors[keep].astype(np.float64)).astype(np.float16),
        sources=None if sources is None else sources[keep],
    )


def speaker_frames(smooth: FrameScores, bounds: SpeakerBounds, config: PipelineConfig) -> tuple[np.ndarray, np.ndarray]:
    """(frames, speakers) booleans of who speaks: one speaker at a time, and with overlap, both cleaned
    of gaps under `min_duration_off` and turns under `min_duration_on`."""
    gap = round(config.min_duration_off / FRAME_STEP)
    shortest = int(np.ceil(config.min_duration_on / FRAME_STEP - 1e-9))  # no turn shorter than min_duration_on
    main = binarize(smooth.speakers, np.minimum(smooth.count, 1))
    overlapped = binarize(smooth.speakers, smooth.count) & ~main  # the second speaker, in overlap
    labels = clean_exclusive(_labels(main), smooth.speakers, gap, shortest)
    exclusive = labels[:, None] == np.arange(main.shape[1])
    # Each speaker's exclusive turns are already long enough: only overlap alone can be too short.
    overlapping = np.zeros_like(main)
    for k in range(main.shape[1]):
        overlapping[:, k] = clean_overlapping(exclusive[:, k] | overlapped[:, k], gap, shortest)
    # A requested speaker the clean-up left silent takes its strongest frames back: the count
    # the caller asked for outweighs the shortest-turn rule.
    exclusive = keep_requested_speakers(exclusive, smooth.speakers, bounds.min)
    overlapping = keep_requested_speakers(overlapping, smooth.speakers, bounds.min)
    return exclusive, overlapping


def _turns(
    binary: np.ndarray,
    names: dict[int, str],
    duration: float,
    activity: np.ndarray,
    clustering: Clustering,
    config: PipelineConfig,
) -> list[Turn]:
    """The turns of a (frames, speakers) boolean matrix, each with its per-speaker confidence."""
    out = []
    for k, name in names.items():
        for start, end in _runs(binary[:, k]):
            # Frames are timed by their centre: the last one reaches past the end of the audio,
            # and in audio shorter than half a receptive field the first one does too.
            start_time, end_time = min(frame_time(start), duration), min(frame_time(end), duration)
            if start_time == end_time:
                continue
            probabilities = _turn_confidence(
                k, start, end, activity, clustering, config.step_frames, config.turn_confidence_temperature
            )
            confidence = {names[j]: round(100 * float(probabilities[j])) for j in names}
            out.append(Turn(start_time, end_time, name, confidence))
    return sorted(out, key=lambda t: (t.start, t.end, t.speaker))


def _confidence_curve(certainty: np.ndarray, num_samples: int, resolution: float) -> list[int]:
    """The frames' certainty (0-100) sampled every `resolution` seconds, at the nearest frame."""
    # In samples, not seconds: duration / resolution in floats is a hair above a whole number
    # for some lengths (0.14 s / 0.02 gives 7.000000000000001), which would add a value.
    values = int(np.ceil(num_samples / (resolution * SAMPLE_RATE)))
    samples = np.arange(values) * resolution + resolution / 2
    nearest = np.rint((samples - FRAME_CENTER) / FRAME_STEP).astype(int).clip(0, len(certainty) - 1)
    return np.rint(100 * certainty[nearest]).astype(int).tolist()


def _labels(binary: np.ndarray) -> np.ndarray:
    """(frames,) index of the one active speaker per frame of an exclusive (frames, speakers) matrix, -1 for none."""
    if binary.shape[1] == 0:
        return np.full(len(binary), -1)
    return np.where(binary.any(axis=1), np.argmax(binary, axis=1), -1)


def _warnings(found: int, bounds: SpeakerBounds, clustering: Clustering) -> list[str]:
    """The result's warnings about the count: none is found, fewer than asked, or the clustering's doubts."""
    if found == 0:
        # Doubts about how many voices there are, or advice to ask for more, mean nothing without speech.
        return [NO_SPEECH]
    if found >= bounds.min:
        return clustering.warnings
    return [
        f"Only {found} speaker(s) could be told apart in this audio, fewer than the {bounds.min} requested: "
        "it holds too little speech for more.",
        *clustering.warnings,
    ]
