"""The use cases (diarize, voiceprint, identify), shared by the command line, Python and the job runner.

An engine, options and a file in, a pyannoteAI job output out: the caller decides where the file
comes from, which engine runs the models, what listens to the steps (progress, timings: hooks.py)
and where the output goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarist.audio import duration_seconds, measured_seconds
from diarist.errors import AudioError
from diarist.vocabulary import DEFAULT_MODEL

if TYPE_CHECKING:
    from diarist.engine import Engine
    from diarist.hooks import Hook
    from diarist.result import DiarizationResult
    from diarist.transcription import AttributedTranscript
    from diarist.voiceprints import Matching, Voice, Voiceprint


class AudioTooLongError(AudioError):
    """The audio lasts longer than the caller accepts."""


@dataclass(frozen=True)
class DiarizeOptions:
    """What to compute for one file: the model, speaker counts and the optional output parts."""

    model: str = DEFAULT_MODEL
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    exclusive: bool = False
    confidence: bool = False
    turn_level_confidence: bool = False
    transcription: bool = False
    asr_model: str | None = None  # None: the default recognizer
    asr_models_dir: Path | None = None  # operator-installed ASR models; None: only the packaged ones


@dataclass
class Diarization:
    """The job output, with the objects it was built from for other output formats."""

    output: dict[str, Any]
    result: DiarizationResult
    transcript: AttributedTranscript | None

    @property
    def warnings(self) -> list[str]:
        return self.result.warnings


@dataclass(frozen=True)
class IdentifyOptions(DiarizeOptions):
    """Diarize options plus the voiceprints to match, by label (decoded: `voiceprints.decode`)."""

    voiceprints: dict[str, Voice] = field(default_factory=dict)
    matching: Matching | None = None  # None: exclusive, threshold 0


def probe(path: Path, max_seconds: float | None = None) -> float:
    """The file's duration in seconds; an ``AudioError`` for a file that is not usable audio.

    The container's announced duration, or, where it announces none, the one its packets show:
    quotas and the length limit must hold for every file. Run it before `diarize`, so that a bad
    or too long file fails before the models load.
    """
    duration = duration_seconds(path)
    if duration is None:
        duration = measured_seconds(path)
    # To a tenth of a second: a "30 s" recording often lasts a few samples more.
    if max_seconds is not None and round(duration, 1) > max_seconds:
        raise AudioTooLongError(f"the audio lasts {_span(duration)}, over the {_limit(max_seconds)} limit")
    return duration


def _span(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _limit(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 3600 else f"{seconds / 3600:g} h"


def diarize(engine: Engine, options: DiarizeOptions, path: Path, hook: Hook | None = None) -> Diarization:
    """Diarize (and transcribe, if asked) one file on `engine`; `hook` hears the steps and may raise to stop the run."""
    from diarist.pipeline import diarize as run_pipeline
    from diarist.transcription import diarize_and_transcribe

    def run(listener: Hook | None) -> DiarizationResult:
        return run_pipeline(
            path,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
            model=options.model,
            hook=listener,
            engine=engine,
        )

    transcript = None
    if options.transcription:
        result, transcript = diarize_and_transcribe(engine, path, run, options.asr_model, options.asr_models_dir, hook)
    else:
        result = run(hook)
    output = result.to_dict(
        exclusive=options.exclusive,
        confidence=options.confidence,
        turn_level_confidence=options.turn_level_confidence,
    )
    if transcript is not None:
        output.update(transcript.to_dict())
    return Diarization(output, result, transcript)


def voiceprint(
    engine: Engine,
    path: Path,
    model: str = DEFAULT_MODEL,
    hook: Hook | None = None,
    span: tuple[float, float] | None = None,
) -> Voiceprint:
    """The voiceprint of the person who talks most in `path` (at most `voiceprints.MAX_SECONDS` long),
    or in its `span` (start, end seconds) of at most that length.

    Raises ``VoiceprintError`` when the audio holds too little speech, ``AudioError`` for a file
    that is not usable audio or is too long.
    """
    from diarist.audio import SAMPLE_RATE, load_audio
    from diarist.pipeline import diarize as run_pipeline
    from diarist.voiceprints import MAX_SECONDS, voiceprint_of

    if span is None:
        probe(path, MAX_SECONDS)
        return voiceprint_of(run_pipeline(path, model=model, hook=hook, engine=engine))
    start, end = span
    if not 0 <= start < end or end - start > MAX_SECONDS + 0.05:
        raise ValueError(f"a voiceprint's span must be 0 <= start < end, at most {MAX_SECONDS:g} s: got {start}-{end}")
    cut = load_audio(path)[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
    return voiceprint_of(run_pipeline(cut, sample_rate=SAMPLE_RATE, model=model, hook=hook, engine=engine))


def best_voiceprint_span(engine: Engine, path: Path, model: str = DEFAULT_MODEL) -> tuple[float, float]:
    """The `voiceprints.MAX_SECONDS` of `path` where the person who talks most talks most alone:
    the part a voiceprint of a longer recording is best made from."""
    from diarist.pipeline import diarize as run_pipeline
    from diarist.voiceprints import MAX_SECONDS, speech_seconds

    result = run_pipeline(path, model=model, engine=engine)
    seconds = speech_seconds(result)
    if not seconds or result.duration <= MAX_SECONDS:
        return 0.0, min(result.duration, MAX_SECONDS)
    speaker = max(seconds, key=lambda name: seconds[name])
    turns = [t for t in result.exclusive_turns if t.speaker == speaker]

    def alone(start: float) -> float:
        end = start + MAX_SECONDS
        return sum(max(0.0, min(end, t.end) - max(start, t.start)) for t in turns)

    # A best window starts where one of the speaker's turns starts, or ends where one ends.
    starts = [min(t.start, result.duration - MAX_SECONDS) for t in turns]
    starts += [max(0.0, t.end - MAX_SECONDS) for t in turns]
    start = max(starts, key=alone)
    return start, start + MAX_SECONDS


def identify(engine: Engine, options: IdentifyOptions, path: Path, hook: Hook | None = None) -> Diarization:
    """Diarize `path` and match each speaker with the voiceprints: the identify job output."""
    from diarist.voiceprints import Matching, identification

    if options.transcription:
        raise ValueError("transcription cannot be combined with identification")
    done = diarize(engine, options, path, hook)
    done.output = identification(done.output, done.result, options.voiceprints, options.matching or Matching())
    return done
