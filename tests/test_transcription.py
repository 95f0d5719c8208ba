"""Speaker-attributed transcription: real Whisper on the real sample, attribution rules, formats."""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import diarist
from diarist.engine import python_engine
from diarist.hooks import Fraction
from diarist.result import Turn
from diarist.transcription import diarize_and_transcribe
from diarist.transcription.asr import (
    CHUNK_SECONDS,
    SAMPLE_RATE,
    Word,
    load_recognizer,
    speech_chunks,
    tokens_to_words,
    transcribe,
)
from diarist.transcription.attribution import Utterance, attribute_words, join_turns
from diarist.transcription.formats import to_srt, to_text, to_vtt, write_vtt

from .conftest import SAMPLE, reference_turns

SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})$")
VTT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")


def seconds(parts: tuple[str, ...]) -> float:
    h, m, s, ms = (int(p) for p in parts)
    return h * 3600 + m * 60 + s + ms / 1000


@pytest.fixture(scope="module")
def sample_transcript(tmp_path_factory):
    """precision-2 diarization and Whisper base on the sample, run side by side on 4 threads.

    Also notes the torch threads the diarization ran on and those the caller has afterwards.
    """
    diarization_threads = []

    def run(hook):
        diarization_threads.append(torch.get_num_threads())
        return diarist.diarize(SAMPLE, model="precision-2", hook=hook)

    reports: list[float] = []
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        result, transcript = diarize_and_transcribe(
            python_engine(), SAMPLE, run, None, tmp_path_factory.mktemp("asr-models"), Fraction(reports.append)
        )
        threads = {"diarization": diarization_threads[0], "caller after": torch.get_num_threads()}
    finally:
        torch.set_num_threads(before)
    return result, transcript, reports, threads


def test_diarization_and_recognition_share_the_threads(sample_transcript):
    assert sample_transcript[3] == {"diarization": 2, "caller after": 4}


def test_sample_transcript_has_the_reference_words(sample_transcript):
    _, transcript, reports, _ = sample_transcript
    text = "".join(w.text for w in transcript.words).lower()
    for phrase in ("diane", "new jersey", "sheila", "texas", "chicago", "yankee", "difference"):
        assert phrase in text
    assert transcript.transcript.language == "en" and transcript.transcript.model == "whisper-base"
    assert reports[-1] == 1.0 and reports == sorted(reports)


def test_words_get_the_right_speaker_where_nobody_overlaps(sample_transcript):
    result, transcript, _, _ = sample_transcript
    reference = reference_turns(SAMPLE.with_suffix(".rttm"))

    def speakers_at(start: float, end: float) -> set[str]:
        return {s for a, b, s in reference if a < end and b > start}

    # Name our speakers after the reference speaker they share most time with.
    shared: dict[tuple[str, str], float] = {}
    for turn in result.exclusive_turns:
        for a, b, s in reference:
            overlap = min(b, turn.end) - max(a, turn.start)
            if overlap > 0:
                shared[turn.speaker, s] = shared.get((turn.speaker, s), 0.0) + overlap
    naming = {ours: max((v, ref) for (o, ref), v in shared.items() if o == ours)[1] for ours, _ in shared}
    assert len(set(naming.values())) == 2

    checked = wrong = 0
    for word in transcript.words:
        around = speakers_at(word.start - 0.3, word.end + 0.3)  # clear of turn changes and overlap
        if len(around) == 1:
            checked += 1
            wrong += naming[word.speaker] != around.pop()
    assert checked >= 40
    assert wrong == 0


def test_turns_join_words_and_keep_punctuation(sample_transcript):
    _, transcript, _, _ = sample_transcript
    turns = transcript.turns
    assert len(turns) < len(transcript.words)
    assert all(a.speaker != b.speaker or b.start - a.end > 1.0 for a, b in itertools.pairwise(turns))
    assert any(t.text.strip().endswith((".", "?", "!")) for t in turns)
    assert any(c.isupper() for c in "".join(t.text for t in turns))
    out = transcript.to_dict()
    assert set(out["wordLevelTranscription"][0]) == {"start", "end", "text", "speaker"}
    assert " ".join(w["text"] for w in out["wordLevelTranscription"]) == " ".join(
        t["text"] for t in out["turnLevelTranscription"]
    )


