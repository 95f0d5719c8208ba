"""`diarist live`: a file or standard input played as a live stream, its speaker events printed as they come.

With `--server`, it is a client of a diarist (or pyannoteAI) server's `POST /v1/live` and WebSocket;
without, the streaming engine runs in this process. Either way the audio goes out in 100 ms frames
at real time (`--fast`: as fast as the engine takes it, local only), as a microphone would send it.
Standard input (`-`) is raw pcm_f32le, 16 kHz, mono: `ffmpeg -i IN -f f32le -ar 16000 -ac 1 -`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import numpy as np

from diarist.errors import DiaristError
from diarist.result import rebuild_turns, to_rttm

FRAME = 1600  # samples: 100 ms at 16 kHz, the protocol's frame


def _frames(source: str) -> Iterator[np.ndarray]:
    """100 ms frames of the file (any format ffmpeg reads) or of standard input (raw pcm_f32le)."""
    if source == "-":
        stdin = sys.stdin.buffer
        while chunk := stdin.read(FRAME * 4):
            samples = np.frombuffer(chunk[: len(chunk) // 4 * 4], dtype="<f4")
            yield np.pad(samples, (0, FRAME - len(samples)))
        return
    from diarist.audio import stream_audio

    pending = np.zeros(0, dtype=np.float32)
    for block in stream_audio(source, block_seconds=1.0):
        pending = np.concatenate([pending, block])
        while len(pending) >= FRAME:
            yield pending[:FRAME]
            pending = pending[FRAME:]
    if len(pending):
        yield np.pad(pending, (0, FRAME - len(pending)))


def paced(frames: Iterator[np.ndarray], fast: bool) -> Iterator[np.ndarray]:
    start = time.monotonic()
    for i, frame in enumerate(frames):
        if not fast:
            time.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
        yield frame


class Printer:
    """Prints each event as a line of JSON when it comes (`events`), or the turns in RTTM at the end."""

    def __init__(self, out: TextIO, fmt: str, uri: str):
        self.out, self.fmt, self.uri = out, fmt, uri
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)
        if self.fmt == "events":
            print(json.dumps(event), file=self.out, flush=True)

    def finish(self, duration: float) -> None:
        if self.fmt != "rttm":
            return
        self.out.write(to_rttm(rebuild_turns(self.events, duration), self.uri))


def _run_local(frames: Iterator[np.ndarray], args: argparse.Namespace, printer: Printer) -> float:
    import torch

    from diarist.engine import Engine
    from diarist.pipeline.streaming import StreamingDiarizer

    engine = Engine(args.device or "auto", args.threads)
    options = {"latency": args.latency} if args.latency else {}
    diarizer = StreamingDiarizer(args.model or "community-1", engine=engine, **options)
    with torch.inference_mode():
        for frame in frames:
            for event in diarizer.feed(frame):
                printer(event.to_json())
        for event in diarizer.finish():
            printer(event.to_json())
    return diarizer.duration


def create_stream(server: str, key: str, body: dict) -> str:
    """The socket URL of a new stream on `server`."""
    request = urllib.request.Request(
        f"{server.rstrip('/')}/v1/live",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["url"]
    except urllib.error.HTTPError as e:
        try:
            message = json.load(e).get("message", e.reason)
        except ValueError:
            message = e.reason
        raise DiaristError(f"{server} refused the stream ({e.code}): {message}") from None
    except urllib.error.URLError as e:
        raise DiaristError(f"cannot reach {server}: {e.reason}") from None


def stream_frames(url: str, frames: Iterable[np.ndarray], on_event: Callable[[dict], None]) -> tuple[int, int | None]:
    """Send `frames` (each 1600 float32 samples, paced by the caller) to a live stream's socket `url`,
    then end_of_stream, from a thread, while `on_event` hears every event (errors too) until the server
    closes. Returns the frames sent and the close code."""
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    sent = 0
    with connect(url, open_timeout=30, max_size=2**20) as socket:

        def send() -> None:
            nonlocal sent
            try:
                for frame in frames:
                    socket.send(frame.astype("<f4").tobytes())
                    sent += 1
                socket.send(json.dumps({"type": "end_of_stream"}))
            except ConnectionClosed:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            for message in socket:
                on_event(json.loads(message))
        except ConnectionClosed:
            pass
        sender.join(timeout=5)
        return sent, socket.close_code


def _run_remote(frames: Iterator[np.ndarray], args: argparse.Namespace, printer: Printer) -> float:
    key = args.api_key or os.environ.get("DIARIST_API_KEY") or os.environ.get("PYANNOTEAI_API_KEY")
    if not key:
        raise DiaristError("--server needs an API key: --api-key KEY, or $DIARIST_API_KEY")
    body = {name: value for name, value in (("model", args.model), ("latency", args.latency)) if value}
    errors: list[str] = []

    def hear(event: dict) -> None:
        if event.get("type") == "error":
            errors.append(event.get("message", ""))
            print(f"diarist: server: {event.get('message')}", file=sys.stderr)
        else:
            printer(event)

    sent, code = stream_frames(create_stream(args.server, key, body), frames, hear)
    if code not in (1000, None) and errors:
        raise DiaristError(f"the stream ended with code {code}: {errors[-1]}")
    return sent * 0.1


def run_live(args: argparse.Namespace) -> int:
    if args.fast and args.server:
        raise ValueError("--fast is for the local engine: a server closes a stream sent faster than real time")
    uri = "stdin" if args.source == "-" else os.path.splitext(os.path.basename(args.source))[0]
    printer = Printer(sys.stdout, args.format, uri)
    frames = paced(_frames(args.source), args.fast)
    duration = _run_remote(frames, args, printer) if args.server else _run_local(frames, args, printer)
    printer.finish(duration)
    return 0
