"""Clustering on synthetic embeddings of known voices, and requested counts on the real sample.

A synthetic voice is a point in CAM++'s 192 dimensions: a component every voice shares (real
embeddings of one recording are all alike in part), plus the voice's own offset; each embedding
adds its own noise. The right answer is known: one cluster per voice.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from diarist.pipeline import analyse_windows
from diarist.pipeline.clustering import SpeakerBounds, cluster_embeddings, keep_requested_speakers
from diarist.pipeline.config import COMMUNITY_1, PRECISION_2
from diarist.pipeline.reconstruction import reconstruct

DIM = 192
ONE_CUT = replace(COMMUNITY_1, many_speakers=10**9)  # the distance cut alone, as before
ANY_COUNT = SpeakerBounds()


def _voices(
    voices: int,
    per_voice: int | list[int],
    shared: float = 1.0,
    spread: float = 1.3,
    noise: float | list[float] = 0.8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 192) embeddings, one local speaker per window, in shuffled order, and each one's voice.

    `per_voice` and `noise` are one value for every voice, or a list with one per voice.
    """
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIM)
    common *= shared / np.linalg.norm(common)
    centres = common + spread * rng.standard_normal((voices, DIM)) / np.sqrt(DIM)
    labels = rng.permutation(np.repeat(np.arange(voices), per_voice))
    noises = np.broadcast_to(np.asarray(noise, dtype=float), (voices,))[labels, None]
    embeddings = centres[labels] + noises * rng.standard_normal((len(labels), DIM)) / np.sqrt(DIM)
    return embeddings[:, None, :].astype(np.float32), labels


def _cluster(embeddings: np.ndarray, bounds: SpeakerBounds = ANY_COUNT, config=COMMUNITY_1) -> np.ndarray:
    """Each window's global speaker."""
    clustering = cluster_embeddings(embeddings, np.ones(embeddings.shape[:2]), bounds, config)
    return clustering.assignment[:, 0]


