"""Command line: ``diarist diarize | voiceprint | identify | serve | worker | keys | models``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diarist.errors import AudioError, DiaristError
from diarist.hooks import Fraction, Hook
from diarist.service import Diarization, DiarizeOptions, diarize, probe
from diarist.vocabulary import (
    ASR_MODELS,
    DEFAULT_ASR_MODEL,
    DEFAULT_DEVICE,
    DEFAULT_MODEL,
    DEVICES,
    DIARIZATION_MODELS,
)
from diarist.voiceprints import MAX_SECONDS, MAX_VOICEPRINTS

if TYPE_CHECKING:
    import numpy as np

    from diarist.engine import Engine

LONG_FILE_SECONDS = 60.0  # show progress on stderr from this duration on
PROGRESS_LINE_SECONDS = 10.0  # without a terminal: a line at each 10 % step, and at least this often
TRANSCRIPT_FORMATS = ("srt", "vtt", "txt")
FORMATS = ("json", "rttm", *TRANSCRIPT_FORMATS)
# What a folder given as input contributes: files with these extensions, hidden ones skipped.
MEDIA_EXTENSIONS = (
    *(".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff", ".amr"),
    *(".webm", ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".3gp"),
)

DIARIZE_EXAMPLES = """\
examples:
  diarist diarize meeting.mp3                         JSON on stdout
  diarist diarize meeting.mp3 --num-speakers 2 --format rttm -o meeting.rttm
  diarist diarize recordings/ -o results/             one results/NAME.json per file
  diarist diarize a.wav b.mp4 --transcribe --format srt -o subtitles/
"""
VOICEPRINT_EXAMPLES = """\
examples:
  diarist voiceprint alice.wav -o alice.vp           10-30 s of Alice alone is best
  diarist voiceprint bob.m4a                         the voiceprint string on stdout
"""
IDENTIFY_EXAMPLES = """\
examples:
  diarist identify meeting.mp3 --voiceprint Alice=alice.vp --voiceprint Bob=bob.vp
  diarist identify meeting.mp3 --voiceprint Alice=alice.vp --threshold 50 --format srt -o meeting.srt
  diarist identify recordings/ --voiceprint Alice=alice.vp --format rttm -o results/
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _labelled(text: str) -> tuple[str, Path]:
    label, equals, path = text.partition("=")
    if not equals or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.vp, got {text!r}")
    return label, Path(path)


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a confidence from 0 to 100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a confidence from 0 to 100, got {value:g}")
    return value


