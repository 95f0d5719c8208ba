"""The live streaming engine on real audio with the real models: event order, turns, DER against offline."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

import diarist
from diarist.audio import load_audio
from diarist.engine import Engine
from diarist.pipeline.streaming import (
    END,
    START,
    SpeakerEvent,
    StreamingDiarizer,
    turns_from_events,
)

from .conftest import SAMPLE

FRAME = 1600
# The offline pipeline's DER on the sample plus this many points bounds the live engine's at its
# default latency. Pooled over 21 recordings the gap is under 3 points (bench/live.py), but on the
# sample it is about 10 (16.4 % against 6.7 % at 2 s): its first 3 s of speech come at the stream's
# start, where the segmentation's windows hold little audio and give both voices one local
# speaker, so the first speaker's centroid is a mix; the offline pipeline sees them with context.
DER_MARGIN = 12.0


@cache
def engine() -> Engine:
    return Engine(device="cpu")


@cache
def sample() -> np.ndarray:
    return load_audio(SAMPLE)


def play(audio: np.ndarray, sizes: list[int] | None = None, **kwargs) -> tuple[StreamingDiarizer, list, list]:
    """Feed `audio` in pieces of `sizes` (cycled; default 100 ms frames), then finish. Returns the
    diarizer, the events of the feeds with the duration each was emitted at, and those of finish."""
    diarizer = StreamingDiarizer(engine=engine(), **kwargs)
    sizes = sizes or [FRAME]
    fed, i, position = [], 0, 0
    while position < len(audio):
        piece = audio[position : position + sizes[i % len(sizes)]]
        fed += [(event, diarizer.duration) for event in diarizer.feed(piece)]
        position += len(piece)
        i += 1
    return diarizer, fed, diarizer.finish()


@cache
def sample_run() -> tuple[StreamingDiarizer, list, list]:
    return play(sample())


def annotation(turns, uri: str = "sample") -> Annotation:
    out = Annotation(uri=uri)
    for turn in turns:
        out[Segment(turn.start, turn.end)] = turn.speaker
    return out


def reference(path: Path) -> Annotation:
    out = Annotation(uri="sample")
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start = float(fields[3])
            out[Segment(start, start + float(fields[4]))] = fields[7]
    return out


def test_event_json_shape():
    event = SpeakerEvent(START, 1.25, "SPEAKER_00")
    assert event.to_json() == {"type": START, "data": {"timestamp": 1.25, "speaker": "SPEAKER_00"}}


def test_turns_from_events_pairs_starts_with_ends():
    events = [
        SpeakerEvent(END, 0.5, "SPEAKER_01"),  # no start: ignored
        SpeakerEvent(START, 1.0, "SPEAKER_00"),
        SpeakerEvent(START, 2.0, "SPEAKER_01"),
        SpeakerEvent(END, 3.0, "SPEAKER_00"),
    ]
    turns = turns_from_events(events, 10.0)
    assert [(t.start, t.end, t.speaker) for t in turns] == [(1.0, 3.0, "SPEAKER_00"), (2.0, 10.0, "SPEAKER_01")]


@pytest.mark.slow
def test_events_are_ordered_and_paired_per_speaker():
    _, fed, finished = sample_run()
    events = [event for event, _ in fed] + finished
    assert events
    times = [event.timestamp for event in events]
    assert times == sorted(times)
    open_: dict[str, bool] = {}
    for event in events:
        assert event.type in (START, END)
        # Each speaker alternates start, end, start, ... beginning with a start.
        assert open_.get(event.speaker, False) == (event.type == END)
        open_[event.speaker] = event.type == START
    assert not any(open_.values())
    labels = [event.speaker for event in events if event.type == START]
    assert sorted(set(labels)) == [f"SPEAKER_{i:02d}" for i in range(len(set(labels)))]


@pytest.mark.slow
def test_two_speakers_and_der_near_offline():
    diarizer, fed, finished = sample_run()
    events = [event for event, _ in fed] + finished
    turns = turns_from_events(events, diarizer.duration)
    assert len({turn.speaker for turn in turns}) == 2
    truth = reference(SAMPLE.with_suffix(".rttm"))
    offline = diarist.diarize(SAMPLE, model="community-1", engine=engine())
    metric = DiarizationErrorRate(collar=0, skip_overlap=False)
    offline_der = 100 * metric(truth, annotation(offline.turns))
    live_der = 100 * metric(truth, annotation(turns))
    assert live_der <= offline_der + DER_MARGIN, (live_der, offline_der)


@pytest.mark.slow
def test_no_event_past_the_latency_and_finish_closes_at_duration():
    diarizer, fed, finished = sample_run()
    step = diarizer.config.step_frames * 270 / 16000
    for event, duration in fed:
        assert event.timestamp <= duration - diarizer.latency + step, (event, duration)
    assert all(event.timestamp <= diarizer.duration for event in finished)
    assert diarizer.duration == pytest.approx(len(sample()) / 16000)
    assert diarizer.lag == 0.0
    assert diarizer.finish() == []


@pytest.mark.slow
def test_frames_and_irregular_pieces_give_the_same_events():
    audio = sample()[: 12 * 16000]
    _, fed, finished = play(audio)
    _, fed_irregular, finished_irregular = play(audio, sizes=[1, 777, 5000, 1600, 123, 16000, 3])
    assert [e for e, _ in fed] + finished == [e for e, _ in fed_irregular] + finished_irregular
    assert fed  # some events come before the end of the stream


@pytest.mark.slow
def test_silence_gives_no_events():
    rng = np.random.default_rng(0)
    silence = (rng.standard_normal(15 * 16000) * 1e-4).astype(np.float32)
    diarizer, fed, finished = play(silence)
    assert fed == [] and finished == []
    assert diarizer.duration == pytest.approx(15.0)


@pytest.mark.slow
def test_finish_closes_open_turns_at_the_duration():
    # Cut in the middle of a turn (reference: speakers talk from 21.78 s to 28.5 s).
    audio = sample()[: 25 * 16000]
    _, fed, finished = play(audio, latency=1.0)
    assert any(event.type == END and event.timestamp == pytest.approx(25.0, abs=0.02) for event in finished)
    events = [event for event, _ in fed] + finished
    starts = sum(event.type == START for event in events)
    assert starts == sum(event.type == END for event in events)
    assert all(event.timestamp <= 25.0 for event in events)


def test_empty_stream_and_argument_checks():
    diarizer = StreamingDiarizer(engine=engine())
    assert diarizer.feed(np.zeros(0, dtype=np.float32)) == []
    assert diarizer.finish() == []
    assert diarizer.duration == 0.0
    with pytest.raises(RuntimeError):
        diarizer.feed(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        StreamingDiarizer(model="nope", engine=engine())


def test_a_voice_far_from_its_speaker_is_assigned_but_does_not_move_its_centroid():
    diarizer = StreamingDiarizer(engine=engine())
    config = diarizer.config
    activity = np.zeros((589, 3), dtype=bool)
    activity[:, 0] = True
    clean = np.array([2.0, 0.0, 0.0])

    def window(vector: np.ndarray) -> np.ndarray:
        embeddings = np.zeros((3, 192), dtype=np.float32)
        embeddings[0] = vector
        return diarizer._assign(activity, embeddings, clean)

    first, second = np.eye(192, dtype=np.float32)[:2]
    assert window(first)[0] == 0  # the first voice makes speaker 0
    # Within delta_new of speaker 0 but beyond delta_update: assigned to it, centroid unmoved.
    distance = (config.delta_new + config.delta_update) / 2
    far = (1 - distance) * first + np.sqrt(1 - (1 - distance) ** 2) * second
    assert window(far)[0] == 0
    assert np.allclose(diarizer._unit(0), first)
    # A voice near speaker 0 moves it.
    near = 0.95 * first + np.sqrt(1 - 0.95**2) * second
    assert window(near)[0] == 0
    assert diarizer._unit(0) @ second > 0.1


def test_two_speakers_that_come_to_share_a_voice_are_merged_into_the_older():
    def run(voices: int) -> tuple[StreamingDiarizer, list[int]]:
        diarizer = StreamingDiarizer(engine=engine())
        basis = np.eye(192, dtype=np.float32)
        # A second take of voice 0, 0.1 apart in cosine distance (under delta_merge).
        again = 0.9 * basis[0] + np.sqrt(1 - 0.9**2) * basis[100]

        def window(*vectors: np.ndarray) -> np.ndarray:
            activity = np.zeros((589, 3), dtype=bool)
            embeddings = np.zeros((3, 192), dtype=np.float32)
            for local, vector in enumerate(vectors):
                activity[:, local], embeddings[local] = True, vector
            return diarizer._assign(activity, embeddings, np.full(3, 2.0))

        for voice in range(voices):
            for _ in range(3):
                window(basis[voice])
        # Voice 0 is heard twice in each of three windows (the segmentation split it): the second
        # local speaker cannot take speaker 0, so it makes a new one, which gathers weight.
        split = [int(window(basis[0], again)[1]) for _ in range(3)]
        return diarizer, [*split, int(window(again)[0])]

    diarizer, speakers = run(voices=3)
    assert speakers[0] == speakers[1] == speakers[2] == 3
    # Alone, the second take goes to the older speaker, not to the retired one nearest it.
    assert speakers[3] == 0
    assert diarizer._retired == {3}
    # With fewer than merge_min_speakers, a pair that close stays apart: on a two-person call
    # the first centroid may hold both voices.
    diarizer, speakers = run(voices=1)
    assert diarizer._retired == set()
    assert speakers == [1, 1, 1, 1]


def test_a_window_counts_less_for_the_frames_at_its_right_edge():
    diarizer = StreamingDiarizer(engine=engine(), latency=0.5)
    step = diarizer.config.step_frames
    diarizer._centroids = np.ones((1, 192), dtype=np.float32)
    # Window 10 hears speaker 0 in its last step; window 11 covers those frames a step (1 s) from
    # its own edge, having heard the second after them, and hears no one there.
    edge = np.zeros((589, 3), dtype=bool)
    edge[-step:, 0] = True
    diarizer._add_scores(10, edge, np.array([0, -1, -1]))
    diarizer._add_scores(11, np.zeros((589, 3), dtype=bool), np.array([0, -1, -1]))
    frames = slice(diarizer._window_first_frame(11) + 589 - 2 * step, diarizer._window_first_frame(11) + 589 - step)
    share = diarizer._scores[frames, 0] / diarizer._coverage[frames]
    # Counted equally the two windows would split them at the onset; the later one decides.
    assert (share < diarizer.config.onset).all(), share
