"""One progress-and-timing hook, of pyannote's shape: ``hook(step, artifact=None, *, completed=, total=)``.

The pipeline steps call it; each listener takes what it needs from the calls:

- ``hook(step, artifact)``, without `completed`: a stretch of `step` has ended and `artifact` is
  what it made (a page's activity, the clustering, the result). The window analysis reads the
  audio page by page, so decode, segmentation and embeddings each end once a page: `StageTimes`
  gives a step the time since the previous such call, and adds up its stretches.
- ``hook(step, completed=k, total=n)``: `k` of `n` units of `step` are done. The analysis steps
  count samples of audio ("segmentation": the audio segmented so far), transcription too,
  and a download its bytes (without a total). `Fraction` turns them into the share of the whole
  run done, for a progress display or a job's progress.

A run that transcribes announces it ("transcription" at 0) before any diarization step reports,
so that `Fraction` weighs the two from the start and never goes back. A listener may raise to
stop the run (a canceled job); a hook may be called from two threads at once (speech recognition
runs beside the diarization).

Leaf module, no heavy imports: the CLI and the job runner use it without loading PyTorch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Hook(Protocol):
    def __call__(
        self, step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None
    ) -> None:
        """Hear that `step` made `artifact`, or has done `completed` of `total` units."""


# Each analysis step's share of the diarization's time, for progress (segmentation is the faster).
DIARIZATION_SHARES = {"segmentation": 0.3, "embeddings": 0.7}
TRANSCRIPTION = "transcription"


class Fraction:
    """A listener that tells `report` the fraction of the run done, 0..1, never going back.

    The diarization is done as far as its analysis steps are, weighed by DIARIZATION_SHARES; a run
    that transcribes is done half as far as the diarization and half as far as the transcription.
    """

    def __init__(self, report: Callable[[float], None]):
        self.report = report
        self.done: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(
        self, step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None
    ) -> None:
        if completed is None or (step not in DIARIZATION_SHARES and step != TRANSCRIPTION):
            return  # an artifact, or a step that takes no share (a download)
        with self.lock:
            done = min(1.0, completed / total) if total else 0.0
            self.done[step] = max(self.done.get(step, 0.0), done)
            overall = self.fraction()
        self.report(overall)

    def fraction(self) -> float:
        """The run's fraction done, from each step's own."""
        diarization = sum(share * self.done.get(step, 0.0) for step, share in DIARIZATION_SHARES.items())
        if TRANSCRIPTION not in self.done:
            return diarization
        return (diarization + self.done[TRANSCRIPTION]) / 2


class StageTimes:
    """A listener that adds up the seconds of each step: a stretch lasts from the previous stretch's
    end (or the listener's creation) to the call that hands over its artifact."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def __call__(
        self, step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None
    ) -> None:
        if completed is not None:
            return
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self.last
        self.last = now


def fan_out(*listeners: Hook | None) -> Hook:
    """One hook that calls each of `listeners` (None: left out) in turn."""
    present = [listener for listener in listeners if listener is not None]

    def hook(step: str, artifact: Any = None, *, completed: int | None = None, total: int | None = None) -> None:
        for listener in present:
            listener(step, artifact, completed=completed, total=total)

    return hook
