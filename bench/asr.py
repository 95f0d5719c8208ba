"""Speaker-attributed transcription: WER, cpWER, words given the right speaker, real-time factor.

    cd bench && ../.venv/bin/python asr.py [--models whisper-base whisper-tiny.en] [--minutes 30]

* WER on the LibriVox utterances of Debian's pocketsphinx-testdata (data/librivox).
* On the pyannote sample (data/dev/pyannote-sample.stm): WER of all words in time order, cpWER
  (each speaker's words against the best-matching reference speaker's), and the share of words
  whose speaker is right, among words that lie inside exactly one reference speaker's segment.
* Real-time factor on a long file made of the dev clips: diarization alone, recognition alone,
  and both as the service runs them (side by side in two threads).

Text is compared lower-cased, without punctuation; "Mr." counts as "mister".
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DEV, concatenated_dev, machine, write_wav
from scipy.optimize import linear_sum_assignment

import diarist
from diarist.engine import python_engine
from diarist.transcription import diarize_and_transcribe
from diarist.transcription.asr import load_recognizer, transcribe

LIBRIVOX = Path(__file__).parent / "data" / "librivox"
SAMPLE = DEV / "pyannote-sample.wav"
SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def normalize(text: str) -> list[str]:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("\u2019", "'")).split()
    return [SPOKEN.get(w, w) for w in (w.strip("'") for w in words) if w]


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def librivox_wer(model: str, models_dir: Path) -> tuple[int, int]:
    """(errors, reference words) over the five utterances."""
    recognizer, _ = load_recognizer(model, models_dir)
    errors = total = 0
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, name = re.match(r"<s> (.*) </s> \((.*)\)", line).groups()
        hypothesis = "".join(w.text for w in transcribe(LIBRIVOX / f"{name}.wav", recognizer).words)
        reference = normalize(text)
        errors += edit_distance(reference, normalize(hypothesis))
        total += len(reference)
    return errors, total


def read_stm(path: Path) -> list[tuple[float, float, str, str]]:
    segments = []
    for line in path.read_text().splitlines():
        _, _, speaker, start, end, text = line.split(maxsplit=5)
        segments.append((float(start), float(end), speaker, text))
    return segments


def cp_wer(reference: dict[str, list[str]], hypothesis: dict[str, list[str]]) -> tuple[int, int]:
    """Concatenated minimum-permutation WER: speakers paired to minimise the total errors."""
    refs, hyps = list(reference), list(hypothesis)
    size = max(len(refs), len(hyps))
    cost = np.zeros((size, size), dtype=int)
    for i in range(size):
        for j in range(size):
            ref = reference[refs[i]] if i < len(refs) else []
            hyp = hypothesis[hyps[j]] if j < len(hyps) else []
            cost[i, j] = edit_distance(ref, hyp)
    rows, cols = linear_sum_assignment(cost)
    return int(cost[rows, cols].sum()), sum(len(w) for w in reference.values())


def sample_scores(model: str, models_dir: Path) -> dict[str, float]:
    def run(hook):
        return diarist.diarize(SAMPLE, model="precision-2", hook=hook)

    _, attributed = diarize_and_transcribe(python_engine(), SAMPLE, run, model, models_dir)
    segments = read_stm(SAMPLE.with_suffix(".stm"))
    reference_words = [w for *_, text in segments for w in normalize(text)]
    hypothesis_words = [w for u in attributed.words for w in normalize(u.text)]
    by_speaker_ref: dict[str, list[str]] = {}
    for _, _, speaker, text in segments:
        by_speaker_ref.setdefault(speaker, []).extend(normalize(text))
    by_speaker_hyp: dict[str, list[str]] = {}
    for u in attributed.words:
        by_speaker_hyp.setdefault(u.speaker, []).extend(normalize(u.text))
    cp_errors, cp_total = cp_wer(by_speaker_ref, by_speaker_hyp)

    # The speaker of a word: the one reference segment holding its middle. Our labels are named
    # after the reference speaker they most often agree with.
    pairs = []
    for u in attributed.words:
        middle = (u.start + u.end) / 2
        holders = {s for a, b, s, _ in segments if a <= middle <= b}
        if len(holders) == 1:
            pairs.append((u.speaker, holders.pop()))
    naming = {ours: max({r for o, r in pairs if o == ours}, key=lambda r: pairs.count((ours, r))) for ours, _ in pairs}
    right = sum(naming[ours] == ref for ours, ref in pairs)
    return {
        "wer": edit_distance(reference_words, hypothesis_words) / len(reference_words),
        "cpwer": cp_errors / cp_total,
        "speaker_right": right / len(pairs),
        "words_scored": len(pairs),
        "words": len(attributed.words),
    }


def real_time_factors(model: str, models_dir: Path, minutes: float) -> dict[str, float]:
    seconds = minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        write_wav(wav, concatenated_dev(minutes))
        diarist.diarize(SAMPLE)  # load the diarization models outside the timings
        recognizer, _ = load_recognizer(model, models_dir)
        # And the recognizer that diarize_and_transcribe takes from the engine: half the threads.
        python_engine().recognizer(model, models_dir, max(1, torch.get_num_threads() // 2))
        start = time.perf_counter()
        diarist.diarize(wav, model="precision-2")
        diarization = time.perf_counter() - start
        start = time.perf_counter()
        transcribe(wav, recognizer)
        recognition = time.perf_counter() - start
        start = time.perf_counter()
        diarize_and_transcribe(
            python_engine(), wav, lambda hook: diarist.diarize(wav, model="precision-2", hook=hook), model, models_dir
        )
        both = time.perf_counter() - start
    return {
        "diarization": diarization / seconds,
        "recognition": recognition / seconds,
        "sequential": (diarization + recognition) / seconds,
        "side_by_side": both / seconds,
        "side_by_side_seconds": both,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["whisper-base", "whisper-tiny.en"])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the real-time-factor input (0: skip)")
    args = parser.parse_args()
    models_dir = Path(tempfile.mkdtemp())  # no operator models: the packaged ones only
    print(f"machine: {machine()}")
    print("| model | LibriVox WER | sample WER | sample cpWER | words with the right speaker |")
    print("|---|---|---|---|---|")
    for model in args.models:
        errors, total = librivox_wer(model, models_dir)
        s = sample_scores(model, models_dir)
        print(
            f"| {model} | {errors / total:.1%} ({errors}/{total}) | {s['wer']:.1%} | {s['cpwer']:.1%} "
            f"| {s['speaker_right']:.1%} of {s['words_scored']} |"
        )
    if args.minutes:
        print(f"\nReal-time factor on {args.minutes:g} min (precision-2 diarization):")
        print("| model | diarization | recognition | both, one after the other | both, side by side (wall) |")
        print("|---|---|---|---|---|")
        for model in args.models:
            r = real_time_factors(model, models_dir, args.minutes)
            print(
                f"| {model} | {r['diarization']:.3f} | {r['recognition']:.3f} | {r['sequential']:.3f} "
                f"| {r['side_by_side']:.3f} ({r['side_by_side_seconds']:.0f} s) |"
            )


if __name__ == "__main__":
    main()
