"""Resegmentation (precision-2): Viterbi decoding and local speakers split on synthetic inputs,
segment embeddings from the real models on the sample."""

import numpy as np
import pytest
import torch

import diarist
from diarist.audio import load_audio
from diarist.pipeline import analyse_windows, find_speakers
from diarist.pipeline.clustering import Clustering, SpeakerBounds
from diarist.pipeline.config import PRECISION_2
from diarist.pipeline.resegmentation import SegmentEmbeddings, resegment, viterbi

from .conftest import SAMPLE

FRAMES, DIM = 589, 192
# precision-2's segments: 1.5 s (75 backbone frames of 20 ms) every 0.75 s, rounded to 38 frames
# (the nearest even number of frames: Python rounds halves to even); 12 fit in a 10 s window.
SEGMENTS = 12
SEGMENT_CENTRES = (np.arange(SEGMENTS) * 38 + 37.5) * 0.02
FRAME_TIMES = (np.arange(FRAMES) * 270 + 495.5) / 16000  # centre of each segmentation frame


def sparse(dense: np.ndarray) -> SegmentEmbeddings:
    """The segment embeddings of a (windows, 3, segments, dim) array with NaN where none was scored."""
    scored = ~np.isnan(dense[..., 0])
    return SegmentEmbeddings(scored, dense[scored].astype(np.float16))


def test_viterbi_follows_the_scores_when_changes_are_free():
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert viterbi(scores, 0.0).tolist() == [0, 1, 0, 1]


def test_viterbi_ignores_a_short_excursion_that_costs_more_than_it_gains():
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [0.4, 0.6], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    # Switching for step 2 gains 0.2 and costs two changes of 0.3; the lasting change at step 4 pays.
    assert viterbi(scores, 0.3).tolist() == [0, 0, 0, 0, 1, 1, 1]


def _voices() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, DIM))
    return a / np.linalg.norm(a), b / np.linalg.norm(b)


def _two_people_in_one_local_speaker():
    """Window 0: A alone; window 1: B alone; window 2: one local speaker holding A then B.

    Clustering gave window 2's local speaker to A (its one embedding mixes both voices); its
    segments say A up to segment 5 and B from segment 6 on.
    """
    a, b = _voices()
    activity = np.zeros((3, FRAMES, 3), dtype=bool)
    activity[:, :, 0] = True
    embeddings = np.full((3, 3, DIM), np.nan, dtype=np.float32)
    embeddings[:, 0] = [a, b, (a + b) / np.linalg.norm(a + b)]
    clean_seconds = np.zeros((3, 3))
    clean_seconds[:, 0] = 10.0
    segments = np.full((3, 3, SEGMENTS, DIM), np.nan, dtype=np.float16)
    segments[0, 0], segments[1, 0] = a, b
    segments[2, 0, :6], segments[2, 0, 6:] = a, b
    assignment = np.array([[0, -1, -1], [1, -1, -1], [0, -1, -1]])
    similarity = np.zeros((3, 3, 2))
    similarity[:, 0] = [[1.0, a @ b], [a @ b, 1.0], [0.7, 0.7]]
    return activity, embeddings, clean_seconds, segments, Clustering(assignment, similarity)


def test_a_local_speaker_holding_two_people_is_split_where_the_voice_changes():
    activity, embeddings, clean_seconds, segments, clustering = _two_people_in_one_local_speaker()
    split, resegmented = resegment(activity, embeddings, clean_seconds, sparse(segments), clustering, PRECISION_2)
    # Frames nearer segment 6's centre than segment 5's are B's.
    b_frames = np.greater(FRAME_TIMES, (SEGMENT_CENTRES[5] + SEGMENT_CENTRES[6]) / 2)
    assert resegmented.assignment[2].tolist() == [0, -1, -1, 1, -1, -1]
    assert (split[2, :, 0] == ~b_frames).all() and (split[2, :, 3] == b_frames).all()
    # Windows with one voice are left alone, and every frame keeps its count of speakers.
    assert resegmented.assignment[:2].tolist() == [[0, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1]]
    assert (split.sum(axis=-1) == activity.sum(axis=-1)).all()


