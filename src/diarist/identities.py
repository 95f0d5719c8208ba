"""Voiceprints and identification from Python: ``diarist.voiceprint`` and ``diarist.identify``.

The command line uses the same pieces (`check_labels`, `decode_voiceprints`, `Identification`),
so a label, a voiceprint or a file is refused for the same reason wherever it comes from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diarist.engine import python_engine
from diarist.hooks import Fraction
from diarist.result import DiarizationResult
from diarist.service import Diarization, IdentifyOptions
from diarist.service import identify as run_identify
from diarist.service import voiceprint as run_voiceprint
from diarist.vocabulary import DEFAULT_MODEL
from diarist.voiceprints import (
    MAX_VOICEPRINTS,
    Matching,
    Voice,
    Voiceprint,
    VoiceprintError,
    decode,
    label_problem,
    named_result,
)


def check_labels(labels: Iterable[str]) -> None:
    """ValueError unless the labels are 1 to 50, unique, each 1 to 100 characters and no SPEAKER_xx."""
    seen: set[str] = set()
    for label in labels:
        if problem := label_problem(label):
            raise ValueError(f"voiceprint label {label!r} {problem}")
        if label in seen:
            raise ValueError(f"voiceprint label {label!r} is given twice: labels must be unique")
        seen.add(label)
    if not seen:
        raise ValueError("identification needs at least one voiceprint")
    if len(seen) > MAX_VOICEPRINTS:
        raise ValueError(f"{len(seen)} voiceprints given: at most {MAX_VOICEPRINTS} at once")


def decode_voiceprints(
    voiceprints: Mapping[str, str | Voiceprint], origins: Mapping[str, str] | None = None
) -> dict[str, Voice]:
    """Each label's voice, after `check_labels`.

    VoiceprintError naming the label of a voiceprint that cannot be used, after where it came from
    (`origins`, by label: the file the command line read it from) when known.
    """
    check_labels(voiceprints)
    decoded = {}
    for label, voiceprint in voiceprints.items():
        text = voiceprint.voiceprint if isinstance(voiceprint, Voiceprint) else voiceprint
        try:
            decoded[label] = decode(text)
        except VoiceprintError as e:
            origin = f"{origins[label]}: " if origins and label in origins else ""
            raise VoiceprintError(f"{origin}the voiceprint of {label!r} {e}") from None
    return decoded


@dataclass
class Identification:
    """Who spoke when, and who each speaker is among the voiceprints.

    `result` keeps the diarization's labels (SPEAKER_00, ...); `named` is the same with each
    matched speaker renamed to its voiceprint's label (a part of a speaker that is another voice
    named by itself, and its turns talked over throughout left under its label,
    `voiceprints.second_voices`); `matches` maps the former to the latter
    (None: no voiceprint matched), and `confidence` gives each speaker's 0-100 score for every
    label. `output` is the identify job output, as the HTTP API answers it.
    """

    result: DiarizationResult
    matches: dict[str, str | None]
    confidence: dict[str, dict[str, int]]
    output: dict[str, Any]

    @classmethod
    def of(cls, done: Diarization) -> Identification:
        """The identification in an identify job's `Diarization` (`service.identify`)."""
        speakers = done.output["voiceprints"]
        return cls(
            done.result,
            {s["speaker"]: s["match"] for s in speakers},
            {s["speaker"]: s["confidence"] for s in speakers},
            done.output,
        )

    @property
    def named(self) -> DiarizationResult:
        return named_result(self.result, self.matches, self.output.get("identification"))


def voiceprint(
    path: str | os.PathLike, model: str = DEFAULT_MODEL, progress: Callable[[float], None] | None = None
) -> Voiceprint:
    """The voiceprint of the person who talks most in an audio file of at most 30 s.

    Returns a ``Voiceprint``: `.voiceprint` is the string to keep and pass to `identify` (or to
    the HTTP API's identify), `.speech_seconds` how much clean speech it was made from, and
    `.warnings` what makes it less reliable (other voices heard, little speech). Raises
    ``VoiceprintError`` when the audio holds too little speech and ``AudioError`` for a file that
    is not usable audio or lasts over 30 s.
    """
    hook = Fraction(progress) if progress is not None else None
    return run_voiceprint(python_engine(), Path(path), model, hook)


def identify(
    path: str | os.PathLike,
    voiceprints: Mapping[str, str | Voiceprint],
    exclusive_matching: bool = True,
    threshold: float = 0,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    model: str = DEFAULT_MODEL,
    progress: Callable[[float], None] | None = None,
) -> Identification:
    """Diarize an audio file and match each speaker with the voiceprints, given by label.

    A voiceprint is the string `voiceprint()` makes (or the ``Voiceprint`` itself). Exclusive
    matching gives each voiceprint to one speaker at most; `threshold` (0-100) is the confidence
    below which a speaker matches nothing. Raises ``ValueError`` for bad labels or options,
    ``VoiceprintError`` for a voiceprint this version cannot use, ``AudioError`` for a bad file.
    """
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold must be from 0 to 100, got {threshold}")
    options = IdentifyOptions(
        model=model,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        voiceprints=decode_voiceprints(voiceprints),
        matching=Matching(exclusive=exclusive_matching, threshold=threshold),
    )
    hook = Fraction(progress) if progress is not None else None
    return Identification.of(run_identify(python_engine(), options, Path(path), hook))
