import json
import subprocess
import sys

from .conftest import SAMPLE


def diarist(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diarist", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_diarize_prints_json_with_options():
    done = diarist("diarize", str(SAMPLE), "--num-speakers", "2", "--exclusive", "--confidence")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert {t["speaker"] for t in output["diarization"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert output["exclusiveDiarization"] and output["confidence"]["resolution"] == 0.02
    assert "confidence" in output["diarization"][0]


def test_diarize_writes_rttm_for_several_files(tmp_path):
    out = tmp_path / "out.rttm"
    done = diarist(
        "diarize", str(SAMPLE), str(SAMPLE.with_name("ami-EN2001e-0-30.wav")), "--format", "rttm", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    uris = {line.split()[1] for line in out.read_text().splitlines()}
    assert uris == {"pyannote-sample", "ami-EN2001e-0-30"}


def test_errors_are_one_line_and_exit_non_zero(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    for args, message in (
        (["diarize", str(tmp_path / "missing.wav")], "no such file"),
        (["diarize", str(tmp_path / "empty.mp3")], "empty"),
        (["diarize", str(SAMPLE), "--num-speakers", "2", "--max-speakers", "3"], "cannot be used together"),
    ):
        done = diarist(*args)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("diarist: error:") and message in done.stderr
    usage = diarist("diarize", str(SAMPLE), "--num-speakers", "zero")
    assert usage.returncode == 2 and "positive integer" in usage.stderr


def test_models_command_reports_verified_weights():
    done = diarist("models")
    assert done.returncode == 0
    assert done.stdout.count("ok  ") == 11 and "Apache-2.0" in done.stdout and "MIT (OpenAI)" in done.stdout
