"""Voiceprints: the calibration of confidence, and identification within and across recordings.

    cd bench && ../.venv/bin/python voiceprints.py [--threads 2] [--cache FILE]

Recordings: the dev set (AMI clips, the pyannote sample), the wide set (telephone calls and other
conversations) and the LibriVox utterances (one reader; their "reference" is their own
diarization). Four corpora: AMI, calls (HarperValleyBank and the sample), other, LibriVox.

Enrollment: for each (recording, reference speaker), the speaker's clean speech (reference
segments where only they talk) is concatenated and cut into consecutive chunks of 1.5, 2, 3, 5,
7 and 10 s (at most `MAX_CHUNKS` of each length) and one of all of it (up to 30 s); each chunk is
written to a WAV and goes through `service.voiceprint`, as a user's upload would.

Test side: each recording is diarized once (precision-2), and so is the second half of each
recording of two or more speakers that lasts 20 s or more; each diarized speaker stands for the
reference speaker its exclusive turns overlap most.

Pairs: a voiceprint against a diarized speaker of
- another recording (same or different person; AMI sessions of one series share the room),
- the same whole recording, another person only (the voiceprint's audio is part of its own speaker):
  the same-recording, same-channel impostors,
- the second half of its own recording, when the voiceprint's audio ends before it: the same person
  in the same session, and the same-recording impostors.

Calibrations compared: logistic fits of P(same) on the cosine alone (version 1's form), on AS-norm
scores (`as_norm`: against a cohort of every reference speaker's voiceprint of all their clean
speech, and the test recording's other speakers), with or without the margin over the recording's
other speakers (`voiceprints.margins`) and the seconds of speech on either side. Shipped: cosine
and margin (`voiceprints.CALIBRATION`).
Identification names a matched speaker's second voice by itself and leaves its turns talked over
throughout unnamed (`voiceprints.second_voices`), with each fold's calibration; "one name per
speaker" is without it.
Each is cross-validated leaving one corpus out: a fold's fit (and cohort) hold no pair (and no
voice) of the held-out corpus, and predict the pairs whose test recording is in it. Pairs are
weighed so that each class weighs half and, within a class, each kind of pair alike.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from common import DEV, WIDE, clean_speech, corpus, cut, load_rttm, machine, meeting, write_wav
from pyannote.core import Annotation, Segment
from sklearn.linear_model import LogisticRegression

from diarist import service, voiceprints
from diarist.audio import load_audio
from diarist.engine import python_engine
from diarist.result import DiarizationResult
from diarist.service import DiarizeOptions
from diarist.voiceprints import Matching, Voice, VoiceprintError

LIBRIVOX = Path(__file__).parent / "data" / "librivox"
READER = "librivox-reader"
ALL = "all"  # the enrollment of all of a speaker's clean speech
LENGTHS: tuple[float | str, ...] = (1.5, 2, 3, 5, 7, 10, ALL)
MAX_CHUNKS = 4  # of each length per (recording, speaker): a talkative speaker must not swamp the pairs
COHORT_TOP = 20  # AS-norm: the closest impostors whose scores normalize a score
HALF_MIN_SECONDS = 20.0  # a recording this long (with 2+ speakers) is also diarized from its middle on


@dataclass
class Recording:
    name: str  # short: EN2001a, pyannote-sample, hvb_0002f70f, librivox-0870
    series: str  # recordings of one series share speakers (an AMI meeting series, LibriVox)
    corpus: str
    wav: Path
    samples: np.ndarray
    reference: Annotation | None = None  # LibriVox: filled from its diarization


@dataclass
class TestSpeaker:
    speaker: str  # the reference speaker it stands for
    label: str  # the diarized label
    seconds: float  # of its exclusive turns


@dataclass
class Unit:
    """A diarized test recording: a whole recording, or its second half."""

    name: str  # the recording's name, "/2" added for a half
    recording: str
    start: float  # where it starts in the recording, seconds
    result: DiarizationResult
    reference: Annotation  # in the unit's own time
    speakers: list[TestSpeaker]


@dataclass
class Enrollment:
    recording: str
    speaker: str
    length: float | str
    end: float  # where its audio ends in the recording, seconds
    heard: float  # seconds of one voice the voiceprint job found (0 when it refused)
    voice: Voice | None  # None: VoiceprintError


def recordings() -> list[Recording]:
    """The dev and wide recordings with their references, and the LibriVox utterances."""
    out = []
    for wav in sorted(DEV.glob("*.wav")) + sorted(WIDE.glob("*.wav")):
        name = wav.stem.split("-")[1] if wav.stem.startswith("ami-") else wav.stem
        reference = load_rttm(wav.with_suffix(".rttm"))
        out.append(Recording(name, meeting(wav), corpus(wav), wav, load_audio(wav), reference))
    for wav in sorted(LIBRIVOX.glob("*.wav")):
        out.append(Recording("librivox-" + wav.stem.split("-")[-1], "librivox", "librivox", wav, load_audio(wav)))
    return out


def diarized_reference(result: DiarizationResult, uri: str) -> Annotation:
    """A one-reader recording's reference: its diarized speech, all of it the reader's."""
    annotation = Annotation(uri=uri)
    for turn in result.exclusive_turns:
        annotation[Segment(turn.start, turn.end)] = READER
    return annotation


def shifted(reference: Annotation, start: float) -> Annotation:
    """The reference from `start` on, in the time of audio that starts there."""
    out = Annotation(uri=reference.uri)
    for segment, track, speaker in reference.crop(Segment(start, float("inf"))).itertracks(yield_label=True):
        out[Segment(segment.start - start, segment.end - start), track] = speaker
    return out


def test_speakers(reference: Annotation, result: DiarizationResult) -> list[TestSpeaker]:
    """Each diarized speaker with the reference speaker its exclusive turns overlap most (none: left out)."""
    overlap: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seconds = voiceprints.speech_seconds(result)
    for turn in result.exclusive_turns:
        hypothesis = Segment(turn.start, turn.end)
        for segment, _, speaker in reference.itertracks(yield_label=True):
            overlap[turn.speaker][speaker] += (hypothesis & segment).duration
    out = []
    for label in result.embeddings:
        if overlap[label] and max(overlap[label].values()) > 0:
            speaker = max(overlap[label], key=lambda s: overlap[label][s])
            out.append(TestSpeaker(speaker, label, seconds[label]))
    return out


def diarize(wav: Path) -> DiarizationResult:
    return service.diarize(python_engine(), DiarizeOptions(), wav).result


def units(rec: Recording, folder: Path) -> list[Unit]:
    """The recording diarized whole, and its second half diarized alone where it is long enough."""
    result = diarize(rec.wav)
    if rec.reference is None:
        rec.reference = diarized_reference(result, rec.name)
    out = [Unit(rec.name, rec.name, 0.0, result, rec.reference, test_speakers(rec.reference, result))]
    if result.duration >= HALF_MIN_SECONDS and len(rec.reference.labels()) >= 2:
        start = round(result.duration / 2, 2)
        wav = folder / f"{rec.name}-half.wav"
        write_wav(wav, rec.samples[int(start * 16000) :])
        half = diarize(wav)
        reference = shifted(rec.reference, start)
        out.append(Unit(f"{rec.name}/2", rec.name, start, half, reference, test_speakers(reference, half)))
    return out


def end_of(segments: list[Segment], seconds: float) -> float:
    """Where `seconds` of the concatenated `segments` end, in the recording's time."""
    for segment in segments:
        if seconds <= segment.duration:
            return segment.start + seconds
        seconds -= segment.duration
    return segments[-1].end


