"""The inputs of `diarize` and `identify` (files and folders) and where their outputs go, each
written as soon as its file is done."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diarist.exports import BROADCAST, SUBTITLE_FORMATS, Wrapping
from diarist.service import Diarization

# What a folder given as input contributes: files with these extensions, hidden ones skipped.
MEDIA_EXTENSIONS = (
    *(".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff", ".amr"),
    *(".webm", ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".3gp"),
)


def input_files(arguments: Sequence[str]) -> list[Path]:
    """The files to diarize: each argument, a folder standing for its media files in name order.

    ValueError for standard input and URLs, which only the server and `diarist live` take.
    """
    files: list[Path] = []
    for text in arguments:
        if text == "-":
            raise ValueError(
                "-: standard input is not supported here; give a file "
                "(`diarist live -` reads raw 16 kHz float32 audio from stdin)"
            )
        if re.match(r"[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
            raise ValueError(
                f"{text}: URLs are not supported here; download the file first, "
                "or send the URL to `diarist serve` (POST /v1/diarize)"
            )
        argument = Path(text)
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


def render(done: Diarization, path: Path, fmt: str, exclusive: bool, wrapping: Wrapping = BROADCAST) -> str:
    """One file's output in `fmt` (the API's export renderer); without a transcript, srt, vtt and txt give the
    speaker of each turn (identification: named after its match)."""
    from diarist.exports import render as render_output

    return render_output(
        done.output,
        fmt,
        uri=path.stem,
        exclusive=exclusive,
        transcript=done.transcript,
        result=done.result,
        wrapping=wrapping,
    )


@dataclass
class Destination:
    """Where outputs go as each file finishes: one file per input in a folder, one file, or stdout."""

    target: Path | None  # None: stdout
    folder: bool
    fmt: str
    exclusive: bool
    several: bool  # more than one input: JSON becomes {input path: output}
    wrapping: Wrapping
    finished: dict[Path, Diarization] = field(default_factory=dict)

    def add(self, path: Path, done: Diarization) -> Path | None:
        """Write or print `path`'s output; the file it went to (None: stdout)."""
        self.finished[path] = done
        if self.folder:
            assert self.target is not None
            written = self.target / f"{path.stem}.{self.fmt}"
            write_file(written, render(done, path, self.fmt, self.exclusive, self.wrapping))
            return written
        if self.target is not None:
            write_file(self.target, self.combined())
            return self.target
        if not (self.several and self.fmt == "json"):
            sys.stdout.write(render(done, path, self.fmt, self.exclusive, self.wrapping))
            sys.stdout.flush()
        return None

    def close(self) -> None:
        """Print what could only be printed whole: several files as one JSON object."""
        if self.target is None and self.several and self.fmt == "json":
            sys.stdout.write(self.combined())

    def combined(self) -> str:
        if self.several and self.fmt == "json":
            return json.dumps({str(p): done.output for p, done in self.finished.items()}, indent=2) + "\n"
        return "".join(render(done, p, self.fmt, self.exclusive, self.wrapping) for p, done in self.finished.items())


def destination(args: argparse.Namespace, files: list[Path]) -> Destination:
    """Where `args` sends the outputs of `files`; ValueError for a combination that cannot work."""
    # A string, not a Path: Path drops the final / that marks a folder yet to be made.
    out = None if args.output is None else Path(args.output)
    folder = out is not None and (out.is_dir() or args.output.endswith(("/", os.sep)))
    several = len(files) > 1
    if args.format in SUBTITLE_FORMATS and several and not folder:
        raise ValueError(f"--format {args.format} writes one file per input: use -o DIR/ for several inputs")
    if folder:
        names: dict[str, Path] = {}
        for path in files:
            clash = names.setdefault(path.stem, path)
            if clash != path:
                raise ValueError(f"{clash} and {path} would both write {out / path.stem}.{args.format}")
    wrapping = Wrapping(args.max_line_width, args.max_line_count)
    return Destination(out, folder, args.format, args.exclusive, several, wrapping)


def file_error(path: Path, error: Exception) -> str:
    """`FILE: why`, for an error that may already name the file."""
    return str(error) if str(error).startswith(str(path)) else f"{path}: {error}"
