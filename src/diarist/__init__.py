"""diarist: self-hosted speaker diarization that speaks the pyannoteAI API."""

from diarist.errors import AudioError, DiaristError, ModelNotInstalledError
from diarist.pipeline import diarize
from diarist.result import DiarizationResult, Turn

__all__ = ["AudioError", "DiaristError", "DiarizationResult", "ModelNotInstalledError", "Turn", "diarize"]
