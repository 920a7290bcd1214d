"""`make run`: the whole stack in one terminal, with nothing downloaded at run time.

Temporal dev server (file-backed under .data/, Web UI), a local SMTP sink writing to a Maildir,
the worker and the API, each its own process; Ctrl-C (or SIGTERM, SIGHUP) stops them all.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.settings import DATA_DIR, Settings
from core.temporal import dev_server_args, register_search_attributes, temporal_cli
from db.migrate import upgrade
from messaging.dev_mail import start_smtp_sink
from stack import stop_processes, wait_for_port

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: object) -> None:
    """A process manager's SIGTERM or a closed terminal's SIGHUP stops the stack as Ctrl-C does:
    the server, worker and API must not outlive this process, holding its ports. Once stopping,
    a second signal does not cut the shutdown short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn and the servers bind: a port only in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[str, tuple[str, int]]) -> None:
    """Refuses to start when two parts would share a port or another program holds one: the
    first part would answer for the other (the banner then named a URL that was not ours), and
    the second fail after the banner."""
    seen: dict[int, str] = {}
    for part, (host, port) in ports.items():
        if port in seen:
            raise SystemExit(f"cannot start: {seen[port]} and {part} would both use port {port}; "
                             "choose other ports")
        seen[port] = part
        if not _bindable(host, port):
            raise SystemExit(f"cannot start: {part} needs {host}:{port}, which another program "
                             "already uses (another `make run`?): stop it or choose another port")


def wait_for_healthz(base_url: str, seconds: float, proc: subprocess.Popen) -> None:
    """Until our API answers (its process alive): not merely until something listens."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not answer {base_url}/healthz after {seconds:.0f}s")


def run(settings: Settings) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    temporal_host, _, port_text = settings.temporal_address.partition(":")
    temporal_host = temporal_host or "127.0.0.1"
    temporal_port = int(port_text or 7233)
    # The dev server's own default: the Web UI on the frontend's port + 1000 (7233 -> 8233).
    ui_port = temporal_port + 1000
    api = urlsplit(settings.public_base_url)
    api_host, api_port = api.hostname or "127.0.0.1", api.port or 8000
    check_ports({
        "the API (PUBLIC_BASE_URL)": (api_host, api_port),
        "Temporal (TEMPORAL_ADDRESS)": (temporal_host, temporal_port),
        "the Temporal Web UI (TEMPORAL_ADDRESS's port + 1000)": (temporal_host, ui_port),
        "the SMTP sink (SMTP_PORT)": (settings.smtp_host, settings.smtp_port),
    })
    DATA_DIR.mkdir(exist_ok=True)
    upgrade(settings.database_url)
    sink = start_smtp_sink(settings.dev_maildir, settings.smtp_host, settings.smtp_port)
    procs: list[subprocess.Popen] = []
    try:
        temporal = subprocess.Popen([
            temporal_cli(), "server", "start-dev", "--ip", temporal_host,
            "--port", str(temporal_port), "--ui-port", str(ui_port),
            # Absolute, as the server prints it in its own banner.
            "--db-filename", str((DATA_DIR / "temporal.db").absolute()), "--log-level", "error",
            *dev_server_args(),
        ])
        procs.append(temporal)
        wait_for_port(temporal_host, temporal_port, 60, temporal)
        register_search_attributes(f"{temporal_host}:{temporal_port}", settings.temporal_namespace)
        # Modules, not paths: the stack runs from any directory (its data in ./.data there).
        procs.append(subprocess.Popen([sys.executable, "-m", "worker"], env=os.environ.copy()))
        procs.append(subprocess.Popen([
            sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
            "--host", api_host, "--port", str(api_port),
        ]))
        host = f"[{api_host}]" if ":" in api_host else api_host
        wait_for_healthz(f"http://{host}:{api_port}", 60, procs[-1])
        # Absolute: the stack runs from any directory, and what it names is opened from others.
        journeys = Path(sys.executable).with_name("journeys")
        maildir = settings.dev_maildir.absolute()
        print(f"""
contact-journeys is running (Ctrl-C stops everything):
  API + customer pages  {settings.public_base_url}   (OpenAPI docs: {settings.public_base_url}/docs)
  Dev outbox            {settings.public_base_url}/dev/outbox
  Temporal Web UI       http://localhost:{ui_port}
  SMTP sink             {settings.smtp_host}:{settings.smtp_port} -> {maildir}/
Create a client:        {journeys} clients create "Acme"
""", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a process of the stack exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stop_processes(procs)
        sink.stop()
