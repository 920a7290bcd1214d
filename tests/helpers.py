"""What the tests use to act as a client, a customer, a mail reader and a webhook receiver."""

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from sqlalchemy import update
from standardwebhooks import Webhook, WebhookVerificationError
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowHandle

from api.main import create_app
from core.settings import Settings
from db.models import ContactPoint
from db.session import transaction
from messaging.dev_mail import OutboxEmail, outbox, outbox_email
from stack import free_port
from worker import ensure_schedules
from workflows.lost_journeys import EndLostJourneysWorkflow

T = TypeVar("T")
LINK = re.compile(r"http://testserver(/[cvk]/[A-Za-z0-9_\-]+)")


async def sweep_lost_work(temporal: TemporalClient, task_queue: str) -> WorkflowHandle:
    """Runs the hourly sweep of lost work once, now (end-lost-journeys); returns its run."""
    sweep = await temporal.start_workflow(EndLostJourneysWorkflow.run,
                                          id=f"sweep-{uuid.uuid4()}", task_queue=task_queue)
    await sweep.result()
    return sweep


async def handler_descriptions(handle: WorkflowHandle) -> dict[str, str]:
    """What the Temporal UI shows an operator of each of the workflow's signals, updates and
    queries (the SDK's own, `__stack_trace` and such, aside)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    definition = metadata.definition
    return {d.name: d.description for d in [*definition.signal_definitions,
                                            *definition.update_definitions,
                                            *definition.query_definitions]
            if not d.name.startswith("__")}


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30,
                     what: str = "condition", interval: float = 0.1) -> T:
    """Polls until probe returns something truthy; the journeys run in real time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def unique_email(name: str = "customer") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Mailbox:
    """Reads what the real SMTP sink received."""

    maildir: Path
    port: int
    # Each message parsed once: the sink's Maildir grows over the whole session.
    parsed: dict[str, OutboxEmail] = field(default_factory=dict, repr=False)

    def to(self, address: str) -> list[OutboxEmail]:
        """Mails to the address in order of arrival (Maildir keys start "<sec>.M<usec>")."""
        def arrival(m: OutboxEmail) -> tuple[int, int]:
            seconds, _, rest = m.key.partition(".M")
            return int(seconds), int(rest.split("P", 1)[0])
        box = outbox(self.maildir)
        for key in box.keys():
            if key not in self.parsed:
                self.parsed[key] = outbox_email(key, box[key])
        return sorted((m for m in self.parsed.values() if m.to == address), key=arrival)

    async def wait_for(self, address: str, count: int = 1, timeout: float = 30) -> list[OutboxEmail]:
        async def probe() -> list[OutboxEmail] | None:
            mails = self.to(address)
            return mails if len(mails) >= count else None
        return await eventually(probe, timeout=timeout, what=f"{count} email(s) to {address}")

    @staticmethod
    def link(mail: OutboxEmail) -> str:
        found = LINK.search(mail.text)
        assert found, f"no personal link in {mail.subject!r}"
        return found.group(1)


