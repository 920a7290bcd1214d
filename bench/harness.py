"""The benchmark stack and what every figure shares: a real stack of its own (fresh database,
in-memory Temporal, SMTP sink, our worker, our API and the raw baselines as child processes),
a tenant, timing helpers and the rows of the results table."""

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import psutil
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.security import Csrf
from core.settings import Settings
from core.vocabulary import TokenPurpose
from db import crud
from db.models import Journey
from db.session import make_engine, make_sessionmaker, transaction
from messaging.dev_mail import start_smtp_sink
from messaging.links import link_token
from stack import (
    free_port,
    local_temporal,
    scratch_database,
    settings_env,
    stop_processes,
    throwaway_settings,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
INVITATION, VERIFICATION = TokenPurpose.contact_page, TokenPurpose.verify_email


@dataclass
class Options:
    contacts: int = 10_000
    samples: int = 1_000  # requests per latency figure
    concurrency: int = 50  # clients in flight for the latency figures
    raw_in_flight: int = 100  # raw start_workflow calls in flight
    enrol_batch: int = 1_000  # contacts per enrolment request
    # Two requests of 1,000 in flight: the API starts 50 workflows at a time per request, so
    # 100 starts are in flight, as in the raw baseline.
    enrol_in_flight: int = 2
    temporal_dir: Path | None = None  # where the dev server's SQLite file goes (else in memory)
    # uvicorn processes each for our API and the bare app: one per core, as deployed
    # (WEB_CONCURRENCY in docker-compose.yml).
    http_processes: int = os.cpu_count() or 1
    only: tuple[str, ...] = ()


@dataclass
class Target:
    on: Literal["ratio", "value"]
    op: Literal["≥", "≤"]
    limit: float

    def met(self, row: "Row") -> bool | None:
        value = row.ratio if self.on == "ratio" else row.ours
        if value is None:
            return None
        return value >= self.limit if self.op == "≥" else value <= self.limit

    def __str__(self) -> str:
        return f"{'ratio' if self.on == 'ratio' else 'value'} {self.op} {self.limit:g}"


@dataclass
class Row:
    figure: str
    ours: float
    baseline: float | None
    unit: str
    baseline_name: str
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.baseline if self.baseline else None


@dataclass
class Latencies:
    """Seconds per request, as measured by the client."""

    seconds: list[float]

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[p - 1] * 1000


def cpu_note(used: dict[str, float], requests: int) -> str:
    """The busiest processes, in CPU milliseconds per request."""
    busiest = sorted(used.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{role} {1000 * s / requests:.1f}" for role, s in busiest if s >= 0.05)


async def timed_concurrently(
    items: Sequence[T], call: Callable[[T], Awaitable[Any]], concurrency: int
) -> Latencies:
    """Calls `call` once per item with `concurrency` clients in flight; times each call."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    seconds: list[float] = []

    async def client() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            started = time.perf_counter()
            await call(item)
            seconds.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Latencies(seconds)


async def until(probe: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


async def until_idle(pid: int, *, below_percent: float = 5, quiet_seconds: float = 3,
                     timeout: float = 300) -> None:
    """Waits until a process has used almost no CPU for a while (its backlog is done)."""
    process = psutil.Process(pid)
    process.cpu_percent(None)
    quiet_since: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        if process.cpu_percent(None) < below_percent:
            quiet_since = quiet_since or now
            if now - quiet_since >= quiet_seconds:
                return
        else:
            quiet_since = None
    print(f"process {pid} did not go idle in {timeout:.0f}s; measuring anyway", file=sys.stderr)


@dataclass
class Page:
    """A page as a customer's browser got it: its form token and the cookie that goes with it."""

    status: int
    csrf: str | None
    cookie: str | None


@dataclass
class Bench:
    options: Options
    settings: Settings
    temporal: Client
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient  # our API, over real HTTP
    bare: httpx.AsyncClient  # a bare FastAPI app served the same way
    worker_pid: int
    raw_worker_pid: int
    # Every process of the stack we can account CPU time to, by role.
    pids: dict[str, int]
    raw_task_queue: str
    api_key: str
    shared: dict[str, Any] = field(default_factory=dict)  # what one figure leaves for the next

    @asynccontextmanager
    async def cpu_seconds(self) -> AsyncIterator[dict[str, float]]:
        """CPU seconds each process of the stack used inside the block: shows who was busy."""
        def now() -> dict[str, float]:
            return {role: cpu_of(pid, role) for role, pid in self.pids.items()}
        used: dict[str, float] = {}
        before = now()
        yield used
        used.update({role: seconds - before[role] for role, seconds in now().items()})

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def link(self, journey_id: uuid.UUID, purpose: TokenPurpose, step: str) -> str:
        """The personal link token a message of this step carries (we hold the secret)."""
        return link_token(self.settings, purpose=purpose, step=step, owner=journey_id)

    async def count_journeys(self, campaign_id: str, stage: str) -> int:
        async with self.sessions() as session:
            return await session.scalar(select(func.count()).select_from(Journey).where(
                Journey.campaign_id == uuid.UUID(campaign_id), Journey.stage == stage)) or 0

    async def journeys_in(self, campaign_id: str, stage: str, limit: int) -> list[Journey]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Journey).where(
                Journey.campaign_id == uuid.UUID(campaign_id), Journey.stage == stage)
                .order_by(Journey.id).limit(limit)))

    async def get_page(self, path: str) -> Page:
        response = await self.http.get(path)
        found = CSRF_FIELD.search(response.text)
        return Page(response.status_code, found.group(1) if found else None,
                    response.cookies.get(Csrf.COOKIE))

    async def post_form(self, path: str, page: Page, **fields: Any) -> httpx.Response:
        return await self.http.post(path, data={"csrf_token": page.csrf, **fields},
                                    headers={"Cookie": f"{Csrf.COOKIE}={page.cookie}"})


