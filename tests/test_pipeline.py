import itertools

import numpy as np
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.detection import DetectionErrorRate
from pyannote.metrics.diarization import DiarizationErrorRate

import diarist
from diarist.pipeline.clustering import SpeakerBounds
from diarist.pipeline.config import CONFIGS
from diarist.pipeline.reconstruction import NO_SPEECH

from .conftest import DEV, SAMPLE, reference_turns


def _annotation(turns) -> Annotation:
    annotation = Annotation()
    for turn in turns:
        start, end, speaker = (turn.start, turn.end, turn.speaker) if hasattr(turn, "speaker") else turn
        annotation[Segment(start, end)] = speaker
    return annotation


def _reference(duration: float = 30.0) -> Annotation:
    """The sample's reference diarization, cut to its first `duration` seconds."""
    return _annotation(reference_turns(SAMPLE.with_suffix(".rttm"))).crop(Segment(0, duration))


def _der(turns) -> float:
    return DiarizationErrorRate(collar=0.0, skip_overlap=False)(_reference(), _annotation(turns))


# Published DERs on this file (no collar, overlap scored): pyannote community-1 5.2 %, legacy
# speaker-diarization-3.1 12.7 %; we measure 6.6 % (community-1) and 5.3 % (precision-2). A
# bound of 10 % fails on any real regression (one speaker for everything scores about 45 %).
@pytest.mark.parametrize("model", ["community-1", "precision-2"])
def test_sample_der_is_close_to_pyannote(model, sample_result):
    result = sample_result if model == "community-1" else diarist.diarize(SAMPLE, model=model)
    assert _der(result.turns) < 0.10
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert result.warnings == []


def test_labels_follow_order_of_first_speech(sample_result):
    first = {}
    for turn in sample_result.turns:
        first.setdefault(turn.speaker, turn.start)
    assert list(first) == sorted(first, key=first.get) == ["SPEAKER_00", "SPEAKER_01"]


def test_result_as_an_annotation_talk_times_and_subtitles(sample_result):
    annotation = sample_result.to_annotation(uri="sample")
    assert annotation.uri == "sample" and sorted(annotation.labels()) == sample_result.speakers
    assert len(list(annotation.itertracks())) == len(sample_result.turns)
    exclusive = sample_result.to_annotation(exclusive=True)
    assert len(list(exclusive.itertracks())) == len(sample_result.exclusive_turns)
    assert not exclusive.get_overlap() and annotation.get_overlap()  # the sample has overlapping speech
    talk = sample_result.talk_time()
    assert talk == pytest.approx({name: annotation.label_duration(name) for name in sample_result.speakers})
    assert list(talk.values()) == sorted(talk.values(), reverse=True)
    assert sample_result.to_dict()["talkTime"] == [{"speaker": s, "seconds": round(t, 3)} for s, t in talk.items()]
    # Without a transcript, one cue per exclusive turn, naming its speaker.
    cues = sample_result.to_srt().strip().split("\n\n")
    assert len(cues) == len(sample_result.exclusive_turns)
    assert cues[0].split("\n")[2] == f"[{sample_result.exclusive_turns[0].speaker}]"


def test_turns_keep_overlapping_speech(sample_result):
    turns = sample_result.turns
    overlaps = [a for a in turns for b in turns if a.speaker != b.speaker and a.start < b.end and b.start < a.end]
    assert overlaps, "the sample has overlapped speech (e.g. around 18 s) that must be kept"


def test_exclusive_turns_never_overlap(sample_result):
    turns = sorted(sample_result.exclusive_turns, key=lambda t: t.start)
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(turns))
    assert _der(turns) < 0.15


