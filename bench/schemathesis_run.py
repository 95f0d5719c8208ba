"""Schemathesis against a live `diarist serve`: no server error, and every answer as `/openapi.json` says.

    PYTHONPATH=src python bench/schemathesis_run.py [--max-examples 50] [--seed 1]

It starts its own server on a free loopback port with a fresh data dir (removed at the end) and
`--workers 0`, so the jobs it submits stay pending and no model runs, creates a key whose rate
limit it cannot reach, and runs schemathesis (4.x, the `dev` extra) on every operation with these
checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance and response_schema_conformance. Both valid and invalid inputs are
generated. The exit status is schemathesis's: 0 when every check passed. About a minute at the
default 50 examples per operation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def diarist(*args: str, data_dir: Path, **popen: object) -> subprocess.Popen:
    """`python -m diarist ARGS --data-dir DATA_DIR` as a subprocess, on this interpreter and path."""
    return subprocess.Popen([sys.executable, "-m", "diarist", *args, "--data-dir", str(data_dir)], **popen)


def create_key(data_dir: Path) -> str:
    made = diarist("keys", "create", "--name", "schemathesis", "--rate-limit", "1000000", data_dir=data_dir,
                   stdout=subprocess.PIPE, text=True)  # fmt: skip
    out, _ = made.communicate(timeout=60)
    assert made.returncode == 0, out
    return out.splitlines()[0].split()[-1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def run(max_examples: int, seed: int | None) -> int:
    """Start a server, run schemathesis against it, stop the server; schemathesis's exit status."""
    data_dir = Path(tempfile.mkdtemp(prefix="diarist-schemathesis-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = None
    status = 1
    try:
        key = create_key(data_dir)
        log = (data_dir / "server.log").open("wb")
        server = diarist("serve", "--port", str(port), "--workers", "0", data_dir=data_dir, stdout=log,
                         stderr=subprocess.STDOUT)  # fmt: skip
        wait_until_up(url, server)
        command = [
            shutil.which("schemathesis", path=os.path.dirname(sys.executable)) or "schemathesis",
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(max_examples),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
        ]
        if seed is not None:
            command += ["--seed", str(seed)]
        # In the data dir: schemathesis keeps a cache of what it found in its working directory.
        status = subprocess.run(command, cwd=data_dir, timeout=900).returncode
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        if status == 0:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"kept the server's data dir and log for a look: {data_dir}", file=sys.stderr)
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=50, help="test cases per operation (default 50)")
    parser.add_argument("--seed", type=int, help="random seed, to repeat a run")
    args = parser.parse_args()
    sys.exit(run(args.max_examples, args.seed))


if __name__ == "__main__":
    main()