@dataclass
class Delivery:
    endpoint: str
    headers: dict[str, str]
    payload: dict[str, Any]
    body: bytes = b""

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class LocalHttpServer:
    """A real HTTP server (uvicorn) on a free local port, run in the test loop."""

    port: int = 0

    def _app(self) -> FastAPI:
        raise NotImplementedError

    async def start(self) -> None:
        # Started again after a stop, it listens on the same port (a receiver back from an outage).
        self.port = self.port or free_port()
        self._server = uvicorn.Server(uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self._task = asyncio.create_task(self._server.serve())
        await eventually(lambda: asyncio.sleep(0, self._server.started), what="server start")

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


@dataclass
class AppServer(LocalHttpServer):
    """An ASGI app on a real socket."""

    app: FastAPI | None = None

    def _app(self) -> FastAPI:
        assert self.app is not None
        return self.app


@dataclass
class WebhookReceiver(LocalHttpServer):
    """A real HTTP server that checks every signature, like a careful client's endpoint."""

    secrets: dict[str, str] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    bad_signatures: list[str] = field(default_factory=list)
    # endpoint name -> status codes to answer before accepting (simulates an outage).
    failures: dict[str, list[int]] = field(default_factory=dict)
    # endpoint name -> webhook-ids of every request that reached it, accepted or not.
    requests: dict[str, list[str]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def events(self, name: str, type: str | None = None) -> list[Delivery]:
        return [d for d in self.received
                if d.endpoint == name and (type is None or d.payload["type"] == type)]

    async def wait_for(self, name: str, type: str, count: int = 1, timeout: float = 30) -> list[Delivery]:
        async def probe() -> list[Delivery] | None:
            found = self.events(name, type)
            return found if len(found) >= count else None
        return await eventually(probe, timeout=timeout, what=f"{type} at {name}")

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{name}")
        async def hook(name: str, request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            try:
                Webhook(self.secrets[name]).verify(body, headers)
            except (KeyError, WebhookVerificationError):
                self.bad_signatures.append(name)
                return Response(status_code=401)
            self.requests.setdefault(name, []).append(headers["webhook-id"])
            pending = self.failures.get(name)
            if pending:
                return Response(status_code=pending.pop(0))
            self.received.append(Delivery(name, headers, json.loads(body), body))
            return Response(status_code=204)

        return app


@dataclass
class ProviderRequest:
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    pdf: bytes | None = None


@dataclass
class MessagingProvider(LocalHttpServer):
    """An SMS and print provider's API over real HTTP: POST /sms (JSON) and POST /letters
    (multipart PDF upload), bearer token checked; it can be told to fail or to hang."""

    token: str = "provider-token"
    # The headers of every request, answered or not; `received` holds the accepted ones.
    attempts: list[dict[str, str]] = field(default_factory=list)
    received: list[ProviderRequest] = field(default_factory=list)
    # Status codes to answer, one per request, before accepting again.
    failures: list[int] = field(default_factory=list)
    stall_seconds: float = 0
    # Accept with an empty 202 instead of {"id": ...}, as some providers do.
    silent: bool = False

    def reset(self) -> None:
        self.token, self.stall_seconds, self.silent = "provider-token", 0, False
        self.attempts, self.received, self.failures = [], [], []

    async def _answer(self, request: Request, parsed: ProviderRequest) -> Response:
        self.attempts.append(parsed.headers)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Response(status_code=401)
        if self.stall_seconds:
            # A hung provider: it answers, too late, that nothing was accepted.
            await asyncio.sleep(self.stall_seconds)
            return Response(status_code=504)
        if self.failures:
            return Response(content='{"error": "scripted failure"}', status_code=self.failures.pop(0))
        self.received.append(parsed)
        if self.silent:
            return Response(status_code=202)
        return Response(content=json.dumps({"id": f"prov-{len(self.received)}"}),
                        media_type="application/json", status_code=201)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/sms")
        async def sms(request: Request) -> Response:
            return await self._answer(request, ProviderRequest(
                headers=dict(request.headers), json=await request.json()))

        @app.post("/letters")
        async def letters(request: Request) -> Response:
            form = await request.form()
            upload = form["file"]
            if upload.content_type != "application/pdf":
                return Response(status_code=415)
            return await self._answer(request, ProviderRequest(
                headers=dict(request.headers), metadata=json.loads(str(form["metadata"])),
                pdf=await upload.read()))

        return app

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class Tenant:
    """A client (business) of ours, calling the API with its key."""

    id: uuid.UUID
    name: str
    key: str
    http: httpx.AsyncClient
    # receiver endpoint name -> id of the webhook endpoint registered for it
    endpoint_ids: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.auth)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=self.auth)

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = await self.http.request(method, path, json=body, headers=self.auth)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def create_campaign(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "Email check",
            "languages": ["en", "nl"],
            "consents": [
                {"key": "terms", "purpose": "service-communication", "channel": "email",
                 "mandatory": True,
                 "texts": {"en": {"text": "I agree to receive service emails.", "version": "2026-1"},
                           "nl": {"text": "Ik ontvang graag service-e-mails.", "version": "2026-1"}}},
                {"key": "newsletter", "purpose": "newsletter", "channel": "email",
                 "texts": {"en": {"text": "Send me the monthly newsletter.", "version": "3"},
                           "nl": {"text": "Stuur mij de maandelijkse nieuwsbrief.", "version": "3"}}},
            ],
            "expires_after": "P1D",
            **overrides,
        }
        if not body.get("channel_plan"):
            body.setdefault("reminders", {"interval": "PT1H", "max_count": 2})
        for box in body["consents"]:
            await self.ensure_purpose(box["purpose"])
        response = await self.post("/v1/campaigns", body)
        assert response.status_code == 201, response.text
        return response.json()

    async def ensure_purpose(self, key: str, kind: str | None = None) -> None:
        kind = kind or ("service" if "service" in key else "direct_marketing")
        response = await self.post("/v1/purposes", {"key": key, "name": key.title(), "kind": kind})
        assert response.status_code in (201, 409), response.text

    async def enrol(self, campaign_id: str, *contacts: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(f"/v1/campaigns/{campaign_id}/contacts",
                                   {"contacts": list(contacts)})
        assert response.status_code == 202, response.text
        return response.json()

    async def journey(self, journey_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/journeys/{journey_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_for_stage(self, journey_id: str, stage: str, timeout: float = 30) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            journey = await self.journey(journey_id)
            return journey if journey["stage"] == stage else None
        return await eventually(probe, timeout=timeout, what=f"journey {journey_id} {stage}")

    async def subscribe(self, receiver: WebhookReceiver, events: list[str] | None = None) -> str:
        name = uuid.uuid4().hex[:8]
        response = await self.post("/v1/webhook-endpoints",
                                   {"url": receiver.url(name), "events": events or ["*"]})
        assert response.status_code == 201, response.text
        receiver.secrets[name] = response.json()["secret"]
        self.endpoint_ids[name] = response.json()["id"]
        return name


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
CHECKBOX = re.compile(r'(<input type="checkbox"[^>]*value="([^"]*)"[^>]*>)')


@dataclass
class Customer:
    """A customer in a browser: follows links, reads the page, submits its forms."""

    http: httpx.AsyncClient
    page: str = ""

    async def open(self, path: str) -> httpx.Response:
        response = await self.http.get(path)
        self.page = response.text
        return response

    def csrf(self) -> str:
        found = CSRF.search(self.page)
        assert found, f"no form on the page: {self.page[:3000]}"
        return found.group(1)

    def hidden_fields(self) -> dict[str, str]:
        """The hidden inputs a browser sends along (CSRF token, consent display ids, ...)."""
        return dict(HIDDEN.findall(self.page))

    def ticked(self, name: str) -> list[str]:
        """The values of the checkboxes called `name` the page shows ticked."""
        return [value for attrs, value in CHECKBOX.findall(self.page)
                if f'name="{name}"' in attrs and re.search(r"\bchecked\b", attrs)]

    async def submit(self, path: str, **fields: Any) -> httpx.Response:
        data = {**self.hidden_fields(), "csrf_token": self.csrf(), **fields}
        response = await self.http.post(path, data=data)
        if response.status_code == 303:
            return await self.open(response.headers["location"])
        self.page = response.text
        return response


POINTS_PER_MM = 72 / 25.4


@dataclass
class PdfWord:
    text: str
    # Millimetres from the top-left corner of the page.
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class _BboxWords(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.words: list[PdfWord] = []
        self._box: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "word":
            self._box = {k: v or "" for k, v in attrs}

    def handle_data(self, data: str) -> None:
        if self._box is not None:
            b = {k: float(self._box[k]) / POINTS_PER_MM for k in ("xmin", "ymin", "xmax", "ymax")}
            self.words.append(PdfWord(data, b["xmin"], b["ymin"], b["xmax"], b["ymax"]))
            self._box = None


class PrintedLetter:
    """A PDF read back the way a person (and the post) would: its text, the position of each
    word on page 1, and the QR codes on a page — with poppler-utils and zbar-tools."""

    def __init__(self, pdf: bytes, directory: Path) -> None:
        self._dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = self._dir / "letter.pdf"
        self.path.write_bytes(pdf)

    def _run(self, *args: str) -> str:
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout

    def text(self, page: int | None = None) -> str:
        """All pages' text, or one page's. Joined into one line, so wrapped sentences can be
        found whole."""
        pages = ("-f", str(page), "-l", str(page)) if page else ()
        return " ".join(self._run("pdftotext", "-enc", "UTF-8", *pages, str(self.path),
                                  "-").split())

    def words(self) -> list[PdfWord]:
        parser = _BboxWords()
        parser.feed(self._run("pdftotext", "-bbox", "-f", "1", "-l", "1", str(self.path), "-"))
        return parser.words

    def images(self) -> int:
        return len(self._run("pdfimages", "-list", str(self.path)).splitlines()) - 2

    def qr_codes(self, page: int = 1) -> list[str]:
        self._run("pdftoppm", "-r", "150", "-gray", "-png", "-f", str(page), "-l", str(page),
                  "-singlefile", str(self.path), str(self._dir / "page"))
        found = subprocess.run(["zbarimg", "-q", "--raw", str(self._dir / "page.png")],
                               capture_output=True, text=True)
        return found.stdout.splitlines()


async def on_the_page(tenant: Tenant, http: httpx.AsyncClient, mailbox: Mailbox,
                      campaign: dict[str, Any], address: str
                      ) -> tuple[dict[str, Any], Customer, str]:
    """A contact enrolled by its email address, its invitation's page open: (the enrolment's
    result, the customer, the page's path)."""
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    return enrolled, customer, page


async def mark_bounced(sessions, contact_id: str, kind: str) -> None:
    """As an earlier journey's hard bounce left it: the contact's email or mobile undeliverable."""
    await _mark_points(sessions, contact_id, kind, undeliverable_since=datetime.now(UTC),
                       undeliverable_reason="550 user unknown")


async def mark_complained(sessions, contact_id: str, kind: str) -> None:
    """As an earlier journey's spam complaint left it: the contact's email or mobile marked."""
    await _mark_points(sessions, contact_id, kind, complained_since=datetime.now(UTC))


async def _mark_points(sessions, contact_id: str, kind: str, **values: Any) -> None:
    async with transaction(sessions) as session:
        await session.execute(update(ContactPoint).where(
            ContactPoint.contact_id == uuid.UUID(contact_id), ContactPoint.kind == kind).values(
            **values))


@asynccontextmanager
async def own_api(settings: Settings, tenant: Tenant) -> AsyncIterator[Tenant]:
    """The tenant calling an API of its own, started with these settings (the session's app
    has the shared ones): for a test that changes a setting or runs its own worker."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield Tenant(id=tenant.id, name=tenant.name, key=tenant.key, http=http)


@asynccontextmanager
async def worker_schedules(temporal: TemporalClient, settings: Settings) -> AsyncIterator[None]:
    """The worker's periodic schedules, as it creates them at its start, deleted afterwards:
    left, they would fire during later tests."""
    schedule_ids = await ensure_schedules(temporal, settings)
    try:
        yield
    finally:
        for schedule_id in schedule_ids:
            await temporal.get_schedule_handle(schedule_id).delete()
