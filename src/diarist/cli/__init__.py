"""Command line: ``diarist diarize | voiceprint | identify | live | models | serve | worker | migrate | keys``.

`parser` builds the arguments of every command; `diarize` runs the commands that run the models
(diarize, identify, voiceprint, models) on one engine, with `files` reading the inputs and writing
each output as it is done and `progress` showing how far a file is; `server` runs the service's
commands (serve, worker, migrate, keys); `live` plays a file as a live stream, here or to a server.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from diarist.cli.parser import build_parser
from diarist.errors import DiaristError


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # said by the command's own parser, so that its usage is the one shown
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