def _same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    """Whether `found` groups the embeddings exactly as `truth` does, whatever the names."""
    pairs = set(zip(found.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(found.tolist())) == len(set(truth.tolist()))


def test_many_voices_are_each_found():
    embeddings, truth = _voices(20, 30)
    assert _same_partition(_cluster(embeddings), truth)


def test_voices_alike_in_one_recording_are_told_apart_once_centred():
    # A large shared component (voices at cosine 0.76 from each other, 0.95 within one voice):
    # one cut of the tree merges them all; centring on the recording's mean and the VBx pass,
    # which the shipped config runs once a recording has many speakers, recovers all 20.
    embeddings, truth = _voices(20, 30, shared=2.0, spread=1.0, noise=0.5)
    assert len(set(_cluster(embeddings, config=ONE_CUT).tolist())) == 1
    assert _same_partition(_cluster(embeddings, config=replace(COMMUNITY_1, many_speakers=1)), truth)


@pytest.mark.parametrize("voices", [1, 2, 3])
def test_few_voices_are_each_found(voices):
    embeddings, truth = _voices(voices, 12, seed=voices)
    assert _same_partition(_cluster(embeddings), truth)


def test_no_embeddings():
    clustering = cluster_embeddings(np.full((4, 3, DIM), np.nan), np.zeros((4, 3)), SpeakerBounds(), COMMUNITY_1)
    assert clustering.num_speakers == 0
    assert (clustering.assignment == -1).all()


def test_one_and_two_embeddings():
    embeddings, _ = _voices(2, 1)
    assert _cluster(embeddings[:1]).tolist() == [0]
    assert sorted(_cluster(embeddings).tolist()) == [0, 1]  # two different voices
    same, _ = _voices(1, 2)
    assert _cluster(same).tolist() == [0, 0]


def test_bounds_on_synthetic_voices():
    embeddings, _ = _voices(2, 15)
    three = _cluster(embeddings, SpeakerBounds(3, 3))
    assert sorted(set(three.tolist())) == [0, 1, 2]  # every requested speaker holds an embedding
    assert _cluster(embeddings, SpeakerBounds(0, 1)).tolist() == [0] * 30
    many, many_truth = _voices(8, 10)
    assert _same_partition(_cluster(many, SpeakerBounds(2, 8)), many_truth)


@pytest.mark.parametrize("seed", range(4))
def test_a_requested_count_of_many_is_found_in_a_crowd_of_alike_voices(seed):
    # Four talkative voices, each spread wide, and eight who say little, all much alike: one cut
    # of the tree lumps them together. Asked for 12, the clustering takes the centred VBx path
    # and moves its evidence weight until 12 speakers survive: each is one voice. (Cutting the
    # centred tree at 12 instead mixed two voices with seed 0.)
    embeddings, truth = _voices(
        12, [100] * 4 + [12] * 8, shared=2.0, spread=1.0, noise=[1.1] * 4 + [0.5] * 8, seed=seed
    )
    assert len(set(_cluster(embeddings).tolist())) == 1
    assert _same_partition(_cluster(embeddings, SpeakerBounds(12, 12)), truth)


def test_a_requested_count_moves_the_crowd_by_splits_and_merges_only():
    # Sixteen voices, all found without a count. Asked for 15 or 18, every voice the count does
    # not force to change stays one speaker of its own.
    embeddings, truth = _voices(16, 30, seed=5)
    assert _same_partition(_cluster(embeddings), truth)
    for wanted in (15, 18):
        found = _cluster(embeddings, SpeakerBounds(wanted, wanted))
        assert len(set(found.tolist())) == wanted
        whole = {
            v
            for v in range(16)
            if len(set(found[truth == v].tolist())) == 1 and (found == found[truth == v][0]).sum() == (truth == v).sum()
        }
        assert len(whole) >= 16 - 2 * abs(wanted - 16), (wanted, sorted(whole))


@pytest.mark.parametrize("windows", [20, 120])  # 1 and 6 minutes: the distance cut's path and the many-speaker one
def test_a_requested_count_of_many_ends_on_identical_embeddings(windows):
    # No cut of a tree of identical points gives two clusters: splitting by the tree alone looped forever.
    same = np.tile(np.random.default_rng(0).standard_normal(DIM), (windows, 1))[:, None, :].astype(np.float32)
    assert sorted(set(_cluster(same, SpeakerBounds(8, 8)).tolist())) == list(range(8))


def test_only_a_long_recording_takes_the_many_speaker_pass():
    # Twenty voices alike, as above, which only the centred pass tells apart: on 30 minutes it
    # runs; on 4 minutes (80 windows of 3 s) the cut decides, as the pass's speaker space would
    # rest on too few embeddings.
    embeddings, truth = _voices(20, 30, shared=2.0, spread=1.0, noise=0.5)
    centred = replace(COMMUNITY_1, many_speakers=1)
    assert _same_partition(_cluster(embeddings, config=centred), truth)
    assert len(set(_cluster(embeddings[:80], config=centred).tolist())) == 1


def test_a_silent_speaker_takes_the_frames_where_its_share_peaks():
    scores = np.zeros((10, 3))
    scores[:, 0] = 1.0
    scores[2:8, 1] = 0.6
    scores[4:6, 2] = 0.4  # speaker 2 is heard by some windows only, and loses every frame
    binary = np.zeros((10, 3), dtype=bool)
    binary[:, 0] = True
    binary[2:8, 1] = True
    assert (keep_requested_speakers(binary, scores, 2) == binary).all()  # two speak already
    kept = keep_requested_speakers(binary, scores, 3)
    expected = binary.copy()
    expected[4:6, 1], expected[4:6, 2] = False, True  # in place of the weaker of the two there
    assert (kept == expected).all()


def test_a_requested_speaker_never_speaks_where_nobody_does():
    # Speaker 1's share peaks in frames 6-7, which the clean-up left silent: it takes its
    # strongest frames among those with speech (2-3), and none at all when nobody speaks anywhere.
    scores = np.zeros((10, 2))
    scores[:5, 0] = 1.0
    scores[2:4, 1], scores[6:8, 1] = 0.3, 0.5
    binary = np.zeros((10, 2), dtype=bool)
    binary[:5, 0] = True
    expected = binary.copy()
    expected[2:4, 0], expected[2:4, 1] = False, True
    assert (keep_requested_speakers(binary, scores, 2) == expected).all()
    silence = np.zeros_like(binary)
    assert not keep_requested_speakers(silence, scores, 2).any()


@pytest.fixture(scope="module")
def sample_analysis(sample_audio):
    with torch.inference_mode():
        return analyse_windows([sample_audio], COMMUNITY_1)


def _speakers(analysis, bounds: SpeakerBounds) -> tuple[int, list[str]]:
    clustering = cluster_embeddings(analysis.embeddings, analysis.clean_seconds, bounds, COMMUNITY_1)
    result = reconstruct(analysis.activity, analysis.certainty, clustering, analysis.num_samples, bounds, COMMUNITY_1)
    return len(result.speakers), result.warnings


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_requested_count_on_the_sample(sample_analysis, count):
    # The two-party call has 15 (window, local speaker) pairs with speech: up to 15 can be given.
    assert _speakers(sample_analysis, SpeakerBounds(count, count)) == (count, [])


def test_count_bounds_on_the_sample(sample_analysis):
    assert _speakers(sample_analysis, SpeakerBounds()) == (2, [])
    assert _speakers(sample_analysis, SpeakerBounds(3, None)) == (3, [])
    assert _speakers(sample_analysis, SpeakerBounds(0, 1)) == (1, [])


def test_warning_exactly_when_the_audio_cannot_give_the_count(sample_analysis):
    heard = int((~np.isnan(sample_analysis.embeddings[..., 0])).sum())
    assert _speakers(sample_analysis, SpeakerBounds(heard, heard)) == (heard, [])
    found, warnings = _speakers(sample_analysis, SpeakerBounds(heard + 1, heard + 1))
    assert found == heard
    assert warnings == [
        f"Only {heard} speaker(s) could be told apart in this audio, fewer than the {heard + 1} requested: "
        "it holds too little speech for more."
    ]


def test_a_speaker_is_never_pushed_out_of_its_last_frames():
    # Speaker 2 peaks in frames 4-5, where 0 and 1 speak; 1 speaks nowhere else. In frame 4 the
    # weaker, 1, gives way; in frame 5 that would silence 1, so 0 gives way. Asking for more
    # speakers than exist still ends.
    scores = np.zeros((10, 3))
    scores[:, 0] = 1.0
    scores[4:6, 1], scores[4:6, 2] = 0.6, 0.4
    binary = scores >= 0.6
    expected = binary.copy()
    expected[4, 1], expected[5, 0], expected[4:6, 2] = False, False, True
    for minimum in (3, 5):
        assert (keep_requested_speakers(binary, scores, minimum) == expected).all()


def test_narrow_band_audio_is_cut_lower():
    # Telephone audio pulls voices together (bench/data's calls measure 3.8-4.6 kHz, the rest 6.4-8).
    narrow = PRECISION_2.for_bandwidth(4000.0)
    assert narrow.clustering_threshold == pytest.approx(PRECISION_2.clustering_threshold - 0.05)
    for wideband in (6400.0, 8000.0, None):  # None: not measured
        assert PRECISION_2.for_bandwidth(wideband) == PRECISION_2
