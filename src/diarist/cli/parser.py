"""The arguments of every command, and the function that runs each (`args.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from diarist.cli.diarize import run_diarize, run_identify, run_models, run_voiceprint
from diarist.cli.files import MEDIA_EXTENSIONS
from diarist.cli.live import run_live
from diarist.cli.server import run_keys, run_migrate, run_serve, run_worker
from diarist.exports import FORMATS, Wrapping
from diarist.vocabulary import (
    ASR_MODELS,
    DEFAULT_ASR_MODEL,
    DEFAULT_DEVICE,
    DEFAULT_MODEL,
    DEVICES,
    DIARIZATION_MODELS,
    LIVE_LATENCY_RANGE,
)
from diarist.voiceprints import GOOD_SPEECH_SECONDS, MAX_SECONDS, MAX_VOICEPRINTS

DIARIZE_EXAMPLES = """\
examples:
  diarist diarize meeting.mp3                         JSON on stdout
  diarist diarize meeting.mp3 --num-speakers 2 --format rttm -o meeting.rttm
  diarist diarize recordings/ -o results/             one results/NAME.json per file
  diarist diarize a.wav b.mp4 --transcribe --format srt -o subtitles/
"""
VOICEPRINT_EXAMPLES = """\
examples:
  diarist voiceprint alice.wav -o alice.vp           5-30 s of Alice alone is best
  diarist voiceprint talk.mp4 --start 60 --end 90    a part of a longer file
  diarist voiceprint bob.m4a                         the voiceprint string on stdout
"""
LIVE_EXAMPLES = """\
examples:
  diarist live meeting.wav                            events as they come, the engine in this process
  diarist live meeting.wav --format rttm --fast       the turns at the end, as fast as the engine goes
  ffmpeg -i rtsp://cam/stream -f f32le -ar 16000 -ac 1 - | diarist live -
  diarist live call.wav --server http://127.0.0.1:8000 --api-key $KEY
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected seconds from 0 on, got {text}")
    return value


def _labelled(text: str) -> tuple[str, Path]:
    label, equals, path = text.partition("=")
    if not equals or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.vp, got {text!r}")
    return label, Path(path)


def _latency(text: str) -> float:
    low, high = LIVE_LATENCY_RANGE
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {low:g} to {high:g} seconds, got {value:g}")
    return value


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a confidence from 0 to 100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a confidence from 0 to 100, got {value:g}")
    return value


def _subcommand(commands, name: str, help: str, examples: str) -> argparse.ArgumentParser:
    """A command's parser; `args.parser` is it, so that its errors show its own usage."""
    parser = commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The `diarist` parser: each command's arguments, and in `args.run` the function that runs it."""
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
    _add_diarize(commands)
    _add_voiceprint(commands)
    _add_identify(commands)
    _add_live(commands)
    _add_models(commands)
    _add_serve(commands)
    _add_worker(commands)
    _add_migrate(commands)
    _add_keys(commands)
    return parser


def _add_diarize(commands: argparse._SubParsersAction) -> None:
    """`diarist diarize`: who spoke when in files, optionally transcribed."""
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
        diarize,
        "json (default): the pyannoteAI job output; rttm; srt, vtt, txt: the transcript with --transcribe, "
        "else one cue per turn naming its speaker",
    )


def _add_voiceprint(commands: argparse._SubParsersAction) -> None:
    """`diarist voiceprint`: the voiceprint of one file."""
    voiceprint = _subcommand(
        commands, "voiceprint", "print the voiceprint of the person who talks in an audio file", VOICEPRINT_EXAMPLES
    )
    voiceprint.set_defaults(run=run_voiceprint)
    voiceprint.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help=f"audio or video of one person talking: {GOOD_SPEECH_SECONDS:g} to {MAX_SECONDS:g} s of their speech "
        f"is best; of a longer file, the {MAX_SECONDS:g} s where they talk most alone is used, unless --start/--end",
    )
    voiceprint.add_argument(
        "--start", type=_seconds, metavar="S", help=f"use the audio from S seconds on ({MAX_SECONDS:g} s at most)"
    )
    voiceprint.add_argument("--end", type=_seconds, metavar="S", help="use the audio up to S seconds")
    voiceprint.add_argument("-o", "--output", type=Path, metavar="FILE.vp", help="write it to this file, not stdout")
    _model_option(voiceprint)
    _device_option(voiceprint, DEFAULT_DEVICE)


def _add_identify(commands: argparse._SubParsersAction) -> None:
    """`diarist identify`: who spoke when, speakers named by voiceprints."""
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


