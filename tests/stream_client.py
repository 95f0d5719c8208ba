"""A live-stream client written to pyannoteAI's protocol, as pyannote.audio's streaming client behaves:
`POST /v1/live`, then `websocket-client` on the URL it answers, 100 ms pcm_f32le frames sent by a
thread at real time, `end_of_stream`, and turns rebuilt from the events."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import websocket

FRAME = 1600  # samples: 100 ms at 16 kHz


@dataclass
class Received:
    """What came back on one socket."""

    events: list[dict] = field(default_factory=list)  # diarization_speaker_start / _end, in order
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None

    def turns(self, duration: float) -> list[tuple[float, float, str]]:
        """The client's rebuild: each start paired with the next end of its speaker; an end without a start
        ignored; starts still open at the end closed at `duration`."""
        open_at: dict[str, float] = {}
        turns = []
        for event in self.events:
            speaker, timestamp = event["data"]["speaker"], event["data"]["timestamp"]
            if event["type"] == "diarization_speaker_start":
                open_at.setdefault(speaker, timestamp)
            elif speaker in open_at:
                turns.append((open_at.pop(speaker), timestamp, speaker))
        turns += [(start, duration, speaker) for speaker, start in open_at.items()]
        return sorted(turns)


def create_stream(client: httpx.Client, body: dict | None = None) -> dict:
    answer = client.post("/v1/live", json=body or {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def connect(url: str, **options) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=30, **options)


def frames_of(audio: np.ndarray) -> list[bytes]:
    """The audio in 100 ms frames, the last one padded with silence."""
    padded = np.pad(audio.astype("<f4"), (0, -len(audio) % FRAME))
    return [padded[i : i + FRAME].tobytes() for i in range(0, len(padded), FRAME)]


def stream(
    socket: websocket.WebSocket,
    frames: list[bytes],
    pace: float = 0.1,
    end: bool = True,
    received: Received | None = None,
) -> Received:
    """Send `frames`, one every `pace` seconds (0: at once) from a thread, then end_of_stream when `end`,
    while reading events until the server closes the socket."""
    received = Received()

    def send() -> None:
        start = time.monotonic()
        try:
            for i, frame in enumerate(frames):
                time.sleep(max(0.0, start + i * pace - time.monotonic()))
                socket.send_binary(frame)
            if end:
                socket.send(json.dumps({"type": "end_of_stream"}))
        except (websocket.WebSocketException, OSError):
            pass  # the server closed the socket: the reader hears why

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    read_until_closed(socket, received)
    sender.join(timeout=10)
    return received


def read_until_closed(socket: websocket.WebSocket, received: Received) -> Received:
    while True:
        try:
            opcode, data = socket.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, OSError):
            return received
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            received.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return received
        if opcode == websocket.ABNF.OPCODE_TEXT:
            event = json.loads(data)
            if event["type"] == "error":
                received.errors.append(event["message"])
            else:
                received.events.append(event)
