"""Command line: ``diarist diarize | serve | keys | models``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from diarist.errors import DiaristError
from diarist.transcription.asr import MODEL_NAMES

LONG_FILE_SECONDS = 60.0  # show a progress bar from this duration on
TRANSCRIPT_FORMATS = ("srt", "vtt", "txt")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diarist", description="Self-hosted speaker diarization.")
    commands = parser.add_subparsers(dest="command", required=True)

    diarize = commands.add_parser("diarize", help="print who spoke when in audio or video files")
    diarize.add_argument("files", nargs="+", type=Path, metavar="FILE")
    diarize.add_argument("--model", default="community-1", choices=["community-1", "precision-2"])
    diarize.add_argument("--num-speakers", type=_positive, metavar="N")
    diarize.add_argument("--min-speakers", type=_positive, metavar="N")
    diarize.add_argument("--max-speakers", type=_positive, metavar="N")
    diarize.add_argument("--exclusive", action="store_true", help="also give turns where only one speaker speaks")
    diarize.add_argument("--confidence", action="store_true", help="add the confidence curve and per-turn scores")
    diarize.add_argument(
        "--transcribe", action="store_true", help="also transcribe, each word and turn with its speaker"
    )
    diarize.add_argument("--asr-model", choices=MODEL_NAMES, help="speech recognition model (default whisper-base)")
    diarize.add_argument(
        "--asr-models", type=Path, metavar="DIR", help="operator-installed ASR models (default: <data dir>/asr-models)"
    )
    diarize.add_argument(
        "--format", default="json", choices=["json", "rttm", *TRANSCRIPT_FORMATS], help="srt, vtt, txt: --transcribe"
    )
    diarize.add_argument("-o", "--output", type=Path, metavar="OUT", help="write here instead of stdout")
    diarize.add_argument("--threads", type=_positive, help="CPU threads for inference (default: all)")

    commands.add_parser("models", help="check that the pretrained weights are installed and intact")

    serve = commands.add_parser("serve", help="run the pyannoteAI-compatible HTTP service")
    _state_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=int, metavar="N", help="local worker processes running jobs (default 1)")

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key; prints it and its webhook secret once")
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
    _state_options(key_commands.add_parser("list", help="list keys (never their secrets)"))
    revoke = key_commands.add_parser("revoke", help="revoke a key at once")
    _state_options(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id shown by `keys list`")
    return parser


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where all state lives ($DIARIST_DATA_DIR)")


def _progress_bar(path: Path):
    """A tqdm bar on stderr for long files, else None."""
    from tqdm import tqdm

    from diarist.audio import duration_seconds

    duration = duration_seconds(path) or 0.0
    if duration < LONG_FILE_SECONDS:
        return None
    return tqdm(
        total=100,
        desc=path.name,
        unit="%",
        file=sys.stderr,
        leave=False,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
    )


def run_diarize(args: argparse.Namespace) -> str:
    import torch

    from diarist.pipeline import diarize
    from diarist.settings import Settings
    from diarist.transcription import diarize_and_transcribe
    from diarist.transcription.formats import to_srt, to_text, to_vtt

    if args.format in TRANSCRIPT_FORMATS and not args.transcribe:
        raise ValueError(f"--format {args.format} needs --transcribe")
    if args.format in TRANSCRIPT_FORMATS and len(args.files) > 1:
        raise ValueError(f"--format {args.format} takes one file at a time")
    if args.threads:
        torch.set_num_threads(args.threads)
    asr_models = args.asr_models or Settings.load().asr_models_dir
    outputs: dict[str, dict] = {}
    texts: list[str] = []
    for path in args.files:
        bar = _progress_bar(path)
        progress = None if bar is None else (lambda fraction, bar=bar: bar.update(round(100 * fraction) - bar.n))

        def run(report, path=path):
            return diarize(
                path,
                num_speakers=args.num_speakers,
                min_speakers=args.min_speakers,
                max_speakers=args.max_speakers,
                model=args.model,
                progress=report,
            )

        try:
            if args.transcribe:
                result, transcript = diarize_and_transcribe(path, run, args.asr_model, asr_models, progress)
                result.warnings += transcript.transcript.warnings
            else:
                result, transcript = run(progress), None
        finally:
            if bar is not None:
                bar.close()
        for warning in result.warnings:
            print(f"diarist: warning: {path}: {warning}", file=sys.stderr)
        outputs[str(path)] = result.to_dict(
            exclusive=args.exclusive, confidence=args.confidence, turn_level_confidence=args.confidence
        )
        if transcript is not None:
            outputs[str(path)].update(transcript.to_dict())
        if args.format == "rttm":
            texts.append(result.to_rttm(uri=path.stem, exclusive=args.exclusive))
        elif transcript is not None and args.format in TRANSCRIPT_FORMATS:
            writer = {"srt": to_srt, "vtt": to_vtt}.get(args.format)
            texts.append(writer(transcript.words) if writer else to_text(transcript.turns))
    if args.format != "json":
        return "".join(texts)
    single = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    return json.dumps(single, indent=2) + "\n"


def run_models() -> str:
    from diarist.models import check_models

    return "".join(f"ok  {w.name} ({w.license}): {path}\n" for w, path in check_models())


def run_serve(args: argparse.Namespace) -> str:
    import logging

    from diarist.api.server import serve
    from diarist.settings import Settings

    settings = Settings.load(data_dir=args.data_dir, host=args.host, port=args.port, workers=args.workers)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address = f"http://{settings.host}:{settings.port}"
    print(f"diarist: serving on {address} with state in {settings.data_dir}", file=sys.stderr)
    serve(settings)
    return ""


def run_keys(args: argparse.Namespace) -> str:
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


COMMANDS = {"diarize": run_diarize, "serve": run_serve, "keys": run_keys, "models": lambda args: run_models()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = COMMANDS[args.command](args)
    except (DiaristError, ValueError) as e:
        print(f"diarist: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if getattr(args, "output", None):
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