def _subcommand(commands, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    from diarist import __version__

    parser = argparse.ArgumentParser(
        prog="diarist",
        description="Self-hosted speaker diarization: who spoke when, offline.",
        epilog="examples:\n  diarist diarize meeting.mp3\n  diarist serve\n\n`diarist COMMAND --help` says more.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diarist {__version__}")
    parser.set_defaults(run=None, parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    diarize = _subcommand(commands, "diarize", "print who spoke when in audio or video files", DIARIZE_EXAMPLES)
    diarize.set_defaults(run=run_diarize)
    _diarization_options(diarize)
    diarize.add_argument(
        "--transcribe", action="store_true", help="also transcribe, each word and turn with its speaker"
    )
    diarize.add_argument(
        "--asr-model", choices=ASR_MODELS, help=f"speech recognition model (default {DEFAULT_ASR_MODEL})"
    )
    diarize.add_argument(
        "--asr-models", type=Path, metavar="DIR", help="operator-installed ASR models (default: <data dir>/asr-models)"
    )
    _output_options(
        diarize, "json (default): the pyannoteAI job output; rttm; srt, vtt, txt: transcripts, with --transcribe"
    )

    voiceprint = _subcommand(
        commands, "voiceprint", "print the voiceprint of the person who talks in an audio file", VOICEPRINT_EXAMPLES
    )
    voiceprint.set_defaults(run=run_voiceprint)
    voiceprint.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help=f"audio or video of one person talking, {MAX_SECONDS:g} s at most (5 s or more of speech is best)",
    )
    voiceprint.add_argument("-o", "--output", type=Path, metavar="FILE.vp", help="write it to this file, not stdout")
    _model_option(voiceprint)
    _device_option(voiceprint, DEFAULT_DEVICE)

    identify = _subcommand(
        commands, "identify", "print who spoke when, naming the speakers that voiceprints match", IDENTIFY_EXAMPLES
    )
    identify.set_defaults(run=run_identify)
    _diarization_options(identify)
    identify.add_argument(
        "--voiceprint",
        dest="voiceprints",
        action="append",
        required=True,
        type=_labelled,
        metavar="NAME=FILE.vp",
        help=f"a voiceprint (made by `diarist voiceprint`) and the name to give its speaker; "
        f"repeat for each person, {MAX_VOICEPRINTS} at most",
    )
    identify.add_argument(
        "--threshold",
        type=_confidence,
        default=0.0,
        metavar="T",
        help="0-100: a speaker matches no voiceprint with a lower confidence (default 0)",
    )
    identify.add_argument(
        "--non-exclusive-matching",
        action="store_true",
        help="let several speakers match the same voiceprint (default: one speaker per voiceprint at most)",
    )
    # Not offered, but named: a clear refusal beats "unrecognized arguments".
    identify.add_argument("--transcribe", action="store_true", help=argparse.SUPPRESS)
    _output_options(
        identify,
        "json (default): the pyannoteAI identify job output; rttm; srt, vtt, txt: the turns with their speakers' names",
    )

    models = _subcommand(
        commands, "models", "check that the pretrained weights are installed and intact", "example:\n  diarist models\n"
    )
    models.set_defaults(run=lambda args: run_models())

    serve = _subcommand(
        commands,
        "serve",
        "run the pyannoteAI-compatible HTTP service",
        "example:\n  diarist serve --port 8080 --workers 2\n\n"
        "Every setting also reads DIARIST_<NAME> or <data dir>/diarist.toml (docs/api.md).",
    )
    serve.set_defaults(run=run_serve)
    _state_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, metavar="N", help="local worker processes running jobs (default 1)")
    _device_option(serve, "$DIARIST_DEVICE, else auto", "where the local workers run the models")

    worker = _subcommand(
        commands,
        "worker",
        "run jobs from the Celery broker for `diarist serve` with DIARIST_EXECUTOR=celery",
        "examples:\n  diarist worker --concurrency 2\n  diarist worker --queues transcription --concurrency 1\n\n"
        "It reads the same settings as serve (DIARIST_DATABASE_URL, DIARIST_BROKER_URL, ...; docs/deploy.md).",
    )
    worker.set_defaults(run=run_worker)
    _state_options(worker)
    worker.add_argument(
        "--concurrency", type=_positive, metavar="N", help="jobs run at once, one process each (default: cores / 4)"
    )
    worker.add_argument(
        "--queues",
        default="diarization,transcription",
        metavar="Q,...",
        help="queues to take jobs from: diarization (plain jobs), transcription (jobs with a transcript); default both",
    )
    worker.add_argument("--name", metavar="NAME", help="this worker's name in the fleet (default diarist@HOST-PID)")
    _device_option(worker, "$DIARIST_DEVICE, else auto")

    migrate = _subcommand(
        commands,
        "migrate",
        "bring the job database's schema to this version's (before a rolling upgrade)",
        "example:\n  diarist migrate\n\nThe database is DIARIST_DATABASE_URL's, as for `serve`. `serve` also migrates\n"
        "at start; running this first lets old and new processes overlap in an upgrade (docs/deploy.md).",
    )
    migrate.set_defaults(run=run_migrate)
    _state_options(migrate)

    keys = _subcommand(
        commands,
        "keys",
        "create, list and revoke API keys",
        "examples:\n  diarist keys create --name alice\n  diarist keys list\n  diarist keys revoke KEY_ID\n",
    )
    keys.set_defaults(run=None, parser=keys)
    key_commands = keys.add_subparsers(title="commands", metavar="COMMAND", dest="keys_command")
    create = _subcommand(
        key_commands,
        "create",
        "make a key; prints it and its webhook secret once",
        "example:\n  diarist keys create --name alice --rate-limit 60 --quota-hours 10\n",
    )
    create.set_defaults(run=run_keys)
    _state_options(create)
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--rate-limit", type=int, metavar="N", help="requests per minute (default: the server's)")
    create.add_argument(
        "--quota-hours", type=float, metavar="H", help="hours of audio it may diarize (default: unlimited)"
    )
    create.add_argument(
        "--storage-quota-gb",
        type=float,
        metavar="G",
        help="GiB of uploads it may keep at once, 0 = unlimited (default: the server's max_storage_bytes_per_key)",
    )
    listing = _subcommand(key_commands, "list", "list keys (never their secrets)", "example:\n  diarist keys list\n")
    listing.set_defaults(run=run_keys)
    _state_options(listing)
    revoke = _subcommand(key_commands, "revoke", "revoke a key at once", "example:\n  diarist keys revoke 3f9a1c2b\n")
    revoke.set_defaults(run=run_keys)
    _state_options(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id shown by `keys list`")
    return parser


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=DIARIZATION_MODELS,
        help=f"{DEFAULT_MODEL} (default, as in the HTTP API): the more accurate; "
        "community-1: about 1.5 times faster, a little less accurate (docs/benchmarks.md)",
    )


def _device_option(parser: argparse.ArgumentParser, default: str, what: str = "where to run the models") -> None:
    """`--device`; None when not given, so that a server's settings can fill it in."""
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help=f"{what}: auto (cuda where PyTorch sees a GPU, else cpu), cpu or cuda (default {default}); "
        "the cuda path is not yet measured on a GPU",
    )