def enroll(recording: Recording, folder: Path) -> list[Enrollment]:
    """Voiceprints of every reference speaker's clean speech, by length (see the module docstring)."""
    out = []
    for speaker in recording.reference.labels():
        segments = clean_speech(recording.reference, speaker)
        total = sum(s.duration for s in segments)
        for length in LENGTHS:
            if length == ALL:
                clips = [(min(total, voiceprints.MAX_SECONDS), 0.0)] if total > 0 else []
            else:
                count = min(int(total // length), MAX_CHUNKS)
                clips = [(float(length), i * float(length)) for i in range(count)]
            for seconds, skip in clips:
                wav = folder / f"{recording.name}-{speaker}-{length}-{skip:g}.wav"
                write_wav(wav, cut(recording.samples, segments, seconds, skip))
                end = end_of(segments, skip + seconds)
                try:
                    made = service.voiceprint(python_engine(), wav)
                except VoiceprintError:
                    out.append(Enrollment(recording.name, speaker, length, end, 0.0, None))
                    continue
                voice = voiceprints.decode(made.voiceprint)
                out.append(Enrollment(recording.name, speaker, length, end, made.speech_seconds, voice))
    return out


def collect(recs: dict[str, Recording]) -> tuple[list[Unit], list[Enrollment]]:
    """Diarize every recording (and half), then enroll its speakers."""
    with tempfile.TemporaryDirectory() as folder:
        tests = [unit for rec in recs.values() for unit in units(rec, Path(folder))]
        enrollments = [e for rec in recs.values() for e in enroll(rec, Path(folder))]
    return tests, enrollments


def unknown(a: str, b: str) -> bool:
    """Whether the references cannot say if speakers of recordings `a` and `b` are one person: two
    HarperValleyBank calls (its agents take many calls; the transcripts say only agent and caller)."""
    return a != b and a.startswith("hvb_") and b.startswith("hvb_")


def person(recs: dict[str, Recording], recording: str, speaker: str) -> str:
    """A speaker's identity across recordings: AMI ids and the reader recur; other labels are per recording."""
    return speaker if recs[recording].corpus in ("AMI", "librivox") else f"{recording}:{speaker}"


@dataclass
class Cohort:
    vectors: np.ndarray
    series: np.ndarray
    corpus: np.ndarray

    def without(self, series: set[str], corpus: str | None = None) -> np.ndarray:
        """The cohort's vectors from other series than `series` (and another corpus than `corpus`)."""
        keep = ~np.isin(self.series, list(series)) & (self.corpus != corpus)
        return self.vectors[keep]


def make_cohort(recs: dict[str, Recording], enrollments: list[Enrollment]) -> Cohort:
    """One voice per person and series: the voiceprint of all their clean speech (up to 30 s)."""
    chosen: dict[tuple[str, str], Enrollment] = {}
    for e in enrollments:
        key = (recs[e.recording].series, person(recs, e.recording, e.speaker))
        if e.length == ALL and e.voice is not None and key not in chosen:
            chosen[key] = e
    picked = list(chosen.values())
    return Cohort(
        np.stack([e.voice.vector for e in picked]),
        np.array([recs[e.recording].series for e in picked]),
        np.array([recs[e.recording].corpus for e in picked]),
    )


@dataclass
class Pairs:
    enrollment: np.ndarray  # index into the enrollments
    unit: np.ndarray  # index into the units
    label: np.ndarray  # the diarized speaker's label in its unit
    same: np.ndarray  # bool
    kind: np.ndarray  # same recording | same series | other series
    corpus: np.ndarray  # of the test unit
    voice_seconds: np.ndarray
    speaker_seconds: np.ndarray
    cosine: np.ndarray
    margin: np.ndarray  # the cosine less the best of the voice with the test recording's other speakers


KINDS = ("same recording", "same series", "other series")


def make_pairs(recs: dict[str, Recording], tests: list[Unit], enrollments: list[Enrollment]) -> Pairs:
    """Every usable voiceprint against every diarized test speaker it can be fairly compared with.

    In its own whole recording a voiceprint meets only the others (its audio is part of its own
    speaker); in its recording's second half, all, if its audio ends before that half starts.
    """
    rows = []
    for u, unit in enumerate(tests):
        labels = list(unit.result.embeddings)
        if not labels:
            continue
        speakers = np.stack([unit.result.embeddings[label] for label in labels])
        for e, enrolled in enumerate(enrollments):
            if enrolled.voice is None or unknown(enrolled.recording, unit.recording):
                continue
            if enrolled.recording == unit.recording and enrolled.end > unit.start > 0:
                continue
            who = person(recs, enrolled.recording, enrolled.speaker)
            cosines = speakers @ enrolled.voice.vector[:, None]
            margin = voiceprints.margins(cosines)[:, 0]
            for test in unit.speakers:
                same = who == person(recs, unit.recording, test.speaker)
                if enrolled.recording == unit.recording:
                    if same and unit.start == 0:
                        continue
                    kind = KINDS[0]
                else:
                    kind = KINDS[1] if recs[enrolled.recording].series == recs[unit.recording].series else KINDS[2]
                row = labels.index(test.label)
                corpus_ = recs[unit.recording].corpus
                rows.append(
                    (e, u, test.label, same, kind, corpus_, enrolled.heard, test.seconds, cosines[row, 0], margin[row])
                )
    return Pairs(*(np.array(column) for column in zip(*rows, strict=True)))


def quality(voice_seconds: np.ndarray, speaker_seconds: np.ndarray) -> np.ndarray:
    """Quality measures: log seconds of speech of the shorter and the longer side (0.5 to 60 s)."""
    short = np.clip(np.minimum(voice_seconds, speaker_seconds), 0.5, 60)
    long = np.clip(np.maximum(voice_seconds, speaker_seconds), 0.5, 60)
    return np.column_stack([np.log(short), np.log(long)])


def _top_statistics(scores: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (at least 0.02) of the `top` highest scores of each row."""
    best = -np.sort(-scores, axis=-1)[..., :top]
    return best.mean(axis=-1), np.maximum(best.std(axis=-1), 0.02)


def as_norm(speakers: np.ndarray, voices: np.ndarray, cohort: np.ndarray, top: int = COHORT_TOP) -> np.ndarray:
    """Adaptive symmetric normalization of the cosines of one recording's speakers (rows) with voices.

    Each cosine is compared with the closest impostors of either side: for a speaker, the cohort;
    for a voice, the cohort and the recording's other speakers.
    """
    cosines = speakers @ voices.T
    speaker_mean, speaker_spread = _top_statistics(speakers @ cohort.T, top)
    voice_cohort = voices @ cohort.T
    out = np.empty_like(cosines)
    for row in range(len(speakers)):
        others = np.delete(cosines, row, axis=0).T
        voice_mean, voice_spread = _top_statistics(np.hstack([voice_cohort, others]), top)
        out[row] = 0.5 * (
            (cosines[row] - voice_mean) / voice_spread + (cosines[row] - speaker_mean[row]) / speaker_spread[row]
        )
    return out


def normalized(
    recs: dict[str, Recording],
    tests: list[Unit],
    enrollments: list[Enrollment],
    pairs: Pairs,
    cohort: Cohort,
    held_out: str | None = None,
) -> np.ndarray:
    """Each pair's AS-norm score against a cohort that holds neither side's series (nor the held-out
    corpus): a cohort would hold no user's voice either."""
    out = np.full(len(pairs.same), np.nan)
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, (e, u) in enumerate(zip(pairs.enrollment, pairs.unit, strict=True)):
        groups[u, recs[enrollments[e].recording].series].append(i)
    for (u, series), indices in groups.items():
        unit = tests[u]
        labels = list(unit.result.embeddings)
        speakers = np.stack([unit.result.embeddings[label] for label in labels])
        chosen = sorted({int(pairs.enrollment[i]) for i in indices})
        voices = np.stack([enrollments[e].voice.vector for e in chosen])
        others = cohort.without({series, recs[unit.recording].series}, held_out)
        scores = as_norm(speakers, voices, others)
        for i in indices:
            out[i] = scores[labels.index(pairs.label[i]), chosen.index(int(pairs.enrollment[i]))]
    return out


# The calibrations compared: what each sees besides the constant, from the AS-norm scores and the pairs.
FEATURES = {
    "cosine": lambda s, p: p.cosine[:, None],
    "cosine + durations": lambda s, p: np.column_stack([p.cosine, quality(p.voice_seconds, p.speaker_seconds)]),
    "cosine + margin (shipped)": lambda s, p: np.column_stack([p.cosine, p.margin]),
    "cosine + margin + durations": lambda s, p: np.column_stack(
        [p.cosine, p.margin, quality(p.voice_seconds, p.speaker_seconds)]
    ),
    "AS-norm": lambda s, p: s[:, None],
    "AS-norm + durations": lambda s, p: np.column_stack([s, quality(p.voice_seconds, p.speaker_seconds)]),
    "AS-norm + margin + durations": lambda s, p: np.column_stack(
        [s, p.margin, quality(p.voice_seconds, p.speaker_seconds)]
    ),
}
SHIPPED = "cosine + margin (shipped)"


def pair_weights(same: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Each class weighs half (50: as likely the same person as not), and within a class each kind
    of pair weighs alike: the many pairs across recordings must not drown the same-channel ones."""
    out = np.zeros(len(same))
    for label in (True, False):
        kinds = set(kind[same == label])
        for k in kinds:
            inside = (same == label) & (kind == k)
            out[inside] = 0.5 / len(kinds) / inside.sum()
    return out


def fit(features: np.ndarray, same: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, float]:
    """(weights, bias) of the logistic fit of P(same), pairs weighed by `pair_weights`."""
    weights = pair_weights(same, kind) * len(same)
    model = LogisticRegression(C=1e4, max_iter=2000).fit(features, same, sample_weight=weights)
    return model.coef_[0], float(model.intercept_[0])


def predict(weights: np.ndarray, bias: float, features: np.ndarray) -> np.ndarray:
    return 100 / (1 + np.exp(-(features @ weights + bias)))


def cross_validate(
    recs: dict[str, Recording], tests: list[Unit], enrollments: list[Enrollment], pairs: Pairs, cohort: Cohort
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, float]]]:
    """Each feature set's prediction of each pair by the fold that holds out its test corpus, and the
    shipped feature set's fit per fold."""
    predicted = {name: np.full(len(pairs.same), np.nan) for name in FEATURES}
    fits = {}
    enroll_corpus = np.array([recs[enrollments[e].recording].corpus for e in pairs.enrollment])
    for held_out in sorted(set(pairs.corpus)):
        scores = normalized(recs, tests, enrollments, pairs, cohort, held_out)
        train = (pairs.corpus != held_out) & (enroll_corpus != held_out)
        test = pairs.corpus == held_out
        for name, features in FEATURES.items():
            x = features(scores, pairs)
            weights, bias = fit(x[train], pairs.same[train], pairs.kind[train])
            predicted[name][test] = predict(weights, bias, x[test])
            if name == SHIPPED:
                fits[held_out] = (weights, bias)
    return predicted, fits


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate in %: where the share of same pairs below a threshold meets that of different ones above."""
    if same.all() or not same.any():
        return float("nan")
    thresholds = np.unique(scores)
    miss = np.searchsorted(np.sort(scores[same]), thresholds) / same.sum()
    false_alarm = 1 - np.searchsorted(np.sort(scores[~same]), thresholds) / (~same).sum()
    best = int(np.argmin(np.abs(miss - false_alarm)))
    return 100 * (miss[best] + false_alarm[best]) / 2


def balanced_loss(predicted: np.ndarray, same: np.ndarray, kind: np.ndarray) -> float:
    """Cross-entropy in nats, pairs weighed by `pair_weights` (0.693: a coin toss)."""
    p = np.clip(predicted / 100, 1e-9, 1 - 1e-9)
    weights = pair_weights(same, kind)
    return float((weights * -np.log(np.where(same, p, 1 - p))).sum())


def reliability(predicted: np.ndarray, same: np.ndarray, kind: np.ndarray) -> list[str]:
    """Rows: predicted confidence bin, pairs of each class, the mean prediction and the observed
    same-rate, pairs weighed by `pair_weights`."""
    weights = pair_weights(same, kind)
    rows = []
    for low in range(0, 100, 10):
        inside = (predicted >= low) & ((predicted < low + 10) if low < 90 else (predicted <= 100))
        if not inside.any():
            continue
        observed = 100 * weights[inside & same].sum() / weights[inside].sum()
        mean = (weights[inside] * predicted[inside]).sum() / weights[inside].sum()
        counts = f"{int((inside & same).sum())} | {int((inside & ~same).sum())}"
        rows.append(f"| {low}-{low + 10} | {counts} | {mean:.0f} | {observed:.0f} |")
    return rows


def rate(mask: np.ndarray) -> str:
    return f"{100 * mask.mean():.1f}" if len(mask) else "—"


SECONDS_BINS = ((0, 3), (3, 5), (5, 10), (10, 1000))


def comparison(predicted: dict[str, np.ndarray], pairs: Pairs) -> list[str]:
    """Markdown rows: each feature set's cross-validated EER, loss and errors at 50, by kind of pair."""
    rows = [
        "| calibration | EER % | balanced log loss | same < 50 % | different ≥ 50 %: " + " | ".join(KINDS) + " |",
        "|---|---|---|---|" + "---|" * len(KINDS),
    ]
    for name, p in predicted.items():
        false = [rate(p[(pairs.kind == kind) & ~pairs.same] >= 50) for kind in KINDS]
        rows.append(
            f"| {name} | {eer(p, pairs.same):.1f} | {balanced_loss(p, pairs.same, pairs.kind):.3f} | "
            f"{rate(p[pairs.same] < 50)} | " + " | ".join(false) + " |"
        )
    return rows


def by_seconds(p: np.ndarray, pairs: Pairs) -> list[str]:
    """Markdown rows: errors at 50 by the shorter side's seconds of speech."""
    rows = [
        "| shorter side | same pairs | same < 50 % | different pairs | different ≥ 50 %: "
        + " | ".join(KINDS)
        + " | EER % |",
        "|---|---|---|---|" + "---|" * len(KINDS) + "---|",
    ]
    short = np.minimum(pairs.voice_seconds, pairs.speaker_seconds)
    for low, high in SECONDS_BINS:
        inside = (short >= low) & (short < high)
        same, different = inside & pairs.same, inside & ~pairs.same
        false = [rate(p[different & (pairs.kind == kind)] >= 50) for kind in KINDS]
        span = f"{low}-{high} s" if high < 1000 else f"≥ {low} s"
        rows.append(
            f"| {span} | {same.sum()} | {rate(p[same] < 50)} | {different.sum()} | "
            + " | ".join(false)
            + f" | {eer(p[inside], pairs.same[inside]):.1f} |"
        )
    return rows


FRAME = 0.01  # identification scoring resolution, seconds
# Recordings of one series that share speakers, for identification across sessions.
SESSIONS = [("EN2001a", "EN2001e"), ("EN2006a", "EN2006b"), ("ES2003a", "ES2003b"), ("EN2005a", "EN2009b")]
IDENTIFY_SPEECH = 3.0  # enroll the speakers whose voiceprint of all their clean speech heard this much
THRESHOLD = 50
MATCHINGS = (Matching(True, THRESHOLD), Matching(False, THRESHOLD))


def frames(segments, duration: float) -> np.ndarray:
    """A boolean frame mask of (start, end) spans."""
    mask = np.zeros(int(np.ceil(duration / FRAME)), dtype=bool)
    for start, end in segments:
        mask[round(start / FRAME) : round(end / FRAME)] = True
    return mask


def named_speech(recs: dict[str, Recording], unit: Unit, naming: Naming, voices: list[Enrollment]) -> dict[str, float]:
    """Seconds of reference speech (per speaker, overlap counted per speaker) by what name it got.

    `naming` maps the unit's diarized labels to the person matched (None: unnamed) among those of
    `voices`, and gives the parts of speakers that are a second voice (`voiceprints.second_voices`).
    A name on a frame where that person is not talking is wrong; an enrolled person's time is right
    where their name is on it.
    """
    names, seconds = naming
    duration = unit.result.duration
    talking: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(int(np.ceil(duration / FRAME)), dtype=bool))
    for speaker in unit.reference.labels():
        spans = [(s.start, s.end) for s in unit.reference.label_timeline(speaker)]
        talking[person(recs, unit.recording, speaker)] |= frames(spans, duration)
    spans: dict[str, list] = defaultdict(list)
    for turn in unit.result.turns:
        for start, end, name in voiceprints.named_pieces(
            turn.start, turn.end, names.get(turn.speaker), seconds.get(turn.speaker)
        ):
            if name:
                spans[name].append((start, end))
    named = {name: frames(s, duration) for name, s in spans.items()}
    wrong = np.zeros_like(frames([], duration))
    for name, mask in named.items():
        wrong |= mask & ~talking[name]
    enrolled = {person(recs, e.recording, e.speaker) for e in voices}
    out: dict[str, float] = defaultdict(float)
    for who in list(talking):
        here = talking[who]
        if who in enrolled:
            right = here & named.get(who, np.zeros_like(here))
            out["enrolled"] += here.sum() * FRAME
            out["enrolled right"] += right.sum() * FRAME
        else:
            out["not enrolled"] += here.sum() * FRAME
            out["not enrolled named"] += (here & wrong).sum() * FRAME
    return out


class Scorer:
    """Identification's confidences for a unit and some voiceprints: as version 1 voiceprints (no
    fits), or as version 2 with the fit of the fold that holds out the unit's corpus; `split`: a
    matched speaker's second voice is named by itself (`voiceprints.second_voices`, version 2)."""

    def __init__(
        self, recs: dict[str, Recording], fits: dict[str, tuple[np.ndarray, float]] | None, split: bool = True
    ) -> None:
        self.recs, self.fits, self.split = recs, fits, split

    def fold(self, unit: Unit) -> tuple[float, float, float]:
        (slope, margin_slope), offset = self.fits[self.recs[unit.recording].corpus]
        return slope, margin_slope, offset

    def __call__(self, unit: Unit, voices: list[Enrollment]) -> np.ndarray:
        labels = list(unit.result.embeddings)
        if not labels:  # no speech heard
            return np.zeros((0, len(voices)), dtype=int)
        speakers = np.stack([unit.result.embeddings[label] for label in labels])
        if self.fits is None:
            return voiceprints.confidences(speakers, [Voice(e.voice.vector, None) for e in voices])
        voices_2 = [Voice(e.voice.vector, e.heard) for e in voices]
        return voiceprints.confidences(speakers, voices_2, self.fold(unit))


# The person matched with each diarized label, and the labels' second voices (their match a person too).
Naming = tuple[dict[str, str | None], dict[str, voiceprints.SecondVoice]]


def identify(scorer: Scorer, unit: Unit, voices: list[Enrollment], matching: Matching) -> Naming:
    """The unit's diarized labels and the person each is matched with, and their second voices."""
    labels = list(unit.result.embeddings)
    columns = voiceprints.assign(scorer(unit, voices), matching)

    def who(column: int | None) -> str | None:
        return None if column is None else person(scorer.recs, voices[column].recording, voices[column].speaker)

    names = {label: who(c) for label, c in zip(labels, columns, strict=True)}
    if scorer.fits is None or not scorer.split:
        return names, {}
    keyed = {str(i): Voice(e.voice.vector, e.heard) for i, e in enumerate(voices)}
    matches = {label: None if c is None else str(c) for label, c in zip(labels, columns, strict=True)}
    seconds = voiceprints.second_voices(unit.result, matches, keyed, matching, scorer.fold(unit))
    return names, {
        label: replace(second, match=who(None if second.match is None else int(second.match)))
        for label, second in seconds.items()
    }


def whole(tests: list[Unit]) -> dict[str, Unit]:
    return {unit.name: unit for unit in tests if unit.start == 0}


def all_speech(enrollments: list[Enrollment], recording: str) -> list[Enrollment]:
    """The voiceprints of all the clean speech of a recording's speakers who have enough of it."""
    return [
        e
        for e in enrollments
        if e.recording == recording and e.length == ALL and e.voice is not None and e.heard >= IDENTIFY_SPEECH
    ]


def across_sessions(scorer: Scorer, tests: list[Unit], enrollments: list[Enrollment], matching: Matching):
    """Enroll in one recording of a series, identify in the other, both ways: (rows, totals)."""
    totals: dict[str, float] = defaultdict(float)
    rows = []
    for first, second in SESSIONS:
        for source, target in ((first, second), (second, first)):
            voices = all_speech(enrollments, source)
            names = identify(scorer, whole(tests)[target], voices, matching)
            score = named_speech(scorer.recs, whole(tests)[target], names, voices)
            for key, value in score.items():
                totals[key] += value
            rows.append((f"{source} → {target}", ", ".join(e.speaker for e in voices), score))
    return rows, totals


def early_voices(tests: list[Unit], enrollments: list[Enrollment], half: Unit) -> dict[str, Enrollment]:
    """Per reference speaker of the half's recording, the longest voiceprint whose audio ends before the half."""
    out: dict[str, Enrollment] = {}
    for e in enrollments:
        usable = e.recording == half.recording and e.voice is not None and e.end <= half.start
        if usable and (e.speaker not in out or e.heard > out[e.speaker].heard):
            out[e.speaker] = e
    return out


def same_recording(scorer: Scorer, tests: list[Unit], enrollments: list[Enrollment], matching: Matching):
    """Each person of a recording left out in turn, the others enrolled from its first half: the speech
    of the one left out that gets a name, in the second half and in the whole recording."""
    totals: dict[str, dict[str, float]] = {"second half": defaultdict(float), "whole": defaultdict(float)}
    for half in (unit for unit in tests if unit.start > 0):
        early = early_voices(tests, enrollments, half)
        for left_out in half.reference.labels():
            voices = [e for speaker, e in early.items() if speaker != left_out]
            if not voices:
                continue
            for where, unit in (("second half", half), ("whole", whole(tests)[half.recording])):
                score = named_speech(scorer.recs, unit, identify(scorer, unit, voices, matching), voices)
                for key, value in score.items():
                    totals[where][key] += value
    return totals


def strangers(scorer: Scorer, tests: list[Unit], enrollments: list[Enrollment], matching: Matching):
    """The speakers of each recording enrolled (all their speech), identified in every recording of
    another series: the speech of people never enrolled that gets a name, by kind of target."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    recs = scorer.recs
    for source in recs:
        voices = all_speech(enrollments, source)
        if not voices:
            continue
        for unit in whole(tests).values():
            if recs[unit.recording].series != recs[source].series and not unknown(source, unit.recording):
                score = named_speech(recs, unit, identify(scorer, unit, voices, matching), voices)
                channel = "same corpus" if recs[unit.recording].corpus == recs[source].corpus else "other corpus"
                for key, value in score.items():
                    totals[channel][key] += value
    return totals


def share(score: dict[str, float], part: str, whole_: str) -> str:
    return f"{100 * score[part] / score[whole_]:.1f} % of {score[whole_]:.0f} s" if score[whole_] else "—"


def identification_tables(recs, tests, enrollments, scorers: dict[str, Scorer]) -> list[str]:
    """Markdown: identification across sessions, within a recording and with strangers, per calibration."""
    lines = [
        "| calibration | matching | enrolled speech named right (across sessions) | not-enrolled speech named: "
        "across sessions | same recording, 2nd half | same recording, whole | strangers, same corpus | "
        "strangers, other corpus | enrolled speech named right: same recording, 2nd half |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    details = []
    for name, scorer in scorers.items():
        for matching in MATCHINGS:
            rows, sessions = across_sessions(scorer, tests, enrollments, matching)
            within = same_recording(scorer, tests, enrollments, matching)
            others = strangers(scorer, tests, enrollments, matching)
            how = "exclusive" if matching.exclusive else "not exclusive"
            lines.append(
                f"| {name} | {matching.threshold:g}, {how} | {share(sessions, 'enrolled right', 'enrolled')} | "
                f"{share(sessions, 'not enrolled named', 'not enrolled')} | "
                f"{share(within['second half'], 'not enrolled named', 'not enrolled')} | "
                f"{share(within['whole'], 'not enrolled named', 'not enrolled')} | "
                f"{share(others['same corpus'], 'not enrolled named', 'not enrolled')} | "
                f"{share(others['other corpus'], 'not enrolled named', 'not enrolled')} | "
                f"{share(within['second half'], 'enrolled right', 'enrolled')} |"
            )
            if matching.exclusive:
                details += [
                    f"| {name} | {pair} | {people} | {share(s, 'enrolled right', 'enrolled')} | "
                    f"{share(s, 'not enrolled named', 'not enrolled')} |"
                    for pair, people, s in rows
                ]
    header = [
        "\nAcross sessions, per recording pair (threshold 50, exclusive):\n",
        "| calibration | enrolled in → identified in | enrolled | enrolled speech named right | "
        "not-enrolled speech named |",
        "|---|---|---|---|---|",
    ]
    return lines + header + details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the voiceprints and test units here, and reuse them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recs = {r.name: r for r in recordings()}
    if args.cache and args.cache.exists():
        tests, enrollments, references = pickle.loads(args.cache.read_bytes())
        for name, reference in references.items():
            recs[name].reference = reference
    else:
        tests, enrollments = collect(recs)
        if args.cache:
            references = {name: rec.reference for name, rec in recs.items()}
            args.cache.write_bytes(pickle.dumps((tests, enrollments, references)))
    cohort = make_cohort(recs, enrollments)
    pairs = make_pairs(recs, tests, enrollments)

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# Voiceprints ({machine()}, {args.threads} threads; load average at the end {load})\n")
    print(
        f"{len(recs)} recordings, {len(tests)} diarized test units, {len(enrollments)} enrollment clips "
        f"({sum(e.voice is None for e in enrollments)} refused), a cohort of {len(cohort.vectors)} voices. Pairs:\n"
    )
    print("| kind | same | different |\n|---|---|---|")
    for kind in KINDS:
        inside = pairs.kind == kind
        print(f"| {kind} | {(inside & pairs.same).sum()} | {(inside & ~pairs.same).sum()} |")

    predicted, fits = cross_validate(recs, tests, enrollments, pairs, cohort)
    predicted = {
        "version 1's constants (not refitted)": voiceprints.confidence(pairs.cosine, voiceprints.CALIBRATION_1).astype(
            float
        ),
        **predicted,
    }
    print(f"\n## Calibrations compared (cross-validated by corpus; AS-norm: top {COHORT_TOP} of the cohort)\n")
    print("\n".join(comparison(predicted, pairs)))
    print("\n## The shipped calibration, cross-validated: errors at 50 by seconds of speech\n")
    print("\n".join(by_seconds(predicted[SHIPPED], pairs)))
    print("\nReliability (pairs weighed as in the fit; calibrated: observed ≈ predicted):\n")
    print("| predicted confidence | same pairs | different pairs | mean predicted | observed same-rate % |")
    print("|---|---|---|---|---|")
    print("\n".join(reliability(predicted[SHIPPED], pairs.same, pairs.kind)))
    print("\nPer fold (the fit on the pairs that touch no recording of the held-out corpus):\n")
    print("| held out | same pairs | different pairs | slope | margin slope | offset |\n|---|---|---|---|---|---|")
    for held_out, ((slope, margin_slope), offset) in fits.items():
        test = pairs.corpus == held_out
        print(
            f"| {held_out} | {(test & pairs.same).sum()} | {(test & ~pairs.same).sum()} | "
            f"{slope:.2f} | {margin_slope:.2f} | {offset:.2f} |"
        )
    (slope, margin_slope), offset = fit(FEATURES[SHIPPED](None, pairs), pairs.same, pairs.kind)
    print(f"\nFit on all pairs: **CALIBRATION = ({slope:.2f}, {margin_slope:.2f}, {offset:.2f})**\n")
    print("## Identification (each recording scored by the fold that holds out its corpus)\n")
    scorers = {
        "version 1 (cosine)": Scorer(recs, None),
        "version 2, one name per speaker": Scorer(recs, fits, split=False),
        "version 2": Scorer(recs, fits),
    }
    print("\n".join(identification_tables(recs, tests, enrollments, scorers)))
    print(f"\nWhole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
