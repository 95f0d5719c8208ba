"""Reconstruction at every audio length, on synthetic segmentation of the real window geometry.

The windows are laid out as the pipeline lays them out (`window_count`, each model's step); the
expected turns and curve come from the frame grid itself: frame f of the audio is centred on
sample f * 270 + 495.5, and 10 s windows start every `step_frames` frames and hold 589 frames.
"""

from dataclasses import replace

import numpy as np
import pytest

from diarist.pipeline.clustering import Clustering, SpeakerBounds
from diarist.pipeline.config import CONFIGS
from diarist.pipeline.reconstruction import clean_exclusive, clean_overlapping, reconstruct
from diarist.pipeline.segmentation import window_count

RATE = 16000
FRAME_STEP, FRAME_CENTRE, WINDOW_FRAMES, WINDOW = 270, 495.5, 589, 160_000


def _frames(num_samples: int) -> int:
    """Frames whose centre lies inside the audio (at least one)."""
    return max(1, int(np.ceil((num_samples - FRAME_CENTRE) / FRAME_STEP)))


def _centre(frame: int) -> float:
    return (frame * FRAME_STEP + FRAME_CENTRE) / RATE


def _rounded(turns: list) -> list[tuple[str, float, float]]:
    """Turns or (speaker, start, end) to the nanosecond: the expected times are summed in another order."""
    triples = [(t.speaker, t.start, t.end) if hasattr(t, "speaker") else t for t in turns]
    return [(speaker, round(start, 9), round(end, 9)) for speaker, start, end in triples]