def _diarization_options(parser: argparse.ArgumentParser) -> None:
    """The inputs and what to compute, as `diarize` and `identify` share them."""
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="audio or video files ffmpeg can read, or folders: their " + " ".join(MEDIA_EXTENSIONS) + " files",
    )
    _model_option(parser)
    parser.add_argument("--num-speakers", type=_positive, metavar="N", help="exactly N speakers")
    parser.add_argument("--min-speakers", type=_positive, metavar="N", help="at least N speakers")
    parser.add_argument("--max-speakers", type=_positive, metavar="N", help="at most N speakers")
    parser.add_argument("--exclusive", action="store_true", help="also give turns where only one speaker speaks")
    parser.add_argument("--confidence", action="store_true", help="add the confidence curve and per-turn scores")


def _output_options(parser: argparse.ArgumentParser, formats: str) -> None:
    """Where and how `diarize` and `identify` write, and the threads they run on."""
    parser.add_argument("--format", default="json", choices=FORMATS, help=formats)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to this file instead of stdout; a folder (existing, or written with a final /) gets "
        "one file per input, named after it (a.wav -> OUT/a.json); missing folders are created",
    )
    parser.add_argument("--threads", type=_positive, metavar="N", help="CPU threads for inference (default: all)")
    _device_option(parser, DEFAULT_DEVICE)


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where all state lives ($DIARIST_DATA_DIR)")


