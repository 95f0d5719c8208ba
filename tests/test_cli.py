import argparse
import fcntl
import inspect
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
import scipy.io.wavfile

import diarist
from diarist.cli.parser import build_parser

from .conftest import DEV, SAMPLE, solo_speech, wav_bytes


def diarist_cli(*args: str, cwd=None, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarist", *args], stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def cuts(tmp_path_factory, sample_audio) -> dict[str, object]:
    """A folder with two short cuts of the sample, a corrupt file, a hidden file and a text file."""
    folder = tmp_path_factory.mktemp("inputs")
    for name, start, end in (("first.wav", 0, 12), ("second.wav", 12, 27)):
        scipy.io.wavfile.write(folder / name, 16000, sample_audio[start * 16000 : end * 16000])
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file" * 50)
    (folder / ".hidden.wav").write_bytes(b"not audio")
    (folder / "notes.txt").write_text("not audio")
    return folder


@pytest.mark.slow
def test_diarize_prints_json_with_options():
    done = diarist_cli("diarize", str(SAMPLE), "--num-speakers", "2", "--exclusive", "--confidence")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert {t["speaker"] for t in output["diarization"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert output["exclusiveDiarization"] and output["confidence"]["resolution"] == 0.02
    assert "confidence" in output["diarization"][0]


@pytest.mark.slow
def test_diarize_writes_rttm_for_several_files_creating_its_folder(tmp_path):
    out = tmp_path / "missing" / "dir" / "out.rttm"
    done = diarist_cli(
        "diarize", str(SAMPLE), str(SAMPLE.with_name("ami-EN2001e-0-30.wav")), "--format", "rttm", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    uris = {line.split()[1] for line in out.read_text().splitlines()}
    assert uris == {"pyannote-sample", "ami-EN2001e-0-30"}


@pytest.mark.slow
def test_folder_in_folder_out_keeps_good_files_and_reports_the_bad_one(cuts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    done = diarist_cli("diarize", str(cuts), "-o", str(out))
    assert done.returncode == 1
    # broken.wav sorts first: the files after it are still done, the hidden and text files skipped.
    # first.wav's 12 s hold two voices heard as one: the warning that says so may follow.
    error, *others = done.stderr.splitlines()
    assert error.startswith(f"diarist: error: {cuts / 'broken.wav'}: not an audio or video file")
    summaries = [line for line in others if not line.startswith(f"diarist: warning: {cuts / 'first.wav'}: ")]
    assert [line.split(" -> ")[1] for line in summaries] == [str(out / "first.json"), str(out / "second.json")]
    assert done.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["first.json", "second.json"]
    assert [t["speaker"] for t in json.loads((out / "second.json").read_text())["diarization"]][:2] == [
        "SPEAKER_00",
        "SPEAKER_01",
    ]


@pytest.mark.slow
def test_several_files_to_stdout_keep_the_good_ones(cuts):
    files = [str(cuts / "first.wav"), str(cuts / "broken.wav"), str(cuts / "second.wav")]
    done = diarist_cli("diarize", *files, "--format", "rttm")
    assert done.returncode == 1 and done.stderr.count("diarist: error:") == 1
    assert {line.split()[1] for line in done.stdout.splitlines()} == {"first", "second"}
    as_json = diarist_cli("diarize", *files)
    assert as_json.returncode == 1 and list(json.loads(as_json.stdout)) == [files[0], files[2]]


@pytest.mark.slow
def test_transcripts_of_several_files_need_a_folder(cuts, tmp_path):
    files = [str(cuts / "first.wav"), str(cuts / "second.wav")]
    refused = diarist_cli("diarize", *files, "--transcribe", "--format", "srt")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "diarist: error: --format srt writes one file per input: use -o DIR/ for several inputs\n"
    out = tmp_path / "new" / "subtitles"
    done = diarist_cli(
        "diarize", *files, "--transcribe", "--asr-model", "whisper-tiny.en", "--format", "vtt", "-o", f"{out}/"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.vtt", "second.vtt"]
    assert (out / "second.vtt").read_text().startswith("WEBVTT\n\n00:00:0")


@pytest.mark.slow
def test_errors_are_one_line_and_exit_non_zero(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    (tmp_path / "no-media").mkdir()
    (tmp_path / "no-media" / "notes.txt").write_text("not audio")
    for args, message in (
        (["diarize", str(tmp_path / "missing.wav")], "no such file"),
        (["diarize", str(tmp_path / "empty.mp3")], "empty"),
        (["diarize", str(SAMPLE), "--num-speakers", "2", "--max-speakers", "3"], "cannot be used together"),
        (["diarize", str(tmp_path / "no-media")], "no audio or video files in this folder"),
    ):
        done = diarist_cli(*args)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("diarist: error:") and message in done.stderr
    usage = diarist_cli("diarize", str(SAMPLE), "--num-speakers", "zero")
    assert usage.returncode == 2 and "positive integer" in usage.stderr


@pytest.fixture(scope="module")
def enrollment(tmp_path_factory) -> dict[str, object]:
    """22 s of FEE083 alone (AMI EN2005a), its voiceprint made by `diarist voiceprint -o`, and 0.5 s of her."""
    folder = tmp_path_factory.mktemp("enrollment")
    clean, short = folder / "fee083.wav", folder / "fee083-short.wav"
    clean.write_bytes(wav_bytes(solo_speech("ami-EN2005a-0-30", "FEE083")))
    short.write_bytes(wav_bytes(solo_speech("ami-EN2005a-0-30", "FEE083", seconds=0.5)))
    voiceprint = folder / "new" / "fee083.vp"
    done = diarist_cli("voiceprint", str(clean), "-o", str(voiceprint))
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    return {"clean": clean, "short": short, "voiceprint": voiceprint}


@pytest.mark.slow
def test_voiceprint_writes_a_file_and_prints_to_stdout_with_warnings(enrollment):
    from diarist.voiceprints import decode

    text = enrollment["voiceprint"].read_text()
    assert text.endswith("\n") and text.count("\n") == 1 and len(text) < 1000
    two_voices = DEV / "ami-EN2009b-0-30.wav"
    done = diarist_cli("voiceprint", str(two_voices))
    assert done.returncode == 0
    assert done.stderr.startswith(f"diarist: warning: {two_voices}: 2 voices were heard"), done.stderr
    # The one who talks most in EN2009b is FEE083, whose voiceprint the clean file made.
    assert decode(done.stdout).vector @ decode(text).vector > 0.5


@pytest.mark.slow
def test_voiceprint_errors_name_the_file(enrollment):
    for path, why, detail in (
        (enrollment["short"], "The audio holds too little speech for a voiceprint", "at least 1 s needed"),
        (enrollment["clean"].with_name("missing.wav"), "no such file", ""),
    ):
        done = diarist_cli("voiceprint", str(path))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"diarist: error: {path}: {why}") and detail in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1


@pytest.mark.slow
def test_identify_names_the_enrolled_speaker_in_subtitles_and_json(enrollment, tmp_path):
    meeting = DEV / "ami-EN2009b-0-30.wav"  # FEE083, enrolled from another meeting, and MEE094
    vp = f"FEE083={enrollment['voiceprint']}"
    srt = diarist_cli("identify", str(meeting), "--voiceprint", vp, "--format", "srt")
    assert srt.returncode == 0, srt.stderr
    cues = srt.stdout.strip().split("\n\n")
    assert cues[0].startswith("1\n00:00:") and all(c.count("\n") == 2 for c in cues)
    names = [c.splitlines()[2] for c in cues]
    assert "[FEE083]" in names and set(names) <= {"[FEE083]", "[SPEAKER_00]", "[SPEAKER_01]", "[SPEAKER_02]"}
    out = tmp_path / "meeting.json"
    done = diarist_cli(
        "identify", str(meeting), "--voiceprint", vp, "--threshold", "90", "--non-exclusive-matching", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    output = json.loads(out.read_text())
    # Not exclusive: FEE083 (100) is named, MEE094's speaker (57, part hers) is under the threshold.
    assert [s["match"] for s in output["voiceprints"]].count("FEE083") == 1
    named = [s for s in output["identification"] if s["match"] == "FEE083"]
    assert named and all(s["speaker"] == "FEE083" and s["diarizationSpeaker"].startswith("SPEAKER_") for s in named)


def test_turns_without_words_show_their_speaker_in_every_text_format():
    from diarist.cli.files import render
    from diarist.result import DiarizationResult, Turn
    from diarist.service import Diarization

    turns = [Turn(0.5, 2.0, "Alice"), Turn(2.0, 3.25, "SPEAKER_01")]
    done = Diarization({}, DiarizationResult(turns, turns, ["Alice", "SPEAKER_01"], 4.0), None)
    srt, vtt, txt = (render(done, SAMPLE, fmt, exclusive=False) for fmt in ("srt", "vtt", "txt"))
    assert srt == "1\n00:00:00,500 --> 00:00:02,000\n[Alice]\n\n2\n00:00:02,000 --> 00:00:03,250\n[SPEAKER_01]\n"
    assert vtt.endswith(
        "00:00:00.500 --> 00:00:02.000\n<v Alice>Alice\n\n00:00:02.000 --> 00:00:03.250\n<v SPEAKER_01>SPEAKER_01\n"
    )
    assert txt == (
        "[00:00:00.500] Alice\n[00:00:02.000] SPEAKER_01\n"
        "\nTalk time:\nAlice       00:00:01.500   55 %\nSPEAKER_01  00:00:01.250   45 %\n"
    )


@pytest.mark.slow
def test_identify_warns_of_a_voiceprint_from_little_speech(enrollment, tmp_path):
    from diarist.voiceprints import decode, encode

    short = tmp_path / "short.vp"  # the same voice, as made from 3 s of speech
    short.write_text(encode(decode(enrollment["voiceprint"].read_text()).vector, 3.0))
    meeting = DEV / "ami-EN2009b-0-30.wav"
    done = diarist_cli("identify", str(meeting), "--voiceprint", f"FEE083={short}", "--format", "rttm")
    assert done.returncode == 0, done.stderr
    expected = f"diarist: warning: {meeting}: The voiceprint of 'FEE083' comes from only 3.0 s of speech"
    assert done.stderr.startswith(expected), done.stderr


def test_identify_refuses_bad_voiceprints_and_labels_before_running(enrollment, tmp_path):
    from diarist.voiceprints import encode

    good = enrollment["voiceprint"]
    (tmp_path / "notes.vp").write_text("not a voiceprint at all")
    (tmp_path / "cut.vp").write_text(good.read_text()[:200])
    (tmp_path / "other.vp").write_text(encode(np.ones(192), 10.0, model="other-model"))
    meeting = str(DEV / "ami-EN2009b-0-30.wav")
    for voiceprints, message in (
        ([f"Ann={tmp_path / 'notes.vp'}"], f"{tmp_path / 'notes.vp'}: the voiceprint of 'Ann' is not a voiceprint"),
        ([f"Ann={tmp_path / 'cut.vp'}"], f"{tmp_path / 'cut.vp'}: the voiceprint of 'Ann' is damaged or truncated"),
        ([f"Ann={tmp_path / 'other.vp'}"], f"{tmp_path / 'other.vp'}: the voiceprint of 'Ann' was made with another"),
        ([f"Ann={tmp_path / 'none.vp'}"], f"{tmp_path / 'none.vp'}: No such file or directory"),
        ([f"speaker_00={good}"], "voiceprint label 'speaker_00' cannot start with SPEAKER_"),
        ([f"Ann={good}", f"Ann={good}"], "voiceprint label 'Ann' is given twice"),
        ([f"{'x' * 101}={good}"], f"voiceprint label '{'x' * 101}' must be 1 to 100 characters long"),
        ([f"={good}"], "voiceprint label '' must be 1 to 100 characters long"),
        ([f"P{i}={good}" for i in range(51)], "51 voiceprints given: at most 50"),
    ):
        done = diarist_cli("identify", meeting, *(f"--voiceprint={v}" for v in voiceprints))
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"diarist: error: {message}") and done.stderr.count("\n") == 1, done.stderr
    transcribe = diarist_cli("identify", meeting, "--voiceprint", f"Ann={good}", "--transcribe")
    assert transcribe.returncode == 1 and "identify does not transcribe" in transcribe.stderr
    for usage in (["--voiceprint", "Ann"], ["--voiceprint", f"Ann={good}", "--threshold", "101"], []):
        done = diarist_cli("identify", meeting, *usage)
        assert done.returncode == 2 and "usage: diarist identify" in done.stderr


def test_version_and_help():
    version = diarist_cli("--version")
    assert version.returncode == 0 and version.stdout == f"diarist {diarist.__version__}\n"
    bare = diarist_cli()
    assert bare.returncode == 0 and bare.stdout.startswith("usage: diarist") and "diarize" in bare.stdout
    keys = diarist_cli("keys")
    assert keys.returncode == 0 and "revoke" in keys.stdout and "diarist keys create --name" in keys.stdout


def subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from subcommands(sub)


def test_every_option_of_every_command_is_described_with_an_example():
    parsers = list(subcommands(build_parser()))
    assert {p.prog for p in parsers} >= {"diarist diarize", "diarist serve", "diarist keys create"}
    for parser in parsers:
        assert parser.epilog and f"  {parser.prog}" in parser.epilog, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # its commands are parsers of their own, checked in turn
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}"


def test_one_default_model_for_the_cli_python_and_the_api():
    from diarist.api.schemas import DiarizeRequest
    from diarist.pipeline.config import CONFIGS
    from diarist.vocabulary import DIARIZATION_MODELS

    assert build_parser().parse_args(["diarize", "a.wav"]).model == "precision-2"
    assert inspect.signature(diarist.diarize).parameters["model"].default == "precision-2"
    assert DiarizeRequest.model_fields["model"].default == "precision-2"
    assert set(DIARIZATION_MODELS) == set(CONFIGS)


@pytest.fixture(scope="module")
def minute_audio(tmp_path_factory, sample_audio):
    """65 s: just over the duration from which progress is shown."""
    path = tmp_path_factory.mktemp("minute") / "minute.wav"
    scipy.io.wavfile.write(path, 16000, np.concatenate([sample_audio, sample_audio, sample_audio[: 5 * 16000]]))
    return path


@pytest.mark.slow
def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(minute_audio):
    done = diarist_cli("diarize", str(minute_audio), "--model", "community-1")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    percents = [int(p) for p in re.findall(r"^diarist: minute\.wav: (\d+)%$", done.stderr, re.MULTILINE)]
    assert len(percents) >= 3 and percents == sorted(percents) and percents[-1] == 100
    # Besides the progress, only the result's warnings: the sample repeated is one voice to
    # community-1, with the warning that a second may be hiding.
    others = [line for line in done.stderr.splitlines() if not re.fullmatch(r"diarist: minute\.wav: \d+%", line)]
    assert all("warning" in line for line in others), others


@pytest.mark.slow
def test_progress_is_a_bar_on_a_terminal(minute_audio):
    terminal, stderr = pty.openpty()
    # A terminal of 80 columns: tqdm draws nothing on one of zero width, as a new pty is.
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    command = [sys.executable, "-m", "diarist", "diarize", str(minute_audio), "--model", "community-1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    os.close(stderr)
    shown = b""
    try:
        while chunk := _read(terminal):  # read as it comes: a full terminal buffer would block the child
            shown += chunk
    finally:
        os.close(terminal)
    assert process.wait(timeout=300) == 0
    assert b"\r" in shown and b"minute.wav:" in shown and b"diarist: minute.wav" not in shown


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed its end
        return b""


def test_models_command_reports_verified_weights():
    done = diarist_cli("models")
    assert done.returncode == 0
    assert done.stdout.count("ok  ") == 11 and "Apache-2.0" in done.stdout and "MIT (OpenAI)" in done.stdout


@pytest.mark.slow
def test_subtitles_without_transcribe_give_one_cue_per_turn():
    done = diarist_cli("diarize", str(SAMPLE), "--num-speakers", "2", "--format", "srt")
    assert done.returncode == 0, done.stderr
    cues = done.stdout.strip().split("\n\n")
    assert len(cues) > 2 and cues[0].startswith("1\n00:00:")
    assert {c.splitlines()[2] for c in cues} == {"[SPEAKER_00]", "[SPEAKER_01]"}


def test_an_asr_model_not_installed_is_an_error_on_the_command_line(tmp_path):
    done = diarist_cli(
        "diarize", str(SAMPLE), "--transcribe", "--asr-model", "parakeet-tdt-0.6b-v3", "--asr-models", str(tmp_path)
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        f"diarist: error: --asr-model parakeet-tdt-0.6b-v3 is not installed in {tmp_path / 'parakeet-tdt-0.6b-v3'}: "
    ), done.stderr
    assert "docs/models.md" in done.stderr and done.stderr.count("\n") == 1


def test_errors_name_the_options_and_the_command_and_refuse_stdin_and_urls():
    for args, message in (
        (["--min-speakers", "3", "--max-speakers", "2"], "--min-speakers (3) must be <= --max-speakers (2)"),
        (["--num-speakers", "2", "--min-speakers", "1"], "--min-speakers cannot be used together with --num-speakers"),
    ):
        done = diarist_cli("diarize", str(SAMPLE), *args)
        assert done.returncode == 1 and done.stderr == f"diarist: error: {message}\n"
    wrong = diarist_cli("diarize", str(SAMPLE), "--speakers", "2")
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: diarist diarize"), wrong.stderr
    assert wrong.stderr.endswith("diarist diarize: error: unrecognized arguments: --speakers 2\n")
    stdin = diarist_cli("diarize", "-")
    assert stdin.returncode == 1 and stdin.stderr.startswith("diarist: error: -: standard input is not supported")
    url = "https://example.com/a.wav"
    for command in (["diarize", url], ["identify", url, "--voiceprint", f"A={SAMPLE}"]):
        done = diarist_cli(*command)
        assert done.returncode == 1 and done.stderr.startswith(f"diarist: error: {url}: URLs are not supported here")


@pytest.mark.slow
def test_each_file_written_is_said_on_stderr(tmp_path):
    done = diarist_cli("diarize", str(SAMPLE), "--num-speakers", "2", "--format", "rttm", "-o", f"{tmp_path}/")
    assert done.returncode == 0 and done.stdout == ""
    written = tmp_path / "pyannote-sample.rttm"
    said = rf"2 speakers in 30\.0 s of audio \(\d+\.\d s\) -> {re.escape(str(written))}"
    assert re.fullmatch(rf"diarist: {re.escape(str(SAMPLE))}: {said}\n", done.stderr), done.stderr
    assert {line.split()[7] for line in written.read_text().splitlines()} == {"SPEAKER_00", "SPEAKER_01"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_a_busy_data_dir_or_port_in_one_line_and_stops_cleanly(tmp_path):
    data, port = tmp_path / "data", _free_port()
    command = [sys.executable, "-m", "diarist", "serve", "--workers", "0", "--host", "127.0.0.1"]
    serving = [*command, "--data-dir", str(data), "--port", str(port)]
    server = subprocess.Popen(serving, stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "Uvicorn running on" not in said:  # the data dir locked and the port bound
            line = server.stderr.readline()
            assert line, said
            said += line
        for args, message in (
            (["--data-dir", str(data), "--port", str(_free_port())], f"another diarist server is using {data}"),
            (["--data-dir", str(tmp_path / "other"), "--port", str(port)], f"cannot listen on 127.0.0.1:{port}: "),
        ):
            refused = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
            assert refused.returncode == 1 and refused.stderr.startswith(f"diarist: error: {message}"), refused.stderr
            assert refused.stderr.count("\n") == 1
        server.terminate()
        assert server.wait(timeout=60) == 0
        assert "leaked" not in server.stderr.read()
    finally:
        server.kill()


def _cue_lines(subtitles: str, fmt: str) -> list[list[str]]:
    """The text lines each cue of an SRT or WebVTT file shows (a WebVTT voice tag is not shown)."""
    blocks = subtitles.strip().split("\n\n")
    if fmt == "srt":
        return [block.splitlines()[2:] for block in blocks]
    return [re.sub(r"^<v [^>]*>", "", "\n".join(b.splitlines()[1:])).splitlines() for b in blocks[1:]]


@pytest.mark.slow
def test_subtitle_lines_are_wrapped(tmp_path):
    transcribe = [str(SAMPLE), "--transcribe", "--asr-model", "whisper-tiny.en", "-o", f"{tmp_path}/"]
    for fmt, options, width, count in (
        ("srt", [], 42, 2),
        ("vtt", ["--max-line-width", "20", "--max-line-count", "3"], 20, 3),
    ):
        done = diarist_cli("diarize", *transcribe, "--format", fmt, *options)
        assert done.returncode == 0, done.stderr
        cues = _cue_lines((tmp_path / f"pyannote-sample.{fmt}").read_text(), fmt)
        assert len(cues) > 5 and all(1 <= len(lines) <= count for lines in cues), cues
        assert any(len(lines) == count for lines in cues), cues  # the sample's turns are long enough to fill a cue
        assert all(len(line) <= width or " " not in line.strip() for lines in cues for line in lines), cues
        said = " ".join(" ".join(lines) for lines in cues)
        assert "Chicago" in said or "chicago" in said.lower()


@pytest.mark.slow
def test_voiceprint_of_a_longer_file_uses_its_best_30_s_or_the_part_asked_for(enrollment, minute_audio):
    from diarist.voiceprints import decode

    best = diarist_cli("voiceprint", str(minute_audio))
    assert best.returncode == 0, best.stderr
    said = re.match(
        rf"diarist: {re.escape(str(minute_audio))}: 65\.0 s is over 30 s: using (\S+)-(\S+) s, ", best.stderr
    )
    assert said and float(said[2]) - float(said[1]) == pytest.approx(30.0, abs=0.11), best.stderr
    part = diarist_cli("voiceprint", str(minute_audio), "--start", "31", "--end", "59")
    assert part.returncode == 0 and "using" not in part.stderr, part.stderr
    assert decode(best.stdout).seconds > decode(part.stdout).seconds > 5
    for args, message in (
        (["--start", "10", "--end", "50"], "--start 10 --end 50 is 40 s: at most 30 s"),
        (["--start", "70"], "--start 70 must be before --end"),
    ):
        done = diarist_cli("voiceprint", str(minute_audio), *args)
        assert done.returncode == 1 and done.stderr.startswith(f"diarist: error: {message}"), done.stderr
        assert done.stderr.count("\n") == 1
