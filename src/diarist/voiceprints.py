"""Voiceprints and speaker identification, on the speaker embeddings the diarization computes.

A voiceprint is the voice of the person who talks most in a short recording: the unit centroid
of their CAM++ window embeddings, as the pipeline computes it for every speaker it finds
(`DiarizationResult.embeddings`). Identification diarizes a recording, then compares each
speaker's centroid with each voiceprint. Cosine similarity becomes a 0-100 confidence through a
logistic curve fitted on same- and different-speaker pairs of real speech (`bench/voiceprints.py`),
so that 50 means "as likely the same person as not".

The voiceprint string is opaque to users but versioned: base64 of a magic, the format version,
the name of the voice model that made it, the vector (float16) and a CRC-32. A voiceprint from
another model, or a damaged one, is refused instead of silently matching garbage.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np

from diarist.errors import DiaristError
from diarist.result import DiarizationResult
from diarist.vocabulary import name_problem

MAGIC = b"DVP"
FORMAT_VERSION = 1
# The voice model: the CAM++ weights (by the start of their sha256, models.EMBEDDING) pooled as the
# pipeline pools them. Change the suffix when the pooling changes, so old voiceprints are refused.
VOICE_MODEL = "campplus-92f29b94/window-centroid-1"
DIMENSION = 192  # the size of its embeddings: a vector of another size cannot be compared with them
MAX_SECONDS = 30.0  # the reference's longest voiceprint audio
MAX_BYTES = 100 * 1024**2  # and its largest file
MAX_VOICEPRINTS = 50
MAX_LABEL = 100
MAX_VOICEPRINT_CHARS = 20000
# The diarization's own speaker labels: a voiceprint label like them would be ambiguous in the output.
RESERVED_PREFIX = "SPEAKER_"
# Clean speech (alone, in the exclusive diarization) a voiceprint needs, and below which it warns.
MIN_SPEECH_SECONDS = 1.0
GOOD_SPEECH_SECONDS = 5.0
# Cosine similarity -> P(same speaker), with equal priors: 1 / (1 + exp(-(SLOPE * cos + OFFSET))).
# The balanced logistic fit of bench/voiceprints.py on 130 same- and 3,087 different-speaker pairs
# (voiceprints of 3-30 s of clean speech against diarized speakers of other recordings), docs/
# benchmarks.md, "Voiceprints and identification": 50 at cosine 0.366; cross-validated by meeting
# series, 11.5 % of same pairs fall below 50 and 7.1 % of different ones reach it.
CALIBRATION_SLOPE = 13.08
CALIBRATION_OFFSET = -4.78

BASE64 = re.compile(r"[A-Za-z0-9+/]+=*")
# What decode can read at all, as a JSON Schema (ECMA-262) pattern for the OpenAPI document: whole base64
# groups, with ASCII blanks around them (str.strip() removes those, and more).
_BLANKS, _SYMBOL = r"[\t\n\v\f\r ]*", "[A-Za-z0-9+/]"
BASE64_PATTERN = f"^{_BLANKS}(?:{_SYMBOL}{{4}})*(?:{_SYMBOL}{{4}}|{_SYMBOL}{{3}}=|{_SYMBOL}{{2}}==){_BLANKS}$"
DAMAGED = "is damaged or truncated: pass the whole string that the voiceprint job answered"
_HEADER = struct.Struct("<3sBB")  # magic, format version, length of the model name
_DIM = struct.Struct("<H")
_CRC = struct.Struct("<I")


class VoiceprintError(DiaristError, ValueError):
    """A voiceprint that cannot be used, or audio that cannot make one; the message says why."""


def encode(vector: np.ndarray, model: str = VOICE_MODEL) -> str:
    """The voiceprint string of a speaker embedding."""
    name = model.encode()
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, len(name)) + name
    body += _DIM.pack(len(vector)) + np.asarray(vector, dtype="<f2").tobytes()
    return base64.b64encode(body + _CRC.pack(zlib.crc32(body))).decode()


def decode(text: str) -> np.ndarray:
    """The unit embedding in a voiceprint string; VoiceprintError when it is not one this server can use."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        if BASE64.fullmatch(text.strip()):  # base64 letters, cut short of a whole group
            raise VoiceprintError(DAMAGED) from None
        raise VoiceprintError("is not a voiceprint: it is not base64 text") from None
    if len(data) < _HEADER.size or data[:3] != MAGIC:
        raise VoiceprintError("is not a voiceprint made by diarist")
    _, version, name_length = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise VoiceprintError(f"has format version {version}, which this server does not read (it reads 1)")
    body, crc = data[: -_CRC.size], data[-_CRC.size :]
    if len(data) < _HEADER.size + name_length + _DIM.size + _CRC.size or _CRC.unpack(crc)[0] != zlib.crc32(body):
        raise VoiceprintError(DAMAGED)
    model = body[_HEADER.size : _HEADER.size + name_length].decode(errors="replace")
    if model != VOICE_MODEL:
        raise VoiceprintError(
            f"was made with another voice model ({model}) than this server's ({VOICE_MODEL}): "
            "make it again from its audio"
        )
    (dim,) = _DIM.unpack_from(body, _HEADER.size + name_length)
    vector = np.frombuffer(body, dtype="<f2", offset=_HEADER.size + name_length + _DIM.size).astype(np.float64)
    if len(vector) != dim:
        raise VoiceprintError(DAMAGED)
    if dim != DIMENSION:
        raise VoiceprintError(f"holds {dim} values where this server's voice model makes {DIMENSION}")
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise VoiceprintError("holds no voice (an empty vector)")
    return vector / norm