def test_a_one_segment_blip_of_another_voice_is_not_split_off():
    activity, embeddings, clean_seconds, segments, clustering = _two_people_in_one_local_speaker()
    a, b = _voices()
    segments[2, 0] = a
    segments[2, 0, 4] = (0.45 * a + 0.55 * b) / np.linalg.norm(0.45 * a + 0.55 * b)
    split, resegmented = resegment(activity, embeddings, clean_seconds, sparse(segments), clustering, PRECISION_2)
    assert resegmented.assignment[2].tolist() == [0, -1, -1, -1, -1, -1]
    assert (split[2, :, 0] == activity[2, :, 0]).all() and not split[2, :, 3:].any()


def test_one_speaker_and_no_speech_pass_through():
    activity, embeddings, clean_seconds, segments, clustering = _two_people_in_one_local_speaker()
    one = Clustering(np.where(clustering.assignment >= 0, 0, -1), clustering.similarity[..., :1])
    split, resegmented = resegment(activity, embeddings, clean_seconds, sparse(segments), one, PRECISION_2)
    assert (split[..., :3] == activity).all() and not split[..., 3:].any()
    assert (resegmented.assignment[:, 3:] == -1).all()

    silent = np.zeros_like(activity)
    nothing = Clustering(np.full((3, 3), -1), np.zeros((3, 3, 0)))
    nan_segments = np.full_like(segments, np.nan)
    split, resegmented = resegment(
        silent, np.full_like(embeddings, np.nan), clean_seconds * 0, sparse(nan_segments), nothing, PRECISION_2
    )
    assert not split.any() and (resegmented.assignment == -1).all() and resegmented.num_speakers == 0


def test_segments_too_short_to_score_leave_the_clustering_as_it_is():
    activity, embeddings, clean_seconds, segments, clustering = _two_people_in_one_local_speaker()
    segments[2] = np.nan  # e.g. a local speaker with under 0.5 s of clean speech in every segment
    split, resegmented = resegment(activity, embeddings, clean_seconds, sparse(segments), clustering, PRECISION_2)
    assert (split[..., :3] == activity).all() and not split[..., 3:].any()
    assert (resegmented.assignment[:, :3] == clustering.assignment).all()


@pytest.fixture(scope="module")
def sample_analysis():
    with torch.inference_mode():
        return analyse_windows([load_audio(SAMPLE)], PRECISION_2)


def test_segment_embeddings_of_the_sample(sample_analysis):
    segments = sample_analysis.segments
    windows = len(sample_analysis.activity)
    assert segments.scored.shape == (windows, 3, SEGMENTS)
    assert segments.vectors.shape == (segments.scored.sum(), DIM)
    # A local speaker silent in a window has no segment; one speaking alone for all of a segment has one.
    silent = ~sample_analysis.activity.any(axis=1)
    assert not segments.scored[silent].any()
    assert segments.scored.sum() > windows  # the sample's two speakers talk in most windows
    assert (np.linalg.norm(segments.vectors.astype(np.float32), axis=-1) > 0).all()


def test_resegmentation_keeps_the_count_of_speakers_on_the_sample(sample_analysis):
    activity, clustering = find_speakers(sample_analysis, SpeakerBounds(), PRECISION_2)
    assert activity.shape[-1] == 6 and clustering.assignment.shape[-1] == 6
    assert (activity.sum(axis=-1) == sample_analysis.activity.sum(axis=-1)).all()
    assert set(clustering.assignment[clustering.assignment >= 0].tolist()) == {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [(8.3, 9.0), (0.0, 0.3)], ids=["0.7 s of speech", "0.3 s"])
def test_precision_2_on_very_short_audio(sample_audio, seconds):
    start, end = seconds
    result = diarist.diarize(
        sample_audio[int(start * 16000) : int(end * 16000)], sample_rate=16000, model="precision-2"
    )
    assert len(result.speakers) <= 1
    assert all(0 <= t.start < t.end <= end - start + 1e-6 for t in result.turns)


def test_precision_2_on_silence():
    result = diarist.diarize(np.zeros(20 * 16000, dtype=np.float32), sample_rate=16000, model="precision-2")
    assert result.turns == [] and result.speakers == []
