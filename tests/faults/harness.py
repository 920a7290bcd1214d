"""A stack whose parts a fault test can kill and bring back: the Temporal dev server on a file,
the worker and the API as child processes, optionally a PostgreSQL cluster of its own, the SMTP
sink and a webhook receiver that can stop listening. Nothing here is shared with the session
fixtures of the rest of the suite."""

import asyncio
import email
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from glob import glob
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.settings import Settings
from core.temporal import dev_server_args, temporal_cli
from db import crud
from db.session import make_engine, make_sessionmaker, transaction
from messaging.dev_mail import start_smtp_sink
from stack import PG_SERVER, free_port, scratch_database, settings_env, wait_for_port
from tests.helpers import WebhookReceiver, eventually

ROOT = Path(__file__).resolve().parents[2]
# One line per scenario, printed at the end of the run (tests/faults/conftest.py).
SUMMARY: list[str] = []
PG_BIN = sorted(glob("/usr/lib/postgresql/*/bin"))


class Child:
    """A process of the stack (worker, API, Temporal) that a test may kill or stop and start
    again. Like `restart: unless-stopped` in production, one that dies unasked is restarted."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen | None = None
        self.unasked_restarts = 0
        self._stopped = True

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self._stopped = False

    def kill(self) -> None:
        """SIGKILL: no shutdown, in-flight work is lost mid-step."""
        self._stopped = True
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if not self._stopped and self.proc is not None and self.proc.poll() is not None:
                self.unasked_restarts += 1
                self.start()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class TemporalServer(Child):
    """`temporal server start-dev` on a file, so stopping it loses nothing; same port after a
    restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        super().__init__("temporal", [
            temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(self.port), "--db-filename", str(directory / "temporal.db"),
            "--log-level", "error", *dev_server_args()], dict(os.environ),
            directory / "temporal.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        wait_for_port("127.0.0.1", self.port, 60, self.proc)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (the machine's server is shared with other test
    runs, so only this one may be restarted). initdb refuses root: it runs as `postgres`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.bin = Path(PG_BIN[-1]) if PG_BIN else None

    @staticmethod
    def unavailable_reason() -> str | None:
        if not PG_BIN:
            return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to become the postgres user"
        if os.geteuid() == 0:
            try:
                subprocess.run(["id", "postgres"], check=True, capture_output=True)
            except subprocess.CalledProcessError:
                return "no postgres OS user to run a private cluster as"
        return None

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _ctl(self, action: str, mode: str = "fast") -> None:
        # Durability is not under test here; fsync off spares the shared disk and CPU.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "postgres.log"),
                  "-o", options, "-w", "-t", "60", "-m", mode, action)

    @property
    def server(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self.start()

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", mode)


class MailIndex:
    """Reads the SMTP sink's Maildir incrementally (each file parsed once) and finds the
    personal links in each recipient's mails."""

    def __init__(self, maildir: Path, base_url: str) -> None:
        self.maildir = maildir
        self.link = re.compile(re.escape(base_url) + r"(/[cv]/[A-Za-z0-9_\-]+)")
        self.seen: set[str] = set()
        self.links: dict[str, list[str]] = {}
        self._scanned_at = 0.0

    def _scan(self) -> None:
        now = time.monotonic()
        if now - self._scanned_at < 0.25:
            return
        self._scanned_at = now
        for sub in ("new", "cur"):
            for entry in os.scandir(self.maildir / sub):
                key = entry.name.split(":", 1)[0]
                if key in self.seen:
                    continue
                with open(entry.path, "rb") as f:
                    message = email.message_from_binary_file(f, policy=policy.default)
                body = message.get_body(("plain",))
                found = self.link.search(body.get_content() if body else "")
                if found:
                    self.links.setdefault(str(message["To"]), []).append(found.group(1))
                self.seen.add(key)

    def any_link(self, kind: str) -> str:
        self._scanned_at = 0
        self._scan()
        return next(link for links in self.links.values() for link in links if link[1] == kind)

    async def wait_for_link(self, address: str, kind: str, timeout: float) -> str:
        """The newest personal link of the kind ("c" contact page, "v" verification)."""
        async def probe() -> str | None:
            self._scan()
            links = [link for link in self.links.get(address, []) if link[1] == kind]
            return links[-1] if links else None
        return await eventually(probe, timeout=timeout, interval=0.5,
                                what=f"a /{kind}/ link mailed to {address}")


@dataclass
class FaultStack:
    settings: Settings
    temporal: TemporalServer
    worker: Child
    api: Child
    receiver: WebhookReceiver
    mail: MailIndex
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    api_key: str
    client_id: uuid.UUID
    postgres: PrivatePostgres | None = None
    temporal_client: Client | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def restart_worker(self) -> None:
        self.worker.start()
        await self.wait_for_worker()

    async def wait_for_worker(self) -> None:
        if self.temporal_client is None:
            self.temporal_client = await Client.connect(self.temporal.address)
        client, queue = self.temporal_client, self.settings.temporal_task_queue
        assert self.worker.proc is not None
        pid = self.worker.proc.pid

        async def polled() -> bool:
            try:
                described = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace, task_queue=TaskQueue(name=queue),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
            except Exception:  # noqa: BLE001 - the server may be coming back up
                return False
            # A killed worker's pollers stay listed for a while: the new process must be there.
            return any(p.identity.startswith(f"{pid}@") for p in described.pollers)
        await eventually(polled, timeout=90, interval=0.5, what=f"a worker polling {queue}")

    async def stuck_journeys(self) -> str:
        """Where the journeys that are not verified stand, for the failure message."""
        async with self.sessions() as session:
            rows = (await session.execute(text(
                "select stage, count(*), min(workflow_id) from journeys where client_id = :client "
                "group by stage"), {"client": self.client_id})).all()
        lines = [f"journeys by stage: {[(stage, n) for stage, n, _ in rows]}"]
        for stage, _, workflow_id in rows:
            if stage == "verified" or self.temporal_client is None:
                continue
            try:
                handle = self.temporal_client.get_workflow_handle(workflow_id)
                pending = [(a.activity_type.name, a.attempt, a.last_failure.message)
                           for a in (await handle.describe()).raw_description.pending_activities]
                events = [e.event_type for e in (await handle.fetch_history()).events]
                lines.append(f"{workflow_id} ({stage}): pending activities {pending}, "
                             f"last history event types {events[-12:]}")
            except Exception as err:  # noqa: BLE001 - a diagnosis must not hide the failure
                lines.append(f"{workflow_id}: {err!r}")
        return "\n".join(lines)

    async def count(self, sql: str, **params: object) -> int:
        async with self.sessions() as session:
            return int((await session.execute(text(sql), {"client": self.client_id, **params}
                                              )).scalar_one())


def fault_settings(*, database_url: str, temporal: TemporalServer, maildir: Path,
                   smtp_port: int, api_port: int) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal.address,
        temporal_task_queue=f"faults-{uuid.uuid4().hex[:8]}",
        secret_key="faults-" + uuid.uuid4().hex,
        dev_mode=True,
        dev_maildir=maildir,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        public_base_url=f"http://127.0.0.1:{api_port}",
        # Every simulated customer posts from 127.0.0.1; the limits are tested on their own.
        form_posts_per_ip_per_minute=10_000_000,
        form_posts_per_link_per_minute=1000,
        webhook_timeout_seconds=5,
        # The production schedule in miniature, and long enough that an endpoint down for the
        # length of a fault is retried, never disabled.
        webhook_retry_delays=[timedelta(seconds=0.5), timedelta(seconds=1)],
        webhook_retry_every=timedelta(seconds=2),
        webhook_retry_for=timedelta(minutes=30),
        webhook_allow_private_targets=True,
        max_contacts_per_request=1000,
    )


