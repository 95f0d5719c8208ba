"""diarist: self-hosted speaker diarization that speaks the pyannoteAI API."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diarist.errors import AudioError, DiaristError, ModelNotInstalledError
from diarist.result import DiarizationResult, Turn

try:
    __version__ = version("diarist")
except PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = [
    "AudioError",
    "DiaristError",
    "DiarizationResult",
    "ModelNotInstalledError",
    "Turn",
    "diarize",
    "identify",
    "voiceprint",
]


def __getattr__(name: str) -> Any:
    # The pipeline imports torch; the API server process never needs it, so load it on first use.
    if name == "diarize":
        from diarist.pipeline import diarize

        return diarize
    if name in ("voiceprint", "identify"):
        from diarist import identities

        return getattr(identities, name)
    raise AttributeError(f"module 'diarist' has no attribute {name!r}")