def test_confidence_curve_and_turn_confidence(sample_result):
    curve = sample_result.confidence
    assert sample_result.confidence_resolution == 0.02
    assert len(curve) == 1500  # 30 s / 0.02 s
    assert all(isinstance(v, int) and 0 <= v <= 100 for v in curve)
    assert np.std(curve) > 1  # it moves: certain in long turns, less at speaker changes
    for turn in sample_result.turns:
        assert set(turn.confidence) == set(sample_result.speakers)
        assert all(0 <= v <= 100 for v in turn.confidence.values())
    long_turns = [t for t in sample_result.turns if t.end - t.start > 2]
    assert all(max(t.confidence, key=t.confidence.get) == t.speaker for t in long_turns)


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
def test_forced_speaker_count_is_honoured(count):
    result = diarist.diarize(SAMPLE, num_speakers=count)
    assert len(result.speakers) == count
    assert result.warnings == []


@pytest.mark.slow
def test_forcing_more_speakers_than_the_voices_heard_is_honoured():
    # The sample is a two-party call, but its windows hear 15 local speakers: a third can be given.
    for result in (diarist.diarize(SAMPLE, num_speakers=3), diarist.diarize(SAMPLE, min_speakers=3)):
        assert len(result.speakers) == 3
        assert result.warnings == []


@pytest.mark.slow
def test_upper_bound_is_honoured():
    assert len(diarist.diarize(SAMPLE, max_speakers=1).speakers) == 1


