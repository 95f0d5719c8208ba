"""How many real-time live streams one machine holds: event delay, lag, memory and the HTTP API's latency.

    cd bench && ../.venv/bin/python live_capacity.py [--streams 1 2 4 8] [--seconds 60] [--latency 2]

It starts its own `diarist serve` (no job workers) on a free loopback port with a fresh data dir, and
for each count N opens N live streams at once through `POST /v1/live` and the WebSocket. Each
stream plays the 30 s dev sample (looped to `--seconds`) in 100 ms frames at real time, from its
own thread, then sends end_of_stream. Meanwhile one client calls `GET /v1/test` every 50 ms.

Per N it prints:
- event delay: for each `diarization_speaker_start`, the time from when the audio at its timestamp
  was sent to when the event arrived; p50 / p95 / max over every stream's events. A stream that
  falls behind real time shows as a delay that grows with the stream's length.
- word delay: the same from the end of the turn's first word: the first word Whisper base finds
  that ends after the event's timestamp less 0.25 s (the word being said when the turn was found
  to start, or the next), p50 / p95;
- the largest lag `/metrics` reported (audio received and not yet decided), sampled every second;
- the finish delay: end_of_stream to the socket's close, the slowest stream;
- streams that ended otherwise than with close code 1000;
- peak RSS of the server and of its live engine process, and the engine's RSS per stream;
- `GET /v1/test` p50 / p99 in ms.

The load generator shares the machine with the server: its threads only pace frames and read events.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from api_load import Server, auth, create_key, percentile
from common import DEV, machine, write_wav

from diarist.audio import load_audio
from diarist.cli.live import paced, stream_frames
from diarist.transcription.asr import load_recognizer, transcribe

FRAME = 1600


WORD_SLACK = 0.25  # s: a word ending this little before a turn's detected start is not its first


@dataclass
class StreamRun:
    delays: list[float] = field(default_factory=list)
    word_delays: list[float] = field(default_factory=list)
    finish: float = 0.0
    close_code: int | None = None


def word_ends(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) of each word Whisper base hears in `audio`, in order."""
    recognizer, _ = load_recognizer("whisper-base", None, threads=2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audio.wav"
        write_wav(path, audio)
        return [(word.start, word.end) for word in transcribe(path, recognizer).words]


def first_word_end(words: list[tuple[float, float]], timestamp: float) -> float | None:
    """End of the first word ending after `timestamp` less WORD_SLACK (words in time order)."""
    index = bisect.bisect_right([end for _, end in words], timestamp - WORD_SLACK)
    return words[index][1] if index < len(words) else None


def play(url: str, audio: np.ndarray, words: list[tuple[float, float]], run: StreamRun) -> None:
    """One client, as `diarist live --server` streams: frames at real time, events heard as they come."""
    frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    start = time.monotonic()
    ended = [0.0]

    def timed() -> Iterator[np.ndarray]:
        yield from paced(iter(frames), fast=False)
        ended[0] = time.monotonic()

    def hear(event: dict) -> None:
        if event["type"] == "diarization_speaker_start":
            # The frame holding the audio at `timestamp` went out at start + timestamp (paced).
            now, timestamp = time.monotonic(), event["data"]["timestamp"]
            run.delays.append(now - (start + timestamp))
            word_end = first_word_end(words, timestamp)
            if word_end is not None:
                run.word_delays.append(now - (start + word_end))

    _, run.close_code = stream_frames(url, timed(), hear)
    run.finish = time.monotonic() - ended[0] if ended[0] else float("nan")


def rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, whichever of its threads started them."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def engine_pid(server_pid: int) -> int | None:
    """The live engine process: the server's child running diarist.jobs.live (multiprocessing spawn)."""
    for child in children(server_pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"multiprocessing" in command and b"resource_tracker" not in command:
            return child
    return None


def measure(
    server: Server, key: str, audio: np.ndarray, words: list[tuple[float, float]], streams: int, latency: float
) -> dict:
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=30) as client:
        urls = []
        for _ in range(streams):
            answer = client.post("/v1/live", json={"latency": latency})
            answer.raise_for_status()
            urls.append(answer.json()["url"])
    runs = [StreamRun() for _ in urls]
    threads = [
        threading.Thread(target=play, args=(url, audio, words, run)) for url, run in zip(urls, runs, strict=True)
    ]
    stop = threading.Event()
    api_ms: list[float] = []
    lags: list[float] = []
    peaks = {"server": 0.0, "engine": 0.0}

    def watch() -> None:
        with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=30) as client:
            last_scrape = 0.0
            while not stop.is_set():
                start = time.perf_counter()
                client.get("/v1/test").raise_for_status()
                api_ms.append((time.perf_counter() - start) * 1000)
                if time.monotonic() - last_scrape >= 1.0:
                    last_scrape = time.monotonic()
                    text = httpx.get(f"{server.base_url}/metrics").text
                    found = re.search(r"^diarist_live_max_lag_seconds (\S+)$", text, re.M)
                    lags.append(float(found.group(1)) if found else 0.0)
                    peaks["server"] = max(peaks["server"], rss_mb(server.process.pid))
                    engine = engine_pid(server.process.pid)
                    if engine:
                        peaks["engine"] = max(peaks["engine"], rss_mb(engine))
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    delays = sorted(d for run in runs for d in run.delays)
    word_delays = sorted(d for run in runs for d in run.word_delays)
    api_ms.sort()
    return {
        "streams": streams,
        "events": len(delays),
        "delay p50": percentile(delays, 0.5) if delays else float("nan"),
        "delay p95": percentile(delays, 0.95) if delays else float("nan"),
        "delay max": delays[-1] if delays else float("nan"),
        "word p50": percentile(word_delays, 0.5) if word_delays else float("nan"),
        "word p95": percentile(word_delays, 0.95) if word_delays else float("nan"),
        "max lag": max(lags, default=0.0),
        "finish max": max(run.finish for run in runs),
        "bad closes": sum(run.close_code != 1000 for run in runs),
        "server MB": peaks["server"],
        "engine MB": peaks["engine"],
        "api p50": percentile(api_ms, 0.5),
        "api p99": percentile(api_ms, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    sample = load_audio(DEV / "pyannote-sample.wav")
    audio = np.tile(sample, int(np.ceil(args.seconds * 16000 / len(sample))))[: int(args.seconds * 16000)]
    words = word_ends(audio)
    data_dir = Path(tempfile.mkdtemp(prefix="diarist-live-capacity-"))
    most = max(args.streams)
    os.environ["DIARIST_LIVE_MAX_STREAMS"] = str(most)
    os.environ["DIARIST_LIVE_MAX_STREAMS_PER_KEY"] = str(most)
    server = Server.start(data_dir, workers=0, threads=None)
    try:
        key = create_key(data_dir, "capacity")
        server.wait_ready(key)
        print(f"{machine()}; {args.seconds:g} s per stream; latency {args.latency:g} s\n")
        columns = [
            "streams", "events", "delay p50", "delay p95", "delay max", "word p50", "word p95", "max lag",
            "finish max", "bad closes", "server MB", "engine MB", "api p50", "api p99",
        ]  # fmt: skip
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for streams in args.streams:
            row = measure(server, key, audio, words, streams, args.latency)
            cells = (f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
            print("| " + " | ".join(cells) + " |")
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
