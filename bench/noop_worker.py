"""`diarist` with the pipeline replaced by a no-op, for the dispatch benchmarks in bench/dispatch.py.

    PYTHONPATH=src python bench/noop_worker.py serve --workers 3 --data-dir DIR
    PYTHONPATH=src python bench/noop_worker.py worker --concurrency 1 --data-dir DIR

The same command line as `python -m diarist`; every job the process (or its local workers) runs
returns an empty diarization at once, or after BENCH_NOOP_SLEEP seconds (a long job to kill).
The replacement happens at import, outside the main guard, so that the local workers that
`diarist serve` spawns, which re-import this file as their main module, run the no-op too.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import diarist.jobs.runner
from diarist.engine import Engine
from diarist.hooks import Hook
from diarist.result import DiarizationResult
from diarist.service import Diarization, DiarizeOptions

SLEEP_SECONDS = float(os.environ.get("BENCH_NOOP_SLEEP", "0"))


def noop_diarize(engine: Engine, options: DiarizeOptions, path: Path, hook: Hook | None = None) -> Diarization:
    """An empty diarization of `path`, as the runner expects from `diarist.service.diarize`."""
    deadline = time.monotonic() + SLEEP_SECONDS
    while time.monotonic() < deadline:
        # Progress, as the real pipeline reports it, so that a cancel or a lost lease stops the job.
        if hook is not None:
            hook("segmentation", completed=0, total=1)
        time.sleep(0.2)
    result = DiarizationResult(turns=[], exclusive_turns=[], speakers=[], duration=0.0)
    return Diarization(result.to_dict(), result, None)


diarist.jobs.runner.diarize = noop_diarize

if __name__ == "__main__":
    from diarist.cli import main

    sys.exit(main())
