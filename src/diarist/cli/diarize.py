"""The commands that run the models: diarize, identify and voiceprint, each on one engine, and models."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarist.cli.files import Destination, destination, file_error, input_files, write_file
from diarist.cli.progress import progress_display
from diarist.errors import AudioError, DiaristError
from diarist.hooks import Fraction, Hook
from diarist.service import Diarization, DiarizeOptions, diarize, probe
from diarist.vocabulary import DEFAULT_DEVICE, OPERATOR_ASR_MODELS, count_conflicts

if TYPE_CHECKING:
    from diarist.engine import Engine
    from diarist.voiceprints import Voice


def engine(args: argparse.Namespace) -> Engine:
    """The one engine of this command, on `--device` and `--threads` where it has them."""
    from diarist.engine import Engine

    return Engine(args.device or DEFAULT_DEVICE, getattr(args, "threads", None))


def diarize_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `DiarizeOptions` fields that `diarize` and `identify` share, from their arguments.

    ValueError for speaker counts that conflict, naming the options rather than the fields.
    """
    for name, other in count_conflicts(args.num_speakers, args.min_speakers, args.max_speakers):
        option, other_option = (f"--{n.replace('_', '-')}" for n in (name, other))
        if other == "num_speakers":
            raise ValueError(f"{option} cannot be used together with {other_option}")
        raise ValueError(f"{option} ({args.min_speakers}) must be <= {other_option} ({args.max_speakers})")
    return {
        "model": args.model,
        "num_speakers": args.num_speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "exclusive": args.exclusive,
        "confidence": args.confidence,
        "turn_level_confidence": args.confidence,
    }


def summary(path: Path, done: Diarization, written: Path, seconds: float) -> str:
    """`a.wav: 2 speakers in 30.0 s of audio (3.1 s) -> out/a.json`: what came of one input, and where it went."""
    speakers = len({turn.speaker for turn in done.result.turns})
    found = "no speech" if not speakers else f"{speakers} speaker{'s' if speakers > 1 else ''}"
    return f"{path}: {found} in {done.result.duration:.1f} s of audio ({seconds:.1f} s) -> {written}"


def run_each(files: list[Path], target: Destination, run: Callable[[Path, Hook | None], Diarization]) -> int:
    """`run` every input, writing each output as it is done; exit 1 when any input failed."""
    failed = 0
    for path in files:
        started = time.monotonic()
        try:
            display = progress_display(path, probe(path))
            try:
                done = run(path, None if display is None else Fraction(display))
            finally:
                if display is not None:
                    display.close()
        except AudioError as e:  # this file's fault: say so and go on with the others
            failed += 1
            print(f"diarist: error: {file_error(path, e)}", file=sys.stderr)
            continue
        for warning in done.warnings:
            print(f"diarist: warning: {path}: {warning}", file=sys.stderr)
        written = target.add(path, done)
        if written is not None:  # on stdout the output speaks for itself; a file needs saying where it went
            print(f"diarist: {summary(path, done, written, time.monotonic() - started)}", file=sys.stderr)
    target.close()
    return 1 if failed else 0


def check_asr_model(name: str | None, models_dir: Path) -> None:
    """Refuse an operator-installed ASR model that is not in `models_dir`, saying how to install it.

    The API falls back to the default model with a warning, as pyannoteAI does; on the command line
    the user who named the model is the one who can install it, so running another would only mislead.
    """
    from diarist.transcription.asr import operator_model_installed

    if name in OPERATOR_ASR_MODELS and not operator_model_installed(name, models_dir / name):
        raise DiaristError(
            f"--asr-model {name} is not installed in {models_dir / name}: put its files there "
            f'(docs/models.md, "Models an operator installs") or give their folder\'s parent with --asr-models DIR'
        )


def run_diarize(args: argparse.Namespace) -> int:
    """Diarize every input, writing each output as it is done; exit 1 when any input failed."""
    files = input_files(args.files)
    target = destination(args, files)
    models_dir = args.asr_models
    if args.transcribe and models_dir is None:
        from diarist.settings import Settings

        models_dir = Settings.load().asr_models_dir
    if args.transcribe:
        check_asr_model(args.asr_model, models_dir)
    options = DiarizeOptions(
        **diarize_options(args),
        transcription=args.transcribe,
        asr_model=args.asr_model,
        asr_models_dir=models_dir,
    )
    return run_each(files, target, partial(diarize, engine(args), options))


