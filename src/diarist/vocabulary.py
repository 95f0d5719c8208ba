"""Names a user chooses from, defined once for the command line, the Python API and the pipeline.

A leaf module without heavy imports, so that the CLI and the HTTP server can name the models
without loading PyTorch.
"""

DIARIZATION_MODELS = ("precision-2", "community-1")
# What runs when no model is named: the more accurate one, the HTTP API's default as in
# pyannoteAI's, so one file gives the same answer from the CLI, Python and the API.
DEFAULT_MODEL = "precision-2"

# Speech recognition: the Whisper models that ship with diarist, and the pyannoteAI names of the
# models an operator installs (docs/models.md).
PACKAGED_ASR_MODELS = ("whisper-base", "whisper-tiny.en")
OPERATOR_ASR_MODELS = ("parakeet-tdt-0.6b-v3", "faster-whisper-large-v3-turbo")
ASR_MODELS = PACKAGED_ASR_MODELS + OPERATOR_ASR_MODELS
DEFAULT_ASR_MODEL = "whisper-base"
