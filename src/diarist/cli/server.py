"""The service's commands: serve, worker, migrate and keys."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from diarist.errors import DiaristError

if TYPE_CHECKING:
    from diarist.settings import Settings


def check_device(device: str) -> None:
    """Refuse at start a `cuda` that workers could not use, rather than fail every job.

    Only `cuda` needs the check (`auto` always finds a device), and only it loads PyTorch here. The
    check asks NVML, so that Celery's forked children can still start CUDA.
    """
    if device == "cuda":
        from diarist.engine import resolve_device

        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        resolve_device(device)


def check_can_serve(settings: Settings) -> None:
    """Refuse, in one line and before claiming to serve, a data dir another server holds or a port in use.

    The app takes the data dir lock again as it starts: this check only lets it fail early and clearly.
    """
    from diarist.api.app import lock_data_dir

    lock_data_dir(settings.data_dir).close()
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind((settings.host, settings.port))
        except OSError as e:
            why = "it is in use (another server?)" if e.errno == errno.EADDRINUSE else e.strerror
            raise DiaristError(
                f"cannot listen on {settings.host}:{settings.port}: {why}; choose another with --port"
            ) from None


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
    check_can_serve(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address = f"http://{settings.host}:{settings.port}"
    print(f"diarist: serving on {address} with state in {settings.data_dir}", file=sys.stderr)
    # uvicorn shuts down on SIGTERM, then raises it again, which would kill the process before
    # multiprocessing releases the workers' semaphores (and its tracker warns of leaks): exit instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
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
    from diarist.net import redact_url

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