def label_problem(label: str) -> str | None:
    """Why `label` cannot name a voiceprint, or None when it can."""
    if not 1 <= len(label) <= MAX_LABEL:
        return f"must be 1 to {MAX_LABEL} characters long"
    if label.upper().startswith(RESERVED_PREFIX):
        return f"cannot start with {RESERVED_PREFIX} (the diarization's own speaker labels)"
    return name_problem(label)


@dataclass(frozen=True)
class Voiceprint:
    """What a voiceprint job answers."""

    voiceprint: str
    speech_seconds: float  # of the chosen speaker, alone
    duration: float  # of the audio
    warnings: list[str]

    def to_dict(self) -> dict[str, str]:
        out = {"voiceprint": self.voiceprint}
        if self.warnings:
            out["warning"] = " ".join(self.warnings)
        return out


def speech_seconds(result: DiarizationResult) -> dict[str, float]:
    """Seconds each speaker talks alone (the exclusive diarization)."""
    seconds = dict.fromkeys(result.speakers, 0.0)
    for turn in result.exclusive_turns:
        seconds[turn.speaker] += turn.end - turn.start
    return seconds


def voiceprint_of(result: DiarizationResult) -> Voiceprint:
    """The voiceprint of the person who talks most in a diarized recording.

    Warns when others talk too, or when there is little speech; VoiceprintError when there is too
    little to go on.
    """
    seconds = speech_seconds(result)
    if not seconds or max(seconds.values()) < MIN_SPEECH_SECONDS:
        heard = max(seconds.values(), default=0.0)
        raise VoiceprintError(
            f"The audio holds too little speech for a voiceprint: {heard:.1f} s of one voice, at least "
            f"{MIN_SPEECH_SECONDS:g} s needed ({GOOD_SPEECH_SECONDS:g} s or more is better)."
        )
    speaker = max(seconds, key=lambda name: seconds[name])
    warnings = list(result.warnings)
    voices = sum(talk >= MIN_SPEECH_SECONDS for talk in seconds.values())
    if voices > 1:
        warnings.append(
            f"{voices} voices were heard: the voiceprint is of the one who talks most "
            f"({seconds[speaker]:.1f} s of {sum(seconds.values()):.1f} s). Use audio of one person only."
        )
    if seconds[speaker] < GOOD_SPEECH_SECONDS:
        warnings.append(
            f"Only {seconds[speaker]:.1f} s of speech: a voiceprint from {GOOD_SPEECH_SECONDS:g} s or more "
            "matches more reliably."
        )
    return Voiceprint(encode(result.embeddings[speaker]), seconds[speaker], result.duration, warnings)