def http_client(base_url: str, connections: int) -> httpx.AsyncClient:
    # Cookies are handled per customer by hand: one shared jar would mix customers' CSRF cookies.
    return httpx.AsyncClient(
        base_url=base_url, timeout=300,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


async def wait_for_poller(client: Client, task_queue: str, proc: subprocess.Popen) -> None:
    async def polled() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with code {proc.returncode}")
        described = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
        return bool(described.pollers)
    await until(polled, what=f"a worker polling {task_queue}", timeout=60)


def child(args: list[str], settings: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, **settings_env(settings)}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def cpu_of(pid: int, role: str) -> float:
    """User and system CPU seconds of a process, with its children's (uvicorn's workers,
    PostgreSQL's backends)."""
    process = psutil.Process(pid)
    if role not in (*SERVED, DATABASE):
        return sum(process.cpu_times()[:2])
    # A backend that ended meanwhile (a pool's overflow connection) counts in the postmaster's
    # children's times once reaped, instead of among the live ones.
    ended = sum(process.cpu_times()[2:4]) if role == DATABASE else 0.0
    live = (process, *process.children(recursive=True))
    return ended + sum(sum(p.cpu_times()[:2]) for p in live)


def serve(app: list[str], port: int, processes: int, settings: Settings,
          log: Path) -> subprocess.Popen:
    """uvicorn as in production: its own processes, no access log.

    Keep-alive outlasts the pauses between phases: with uvicorn's 5 s, a pooled connection
    closed by the server just as the client reuses it ended a run with a ReadError."""
    return child(["-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port),
                  "--workers", str(processes),
                  "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "600"],
                 settings, log)


SERVED = ("api", "bare app")  # served by uvicorn, whose workers are the process's children
DATABASE = "postgresql"  # every database of the server, the bench's own queries included


async def postmaster_pid(engine: AsyncEngine) -> int | None:
    """PostgreSQL's main process when it runs on this machine where we may read it, else None:
    its backends share the cores with the stack, so their CPU belongs in the accounting."""
    async with engine.connect() as conn:
        backend = await conn.scalar(text("SELECT pg_backend_pid()"))
    try:  # on another host, or in a container of its own, the pid is not its own here
        postmaster = psutil.Process(backend).parent()
        if postmaster is not None and "postgres" in postmaster.name():
            postmaster.cpu_times()
            return postmaster.pid
    except psutil.Error:
        pass
    return None


def stack_pids(procs: list[subprocess.Popen], postmaster: int | None) -> dict[str, int]:
    roles = dict(zip(["worker", "raw worker", *SERVED, "launch worker"], (p.pid for p in procs)))
    if postmaster is not None:
        roles[DATABASE] = postmaster
    # The Temporal dev server is the one child of ours that we did not start by hand.
    for proc in psutil.Process().children():
        if proc.pid not in roles.values() and "temporal" in proc.name():
            roles["temporal server"] = proc.pid
    return {**roles, "load generator (bench)": os.getpid()}


def temporal_db(options: Options, stack: ExitStack) -> Path | None:
    """A fresh SQLite file for the dev server in `temporal_dir`, removed after the run."""
    if options.temporal_dir is None:
        return None
    directory = stack.enter_context(tempfile.TemporaryDirectory(
        prefix="cj-bench-temporal-", dir=options.temporal_dir))
    return Path(directory) / "temporal.db"


@asynccontextmanager
async def running_bench(options: Options) -> AsyncIterator[Bench]:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cj-bench-") as tmp, \
            scratch_database("cj_bench") as database_url:
        logs = Path(tmp)
        smtp_port, api_port, bare_port = free_port(), free_port(), free_port()
        sink = start_smtp_sink(logs / "maildir", port=smtp_port)
        procs: list[subprocess.Popen] = []
        engine = make_engine(database_url)
        try:
            async with local_temporal(temporal_db(options, stack)) as env:
                settings = throwaway_settings(
                    database_url=database_url, env=env, maildir=logs / "maildir",
                    smtp_port=smtp_port, public_base_url=f"http://127.0.0.1:{api_port}",
                    max_contacts_per_request=options.enrol_batch,
                    # The simulated customers all come from 127.0.0.1; the limit is for real IPs.
                    form_posts_per_ip_per_minute=10_000_000)
                raw_settings = settings.model_copy(
                    update={"temporal_task_queue": f"bench-raw-{uuid.uuid4().hex[:8]}"})
                # As docker-compose runs them: the launches in a worker process of their own.
                worker = child(["worker.py"], settings.model_copy(
                    update={"worker_queues": "journeys"}), logs / "worker.log")
                raw_worker = child(["-m", "bench.raw"], raw_settings, logs / "raw-worker.log")
                procs += [worker, raw_worker]
                for app, port, name in ((["--factory", "api.main:create_app"], api_port, "api"),
                                        (["bench.bare:app"], bare_port, "bare")):
                    procs.append(serve(app, port, options.http_processes, settings,
                                       logs / f"{name}.log"))
                launch_worker = child(["worker.py"], settings.model_copy(
                    update={"worker_queues": "launches"}), logs / "launch-worker.log")
                procs.append(launch_worker)
                for proc, port in ((procs[2], api_port), (procs[3], bare_port)):
                    wait_for_port("127.0.0.1", port, 60, proc)
                await wait_for_poller(env.client, settings.temporal_task_queue, worker)
                await wait_for_poller(env.client, settings.launch_task_queue, launch_worker)
                await wait_for_poller(env.client, raw_settings.temporal_task_queue, raw_worker)

                sessions = make_sessionmaker(engine)
                async with transaction(sessions) as session:
                    _, key = await crud.create_client(session, name="Bench Ltd")
                connections = max(options.concurrency, options.raw_in_flight)
                async with http_client(settings.public_base_url, connections) as http, \
                        http_client(f"http://127.0.0.1:{bare_port}", connections) as bare:
                    yield Bench(options=options, settings=settings, temporal=env.client,
                                sessions=sessions, http=http, bare=bare,
                                worker_pid=worker.pid, raw_worker_pid=raw_worker.pid,
                                pids=stack_pids(procs, await postmaster_pid(engine)),
                                raw_task_queue=raw_settings.temporal_task_queue, api_key=key)
                stop_processes(procs)
                procs = []
        except BaseException:
            for name in ("worker.log", "launch-worker.log", "raw-worker.log", "api.log"):
                tail = (logs / name).read_text()[-3000:] if (logs / name).exists() else ""
                if tail.strip():
                    print(f"--- last lines of {name} ---\n{tail}", file=sys.stderr)
            raise
        finally:
            stop_processes(procs)
            await engine.dispose()
            sink.stop()
