"""Names a user chooses from, and the rules of the speaker count, defined once for the command line,
the HTTP API, the Python API and the pipeline.

A leaf module without heavy imports, so that the CLI and the HTTP server can name the models
without loading PyTorch.
"""

import unicodedata

DIARIZATION_MODELS = ("precision-2", "community-1")
# What runs when no model is named: the more accurate one, the HTTP API's default as in
# pyannoteAI's, so one file gives the same answer from the CLI, Python and the API.
DEFAULT_MODEL = "precision-2"
# The models that transcribe, as in pyannoteAI, where only precision-2 does.
TRANSCRIBING_MODELS = ("precision-2",)

# Speech recognition: the Whisper models that ship with diarist, and the pyannoteAI names of the
# models an operator installs (docs/models.md).
PACKAGED_ASR_MODELS = ("whisper-base", "whisper-tiny.en")
OPERATOR_ASR_MODELS = ("parakeet-tdt-0.6b-v3", "faster-whisper-large-v3-turbo")
ASR_MODELS = PACKAGED_ASR_MODELS + OPERATOR_ASR_MODELS
DEFAULT_ASR_MODEL = "whisper-base"

# Where the models run (`--device`, DIARIST_DEVICE): auto is cuda where PyTorch sees a GPU, else cpu.
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"

# Seconds between a live stream's audio and its events that a client may ask for (POST /v1/live).
LIVE_LATENCY_RANGE = (0.5, 5.0)

# Unicode categories a name cannot hold: control characters (with \n, \r, \t, U+0085) and separators of lines
# and paragraphs.
LINE_BREAKING = ("Cc", "Zl", "Zp")
# The same rules as JSON Schema (ECMA-262) patterns, for the OpenAPI document: LINE_BREAKING's characters, and
# the other characters str.strip() removes; a name is not only those.
LINE_BREAKING_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
BLANK_CHARACTERS = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
NAME_PATTERN = f"^(?=.*[^{BLANK_CHARACTERS}])[^{LINE_BREAKING_CHARACTERS}]*$"

MAX_SPEAKERS = 100  # the reference sets no maximum; far more than any recording a diarization can separate


def count_conflicts(
    num_speakers: int | None, min_speakers: int | None, max_speakers: int | None
) -> list[tuple[str, str]]:
    """The (option, other option) pairs that break the rules of the speaker count, each caller phrasing
    them in its own names: `min_speakers` or `max_speakers` beside `num_speakers` (an exact count takes
    no bounds), and `min_speakers` above `max_speakers`."""
    conflicts = [
        (name, "num_speakers")
        for name, value in (("min_speakers", min_speakers), ("max_speakers", max_speakers))
        if num_speakers is not None and value is not None
    ]
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        conflicts.append(("min_speakers", "max_speakers"))
    return conflicts


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a speaker in the outputs, or None when it can: a blank name shows as
    nothing, and a line break or tab would split an RTTM line or a subtitle cue (Unicode's line and
    paragraph separators, U+2028 and U+2029, break lines as well)."""
    if not name.strip():
        return "cannot be blank"
    if any(unicodedata.category(c) in LINE_BREAKING for c in name):
        return "cannot hold line breaks, tabs or other control characters"
    return None
