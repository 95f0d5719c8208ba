"""Command line: ``diarist diarize FILE...`` and ``diarist models``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from diarist.errors import DiaristError

LONG_FILE_SECONDS = 60.0  # show a progress bar from this duration on


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
    diarize.add_argument("--format", default="json", choices=["json", "rttm"])
    diarize.add_argument("-o", "--output", type=Path, metavar="OUT", help="write here instead of stdout")
    diarize.add_argument("--threads", type=_positive, help="CPU threads for inference (default: all)")

    commands.add_parser("models", help="check that the pretrained weights are installed and intact")
    return parser


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

    if args.threads:
        torch.set_num_threads(args.threads)
    outputs: dict[str, dict] = {}
    rttm: list[str] = []
    for path in args.files:
        bar = _progress_bar(path)
        progress = None if bar is None else (lambda fraction, bar=bar: bar.update(round(100 * fraction) - bar.n))
        try:
            result = diarize(
                path,
                num_speakers=args.num_speakers,
                min_speakers=args.min_speakers,
                max_speakers=args.max_speakers,
                model=args.model,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
        for warning in result.warnings:
            print(f"diarist: warning: {path}: {warning}", file=sys.stderr)
        outputs[str(path)] = result.to_dict(
            exclusive=args.exclusive, confidence=args.confidence, turn_level_confidence=args.confidence
        )
        rttm.append(result.to_rttm(uri=path.stem, exclusive=args.exclusive))
    if args.format == "rttm":
        return "".join(rttm)
    single = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    return json.dumps(single, indent=2) + "\n"


def run_models() -> str:
    from diarist.models import check_models

    return "".join(f"ok  {w.name} ({w.license}): {path}\n" for w, path in check_models())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = run_diarize(args) if args.command == "diarize" else run_models()
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