def _lengths(step_samples: int) -> list[int]:
    """Every 10 ms from 0.1 s to 40 s, and every 2.5 ms within 50 ms of the end of each window."""
    lengths = set(range(RATE // 10, 40 * RATE + 1, RATE // 100))
    for end in range(WINDOW, 41 * RATE, step_samples):
        lengths.update(range(end - 800, end + 801, 40))
    return sorted(lengths)


def _geometry_only(config):
    """`config` without smoothing and without dropping short turns: these tests are about the
    frame grid, whose turns at some lengths are a frame or two long."""
    return replace(config, score_smoothing_frames=1, min_duration_on=0.0)


def _two_speakers(num_samples: int, step_frames: int) -> tuple[np.ndarray, np.ndarray, Clustering, int]:
    """Speaker A in the first half of the audio's frames, speaker B from there to past the end,
    seen by each window as local speakers 0 and 1; every frame decided with probability 0.9."""
    windows = window_count(num_samples, step_frames)
    split = _frames(num_samples) // 2
    timeline = np.zeros(((windows - 1) * step_frames + WINDOW_FRAMES, 3), dtype=bool)
    timeline[:split, 0] = True
    timeline[split:, 1] = True
    activity = np.stack([timeline[w * step_frames : w * step_frames + WINDOW_FRAMES] for w in range(windows)])
    certainty = np.full((windows, WINDOW_FRAMES), 0.9, dtype=np.float32)
    similarity = np.tile(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), (windows, 1, 1))
    clustering = Clustering(assignment=np.tile([0, 1, -1], (windows, 1)), similarity=similarity)
    return activity, certainty, clustering, split


@pytest.mark.slow
@pytest.mark.parametrize("model", ["community-1", "precision-2"])
def test_every_length_reconstructs_the_whole_audio(model):
    config = _geometry_only(CONFIGS[model])
    failures = []
    for num_samples in _lengths(config.step_samples):
        duration = num_samples / RATE
        windows, frames = window_count(num_samples, config.step_frames), _frames(num_samples)
        # The windows' frames reach every frame of the audio, and no window lies wholly past it.
        covered = (windows - 1) * config.step_frames + WINDOW_FRAMES
        if covered < frames or (windows > 1 and covered - config.step_frames >= frames):
            failures.append(f"{num_samples} samples: {windows} windows for {frames} frames")
        activity, certainty, clustering, split = _two_speakers(num_samples, config.step_frames)
        try:
            result = reconstruct(activity, certainty, clustering, num_samples, SpeakerBounds(), config)
        except Exception as error:  # collected, so one run reports every failing length
            failures.append(f"{num_samples} samples: {error!r}")
            continue
        expected = [("SPEAKER_00", _centre(0), _centre(split)), ("SPEAKER_01", _centre(split), duration)]
        for turns in (result.turns, result.exclusive_turns):
            if _rounded(turns) != _rounded(expected):
                failures.append(f"{num_samples} samples: turns {turns}, expected {expected}")
        if result.duration != duration or result.confidence != [90] * -(-num_samples // 320):
            failures.append(f"{num_samples} samples: {len(result.confidence)} confidence values, {duration} s")
    assert not failures, f"{len(failures)} lengths fail, e.g. {failures[:5]}"


@pytest.mark.parametrize("model", ["community-1", "precision-2"])
def test_audio_shorter_than_a_few_frames(model):
    # One speaker throughout: the turn starts at the first frame's centre (31 ms), so audio
    # shorter than that has no turn at all, never one that ends before it starts.
    config = _geometry_only(CONFIGS[model])
    for num_samples in range(1, 1601, 7):
        activity, certainty, clustering, _ = _two_speakers(num_samples, config.step_frames)
        activity[:, :, 1] |= activity[:, :, 0]
        activity[:, :, 0] = False
        result = reconstruct(activity, certainty, clustering, num_samples, SpeakerBounds(), config)
        duration = num_samples / RATE
        expected = [("SPEAKER_00", _centre(0), duration)] if duration > _centre(0) else []
        assert _rounded(result.turns) == _rounded(expected), num_samples
        assert len(result.confidence) == -(-num_samples // 320), num_samples


def _disputed_change(num_samples: int, step_frames: int) -> tuple:
    """Speaker A then speaker B from the middle of the audio, each window placing the change up
    to 3 frames off and hearing two stray frames of the other speaker near it, as real windows do."""
    windows = window_count(num_samples, step_frames)
    split = _frames(num_samples) // 2
    rng = np.random.default_rng(1)
    activity = np.zeros((windows, WINDOW_FRAMES, 3), dtype=bool)
    timeline = np.zeros((windows - 1) * step_frames + WINDOW_FRAMES, dtype=bool)  # True: B speaks
    for w in range(windows):
        timeline[:] = False
        timeline[split + rng.integers(-3, 4) :] = True
        for stray in split + rng.integers(-4, 5, size=2):
            timeline[stray] = not timeline[stray]
        frames = slice(w * step_frames, w * step_frames + WINDOW_FRAMES)
        activity[w, :, 0], activity[w, :, 1] = ~timeline[frames], timeline[frames]
    certainty = np.full((windows, WINDOW_FRAMES), 0.9, dtype=np.float32)
    similarity = np.tile(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), (windows, 1, 1))
    return activity, certainty, Clustering(np.tile([0, 1, -1], (windows, 1)), similarity), split


@pytest.mark.parametrize("model", ["community-1", "precision-2"])
def test_windows_disagreeing_on_a_speaker_change_give_one_change(model):
    config = CONFIGS[model]
    num_samples = 30 * RATE
    activity, certainty, clustering, split = _disputed_change(num_samples, config.step_frames)
    raw = reconstruct(
        activity,
        certainty,
        clustering,
        num_samples,
        SpeakerBounds(),
        _geometry_only(config),
    )
    # The input does reproduce the artefact: ranked frame by frame, the windows give 17 ms turns.
    assert min(t.end - t.start for t in raw.exclusive_turns) < 0.02
    result = reconstruct(activity, certainty, clustering, num_samples, SpeakerBounds(), config)
    for turns in (result.turns, result.exclusive_turns):
        assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
        assert turns[0].end == turns[1].start
        assert abs(turns[0].end - _centre(split)) <= 4 * FRAME_STEP / RATE  # where the windows put it


def test_short_exclusive_turns_go_to_a_neighbour_or_to_silence():
    # Scores: speaker 2 outscores speaker 0 over frames 4-5, so they go to 2.
    scores = np.zeros((16, 3))
    scores[4:6, 0], scores[4:6, 2] = 0.3, 0.6
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, -1, 1, 1, -1, -1, -1])
    assert clean_exclusive(labels, scores, 0, 3).tolist() == [0] * 4 + [2] * 6 + [-1] * 6
    # A short turn beside silence goes to the speaker on its other side.
    labels = np.array([-1, -1, 1, 0, 0, 0, 0, 1, -1])
    assert clean_exclusive(labels, scores[:9], 0, 2).tolist() == [-1, -1, 0, 0, 0, 0, 0, 0, -1]


def test_short_exclusive_gaps_are_filled_only_inside_one_speakers_speech():
    labels = np.array([0, 0, 0, -1, -1, 0, 0, 0, -1, -1, 1, 1, 1])
    assert clean_exclusive(labels, np.zeros((13, 2)), 3, 0).tolist() == [0] * 8 + [-1, -1, 1, 1, 1]


def test_overlapping_output_fills_gaps_then_drops_short_turns():
    active = np.array([1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1], dtype=bool)
    expected = [True] * 8 + [False] * 10
    assert clean_overlapping(active, 3, 3).tolist() == expected
    # A gap filled first can join two short runs into a turn long enough to keep.
    active = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    assert clean_overlapping(active, 2, 3).tolist() == [True] * 3 + [False] * 3


def test_no_speaker_at_all_gives_no_turn():
    config = CONFIGS["community-1"]
    windows = window_count(5 * RATE, config.step_frames)
    silent = Clustering(np.full((windows, 3), -1), np.zeros((windows, 3, 0)))
    activity = np.zeros((windows, WINDOW_FRAMES, 3), dtype=bool)
    certainty = np.full((windows, WINDOW_FRAMES), 0.9, dtype=np.float32)
    result = reconstruct(activity, certainty, silent, 5 * RATE, SpeakerBounds(), config)
    assert result.turns == result.exclusive_turns == result.speakers == []