@pytest.mark.slow
def test_impossible_count_gives_a_warning_not_an_error():
    result = diarist.diarize(SAMPLE, num_speakers=40)
    assert 2 <= len(result.speakers) < 40
    assert "fewer than the 40 requested" in " ".join(result.warnings)
    assert "warning" in result.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_speakers": 2, "min_speakers": 1}, "cannot be used together"),
        ({"min_speakers": 3, "max_speakers": 2}, "must be <="),
        ({"num_speakers": 0}, "positive integer"),
        ({"max_speakers": True}, "positive integer"),
        ({"model": "precision-9"}, "unknown model"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        diarist.diarize(SAMPLE, **kwargs)


def test_speaker_bounds():
    assert SpeakerBounds.from_request(num_speakers=2) == SpeakerBounds(2, 2)
    assert SpeakerBounds.from_request(min_speakers=2).clamp(1) == 2
    assert SpeakerBounds.from_request(max_speakers=3).clamp(5) == 3


NOISE = np.random.default_rng(0).uniform(-1, 1, 15 * 16000).astype(np.float32)


# Signals without speech give an empty, well-formed result rather than an error. Audio shorter
# than half a model frame (31 ms) used to get an empty confidence curve; 10 s crashed.
@pytest.mark.slow
@pytest.mark.parametrize(
    "waveform",
    [
        np.zeros(int(0.3 * 16000), dtype=np.float32),
        np.zeros(20 * 16000, dtype=np.float32),
        np.array([0.5], dtype=np.float32),
        NOISE[:160],  # 10 ms
        np.full(12 * 16000, 0.5, dtype=np.float32),  # DC
        np.sign(NOISE),  # full-scale clipped noise
        NOISE[: 10 * 16000],
    ],
    ids=["0.3 s silence", "20 s silence", "one sample", "10 ms noise", "12 s DC", "clipped noise", "10 s noise"],
)
def test_signals_without_speech_give_an_empty_diarization(waveform):
    result = diarist.diarize(waveform, sample_rate=16000)
    assert result.turns == [] and result.exclusive_turns == [] and result.speakers == []
    assert result.to_dict(exclusive=True) == {
        "diarization": [],
        "exclusiveDiarization": [],
        "talkTime": [],
        "warning": NO_SPEECH,
    }
    assert result.duration == len(waveform) / 16000
    assert len(result.confidence) == -(-len(waveform) // 320)


# The first 30 s of AMI EN2001b: the meeting has not begun, and the reference's two brief sounds
# (at 3 s and 22 s) are too faint for the segmentation. The lone-voice advice to ask for 2 speakers
# came out here, and asking for them gave two 51 ms turns made out of silence.
NEARLY_SILENT = DEV / "ami-EN2001b-0-30.wav"


@pytest.mark.parametrize("bounds", [{}, {"min_speakers": 2}, {"num_speakers": 3}], ids=["free", "min 2", "exactly 3"])
def test_a_nearly_silent_file_says_no_speech_and_no_count_invents_turns(bounds):
    result = diarist.diarize(NEARLY_SILENT, **bounds)
    assert result.turns == result.exclusive_turns == result.speakers == []
    assert result.warnings == [NO_SPEECH]


def test_very_short_speech_does_not_crash(sample_audio):
    result = diarist.diarize(sample_audio[int(8.3 * 16000) : int(9.0 * 16000)], sample_rate=16000)
    assert len(result.speakers) <= 1
    assert all(0 <= t.start < t.end <= 0.7 + 1e-6 for t in result.turns)


@pytest.mark.slow
def test_waveform_input_matches_file_input(sample_audio, sample_result):
    from_array = diarist.diarize(sample_audio, sample_rate=16000, model="community-1")
    assert [(t.start, t.end, t.speaker) for t in from_array.turns] == [
        (t.start, t.end, t.speaker) for t in sample_result.turns
    ]


@pytest.mark.slow
def test_long_input_streams_across_pages(sample_audio):
    # 6 minutes spans several pages of windows: the page seams must not lose or double speech.
    long = np.tile(sample_audio, 12)
    result = diarist.diarize(long, num_speakers=2, sample_rate=16000)
    speech = sum(t.end - t.start for t in result.exclusive_turns)
    single = diarist.diarize(sample_audio, num_speakers=2, sample_rate=16000)
    expected = 12 * sum(t.end - t.start for t in single.exclusive_turns)
    assert abs(speech - expected) < 0.03 * expected
    assert result.turns[-1].end <= 360.0
    assert len(result.confidence) == 360 / 0.02


def test_output_shapes(sample_result):
    full = sample_result.to_dict(exclusive=True, confidence=True, turn_level_confidence=True)
    assert set(full) == {"diarization", "exclusiveDiarization", "confidence", "talkTime"}
    assert set(full["diarization"][0]) == {"speaker", "start", "end", "confidence"}
    assert set(full["confidence"]) == {"score", "resolution"}
    plain = sample_result.to_dict()
    assert set(plain) == {"diarization", "talkTime"} and set(plain["diarization"][0]) == {"speaker", "start", "end"}
    rttm = sample_result.to_rttm("call").splitlines()
    assert len(rttm) == len(sample_result.turns)
    assert rttm[0].split()[:2] == ["SPEAKER", "call"] and rttm[0].split()[7] == sample_result.turns[0].speaker


@pytest.mark.slow
def test_progress_moves_often_and_ends_at_one(long_audio):
    reports: list[float] = []
    diarist.diarize(long_audio, model="community-1", progress=reports.append)
    assert reports == sorted(reports) and reports[-1] == 1.0
    # Several reports within one page of windows: a canceled job stops within seconds.
    assert len(reports) >= 10


# Audio that ends in the last 30 ms of a window used to crash (IndexError): it has a frame past
# the window's last one (whose centre is 47 ms before the window's end). 10 s is one window;
# 13.00375 s and 11.24875 s end the second window of community-1 (3.00375 s step) and
# precision-2 (1.24875 s step). The sample has speech across each cut, which must reach the end.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "num_samples"),
    [("community-1", 160_000), ("precision-2", 160_000), ("community-1", 208_060), ("precision-2", 179_980)],
)
def test_audio_ending_at_a_window_edge(tmp_path, sample_audio, model, num_samples):
    import scipy.io.wavfile

    path = tmp_path / "cut.wav"
    scipy.io.wavfile.write(path, 16000, (sample_audio[:num_samples] * 32768).astype(np.int16))
    result = diarist.diarize(path, model=model)
    duration = num_samples / 16000
    assert result.duration == duration
    assert len(result.confidence) == -(-num_samples // 320)
    assert max(t.end for t in result.turns) == duration
    detection_error = DetectionErrorRate(collar=0.0)(_reference(duration), _annotation(result.turns))
    assert detection_error < 0.2


def _stereo(mono: np.ndarray) -> np.ndarray:
    """(samples, 2): the sample on the left, at half level on the right."""
    return np.stack([mono, 0.5 * mono], axis=1)


# Arrays in every layout and rate give the reference's speakers. A (samples, channels) array
# used to be averaged over time into a few samples of "audio" and came back with no turns.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("layout", "rate"),
    [("(samples, channels) float", 16000), ("(samples, channels) int16", 44100), ("(channels, samples) tensor", 8000)],
)
def test_waveforms_in_any_layout_and_rate(sample_audio, layout, rate):
    import scipy.signal
    import torch

    mono = scipy.signal.resample_poly(sample_audio, rate // 100, 160) if rate != 16000 else sample_audio
    waveform = _stereo(mono)
    if "int16" in layout:
        waveform = (waveform * 32767).astype(np.int16)
    elif "tensor" in layout:
        waveform = torch.from_numpy(waveform.T.copy())
    # community-1: precision-2 hears one speaker in the 8 kHz version (band-limited input, issue 9).
    result = diarist.diarize(waveform, sample_rate=rate, model="community-1")
    assert result.duration == pytest.approx(30.0, abs=1e-3)
    assert len(result.speakers) == 2
    assert _der(result.turns) < 0.10


def test_a_waveform_needs_its_sample_rate(sample_audio):
    with pytest.raises(ValueError, match="sample_rate is required"):
        diarist.diarize(sample_audio)
    with pytest.raises(ValueError, match="sample_rate is for waveforms only"):
        diarist.diarize(SAMPLE, sample_rate=16000)


@pytest.mark.parametrize(
    ("waveform", "sample_rate", "message"),
    [
        (np.zeros(16000), 16000.0, "whole number of Hz"),
        (np.zeros(16000), 0, "between 1000 and 384000 Hz"),
        (np.zeros(16000, dtype=complex), 16000, "integer or float samples, not complex128"),
        (np.zeros(16000, dtype=bool), 16000, "integer or float samples, not bool"),
        (np.array(["a", "b"]), 16000, "integer or float samples"),
        (np.array([0.0, np.nan, 0.0]), 16000, "NaN or infinite"),
        (np.array([0.0, np.inf]), 16000, "NaN or infinite"),
        (np.full(10, 1e300), 16000, "beyond float32's range"),
        (np.zeros((2, 2, 16000)), 16000, "not \\(2, 2, 16000\\)"),
        (np.zeros((1000, 100)), 16000, "cannot tell channels from samples"),
        (np.zeros((50, 50)), 16000, "cannot tell channels from samples"),
    ],
    ids=["float rate", "zero rate", "complex", "bool", "str", "NaN", "inf", "1e300", "3-D", "1000x100", "50x50"],
)
def test_bad_waveforms(waveform, sample_rate, message):
    with pytest.raises(ValueError, match=message):
        diarist.diarize(waveform, sample_rate=sample_rate)


@pytest.mark.slow
def test_many_channel_file_diarizes(tmp_path, sample_audio):
    import scipy.io.wavfile

    # A 32-channel recording with the conversation in channel 5: ffmpeg's own downmix refused it.
    channels = np.zeros((len(sample_audio), 32), dtype=np.int16)
    channels[:, 5] = sample_audio * 32767
    scipy.io.wavfile.write(tmp_path / "array.wav", 16000, channels)
    result = diarist.diarize(tmp_path / "array.wav")
    assert result.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert _der(result.turns) < 0.10


def test_no_turn_is_shorter_than_the_shortest_allowed(sample_result):
    # Speaker changes used to leave 17 ms turns in both lists (the sample had five).
    shortest = CONFIGS["community-1"].min_duration_on
    for turns in (sample_result.turns, sample_result.exclusive_turns):
        lengths = [t.end - t.start for t in turns if t.end < sample_result.duration]
        assert min(lengths) >= shortest
