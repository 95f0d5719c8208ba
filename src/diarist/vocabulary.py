"""Names a user chooses from, defined once for the command line, the Python API and the pipeline.

A leaf module without heavy imports, so that the CLI and the HTTP server can name the models
without loading PyTorch.
"""

DIARIZATION_MODELS = ("precision-2", "community-1")
# What runs when no model is named: the more accurate one, the HTTP API's default as in
# pyannoteAI's, so one file gives the same answer from the CLI, Python and the API.
DEFAULT_MODEL = "precision-2"
