"""Pieces of a throwaway local stack, shared by `make run` (devstack.py), the tests and the
benchmarks: a fresh PostgreSQL database, an in-memory Temporal dev server, child processes."""

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from core.temporal import data_converter, dev_server_args, temporal_cli
from db.migrate import upgrade

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {host}:{port} after {seconds:.0f}s")


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGINT so each can shut down cleanly, one after the other, newest first (the API and the
    worker before the Temporal server they talk to: a worker left without its server retried
    for half a minute); kill what does not stop."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def scratch_database(prefix: str, server: str = PG_SERVER, revision: str = "head"
                     ) -> Iterator[str]:
    """A database of its own, migrated with the project's migrations (up to `revision`),
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{server.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    try:
        upgrade(url, revision)
        yield url
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def local_temporal(db_file: Path | None = None) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server with our search attributes and data converter, its SQLite database
    in memory or in `db_file`."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[*dev_server_args(),
                               *(["--db-filename", str(db_file)] if db_file else [])],
        data_converter=data_converter,
    )
    try:
        yield env
    finally:
        # Shut down inside the loop: an abandoned server has aborted the process at exit.
        await env.shutdown()


def throwaway_settings(
    *, database_url: str, env: WorkflowEnvironment, maildir: Path, smtp_port: int, **overrides: Any
) -> Settings:
    """Settings for a stack that lives as long as one test session or benchmark run."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "temporal_address": env.client.service_client.config.target_host,
        "temporal_task_queue": f"journeys-{uuid.uuid4().hex[:8]}",
        "secret_key": "throwaway-" + uuid.uuid4().hex,
        "dev_mode": True,
        "dev_maildir": maildir,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        **overrides,
    }
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a child process (worker, API) read these settings."""
    env = {}
    # JSON mode writes durations as ISO 8601, which Settings reads back; secrets it masks.
    for name, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            value = secret.get_secret_value()
        if isinstance(value, (list, dict)):
            value = json.dumps(value)  # how pydantic-settings reads complex values
        if value is not None:
            env[name.upper()] = str(value)
    return env