def confidence(similarity: np.ndarray | float) -> np.ndarray:
    """0-100 confidence that two voices are the same person, from their cosine similarity."""
    probability = 1 / (1 + np.exp(-(CALIBRATION_SLOPE * np.asarray(similarity) + CALIBRATION_OFFSET)))
    return np.rint(100 * probability).astype(int)


@dataclass(frozen=True)
class Matching:
    """How diarization speakers are matched with voiceprints (the request's `matching`)."""

    exclusive: bool = True  # at most one speaker per voiceprint
    threshold: float = 0.0  # no match below this confidence


def match_speakers(
    speakers: dict[str, np.ndarray], voiceprints: dict[str, np.ndarray], matching: Matching
) -> tuple[dict[str, str | None], dict[str, dict[str, int]]]:
    """Each speaker's matched label (or None) and its confidence for every label.

    Exclusive matching assigns voiceprints to speakers so that the confidences add up to the most
    (Hungarian assignment) among the pairs at or above the threshold; otherwise each speaker takes
    its best voiceprint at or above it.
    """
    # Here, not at the top: scipy.optimize takes half a second to import, and the command line
    # reads this module's limits for its help.
    from scipy.optimize import linear_sum_assignment

    names, labels = list(speakers), list(voiceprints)
    if names and labels:
        scores = confidence(np.stack([speakers[n] for n in names]) @ np.stack([voiceprints[v] for v in labels]).T)
    else:
        scores = np.zeros((len(names), len(labels)), dtype=int)
    allowed = scores >= matching.threshold
    matches: dict[str, str | None] = dict.fromkeys(names)
    if matching.exclusive:
        # Pairs below the threshold cost more than any allowed set of pairs gains: never chosen.
        cost = np.where(allowed, -scores, 100 * (len(names) + 1))
        for row, column in zip(*linear_sum_assignment(cost), strict=True):
            if allowed[row, column]:
                matches[names[row]] = labels[column]
    else:
        for row, name in enumerate(names):
            if allowed[row].any():
                matches[name] = labels[int(np.argmax(np.where(allowed[row], scores[row], -1)))]
    confidences = {
        name: {label: int(scores[row, col]) for col, label in enumerate(labels)} for row, name in enumerate(names)
    }
    return matches, confidences


def identification(
    output: dict, result: DiarizationResult, voiceprints: dict[str, np.ndarray], matching: Matching
) -> dict:
    """`output` (a diarization job output of `result`) with `identification` and `voiceprints` added."""
    matches, confidences = match_speakers(result.embeddings, voiceprints, matching)
    segments = []
    for turn in output["diarization"]:
        match = matches.get(turn["speaker"])
        segment = {**turn, "speaker": match or turn["speaker"], "diarizationSpeaker": turn["speaker"], "match": match}
        segments.append(segment)
    speakers = [{"speaker": s, "match": matches.get(s), "confidence": confidences.get(s, {})} for s in result.speakers]
    return {**output, "identification": segments, "voiceprints": speakers}


def named_result(result: DiarizationResult, names: dict[str, str | None]) -> DiarizationResult:
    """`result` with each speaker renamed to its match, where it has one (for RTTM, SRT, VTT and text)."""

    def rename(turns: list) -> list:
        return [replace(t, speaker=names.get(t.speaker) or t.speaker) for t in turns]

    return replace(
        result,
        turns=rename(result.turns),
        exclusive_turns=rename(result.exclusive_turns),
        speakers=[names.get(s) or s for s in result.speakers],
    )