def test_srt_and_vtt_parse(sample_transcript):
    _, transcript, _, _ = sample_transcript
    blocks = to_srt(transcript.words).strip().split("\n\n")
    previous_end = 0.0
    for number, block in enumerate(blocks, 1):
        index, timing, text = block.split("\n")
        assert int(index) == number
        match = SRT_TIME.match(timing)
        start, end = seconds(match.groups()[:4]), seconds(match.groups()[4:])
        assert previous_end <= start <= end
        previous_end = end
        assert re.match(r"^\[SPEAKER_\d\d\] \S", text)
    vtt = to_vtt(transcript.words)
    assert vtt.startswith("WEBVTT\n\n")
    cues = vtt.strip().split("\n\n")[1:]
    assert len(cues) == len(blocks)
    for cue in cues:
        timing, text = cue.split("\n")
        assert VTT_TIME.match(timing) and re.match(r"^<v SPEAKER_\d\d>\S", text)
    assert to_text(transcript.turns).count("\n") == len(transcript.turns)


@pytest.mark.slow
def test_the_python_api_transcribes_on_the_threads_it_is_given():
    threads = []

    def hook(step, artifact=None, **_):
        if step == "clustering":
            threads.append(torch.get_num_threads())

    before = torch.get_num_threads()
    reports: list[float] = []
    result = diarist.diarize(
        SAMPLE, model="community-1", transcription=True, threads=2, hook=hook, progress=reports.append
    )
    # Two threads: one for the diarization, one for the recognizer; the caller's count comes back.
    assert threads == [1] and torch.get_num_threads() == before
    assert reports[-1] == 1.0 and reports == sorted(reports)
    words = result.transcript.words
    assert "texas" in "".join(w.text for w in words).lower()
    assert {w.speaker for w in words} == set(result.speakers)
    srt = result.to_srt()

    def text_of(subtitles: str) -> list[str]:  # the cues' words, without numbers, times and speaker tags
        lines = (line for line in subtitles.splitlines() if line and "-->" not in line and not line.isdigit())
        return [word for word in " ".join(lines).split() if not (word.startswith("[") and word.endswith("]"))]

    # The words' cues, laid out as subtitles: lines of at most 42 characters, 2 to a cue.
    assert "Texas" in srt and text_of(srt) == text_of(to_srt(words))
    cues = [block.splitlines()[2:] for block in srt.strip().split("\n\n")]
    assert all(len(cue) <= 2 and all(len(line) <= 42 for line in cue) for cue in cues)
    with pytest.raises(ValueError, match="transcription needs a file"):
        diarist.diarize(np.zeros(16000, dtype=np.float32), sample_rate=16000, transcription=True)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        diarist.diarize(SAMPLE, threads=0)


def test_whisper_keeps_its_info_lines_out_of_the_log(caplog, sample_audio):
    # faster-whisper logs "Processing audio with duration ..." and more at INFO for every chunk.
    recognizer, _ = load_recognizer(None, None, 1)
    caplog.set_level(logging.INFO)
    words, _ = recognizer.recognize(sample_audio[: 15 * SAMPLE_RATE], 0.0, None)
    assert words and not [r for r in caplog.records if r.name.startswith("faster_whisper")]


def test_vtt_escapes_names_and_words():
    """A name or a word with markup or an arrow stays one voice span of one cue, shown as written."""
    said = [
        Utterance(0.0, 1.0, " a --> b", "R&D <team>"),
        Utterance(1.0, 2.0, "", "A-->B"),
        Utterance(2.0, 3.0, " x", "Ann>Lee"),
    ]
    cues = write_vtt(said).removeprefix("WEBVTT\n\n").strip().split("\n\n")
    assert [cue.split("\n")[1] for cue in cues] == [
        "<v R&amp;D &lt;team&gt;>a --&gt; b",
        "<v A--&gt;B>A--&gt;B",
        "<v Ann&gt;Lee>x",
    ]
    assert all(cue.count("-->") == 1 and VTT_TIME.match(cue.split("\n")[0]) for cue in cues)


