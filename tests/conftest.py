"""Shared fixtures: the real 30 s sample, its reference, and media encoded from it with ffmpeg."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

import diarist
from diarist.audio import load_audio

from . import services

DEV = Path(__file__).parents[1] / "bench" / "data" / "dev"
SAMPLE = DEV / "pyannote-sample.wav"


def encode(
    path: Path,
    samples: np.ndarray,
    container: str,
    codec: str,
    rate: int = 16000,
    channels: int = 1,
    video: bool = False,
    bit_rate: int | None = None,
) -> Path:
    """Write `samples` (16 kHz mono) with the given container and codec (and bit rate, for lossy
    ones), optionally beside a video track."""
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format=container) as out:
        picture = None
        if video:
            picture = out.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate is not None:
            sound.bit_rate = bit_rate
        for i in range(0, len(samples), 1024):
            chunk = np.tile(samples[i : i + 1024], (channels, 1)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = 16000, i
            for packet in sound.encode(frame):
                out.mux(packet)
            if picture is not None and i % 16000 == 0:
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                for packet in picture.encode(image):
                    out.mux(packet)
        for stream in (sound, picture):
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Tell `services.require` which test is running (its setup, call and teardown)."""
    services.running = item
    try:
        return (yield)
    finally:
        services.running = None


def reference_turns(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        fields = line.split()
        turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    return turns


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.fleet)])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty job database of each kind: a SQLite file, or a fresh PostgreSQL database dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    url = services.postgres_url(request.node.name)
    yield url
    services.drop_database(url)


@pytest.fixture(scope="session")
def sample_audio() -> np.ndarray:
    return load_audio(SAMPLE)


@pytest.fixture(scope="session")
def sample_result() -> diarist.DiarizationResult:
    return diarist.diarize(SAMPLE, model="community-1")


@pytest.fixture(scope="session")
def long_audio(tmp_path_factory, sample_audio) -> Path:
    """Five minutes of the sample, for jobs that must still be running when a test acts."""
    import scipy.io.wavfile

    path = tmp_path_factory.mktemp("audio") / "long.wav"
    scipy.io.wavfile.write(path, 16000, (np.tile(sample_audio, 10) * 32767).astype(np.int16))
    return path


@pytest.fixture(scope="session", params=["local", pytest.param("celery", marks=pytest.mark.fleet)])
def server(request, tmp_path_factory):
    """One live service for the API tests: small upload limit, webhook retries a second apart.

    Every API test runs twice: on the embedded default (SQLite, a local worker), and in celery mode
    on PostgreSQL and Redis with one `diarist worker` process that has its own data dir.
    """
    from .live import Fleet, LiveServer, LiveWorker
    from .services import drop_database, postgres_url, redis_url

    env = {"DIARIST_MAX_INPUT_BYTES": str(20 * 1024**2), "DIARIST_WEBHOOK_RETRY_DELAYS": "0,0.5,1"}
    if request.param == "local":
        live = LiveServer(tmp_path_factory.mktemp("server"), env=env).start()
        yield live
        live.stop()
        return
    fleet = Fleet(postgres_url("api_suite"), redis_url("api_suite"))
    live = LiveServer(tmp_path_factory.mktemp("server"), env=env, fleet=fleet).start()
    worker = live.worker = LiveWorker(live, tmp_path_factory.mktemp("worker"), "api-suite", env=env).start()
    yield live
    worker.stop()
    live.stop()
    drop_database(fleet.database_url)


@pytest.fixture(scope="session")
def key(server):
    from .live import create_key

    return create_key(server.data_dir, "tests", "--rate-limit", "0")


@pytest.fixture
def api(server, key):
    with server.client(key) as client:
        yield client


@pytest.fixture(scope="session")
def sample_media(server, key) -> str:
    from .live import upload

    with server.client(key) as client:
        return upload(client, SAMPLE, "sample.wav")


@pytest.fixture
def peer():
    from .live import Peer

    receiver = Peer()
    yield receiver
    receiver.close()


def solo_speech(recording: str, speaker: str, seconds: float = 30.0) -> np.ndarray:
    """Up to `seconds` of `speaker` talking alone in dev recording `recording`, by its reference, end to end.

    A voiceprint's enrollment audio, as a user would cut it from a recording they know.
    """
    audio = load_audio(DEV / f"{recording}.wav")
    turns = reference_turns(DEV / f"{recording}.rttm")
    pieces, total = [], 0
    for start, end, who in turns:
        if who != speaker:
            continue
        others = [(s, e) for s, e, w in turns if w != speaker and s < end and e > start]
        for s, e in [(start, end)] if not others else _gaps(start, end, others):
            piece = audio[int(s * 16000) : int(e * 16000)]
            pieces.append(piece[: int(seconds * 16000) - total])
            total += len(pieces[-1])
    return np.concatenate(pieces).astype(np.float32)


def _gaps(start: float, end: float, others: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [start, end] that none of `others` covers."""
    out, cursor = [], start
    for s, e in sorted(others):
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono 16-bit WAV of float samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
