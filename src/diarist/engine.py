"""The engine: the loaded models, the threads they run on and the device, owned by one object.

Each process that runs models makes one engine and hands it to every run (the command line, the
Python API, each job worker), as faster-whisper's `WhisperModel` owns its model: the weights load
once, on first use, and stay loaded for the next run.

The device is `cpu`, `cuda` or `auto` (`cuda` where PyTorch sees a GPU, else `cpu`). On `cuda` the
PyTorch networks and their inputs go to the GPU, the ONNX Runtime backbone asks for its CUDA
provider first, and faster-whisper runs with `device="cuda"`. That path is written but not yet
measured on a GPU (docs/deploy.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from diarist.errors import DiaristError
from diarist.vocabulary import DEVICES

if TYPE_CHECKING:
    import numpy as np
    import torch

    from diarist.nets.campplus import CAMPPlus
    from diarist.nets.pyannet import PyanNet
    from diarist.transcription.asr import Recognizer


class DeviceUnavailableError(DiaristError):
    """The device asked for is not one this machine's PyTorch can use."""


def resolve_device(device: str) -> str:
    """`cpu` or `cuda` for a device setting: `auto` picks `cuda` where PyTorch sees a GPU.

    DeviceUnavailableError for `cuda` where it sees none; ValueError for a name it does not know.
    """
    import torch

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise DeviceUnavailableError(
            "device cuda was asked for, but PyTorch sees no GPU here (torch.cuda.is_available() is False): "
            "install a CUDA build of PyTorch on a machine with an NVIDIA GPU and its driver, "
            "or choose --device cpu (DIARIST_DEVICE=cpu)"
        )
    return device


class Engine:
    """The models of one process, loaded on first use, on `device` and `threads` torch threads.

    `threads` (None: PyTorch's own count) is applied to PyTorch when the engine is made; the
    pipeline runs its work on that many Python threads (pipeline/parallel.py), and a run that
    transcribes gives half of them to speech recognition.
    """

    def __init__(self, device: str = "auto", threads: int | None = None):
        import torch

        self.device = resolve_device(device)
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = threads
        self._lock = threading.Lock()
        self._segmentation: PyanNet | None = None
        self._embedding: CAMPPlus | None = None
        self._backbone: Callable[[np.ndarray], torch.Tensor] | None = None
        self._recognizers: dict[tuple[str | None, Path | None, int], tuple[Recognizer, str | None]] = {}

    def load(self) -> None:
        """Load the diarization models now, not at the first run that needs them."""
        self.segmentation()
        self.backbone()

    def segmentation(self) -> PyanNet:
        """The segmentation-3.0 network, on the engine's device."""
        from diarist.models import load_segmentation

        with self._lock:
            if self._segmentation is None:
                self._segmentation = load_segmentation(self.device)
            return self._segmentation

    def embedding(self) -> CAMPPlus:
        """The CAM++ network, on the engine's device."""
        from diarist.models import load_embedding

        with self._lock:
            if self._embedding is None:
                self._embedding = load_embedding(self.device)
            return self._embedding

    def backbone(self) -> Callable[[np.ndarray], torch.Tensor]:
        """The CAM++ backbone as a function, (frames, 80) fbank -> (512, frames / 2) features on the CPU."""
        from diarist.models import load_backbone

        model = self.embedding()
        with self._lock:
            if self._backbone is None:
                self._backbone = load_backbone(model, self.device)
            return self._backbone

    def recognizer(self, name: str | None, models_dir: Path | None, threads: int) -> tuple[Recognizer, str | None]:
        """The speech recognizer for a model name (None: the default) on `threads` threads, and a
        warning when it had to fall back to another (`transcription.asr.load_recognizer`)."""
        from diarist.transcription.asr import load_recognizer

        key = (name, models_dir, threads)
        with self._lock:
            if key not in self._recognizers:
                self._recognizers[key] = load_recognizer(name, models_dir, threads, self.device)
            return self._recognizers[key]


@cache
def python_engine() -> Engine:
    """The engine of the Python API (`diarist.diarize`, `voiceprint`, `identify`): made at its first call."""
    return Engine()