def test_attribution_rules():
    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 3.0, "B"), Turn(5.0, 6.0, "A")]
    words = [
        Word(0.5, 0.9, " one"),  # inside A
        Word(1.8, 2.6, " two"),  # 0.2 s in A, 0.6 s in B: B
        Word(3.2, 3.4, " three"),  # in no turn, nearest is B (0.2 s away)
        Word(4.6, 4.8, " four"),  # in no turn, nearest is the later A
        Word(1.9, 2.1, " five"),  # 0.1 s in each: the turn whose middle is nearer wins (B at 2.5, A at 1.0)
    ]
    speakers = [w.speaker for w in attribute_words(words, turns)]
    assert speakers[:4] == ["A", "B", "B", "A"]
    assert speakers[4] == "B"
    assert [w.speaker for w in attribute_words(words[:1], [])] == ["SPEAKER_00"]


def test_turns_split_at_speaker_changes_and_long_pauses():
    words = attribute_words(
        [Word(0.0, 0.5, " Hi,"), Word(0.6, 1.0, " there."), Word(3.0, 3.5, " Again."), Word(3.6, 4.0, " Yes?")],
        [Turn(0.0, 3.55, "A"), Turn(3.55, 4.0, "B")],
    )
    turns = join_turns(words)
    assert [(t.speaker, t.text) for t in turns] == [("A", " Hi, there."), ("A", " Again."), ("B", " Yes?")]


def test_parakeet_tokens_become_words():
    words = tokens_to_words(["▁Hel", "lo", ",", "▁wor", "ld."], [0.0, 0.1, 0.2, 0.4, 0.5], 10.0, 0.08)
    assert [(w.text, w.start, w.end) for w in words] == [(" Hello,", 10.0, 10.4), (" world.", 10.4, 10.58)]


def test_chunks_cut_in_quiet_places_and_cover_everything():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, int(300 * SAMPLE_RATE)).astype(np.float32)
    quiet = int(115 * SAMPLE_RATE)
    audio[quiet : quiet + SAMPLE_RATE // 2] = 0.0  # half a second of silence near the 120 s limit
    blocks = [audio[i : i + 30 * SAMPLE_RATE] for i in range(0, len(audio), 30 * SAMPLE_RATE)]
    chunks = list(speech_chunks(blocks))
    assert all(len(c) <= CHUNK_SECONDS * SAMPLE_RATE for _, c in chunks)
    assert quiet / SAMPLE_RATE <= chunks[1][0] <= quiet / SAMPLE_RATE + 0.5
    assert np.array_equal(np.concatenate([c for _, c in chunks]), audio)
    assert [round(s * SAMPLE_RATE) for s, _ in chunks] == list(np.cumsum([0] + [len(c) for _, c in chunks[:-1]]))


def test_missing_operator_model_falls_back_with_a_warning(tmp_path):
    recognizer, warning = load_recognizer("parakeet-tdt-0.6b-v3", tmp_path)
    assert recognizer.name == "whisper-base"
    assert "parakeet-tdt-0.6b-v3 is not installed" in warning and str(tmp_path) not in warning
    with pytest.raises(ValueError, match="unknown transcription model"):
        load_recognizer("whisper-9", tmp_path)


@pytest.mark.slow
def test_operator_directory_is_used_when_installed(tmp_path):
    from diarist.models import whisper_dir

    # Any CTranslate2 Whisper the operator puts there is loaded under the name asked for.
    shutil.copytree(whisper_dir("whisper-tiny.en"), tmp_path / "faster-whisper-large-v3-turbo")
    recognizer, warning = load_recognizer("faster-whisper-large-v3-turbo", tmp_path)
    assert warning is None and recognizer.name == "faster-whisper-large-v3-turbo"
    transcript = transcribe(SAMPLE, recognizer)
    assert transcript.model == "faster-whisper-large-v3-turbo"
    assert "chicago" in " ".join(w.text for w in transcript.words).lower()


@pytest.mark.slow
def test_cli_writes_subtitles(tmp_path):
    out = tmp_path / "sample.srt"
    command = [sys.executable, "-m", "diarist", "diarize", str(SAMPLE), "--transcribe", "--format", "srt"]
    done = subprocess.run([*command, "-o", str(out), "--asr-model", "whisper-tiny.en"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert SRT_TIME.match(out.read_text().split("\n")[1])
