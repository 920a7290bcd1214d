"""`make run` (`journeys dev`): the quickstart's whole stack, on its embedded SQLite, started
from another directory and stopped by SIGTERM as a process manager stops it."""

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stack import free_port, wait_for_port

JOURNEYS = Path(sys.executable).parent / "journeys"
# Time for the dev server, worker and API to come up (seconds here, on a loaded CI machine more).
STARTUP_SECONDS = 120


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def temporal_port() -> int:
    """A free port whose + 1000 (the Web UI's) is free too."""
    while True:
        port = free_port()
        if port + 1000 < 65536 and not listening(port + 1000):
            return port


def answers_every_get_on_sqlite(base: str, cwd: Path, env: dict[str, str]) -> None:
    """The tests run on PostgreSQL; the quickstart's SQLite must answer the same queries (a
    PostgreSQL-only function fails there however little data there is)."""
    created = subprocess.run([str(JOURNEYS), "clients", "create", "Acme"], cwd=cwd, env=env,
                             capture_output=True, text=True, check=True)
    key = re.search(r"api_key:\s+(\S+)", created.stdout).group(1)
    paths = [path for path, ops in httpx.get(f"{base}/openapi.json").json()["paths"].items()
             if "get" in ops and "{" not in path]
    assert "/v1/consent-notices/conversion" in paths
    for path in paths:
        response = httpx.get(base + path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code < 500, (path, response.text)


def test_dev_stack_serves_and_stops_every_process_on_sigterm(tmp_path):
    temporal, api, smtp = temporal_port(), free_port(), free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp),
    }
    log = (tmp_path / "dev.log").open("w+")
    stack = subprocess.Popen([str(JOURNEYS), "dev"], cwd=tmp_path, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for_port("127.0.0.1", api, STARTUP_SECONDS, stack)
        except SystemExit as err:
            pytest.fail(f"{err}:\n{(tmp_path / 'dev.log').read_text()}")
        assert httpx.get(f"http://127.0.0.1:{api}/healthz").json() == {"status": "ok"}
        answers_every_get_on_sqlite(f"http://127.0.0.1:{api}", tmp_path, env)
        assert httpx.get(f"http://127.0.0.1:{api}/dev/outbox").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{temporal + 1000}/").status_code == 200  # Web UI
        printed = (tmp_path / "dev.log").read_text()
        assert f"Temporal Web UI       http://localhost:{temporal + 1000}" in printed
        # Paths a user opens from anywhere.
        assert f"Temporal Persistence: {tmp_path}/.data/temporal.db" in printed
        assert f"-> {tmp_path}/.data/maildir/" in printed
        assert f"Create a client:        {JOURNEYS} clients create" in printed
        # Its data lives where it was started, not in the checkout.
        assert (tmp_path / ".data" / "journeys.db").exists()
        assert (tmp_path / ".data" / "temporal.db").exists()

        stack.send_signal(signal.SIGTERM)
        assert stack.wait(timeout=60) == 0
        still = [p for p in (temporal, temporal + 1000, api, smtp) if listening(p)]
        assert not still, f"ports still served after the stack stopped: {still}"
    finally:
        if stack.poll() is None:
            stack.kill()
        log.close()


def refused_start(tmp_path: Path, api: int, temporal: int) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal}", "PUBLIC_BASE_URL": f"http://127.0.0.1:{api}",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(free_port())}
    started = subprocess.run([str(JOURNEYS), "dev"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=STARTUP_SECONDS)
    printed = started.stdout + started.stderr
    assert started.returncode == 1, printed
    # Refused before anything started: no banner with a URL that answers for someone else.
    assert "is running" not in printed and "Traceback" not in printed, printed
    assert not (tmp_path / ".data").exists()
    return printed


def test_dev_stack_refuses_an_api_port_another_program_holds(tmp_path):
    with socket.socket() as other:  # another dev server on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        api = other.getsockname()[1]
        printed = refused_start(tmp_path, api, temporal_port())
    assert f"the API (PUBLIC_BASE_URL) needs 127.0.0.1:{api}, which another program" in printed


def test_dev_stack_refuses_a_temporal_ui_port_equal_to_the_api_port(tmp_path):
    temporal = temporal_port()
    printed = refused_start(tmp_path, temporal + 1000, temporal)
    assert f"would both use port {temporal + 1000}" in printed, printed
    assert "Temporal Web UI" in printed and "PUBLIC_BASE_URL" in printed, printed
