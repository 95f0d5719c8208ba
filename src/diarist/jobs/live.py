"""Live streams' inference, off the API's event loop: one child process per replica holds the models.

The API process never imports PyTorch (its memory and start-up stay small), so each replica starts a
live engine process at its first stream. The process runs every stream's `StreamingDiarizer` on a
pool of `live_threads` threads; one stream's audio is processed in order, by one thread at a time,
so a slow stream delays no other while threads are free. Messages cross two pipes:

- to the process: ("open", id, model, latency), ("audio", id, bytes), ("end", id), ("drop", id);
- back: ("events", id, [event], lag), ("ended", id, [event]), ("error", id, message).

A thread of the API process sends (a full pipe never blocks the event loop) and another reads, handing
each reply to its stream's `LiveSession` on the event loop. If the process dies, every open session
hears an error and the next stream starts a new process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

log = logging.getLogger("diarist.live")
FRAME_BYTES = 6400  # 100 ms of pcm_f32le at 16 kHz, mono: the protocol's only frame size
FRAME_SECONDS = 0.1
ENGINE_START_TIMEOUT = 120.0  # seconds for the process to import PyTorch and load the models


def _serve(requests: Connection, replies: Connection, threads: int, device: str) -> None:
    """The live engine process: run each stream's diarizer as its messages arrive, until the pipe closes."""
    import torch

    from diarist.engine import Engine
    from diarist.pipeline.streaming import StreamingDiarizer

    torch.set_num_threads(1)  # the streams are the parallelism: one core per busy thread
    engine = Engine(device=device, threads=1)
    engine.load()
    replies.send(("ready", "", None))
    sending = threading.Lock()
    streams: dict[str, StreamingDiarizer] = {}
    backlog: dict[str, deque] = {}
    busy: set[str] = set()
    guard = threading.Lock()

    def reply(message: tuple) -> None:
        with sending:
            replies.send(message)

    def drain(stream_id: str) -> None:
        """Process the stream's waiting messages in order; the thread lets go when none is left."""
        while True:
            with guard:
                if not backlog.get(stream_id):
                    busy.discard(stream_id)
                    return
                message = backlog[stream_id].popleft()
            try:
                handle(stream_id, message)
            except Exception as e:  # one stream's failure ends that stream only
                log.exception("live stream %s failed", stream_id)
                with guard:
                    streams.pop(stream_id, None)
                    backlog.pop(stream_id, None)
                    busy.discard(stream_id)
                reply(("error", stream_id, f"Internal error of the live engine: {type(e).__name__}"))
                return

    def handle(stream_id: str, message: tuple) -> None:
        kind = message[0]
        if kind == "open":  # the model and latency the client chose, or the engine's defaults
            chosen = {name: value for name, value in zip(("model", "latency"), message[1:], strict=True) if value}
            streams[stream_id] = StreamingDiarizer(engine=engine, **chosen)
        elif kind == "audio":
            diarizer = streams[stream_id]
            samples = np.frombuffer(message[1], dtype="<f4")
            with torch.inference_mode():
                events = diarizer.feed(samples)
            reply(("events", stream_id, [e.to_json() for e in events], diarizer.lag))
        elif kind == "end":
            diarizer = streams.pop(stream_id)
            with torch.inference_mode():
                events = diarizer.finish()
            reply(("ended", stream_id, [e.to_json() for e in events]))

    with ThreadPoolExecutor(threads, thread_name_prefix="live") as pool:
        while True:
            try:
                kind, stream_id, *rest = requests.recv()
            except (EOFError, OSError):
                return
            with guard:
                if kind == "drop":
                    streams.pop(stream_id, None)
                    backlog.pop(stream_id, None)
                    continue
                backlog.setdefault(stream_id, deque()).append((kind, *rest))
                if stream_id in busy:
                    continue
                busy.add(stream_id)
            pool.submit(drain, stream_id)


@dataclass
class LiveSession:
    """One stream's side of the engine, on the event loop: send it audio, await its events."""

    stream_id: str
    engine: LiveEngine
    replies: asyncio.Queue = field(default_factory=asyncio.Queue)
    sent_seconds: float = 0.0
    lag: float = 0.0  # audio sent but not yet decided: the engine's own lag plus what waits in the pipe
    done_seconds: float = 0.0
    recording: Any = None  # a StreamRecording when the stream's audio is kept (keepAudio)

    def feed(self, frame: bytes) -> None:
        self.sent_seconds += len(frame) / FRAME_BYTES * FRAME_SECONDS
        self.engine.send(("audio", self.stream_id, frame))

    def end(self) -> None:
        self.engine.send(("end", self.stream_id))

    def close(self) -> None:
        self.engine.forget(self)


class LiveEngine:
    """This replica's live engine process and the sessions it serves."""

    def __init__(self, threads: int, device: str = "auto"):
        self.threads, self.device = threads, device
        self.sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self._process: Any = None
        self._outbox: queue.Queue = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open_streams(self) -> int:
        return len(self.sessions)

    def lags(self) -> list[float]:
        """Each open stream's lag, seconds of audio received and not yet decided."""
        return [s.lag for s in self.sessions.values()]

    async def open(self, stream_id: str, model: str, latency: float) -> LiveSession:
        """A session for a new stream; the engine process starts (and loads its models) if it is not running."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._ensure_started)
        session = LiveSession(stream_id, self)
        self.sessions[stream_id] = session
        self.send(("open", stream_id, model, latency))
        return session

    def send(self, message: tuple) -> None:
        self._outbox.put(message)

    def forget(self, session: LiveSession) -> None:
        if self.sessions.pop(session.stream_id, None) is not None:
            self.send(("drop", session.stream_id))

    def stop(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            self._outbox.put(None)
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._process is not None and self._process.is_alive():
                return
            context = multiprocessing.get_context("spawn")
            to_child, from_parent = context.Pipe(duplex=False)
            from_child, to_parent = context.Pipe(duplex=False)
            process = context.Process(
                target=_serve, args=(to_child, to_parent, self.threads, self.device), name="diarist-live", daemon=True
            )
            process.start()
            to_child.close()
            to_parent.close()
            if not from_child.poll(ENGINE_START_TIMEOUT):
                process.kill()
                raise RuntimeError("the live engine process did not start")
            from_child.recv()
            self._outbox = queue.Queue()
            self._process = process
            threading.Thread(target=self._send_loop, args=(from_parent, self._outbox), daemon=True).start()
            threading.Thread(target=self._read_loop, args=(from_child, process), daemon=True).start()

    def _send_loop(self, pipe: Connection, outbox: queue.Queue) -> None:
        while (message := outbox.get()) is not None:
            try:
                pipe.send(message)
            except OSError:
                return
        pipe.close()

    def _read_loop(self, pipe: Connection, process: Any) -> None:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                break
            self._deliver(message)
        # The process ended: whatever was open with it cannot go on.
        with self._lock:
            if self._process is process:
                self._process = None
                self._outbox.put(None)
        for session in list(self.sessions.values()):
            self._deliver(("error", session.stream_id, "The live engine stopped."))

    def _deliver(self, message: tuple) -> None:
        kind, stream_id, *rest = message
        session = self.sessions.get(stream_id)
        if session is None or self._loop is None:
            return
        if kind == "events":
            session.done_seconds += FRAME_SECONDS
            backlog = max(0.0, session.sent_seconds - session.done_seconds)
            session.lag = rest[1] + backlog
        put: Callable[[Any], None] = session.replies.put_nowait
        self._loop.call_soon_threadsafe(put, (kind, *rest))
