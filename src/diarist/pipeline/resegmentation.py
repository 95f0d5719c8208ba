"""Step 3b (precision-2): re-decide who speaks, short segment by short segment.

Clustering gives each (window, local speaker) one global speaker, decided from one embedding of
all of its speech in the 10 s window. But a local speaker of the segmentation sometimes holds two
people (one speaking after the other), and one embedding of both then goes to one of them.

This step embeds short segments (1.5 s, every 0.75 s) of each local speaker's clean speech from
the same backbone features, scores every segment against the cluster centroids, and decodes the
most likely speaker sequence of the local speaker with Viterbi: each segment's score is its
cosine similarity to a speaker plus a prior, the window-level similarity scaled by
`resegmentation_prior`; switching speakers between consecutive segments costs
`resegmentation_switch_penalty`. Where the sequence leaves the clustering's speaker, the local
speaker is split in two: the frames nearest the segments of the most decoded other speaker go to
that speaker, the rest stay with the clustering's. The speech and overlap count of the
segmentation are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diarist.nets.campplus import CAMPPlus
from diarist.nets.pyannet import SAMPLE_RATE
from diarist.pipeline.clustering import Clustering, speaker_centroids, unit_vectors
from diarist.pipeline.config import PipelineConfig
from diarist.pipeline.embedding import FEATURE_STEP_SAMPLES, FEATURES_PER_WINDOW, window_features
from diarist.pipeline.reconstruction import frame_time

FEATURE_SECONDS = FEATURE_STEP_SAMPLES / SAMPLE_RATE
SCORING_ROWS = 65536  # segment embeddings scored at once: bounds their float32 copy
# Two people at most per local speaker: its main speaker, and where the sequence switches, one more.
SPLITS = 2


@dataclass
class SegmentEmbeddings:
    """Short-segment embeddings of each (window, local speaker), kept only for the segments scored.

    Most segments hold too little clean speech of their local speaker to be scored (it is silent
    or overlapped), so only the scored ones are stored: on a 4-hour meeting, the dense array with
    NaN for the rest would take 160 MB.
    """

    scored: np.ndarray  # (windows, 3, segments) bool
    vectors: np.ndarray  # (scored.sum(), dim) float16, in the order of np.nonzero(scored)


def segment_layout(config: PipelineConfig) -> tuple[int, int, int]:
    """Length and hop of the segments in 20 ms backbone frames, and how many fit in a window."""
    length = round(config.resegmentation_segment / FEATURE_SECONDS)
    hop = round(config.resegmentation_hop / FEATURE_SECONDS)
    return length, hop, 1 + (FEATURES_PER_WINDOW - length) // hop


def segment_embeddings(
    model: CAMPPlus, features: torch.Tensor, offsets: list[int], activity: np.ndarray, config: PipelineConfig
) -> SegmentEmbeddings:
    """Embed each local speaker's clean speech in short segments of each window.

    Arguments as for `pool_embeddings`. A segment is scored when it holds at least
    `resegmentation_min_speech` seconds of the local speaker speaking alone.
    """
    gathered, active = window_features(features, offsets, activity)
    clean = active & (active.sum(axis=-1, keepdims=True) == 1)  # (windows, 500, 3)
    length, hop, count = segment_layout(config)
    inside = np.zeros((count, FEATURES_PER_WINDOW), dtype=bool)
    for i in range(count):
        inside[i, i * hop : i * hop + length] = True
    weights = clean.transpose(0, 2, 1)[:, :, None, :] & inside  # (windows, 3, segments, 500)
    windows, speakers = weights.shape[:2]
    device = next(model.parameters()).device
    flat = torch.from_numpy(weights.reshape(windows, speakers * count, -1).astype(np.float32)).to(device)
    embeddings = model.embed(gathered.to(device), flat).cpu().numpy().reshape(windows, speakers, count, -1)
    scored = weights.sum(axis=-1) >= config.resegmentation_min_speech / FEATURE_SECONDS
    return SegmentEmbeddings(scored, embeddings[scored].astype(np.float16))


def segment_middles(segments: SegmentEmbeddings, config: PipelineConfig) -> np.ndarray:
    """The time (s) of the middle of each scored segment, in the order of `segments.vectors`."""
    length, hop, _ = segment_layout(config)
    windows, _, index = np.nonzero(segments.scored)
    return windows * config.step_samples / SAMPLE_RATE + (index * hop + length / 2) * FEATURE_SECONDS


def segment_sources(segments: SegmentEmbeddings) -> np.ndarray:
    """(scored segments, 2): the window and local speaker of each scored segment, in the order of
    `segments.vectors`."""
    windows, speakers, _ = np.nonzero(segments.scored)
    return np.column_stack([windows, speakers]).astype(np.int32)


def viterbi(scores: np.ndarray, switch_penalty: float) -> np.ndarray:
    """Most likely state per step given (steps, states) scores, each change of state costing `switch_penalty`."""
    steps, states = scores.shape
    change = switch_penalty * (1 - np.eye(states))
    best = scores[0].copy()
    back = np.zeros((steps, states), dtype=int)
    for t in range(1, steps):
        candidates = best[:, None] - change  # (previous, next)
        back[t] = np.argmax(candidates, axis=0)
        best = candidates[back[t], np.arange(states)] + scores[t]
    path = np.zeros(steps, dtype=int)
    path[-1] = np.argmax(best)
    for t in range(steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def resegment(
    activity: np.ndarray,
    embeddings: np.ndarray,
    clean_seconds: np.ndarray,
    segments: SegmentEmbeddings,
    clustering: Clustering,
    config: PipelineConfig,
) -> tuple[np.ndarray, Clustering]:
    """Split local speakers whose short segments follow another speaker.

    `activity` (windows, 589, 3), `embeddings` (windows, 3, dim) and `clean_seconds` (windows, 3)
    are the window analysis, `segments` the output of `segment_embeddings`. Returns activity and
    clustering over 6 local slots per window (slot l: local speaker l with the clustering's speaker,
    slot l + 3: the part of it given to a second speaker, if any), which `reconstruct` takes as it
    takes the originals: every active frame stays in exactly one slot, so the overlap count does
    not change.
    """
    windows, frames, speakers = activity.shape
    num_speakers = clustering.num_speakers
    split_activity = np.zeros((windows, frames, SPLITS * speakers), dtype=bool)
    assignment = np.full((windows, SPLITS * speakers), -1)
    similarity = np.zeros((windows, SPLITS * speakers, num_speakers))
    split_activity[:, :, :speakers] = activity
    assignment[:, :speakers] = clustering.assignment
    similarity[:, :speakers] = clustering.similarity
    if num_speakers < 2:
        return split_activity, Clustering(assignment, similarity, clustering.warnings)
    centroids = speaker_centroids(embeddings, clean_seconds, clustering.assignment, num_speakers)
    centroids = centroids.astype(np.float32)
    length, hop, count = segment_layout(config)
    segment_times = (np.arange(count) * hop + length / 2) * FEATURE_SECONDS
    frame_times = frame_time(np.arange(frames))
    scores = np.concatenate(
        [
            unit_vectors(segments.vectors[start : start + SCORING_ROWS].astype(np.float32)) @ centroids.T
            for start in range(0, len(segments.vectors), SCORING_ROWS)
        ]
        or [np.zeros((0, num_speakers), dtype=np.float32)]
    )
    scored_count = segments.scored.sum(axis=-1)  # (windows, 3)
    first_row = (np.cumsum(scored_count) - scored_count.ravel()).reshape(scored_count.shape)
    for w, local in zip(*np.nonzero((scored_count > 0) & (clustering.assignment >= 0)), strict=True):
        window_scores = scores[first_row[w, local] : first_row[w, local] + scored_count[w, local]]
        scored = np.flatnonzero(segments.scored[w, local])
        prior = config.resegmentation_prior * clustering.similarity[w, local]
        path = viterbi(window_scores + prior, config.resegmentation_switch_penalty)
        main = clustering.assignment[w, local]
        if (path == main).all():
            continue
        # Each frame follows the nearest scored segment; the other speaker with the most frames
        # is the second one, and the rest stays with the main speaker.
        nearest = np.abs(frame_times[:, None] - segment_times[scored][None, :]).argmin(axis=1)
        frame_speaker = path[nearest]
        talking = activity[w, :, local]
        counts = np.bincount(frame_speaker[talking], minlength=num_speakers)
        counts[main] = 0
        second = np.argmax(counts)
        if counts[second] == 0:
            continue
        seconds = talking & (frame_speaker == second)
        split_activity[w, :, local] = talking & ~seconds
        split_activity[w, :, local + speakers] = seconds
        assignment[w, local + speakers] = second
        similarity[w, local + speakers] = window_scores[path == second].mean(axis=0)
    return split_activity, Clustering(assignment, similarity, clustering.warnings)