class ProgressLines:
    """Plain `diarist: NAME: 40%` lines, for logs: at each 10 % step, and at least every 10 s.

    It hears the run's fraction done: `Fraction(lines)` is the listener to a run's steps.
    """

    def __init__(self, name: str):
        self.name = name
        self.next_step, self.last = 10, time.monotonic()
        self.lock = threading.Lock()  # transcription reports from a second thread

    def __call__(self, fraction: float) -> None:
        percent = int(100 * fraction)
        with self.lock:
            now = time.monotonic()
            if percent < self.next_step and now - self.last < PROGRESS_LINE_SECONDS:
                return
            self.next_step, self.last = (percent // 10 + 1) * 10, now
            print(f"diarist: {self.name}: {percent}%", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to clear: every line is already complete."""


class ProgressBar:
    """A tqdm bar on the terminal, erased when the file is done; it hears fractions, as ProgressLines does."""

    def __init__(self, name: str):
        from tqdm import tqdm

        bar_format = "{l_bar}{bar}| {elapsed}<{remaining}"
        self.bar = tqdm(total=100, desc=name, unit="%", file=sys.stderr, leave=False, bar_format=bar_format)
        self.lock = threading.Lock()

    def __call__(self, fraction: float) -> None:
        with self.lock:
            self.bar.update(round(100 * fraction) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def progress_display(path: Path, duration: float) -> ProgressBar | ProgressLines | None:
    """How to show progress on stderr: none for short files, a bar on a terminal, else lines."""
    if duration < LONG_FILE_SECONDS:
        return None
    return ProgressBar(path.name) if sys.stderr.isatty() else ProgressLines(path.name)


def input_files(arguments: Sequence[Path]) -> list[Path]:
    """The files to diarize: each argument, a folder standing for its media files in name order."""
    files: list[Path] = []
    for argument in arguments:
        if not argument.is_dir():
            files.append(argument)
            continue
        found = sorted(
            p
            for p in argument.iterdir()
            if p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        )
        if not found:
            raise ValueError(f"{argument}: no audio or video files in this folder ({' '.join(MEDIA_EXTENSIONS)})")
        files += found
    return files


def write_file(path: Path, text: str) -> None:
    """Replace `path` in one rename, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text)
    partial.replace(path)


def render(done: Diarization, path: Path, fmt: str, exclusive: bool) -> str:
    """One file's output in `fmt` (the API's export renderer); without a transcript, srt, vtt and txt give the
    speaker of each turn (identification: named after its match)."""
    from diarist.exports import render as render_output

    return render_output(
        done.output, fmt, uri=path.stem, exclusive=exclusive, transcript=done.transcript, result=done.result
    )


@dataclass
class Destination:
    """Where outputs go as each file finishes: one file per input in a folder, one file, or stdout."""

    target: Path | None  # None: stdout
    folder: bool
    fmt: str
    exclusive: bool
    several: bool  # more than one input: JSON becomes {input path: output}
    finished: dict[Path, Diarization] = field(default_factory=dict)

    def add(self, path: Path, done: Diarization) -> None:
        self.finished[path] = done
        if self.folder:
            assert self.target is not None
            write_file(self.target / f"{path.stem}.{self.fmt}", render(done, path, self.fmt, self.exclusive))
        elif self.target is not None:
            write_file(self.target, self.combined())
        elif not (self.several and self.fmt == "json"):
            sys.stdout.write(render(done, path, self.fmt, self.exclusive))
            sys.stdout.flush()

    def close(self) -> None:
        """Print what could only be printed whole: several files as one JSON object."""
        if self.target is None and self.several and self.fmt == "json":
            sys.stdout.write(self.combined())

    def combined(self) -> str:
        if self.several and self.fmt == "json":
            return json.dumps({str(p): done.output for p, done in self.finished.items()}, indent=2) + "\n"
        return "".join(render(done, p, self.fmt, self.exclusive) for p, done in self.finished.items())


def destination(args: argparse.Namespace, files: list[Path], words_needed: bool = True) -> Destination:
    """Where `args` sends the outputs of `files`; ValueError for a combination that cannot work.

    `words_needed`: srt, vtt and txt are transcripts, which need --transcribe (not so for identify).
    """
    # A string, not a Path: Path drops the final / that marks a folder yet to be made.
    out = None if args.output is None else Path(args.output)
    folder = out is not None and (out.is_dir() or args.output.endswith(("/", os.sep)))
    several = len(files) > 1
    if args.format in TRANSCRIPT_FORMATS:
        if words_needed and not args.transcribe:
            raise ValueError(f"--format {args.format} needs --transcribe")
        if several and not folder:
            raise ValueError(f"--format {args.format} writes one file per input: use -o DIR/ for several inputs")
    if folder:
        names: dict[str, Path] = {}
        for path in files:
            clash = names.setdefault(path.stem, path)
            if clash != path:
                raise ValueError(f"{clash} and {path} would both write {out / path.stem}.{args.format}")
    return Destination(out, folder, args.format, args.exclusive, several)


def engine(args: argparse.Namespace) -> Engine:
    """The one engine of this command, on `--device` and `--threads` where it has them."""
    from diarist.engine import Engine

    return Engine(args.device or DEFAULT_DEVICE, getattr(args, "threads", None))


def diarize_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `DiarizeOptions` fields that `diarize` and `identify` share, from their arguments."""
    return {
        "model": args.model,
        "num_speakers": args.num_speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "exclusive": args.exclusive,
        "confidence": args.confidence,
        "turn_level_confidence": args.confidence,
    }


def file_error(path: Path, error: Exception) -> str:
    """`FILE: why`, for an error that may already name the file."""
    return str(error) if str(error).startswith(str(path)) else f"{path}: {error}"


def run_each(files: list[Path], target: Destination, run: Callable[[Path, Hook | None], Diarization]) -> int:
    """`run` every input, writing each output as it is done; exit 1 when any input failed."""
    failed = 0
    for path in files:
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
        target.add(path, done)
    target.close()
    return 1 if failed else 0


def run_diarize(args: argparse.Namespace) -> int:
    """Diarize every input, writing each output as it is done; exit 1 when any input failed."""
    files = input_files(args.files)
    target = destination(args, files)
    models_dir = args.asr_models
    if args.transcribe and models_dir is None:
        from diarist.settings import Settings

        models_dir = Settings.load().asr_models_dir
    options = DiarizeOptions(
        **diarize_options(args),
        transcription=args.transcribe,
        asr_model=args.asr_model,
        asr_models_dir=models_dir,
    )
    return run_each(files, target, partial(diarize, engine(args), options))


def run_voiceprint(args: argparse.Namespace) -> int:
    """Print (or write) the voiceprint of one file; its warnings and errors name the file."""
    from diarist.service import voiceprint
    from diarist.voiceprints import VoiceprintError

    try:
        made = voiceprint(engine(args), args.file, args.model)
    except (AudioError, VoiceprintError) as e:  # the file's audio: unusable, too long, too little speech
        raise DiaristError(file_error(args.file, e)) from None
    for warning in made.warnings:
        print(f"diarist: warning: {args.file}: {warning}", file=sys.stderr)
    if args.output is None:
        print(made.voiceprint)
    else:
        write_file(args.output, made.voiceprint + "\n")
    return 0


def read_voiceprints(labelled: list[tuple[str, Path]]) -> dict[str, np.ndarray]:
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
    voices = read_voiceprints(args.voiceprints)
    files = input_files(args.files)
    target = destination(args, files, words_needed=False)
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


def check_device(device: str) -> None:
    """Refuse at start a `cuda` that workers could not use, rather than fail every job.

    Only `cuda` needs the check (`auto` always finds a device), and only it loads PyTorch here. The
    check asks NVML, so that Celery's forked children can still start CUDA.
    """
    if device == "cuda":
        from diarist.engine import resolve_device

        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        resolve_device(device)


def run_serve(args: argparse.Namespace) -> int:
    import logging

    from diarist.api.server import serve
    from diarist.settings import Settings

    settings = Settings.load(
        data_dir=args.data_dir, host=args.host, port=args.port, workers=args.workers, device=args.device
    )
    if settings.executor == "local" and settings.workers > 0:
        check_device(settings.device)
    if settings.executor == "celery" and "workers" in settings.model_fields_set and settings.workers > 0:
        # Refused rather than ignored: jobs go to the broker, so local workers would never get one.
        raise DiaristError(
            f"workers = {settings.workers} with executor = celery: the API runs no jobs itself in celery mode. "
            "Start `diarist worker` processes instead, and set no workers (or 0) for the API."
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address = f"http://{settings.host}:{settings.port}"
    print(f"diarist: serving on {address} with state in {settings.data_dir}", file=sys.stderr)
    serve(settings)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    import logging

    from diarist.jobs.celery_app import parse_queues, run_worker
    from diarist.settings import Settings, default_workers

    try:
        queues = parse_queues(args.queues)
    except ValueError as e:
        raise DiaristError(f"--queues: {e}") from None
    settings = Settings.load(data_dir=args.data_dir, workers=args.concurrency, device=args.device)
    check_device(settings.device)
    if settings.workers < 1:
        # `workers = 0` belongs to an API in celery mode, in a config file both may share: not to us.
        settings = settings.model_copy(update={"workers": default_workers()})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from diarist.jobs.net import redact_url

    print(f"diarist: worker on {redact_url(settings.broker_url)} with caches in {settings.data_dir}", file=sys.stderr)
    run_worker(settings, queues, settings.workers, args.name)
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from diarist.jobs.store import Store, head_revision
    from diarist.settings import Settings

    store = Store(Settings.load(data_dir=args.data_dir).database)
    try:
        before = store.schema_revision()
        store.migrate()
    finally:
        store.close()
    after = head_revision()
    print(f"schema at {after}" if before == after else f"schema migrated from {before or 'nothing'} to {after}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    sys.stdout.write(key_command_output(args))
    return 0


def key_command_output(args: argparse.Namespace) -> str:
    from diarist.jobs.store import Store
    from diarist.settings import Settings

    store = Store(Settings.load(data_dir=args.data_dir).database)
    store.migrate()
    if args.keys_command == "create":
        storage = None if args.storage_quota_gb is None else round(args.storage_quota_gb * 1024**3)
        new = store.create_key(
            args.name, rate_limit_per_minute=args.rate_limit, quota_hours=args.quota_hours, storage_quota_bytes=storage
        )
        print("Store both now: they are not shown again.", file=sys.stderr)
        return f"api key:        {new.key}\nwebhook secret: {new.webhook_secret}\n"
    if args.keys_command == "revoke":
        if not store.revoke_key(args.key_id):
            raise ValueError(f"no live key with id {args.key_id}")
        return f"revoked {args.key_id}\n"
    lines = [f"{'id':12}  {'name':20}  {'created':20}  {'used h':>8}  {'quota h':>8}  state"]
    for key in store.list_keys():
        quota = "-" if key.quota_seconds is None else f"{key.quota_seconds / 3600:.2f}"
        state = "revoked" if key.revoked_at else "active"
        created = key.created_at.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{key.id:12}  {key.name:20}  {created:20}  {key.used_seconds / 3600:8.2f}  {quota:>8}  {state}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run is None:  # `diarist` or `diarist keys` alone: show what there is to run
        args.parser.print_help()
        return 0
    try:
        return args.run(args)
    except (DiaristError, ValueError) as e:
        print(f"diarist: error: {e}", file=sys.stderr)
    except OSError as e:  # e.g. an output that cannot be written
        print(f"diarist: error: {e.filename}: {e.strerror}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