def _add_live(commands: argparse._SubParsersAction) -> None:
    """`diarist live`: a file or standard input as a live stream, its speaker events as they come."""
    live = _subcommand(commands, "live", "diarize a file or standard input live, at real time", LIVE_EXAMPLES)
    live.set_defaults(run=run_live)
    live.add_argument(
        "source", metavar="FILE", help="an audio or video file, or - for raw pcm_f32le, 16 kHz, mono on stdin"
    )
    live.add_argument(
        "--model", choices=DIARIZATION_MODELS, help="diarization model (default community-1: the lighter)"
    )
    live.add_argument(
        "--latency",
        type=_latency,
        metavar="S",
        help=f"seconds between the audio and its events, {LIVE_LATENCY_RANGE[0]:g}-{LIVE_LATENCY_RANGE[1]:g}; "
        "longer is more accurate (default: the engine's)",
    )
    live.add_argument(
        "--format",
        default="events",
        choices=("events", "rttm"),
        help="events (default): one JSON event per line as it comes; rttm: the turns when the stream ends",
    )
    live.add_argument("--fast", action="store_true", help="do not wait for real time (local engine only)")
    live.add_argument("--server", metavar="URL", help="stream to this server's POST /v1/live instead")
    live.add_argument("--api-key", metavar="KEY", help="the server's API key (default $DIARIST_API_KEY)")
    live.add_argument("--threads", type=_positive, metavar="N", help="CPU threads of the local engine")
    _device_option(live, DEFAULT_DEVICE, "where the local engine runs")


def _add_models(commands: argparse._SubParsersAction) -> None:
    """`diarist models`: check the installed weights."""
    models = _subcommand(
        commands, "models", "check that the pretrained weights are installed and intact", "example:\n  diarist models\n"
    )
    models.set_defaults(run=lambda args: run_models())


def _add_serve(commands: argparse._SubParsersAction) -> None:
    """`diarist serve`: the HTTP service."""
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


def _add_worker(commands: argparse._SubParsersAction) -> None:
    """`diarist worker`: a Celery worker."""
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


def _add_migrate(commands: argparse._SubParsersAction) -> None:
    """`diarist migrate`: the job database's schema."""
    migrate = _subcommand(
        commands,
        "migrate",
        "bring the job database's schema to this version's (before a rolling upgrade)",
        "example:\n  diarist migrate\n\nThe database is DIARIST_DATABASE_URL's, as for `serve`. `serve` also migrates\n"
        "at start; running this first lets old and new processes overlap in an upgrade (docs/deploy.md).",
    )
    migrate.set_defaults(run=run_migrate)
    _state_options(migrate)


def _add_keys(commands: argparse._SubParsersAction) -> None:
    """`diarist keys create | list | revoke`."""
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
    revoked = "revoke a key: servers refuse it within key_cache_seconds (1 s)"
    revoke = _subcommand(key_commands, "revoke", revoked, "example:\n  diarist keys revoke 3f9a1c2b\n")
    revoke.set_defaults(run=run_keys)
    _state_options(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id shown by `keys list`")


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
        metavar="FILE",  # strings: Path would turn a URL's // into /, and input_files refuses URLs
        help="local audio or video files ffmpeg can read, or folders: their " + " ".join(MEDIA_EXTENSIONS) + " files",
    )
    _model_option(parser)
    parser.add_argument("--num-speakers", type=_positive, metavar="N", help="exactly N speakers")
    parser.add_argument("--min-speakers", type=_positive, metavar="N", help="at least N speakers")
    parser.add_argument("--max-speakers", type=_positive, metavar="N", help="at most N speakers")
    parser.add_argument("--exclusive", action="store_true", help="also give turns where only one speaker speaks")
    parser.add_argument("--confidence", action="store_true", help="add the confidence curve and per-turn scores")


def _output_options(parser: argparse.ArgumentParser, formats: str) -> None:
    """Where and how `diarize` and `identify` write, and the threads they run on."""
    parser.add_argument("--format", default="json", choices=tuple(FORMATS), help=formats)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to this file instead of stdout; a folder (existing, or written with a final /) gets "
        "one file per input, named after it (a.wav -> OUT/a.json); missing folders are created",
    )
    parser.add_argument(
        "--max-line-width",
        type=_positive,
        default=Wrapping.width,
        metavar="N",
        help=f"srt, vtt: at most N characters a line, broken between words (default {Wrapping.width})",
    )
    parser.add_argument(
        "--max-line-count",
        type=_positive,
        default=Wrapping.lines,
        metavar="N",
        help=f"srt, vtt: at most N lines a cue; a longer one is split (default {Wrapping.lines})",
    )
    parser.add_argument("--threads", type=_positive, metavar="N", help="CPU threads for inference (default: all)")
    _device_option(parser, DEFAULT_DEVICE)


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where all state lives ($DIARIST_DATA_DIR)")
