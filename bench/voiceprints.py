"""Voiceprints: verification EER, the calibration of confidence, identification accuracy and speed.

    cd bench && ../.venv/bin/python voiceprints.py [--threads 2] [--cache FILE]

Enrollment: for each (recording, reference speaker), the speaker's clean speech (reference
segments where only they talk) is concatenated and cut into consecutive chunks of 1, 1.5, 2, 3,
5 and 10 s (at most `MAX_CHUNKS` of each length) and one of all of it (up to 30 s); each chunk is
written to a WAV and goes through `service.voiceprint`, as a user's upload would.
Test side: each recording is diarized once (precision-2); each diarized speaker stands for the
reference speaker its exclusive turns overlap most.
Pairs: a voiceprint from recording A against a diarized speaker of recording B, A != B (within a
recording the voiceprint's audio is part of the speaker it is compared with). Same or different
by reference speaker id; the five LibriVox utterances are five recordings of one reader, whose
"reference" is their own diarization (one voice, read speech).

The calibration is the logistic fit of P(same) on the cosine, both classes weighing half, on the
pairs of 3 s or more of enrollment speech; it is cross-validated leaving one meeting series
(EN2001, ..., ES2003, the pyannote sample, LibriVox) out: a fold trains on the pairs that touch
no recording of the series and predicts the pairs whose test recording is in it, so each pair is
predicted once.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from common import DEV, clean_speech, cut, load_rttm, machine, meeting, write_wav
from pyannote.core import Annotation, Segment
from scipy.optimize import minimize

from diarist import service, voiceprints
from diarist.audio import load_audio
from diarist.engine import python_engine
from diarist.service import DiarizeOptions, IdentifyOptions
from diarist.voiceprints import Matching, VoiceprintError

LIBRIVOX = Path(__file__).parent / "data" / "librivox"
READER = "librivox-reader"
ALL = "all"  # the enrollment of all of a speaker's clean speech
LENGTHS: tuple[float | str, ...] = (1, 1.5, 2, 3, 5, 10, ALL)
CALIBRATION_LENGTHS: tuple[float | str, ...] = (3, 5, 10, ALL)  # the pairs the calibration is fitted on
MAX_CHUNKS = 4  # of each length per (recording, speaker): a talkative speaker must not swamp the pairs
# Recordings of one series that share speakers, for identification (EN2005a and EN2009b share FEE083).
SESSIONS = [("EN2001a", "EN2001e"), ("EN2006a", "EN2006b"), ("ES2003a", "ES2003b"), ("EN2005a", "EN2009b")]
IDENTIFY_SPEECH = 3.0  # enroll the speakers with at least this much clean speech
SPEED_FILE = "ami-EN2001e-0-30"  # one voice for 29 s: what a voiceprint upload looks like
FRAME = 0.01  # identification scoring resolution, seconds


@dataclass
class Recording:
    name: str  # short: EN2001a, pyannote-sample, librivox-0870
    series: str
    wav: Path
    samples: np.ndarray
    reference: Annotation | None = None  # LibriVox: filled from its diarization


@dataclass
class Enrollment:
    recording: str
    speaker: str
    length: float | str
    seconds: float  # of clean reference speech in the clip
    heard: float  # seconds of one voice the voiceprint job found (0 when it refused)
    voiceprint: str | None  # None: VoiceprintError
    vector: np.ndarray | None


@dataclass
class TestSpeaker:
    recording: str
    speaker: str  # the reference speaker it stands for
    label: str  # the diarized label
    vector: np.ndarray
    seconds: float  # of its exclusive turns


@dataclass
class Pairs:
    cosine: np.ndarray
    same: np.ndarray  # bool
    length: np.ndarray  # object: the enrollment length
    enroll_series: np.ndarray
    test_series: np.ndarray
    test_seconds: np.ndarray  # the diarized speaker's exclusive speech

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(*(getattr(self, f.name)[mask] for f in fields(self)))

    def of_length(self, *lengths: float | str) -> np.ndarray:
        """The mask of the pairs whose enrollment has one of `lengths` (an object array: no np.isin)."""
        return np.array([length in lengths for length in self.length], dtype=bool)


def recordings() -> list[Recording]:
    """The dev clips (AMI and the pyannote sample) and the LibriVox utterances."""
    out = []
    for wav in sorted(DEV.glob("*.wav")):
        name = wav.stem.split("-")[1] if wav.stem.startswith("ami-") else wav.stem
        out.append(Recording(name, meeting(wav), wav, load_audio(wav), load_rttm(wav.with_suffix(".rttm"))))
    for wav in sorted(LIBRIVOX.glob("*.wav")):
        out.append(Recording("librivox-" + wav.stem.split("-")[-1], "librivox", wav, load_audio(wav)))
    return out


def diarized_reference(result, uri: str) -> Annotation:
    """A one-reader recording's reference: its diarized speech, all of it the reader's."""
    annotation = Annotation(uri=uri)
    for turn in result.exclusive_turns:
        annotation[Segment(turn.start, turn.end)] = READER
    return annotation


def test_speakers(recording: Recording, result) -> list[TestSpeaker]:
    """Each diarized speaker with the reference speaker its exclusive turns overlap most (none: left out)."""
    overlap: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seconds: dict[str, float] = defaultdict(float)
    for turn in result.exclusive_turns:
        seconds[turn.speaker] += turn.end - turn.start
        hypothesis = Segment(turn.start, turn.end)
        for segment, _, speaker in recording.reference.itertracks(yield_label=True):
            overlap[turn.speaker][speaker] += (hypothesis & segment).duration
    out = []
    for label, vector in result.embeddings.items():
        if overlap[label] and max(overlap[label].values()) > 0:
            speaker = max(overlap[label], key=lambda s: overlap[label][s])
            out.append(TestSpeaker(recording.name, speaker, label, vector, seconds[label]))
    return out


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
                try:
                    made = service.voiceprint(python_engine(), wav)
                except VoiceprintError:
                    out.append(Enrollment(recording.name, speaker, length, seconds, 0.0, None, None))
                    continue
                vector = voiceprints.decode(made.voiceprint)
                out.append(
                    Enrollment(recording.name, speaker, length, seconds, made.speech_seconds, made.voiceprint, vector)
                )
    return out


def make_pairs(enrollments: list[Enrollment], tests: list[TestSpeaker], series: dict[str, str]) -> Pairs:
    """Every usable voiceprint against every diarized speaker of another recording."""
    rows = [
        (e.vector @ t.vector, e.speaker == t.speaker, e.length, series[e.recording], series[t.recording], t.seconds)
        for e in enrollments
        if e.vector is not None
        for t in tests
        if t.recording != e.recording
    ]
    columns = list(zip(*rows, strict=True))
    return Pairs(*(np.array(c, dtype=object if i == 2 else None) for i, c in enumerate(columns)))


def eer(scores: np.ndarray, same: np.ndarray) -> float:
    """Equal error rate in %: where the share of same pairs below a threshold meets that of different ones above."""
    if same.all() or not same.any():
        return float("nan")
    thresholds = np.unique(scores)
    miss = np.array([(scores[same] < t).mean() for t in thresholds])
    false_alarm = np.array([(scores[~same] >= t).mean() for t in thresholds])
    best = int(np.argmin(np.abs(miss - false_alarm)))
    return 100 * (miss[best] + false_alarm[best]) / 2


def balanced_weights(same: np.ndarray) -> np.ndarray:
    """Each class weighs half in all: P(same) = 0.5 means as likely the same speaker as not."""
    return np.where(same, 0.5 / same.sum(), 0.5 / (~same).sum())


def log_loss(slope: float, offset: float, cosine: np.ndarray, same: np.ndarray) -> float:
    """Balanced cross-entropy (nats) of the calibration (slope, offset) on the pairs."""
    z = slope * cosine + offset
    # -log sigmoid(z) for same pairs, -log(1 - sigmoid(z)) for different ones.
    return float((balanced_weights(same) * np.logaddexp(0, np.where(same, -z, z))).sum())


def fit_calibration(cosine: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(slope, offset) of the balanced logistic fit of P(same) on the cosine."""
    fit = minimize(
        lambda p: log_loss(p[0], p[1], cosine, same),
        x0=np.array([10.0, -3.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 4000},
    )
    return float(fit.x[0]), float(fit.x[1])


def confidence(slope: float, offset: float, cosine: np.ndarray) -> np.ndarray:
    return 100 / (1 + np.exp(-(slope * cosine + offset)))


def cross_validate(pairs: Pairs) -> tuple[np.ndarray, list[tuple[str, int, int, float, float]]]:
    """Each pair's confidence from the fit on the series its test recording is not in, and the fits per fold."""
    predicted = np.full(len(pairs.cosine), np.nan)
    folds = []
    for held_out in sorted(set(pairs.test_series)):
        train = (pairs.enroll_series != held_out) & (pairs.test_series != held_out)
        test = pairs.test_series == held_out
        slope, offset = fit_calibration(pairs.cosine[train], pairs.same[train])
        predicted[test] = confidence(slope, offset, pairs.cosine[test])
        folds.append((held_out, int(pairs.same[test].sum()), int((~pairs.same[test]).sum()), slope, offset))
    return predicted, folds


def reliability(predicted: np.ndarray, same: np.ndarray) -> list[str]:
    """Rows: predicted confidence bin, pairs of each kind, the mean prediction and the observed same-rate, balanced."""
    weights = balanced_weights(same)
    rows = []
    for low in range(0, 100, 10):
        inside = (predicted >= low) & ((predicted < low + 10) if low < 90 else (predicted <= 100))
        if not inside.any():
            continue
        share_same = weights[inside & same].sum()  # of the (half) weight of the same class
        observed = 100 * share_same / weights[inside].sum()
        mean = (weights[inside] * predicted[inside]).sum() / weights[inside].sum()
        counts = f"{int((inside & same).sum())} | {int((inside & ~same).sum())}"
        rows.append(f"| {low}-{low + 10} | {counts} | {mean:.0f} | {observed:.0f} |")
    return rows


def errors_at(predicted: np.ndarray, same: np.ndarray, threshold: float = 50) -> tuple[float, float]:
    """(% of same pairs below `threshold`, % of different pairs at or above it)."""
    return 100 * (predicted[same] < threshold).mean(), 100 * (predicted[~same] >= threshold).mean()


def frames(segments, duration: float) -> np.ndarray:
    """A boolean frame mask of (start, end) spans."""
    mask = np.zeros(int(np.ceil(duration / FRAME)), dtype=bool)
    for start, end in segments:
        mask[round(start / FRAME) : round(end / FRAME)] = True
    return mask


def identification_score(reference: Annotation, output: dict, enrolled: set[str], duration: float) -> dict[str, float]:
    """Seconds of reference speech (per speaker, overlap counted per speaker) by what name it got.

    An enrolled speaker's time is right when their name is on it, wrong when only other names are
    (that no one else in the reference is talking with), unnamed otherwise (missed, or the speaker
    kept a diarization label). A speaker not enrolled is right unless a name of someone not
    talking is on their time.
    """
    speakers = reference.labels()
    talking = {s: frames([(seg.start, seg.end) for seg in reference.label_timeline(s)], duration) for s in speakers}
    names = defaultdict(list)
    for segment in output["identification"]:
        if segment["match"] is not None:
            names[segment["match"]].append((segment["start"], segment["end"]))
    named = {name: frames(spans, duration) for name, spans in names.items()}
    nobody = np.zeros_like(talking[speakers[0]])
    # A name on a frame where that person is not talking (or not in the recording at all) is wrong.
    wrong = nobody.copy()
    for name, mask in named.items():
        wrong |= mask & ~talking.get(name, nobody)
    out = defaultdict(float)
    for speaker in speakers:
        here = talking[speaker]
        if speaker in enrolled:
            right = here & named.get(speaker, nobody)
            out["enrolled"] += here.sum() * FRAME
            out["enrolled right"] += right.sum() * FRAME
            out["enrolled wrong"] += (here & ~right & wrong).sum() * FRAME
        else:
            out["not enrolled"] += here.sum() * FRAME
            out["not enrolled wrong"] += (here & wrong).sum() * FRAME
    return out


# How identification is run: (threshold, exclusive).
IDENTIFY_MATCHING = [(0, True), (50, True), (50, False)]


def identification(recs: dict[str, Recording], enrollments: list[Enrollment]) -> list[str]:
    """Markdown rows: enroll in one recording of a series, identify in the other, both ways."""
    rows = []
    totals: dict[tuple[float, bool], dict[str, float]] = {m: defaultdict(float) for m in IDENTIFY_MATCHING}
    for first, second in SESSIONS:
        for source, target in ((first, second), (second, first)):
            chosen = {
                e.speaker: e
                for e in enrollments
                if e.recording == source and e.length == ALL and e.seconds >= IDENTIFY_SPEECH and e.vector is not None
            }
            prints = {speaker: voiceprints.decode(e.voiceprint) for speaker, e in chosen.items()}
            for threshold, exclusive in IDENTIFY_MATCHING:
                matching = Matching(exclusive=exclusive, threshold=threshold)
                done = service.identify(
                    python_engine(), IdentifyOptions(voiceprints=prints, matching=matching), recs[target].wav
                )
                score = identification_score(recs[target].reference, done.output, set(prints), done.result.duration)
                for key, value in score.items():
                    totals[threshold, exclusive][key] += value
                best = {s["speaker"]: max(s["confidence"].values(), default=0) for s in done.output["voiceprints"]}
                found = ", ".join(
                    f"{s['speaker']}→{s['match'] or '—'} ({best[s['speaker']]})" for s in done.output["voiceprints"]
                )
                name = f"{source} → {target}"
                rows.append(_identify_row(name, ", ".join(sorted(prints)), matching, score, found))
    for (threshold, exclusive), score in totals.items():
        rows.append(_identify_row("**all**", "", Matching(exclusive, threshold), score, ""))
    return rows


def _identify_row(name: str, enrolled: str, matching: Matching, score: dict[str, float], found: str) -> str:
    def share(part: str, whole: str) -> str:
        return f"{100 * score[part] / score[whole]:.0f} % of {score[whole]:.1f} s" if score[whole] else "—"

    right = score["enrolled right"] + score["not enrolled"] - score["not enrolled wrong"]
    total = score["enrolled"] + score["not enrolled"]
    how = f"{matching.threshold:g}" + ("" if matching.exclusive else ", not exclusive")
    return (
        f"| {name} | {enrolled} | {how} | **{100 * right / total:.0f}** | {share('enrolled right', 'enrolled')} | "
        f"{share('enrolled wrong', 'enrolled')} | {share('not enrolled wrong', 'not enrolled')} | {found} |"
    )


def median_seconds(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(recs: dict[str, Recording], enrollments: list[Enrollment]) -> list[str]:
    """Voiceprint job on a 30 s file; identify with 50 voiceprints against diarize on it (medians of 3)."""
    wav = recs[SPEED_FILE.split("-")[1]].wav
    fifty = {
        f"{e.recording}/{e.speaker}/{e.length}/{i}": e.vector for i, e in enumerate(enrollments) if e.vector is not None
    }
    fifty = dict(list(fifty.items())[:50])
    options = IdentifyOptions(voiceprints=fifty)
    made = median_seconds(lambda: service.voiceprint(python_engine(), wav))
    times: dict[str, list[float]] = {"diarize": [], "identify": []}
    for _ in range(3):  # interleaved, so that the load of the machine hits both alike
        times["diarize"].append(median_seconds(lambda: service.diarize(python_engine(), DiarizeOptions(), wav), 1))
        times["identify"].append(median_seconds(lambda: service.identify(python_engine(), options, wav), 1))
    diarize, identify = statistics.median(times["diarize"]), statistics.median(times["identify"])
    result = service.diarize(python_engine(), DiarizeOptions(), wav).result
    match = median_seconds(lambda: voiceprints.match_speakers(result.embeddings, fifty, Matching()), 21)
    return [
        f"| voiceprint job ({SPEED_FILE}, 30 s) | {made:.2f} s |",
        f"| diarize ({SPEED_FILE}) | {diarize:.2f} s |",
        f"| identify, {len(fifty)} voiceprints (same file) | {identify:.2f} s |",
        f"| identify / diarize | {identify / diarize:.3f} ({1000 * (identify - diarize):+.0f} ms) |",
        f"| the matching alone ({len(result.speakers)} speakers by {len(fifty)} voiceprints, median of 21) | "
        f"{1000 * match:.2f} ms |",
    ]


def collect(recs: dict[str, Recording]) -> tuple[list[TestSpeaker], list[Enrollment]]:
    """Diarize every recording once (its test speakers), then enroll its speakers."""
    tests: list[TestSpeaker] = []
    for rec in recs.values():
        result = service.diarize(python_engine(), DiarizeOptions(), rec.wav).result
        if rec.reference is None:
            rec.reference = diarized_reference(result, rec.name)
        tests += test_speakers(rec, result)
    with tempfile.TemporaryDirectory() as folder:
        enrollments = [e for rec in recs.values() for e in enroll(rec, Path(folder))]
    return tests, enrollments


def fmt(length: float | str) -> str:
    return "all (≤ 30 s)" if length == ALL else f"{length:g} s"


def length_table(pairs: Pairs, enrollments: list[Enrollment], slope: float, offset: float) -> list[str]:
    """Markdown rows: verification by enrollment length, raw cosine, and the calibration's errors at 50."""
    rows = [
        "| enrollment | clips | refused | median s heard | same pairs | different pairs | EER % | "
        "mean cosine same / different | p95 cosine different | same < 50 % | different ≥ 50 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for length in LENGTHS:
        clips = [e for e in enrollments if e.length == length]
        refused = sum(e.vector is None for e in clips)
        heard = statistics.median([e.heard for e in clips if e.vector is not None] or [0])
        part = pairs.subset(pairs.of_length(length))
        if not part.same.any():
            rows.append(f"| {fmt(length)} | {len(clips)} | {refused} | — | 0 | {len(part.same)} | | | | | |")
            continue
        miss, false_alarm = errors_at(confidence(slope, offset, part.cosine), part.same)
        rows.append(
            f"| {fmt(length)} | {len(clips)} | {refused} | {heard:.1f} | {part.same.sum()} | {(~part.same).sum()} | "
            f"{eer(part.cosine, part.same):.1f} | {part.cosine[part.same].mean():.2f} / "
            f"{part.cosine[~part.same].mean():.2f} | {np.percentile(part.cosine[~part.same], 95):.2f} | "
            f"{miss:.1f} | {false_alarm:.1f} |"
        )
    return rows


def calibration_report(pairs: Pairs) -> tuple[float, float, list[str]]:
    """The fit on all the calibration pairs and the markdown of its cross-validation."""
    fitted = pairs.subset(pairs.of_length(*CALIBRATION_LENGTHS))
    slope, offset = fit_calibration(fitted.cosine, fitted.same)
    predicted, folds = cross_validate(fitted)
    miss, false_alarm = errors_at(predicted, fitted.same)
    p = np.clip(predicted / 100, 1e-12, 1 - 1e-12)
    cv_loss = float((balanced_weights(fitted.same) * -np.log(np.where(fitted.same, p, 1 - p))).sum())
    old = log_loss(16.0, -8.0, fitted.cosine, fitted.same)
    lines = [
        f"Pairs with 3 s or more of enrollment speech: {fitted.same.sum()} same, {(~fitted.same).sum()} different.\n",
        f"Fit on all of them: **CALIBRATION_SLOPE = {slope:.2f}, CALIBRATION_OFFSET = {offset:.2f}** "
        f"(confidence 50 at cosine {-offset / slope:.3f})\n",
        f"- EER: raw cosine {eer(fitted.cosine, fitted.same):.1f} %, cross-validated confidences "
        f"{eer(predicted, fitted.same):.1f} %",
        f"- cross-validated, at confidence 50: {miss:.1f} % of same pairs below, {false_alarm:.1f} % of different "
        "pairs at or above",
        f"- balanced log loss (nats; 0.693 = a coin toss): placeholder (16, -8) {old:.3f}, cross-validated fit "
        f"{cv_loss:.3f}, in-sample fit {log_loss(slope, offset, fitted.cosine, fitted.same):.3f}",
    ]
    for low, high in ((0, 5), (5, 31)):
        part = fitted.subset((fitted.test_seconds >= low) & (fitted.test_seconds < high))
        lines.append(
            f"- test speakers with {low}-{high} s of exclusive speech: {part.same.sum()} same, "
            f"{(~part.same).sum()} different pairs, EER {eer(part.cosine, part.same):.1f} %"
        )
    lines += [
        "\nCross-validated reliability (each class weighs half; calibrated: observed ≈ predicted):\n",
        "| predicted confidence | same pairs | different pairs | mean predicted | observed same-rate % |",
        "|---|---|---|---|---|",
        *reliability(predicted, fitted.same),
        "\nPer fold (fit on the pairs that touch no recording of the held-out series):\n",
        "| held out | same pairs predicted | different pairs predicted | slope | offset | 50 at cosine |",
        "|---|---|---|---|---|---|",
    ]
    for held_out, n_same, n_diff, s, o in folds:
        lines.append(f"| {held_out} | {n_same} | {n_diff} | {s:.2f} | {o:.2f} | {-o / s:.3f} |")
    lines += ["\nFit per enrollment length (in-sample):\n", "| enrollment | slope | offset | 50 at cosine |"]
    lines.append("|---|---|---|---|")
    for length in LENGTHS:
        part = pairs.subset(pairs.of_length(length))
        if part.same.any():
            s, o = fit_calibration(part.cosine, part.same)
            lines.append(f"| {fmt(length)} | {s:.2f} | {o:.2f} | {-o / s:.3f} |")
    return slope, offset, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the voiceprints and test speakers here, and reuse them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    recs = {r.name: r for r in recordings()}
    series = {r.name: r.series for r in recs.values()}
    if args.cache and args.cache.exists():
        tests, enrollments, references = pickle.loads(args.cache.read_bytes())
        for name, reference in references.items():
            recs[name].reference = reference
    else:
        tests, enrollments = collect(recs)
        if args.cache:
            references = {name: rec.reference for name, rec in recs.items()}
            args.cache.write_bytes(pickle.dumps((tests, enrollments, references)))
    pairs = make_pairs(enrollments, tests, series)

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# Voiceprints ({machine()}, {args.threads} threads; load average at the end {load})\n")
    print(
        f"{len(recs)} recordings in {len(set(series.values()))} series; {len(tests)} diarized test speakers; "
        f"{len(enrollments)} enrollment clips; {pairs.same.sum()} same and {(~pairs.same).sum()} different pairs.\n"
    )
    slope, offset, calibration = calibration_report(pairs)
    print("## Verification by enrollment length (raw cosine; errors at 50 with the fit below, in-sample)\n")
    print("\n".join(length_table(pairs, enrollments, slope, offset)))
    print("\n## Calibration\n")
    print("\n".join(calibration))
    print(f"\n## Identification across sessions (enrolled: ≥ {IDENTIFY_SPEECH:g} s of clean speech, up to 30 s)\n")
    print(f"With the shipped calibration ({voiceprints.CALIBRATION_SLOPE:g}, {voiceprints.CALIBRATION_OFFSET:g}).\n")
    print(
        "| enrolled in → identified in | enrolled | threshold | **right %** | enrolled speech named right | "
        "enrolled speech named wrong | not-enrolled speech named | diarized speaker → match (best confidence) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(identification(recs, enrollments)))
    print("\n## Speed (same process)\n")
    print("| what | median of 3 |")
    print("|---|---|")
    print("\n".join(speed(recs, enrollments)))
    print(f"\nWhole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