def voiceprint_span(args: argparse.Namespace, models: Engine) -> tuple[float, float] | None:
    """The part of `args.file` to make the voiceprint of: `--start`/`--end`, the best part of a longer file
    (said on stderr), or None for the whole of a short one."""
    from diarist.service import best_voiceprint_span
    from diarist.voiceprints import MAX_SECONDS

    duration = probe(args.file)
    if args.start is None and args.end is None:
        if round(duration, 1) <= MAX_SECONDS:
            return None
        start, end = best_voiceprint_span(models, args.file, args.model)
        print(
            f"diarist: {args.file}: {duration:.1f} s is over {MAX_SECONDS:g} s: using {start:.1f}-{end:.1f} s, "
            "where its main voice talks most alone (--start/--end choose another part)",
            file=sys.stderr,
        )
        return start, end
    start = args.start if args.start is not None else max(0.0, args.end - MAX_SECONDS)
    end = args.end if args.end is not None else min(duration, start + MAX_SECONDS)
    if start >= min(end, duration):
        raise ValueError(f"--start {start:g} must be before --end {end:g} and the end of the audio ({duration:.1f} s)")
    if end - start > MAX_SECONDS:
        raise ValueError(f"--start {start:g} --end {end:g} is {end - start:g} s: at most {MAX_SECONDS:g} s")
    return start, end


def run_voiceprint(args: argparse.Namespace) -> int:
    """Print (or write) the voiceprint of one file; its warnings and errors name the file."""
    from diarist.service import voiceprint
    from diarist.voiceprints import VoiceprintError

    try:
        models = engine(args)
        made = voiceprint(models, args.file, args.model, span=voiceprint_span(args, models))
    except (AudioError, VoiceprintError) as e:  # the file's audio: unusable, too long, too little speech
        raise DiaristError(file_error(args.file, e)) from None
    for warning in made.warnings:
        print(f"diarist: warning: {args.file}: {warning}", file=sys.stderr)
    if args.output is None:
        print(made.voiceprint)
    else:
        write_file(args.output, made.voiceprint + "\n")
    return 0


def read_voiceprints(labelled: list[tuple[str, Path]]) -> dict[str, Voice]:
    """Each label's voice from its .vp file; an error naming the label or the file that is wrong."""
    from diarist.identities import check_labels, decode_voiceprints

    check_labels(label for label, _ in labelled)  # before reading: `dict` would drop a repeated label
    texts = {}
    for label, path in labelled:
        try:
            texts[label] = path.read_text(errors="replace")
        except OSError as e:
            raise DiaristError(f"{path}: {e.strerror} (the voiceprint of {label!r})") from None
    return decode_voiceprints(texts, {label: str(path) for label, path in labelled})


def run_identify(args: argparse.Namespace) -> int:
    """Diarize every input and name its speakers by the voiceprints; exit 1 when any input failed."""
    from diarist.identities import Identification
    from diarist.service import IdentifyOptions, identify
    from diarist.voiceprints import Matching

    if args.transcribe:
        raise ValueError(
            "identify does not transcribe (nor does the pyannoteAI API): "
            "`diarist diarize --transcribe` gives a transcript with SPEAKER_xx labels"
        )
    files = input_files(args.files)
    voices = read_voiceprints(args.voiceprints)
    target = destination(args, files)
    matching = Matching(exclusive=not args.non_exclusive_matching, threshold=args.threshold)
    options = IdentifyOptions(**diarize_options(args), voiceprints=voices, matching=matching)
    models = engine(args)

    def run(path: Path, hook: Hook | None) -> Diarization:
        found = Identification.of(identify(models, options, path, hook))
        # RTTM, SRT, VTT and text show the names; JSON keeps both (`identification`).
        return Diarization(found.output, found.named, None)

    return run_each(files, target, run)


def run_models() -> int:
    from diarist.models import check_models

    sys.stdout.write("".join(f"ok  {w.name} ({w.license}): {path}\n" for w, path in check_models()))
    return 0
