"""The real stack for the tests: a fresh PostgreSQL database, the Temporal dev server, an SMTP
sink, a webhook receiver over HTTP, our worker and our API. Each test gets its own client
(tenant), so tests never need to wipe shared data."""

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.settings import Settings
from db import crud
from db.session import make_engine, make_sessionmaker, transaction
from messaging.dev_mail import start_smtp_sink
from stack import free_port, local_temporal, scratch_database, throwaway_settings
from tests.helpers import Mailbox, MessagingProvider, Tenant, WebhookReceiver
from worker import running_worker

HISTORIES = Path(__file__).parent / "histories"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-histories", action="store_true",
                     help="write the journeys' event histories to tests/histories/")


@pytest.fixture(scope="session")
def record_histories(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--record-histories"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of its own for this run, migrated with the project's migrations."""
    with scratch_database("cj_test") as url:
        yield url


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    async with local_temporal() as env:
        yield env


@pytest.fixture(scope="session")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    maildir = tmp_path_factory.mktemp("maildir")
    port = free_port()
    sink = start_smtp_sink(maildir, port=port)
    yield Mailbox(maildir=maildir, port=port)
    sink.stop()


@pytest.fixture(scope="session")
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="session")
async def provider_server() -> AsyncIterator[MessagingProvider]:
    server = MessagingProvider()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def provider(provider_server: MessagingProvider) -> MessagingProvider:
    """The SMS/print provider, reset for each test so scripted failures never leak."""
    provider_server.reset()
    return provider_server


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_env: WorkflowEnvironment, mailbox: Mailbox,
             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    outbox = tmp_path_factory.mktemp("outbox")
    return throwaway_settings(
        database_url=database_url, env=temporal_env, maildir=mailbox.maildir,
        smtp_port=mailbox.port,
        public_base_url="http://testserver",
        webhook_timeout_seconds=5,
        # Every test posts from one address; the limits are tested on their own.
        form_posts_per_ip_per_minute=100_000,
        form_posts_per_link_per_minute=20,
        sms_outbox_dir=outbox / "sms",
        letter_outbox_dir=outbox / "letters",
        kyc_storage_dir=tmp_path_factory.mktemp("kyc-documents"),
        # Small, so the test of a too large upload sends little.
        kyc_max_document_bytes=64 * 1024,
        # The production schedule in miniature: fractions of a second instead of hours.
        webhook_retry_delays=[timedelta(seconds=0.2), timedelta(seconds=0.3)],
        webhook_retry_every=timedelta(seconds=0.5),
        webhook_retry_for=timedelta(seconds=3),
        webhook_allow_private_targets=True,
        # A deferred recipient is a soft bounce after the second try (a second or so).
        email_soft_bounce_after_attempts=2,
        # Small, so a launch of a thousand contacts runs long enough to pause, and continues
        # as new within a test.
        launch_batch_size=50,
        launch_batches_per_run=4,
        # Recurring campaigns fire within a test.
        recurrence_min_interval=timedelta(seconds=1),
    )


@pytest.fixture(scope="session")
async def worker(temporal_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[None]:
    async with running_worker(temporal_env.client, settings):
        yield


@pytest.fixture(scope="session")
async def app(settings: Settings, worker: None):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of our app: keeps cookies, does not follow redirects by itself."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="session")
async def sessions(database_url: str):
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def tenant(sessions, http: httpx.AsyncClient) -> Tenant:
    async with transaction(sessions) as session:
        client, key = await crud.create_client(session, name=f"Acme {uuid.uuid4().hex[:6]}")
    return Tenant(id=client.id, name=client.name, key=key, http=http)


@pytest.fixture
async def other_tenant(sessions, http: httpx.AsyncClient) -> Tenant:
    async with transaction(sessions) as session:
        client, key = await crud.create_client(session, name="Other Corp")
    return Tenant(id=client.id, name=client.name, key=key, http=http)