@asynccontextmanager
async def fault_stack(*, private_postgres: bool = False) -> AsyncIterator[FaultStack]:
    """Everything started for one test and stopped after it, its logs shown when it fails."""
    async with AsyncExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cj-faults-")))
        # The private cluster runs as the postgres user, who must reach its directory.
        directory.chmod(0o755)
        postgres = None
        if private_postgres:
            postgres = PrivatePostgres(directory / "pg")
            postgres.create()
            stack.callback(postgres.stop, "immediate")
        database_url = stack.enter_context(
            scratch_database("cj_faults", postgres.server if postgres else PG_SERVER))
        smtp_port, api_port = free_port(), free_port()
        stack.callback(start_smtp_sink(directory / "maildir", port=smtp_port).stop)
        temporal = TemporalServer(directory)
        settings = fault_settings(database_url=database_url, temporal=temporal,
                                  maildir=directory / "maildir", smtp_port=smtp_port,
                                  api_port=api_port)
        env = {**os.environ, **settings_env(settings)}
        worker = Child("worker", [sys.executable, "worker.py"], env, directory / "worker.log")
        api = Child("api", [
            sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host",
            "127.0.0.1", "--port", str(api_port), "--log-level", "warning", "--no-access-log"],
            env, directory / "api.log")
        children = [temporal, worker, api]
        for child in children:
            stack.callback(child.stop)
            child.start()
        assert api.proc is not None
        wait_for_port("127.0.0.1", api_port, 60, api.proc)
        for child in (worker, api):
            supervisor = asyncio.create_task(child.supervise())
            stack.callback(supervisor.cancel)
        receiver = WebhookReceiver()
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        engine = make_engine(database_url)
        stack.push_async_callback(engine.dispose)
        sessions = make_sessionmaker(engine)
        async with transaction(sessions) as session:
            client, key = await crud.create_client(session, name="Faults Ltd")
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=settings.public_base_url, timeout=60))
        faults = FaultStack(
            settings=settings, temporal=temporal, worker=worker, api=api, receiver=receiver,
            mail=MailIndex(directory / "maildir", settings.public_base_url), sessions=sessions,
            http=http, api_key=key, client_id=client.id, postgres=postgres)
        try:
            await faults.wait_for_worker()
            yield faults
        except BaseException:
            print(await faults.stuck_journeys(), file=sys.stderr)
            for child in children:
                print(f"--- last lines of the {child.name} log ---\n{child.tail()}",
                      file=sys.stderr)
            raise
