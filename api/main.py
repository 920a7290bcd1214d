"""The FastAPI application: client API under /v1, customer pages, dev outbox."""

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from api import errors
from api.body_limits import BodyLimits
from api.deps import AppState
from api.public_forms import RateLimited
from api.routes import (
    bounces,
    branding,
    campaigns,
    client_settings,
    consents,
    contacts,
    customer_page,
    dashboard,
    dev_outbox,
    enrichment_links,
    imports,
    journeys,
    kyc,
    kyc_page,
    launches,
    messages,
    preference_centre,
    printed_links,
    purposes,
    reports,
    suppressions,
    webhook_endpoints,
)
from core.paths import TEMPLATES_DIR
from core.security import Csrf, SecretBox
from core.settings import Settings, get_settings
from core.temporal import connect
from db.session import make_counter_engine, make_engine, make_sessionmaker
from workflows.webhook_endpoint import EndpointDispatcher

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # Personal links carry a token in the path; never leak it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
DOCS_ASSETS = "/docs/assets"
# Personal pages, and the printed codes' (/l, /L, /1) whose redirects carry a link's token.
PAGE_PATH = re.compile(r"^/(c|v|p|u|k|d|l|L|1)(/|$)")


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response, and no-store to personal pages. Plain ASGI:
    Starlette's BaseHTTPMiddleware runs each request in a task of its own behind a stream,
    which cost the customer pages a noticeable share of their CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if not path.startswith("/docs"):
                    # A route may set a policy of its own (a PDF needs one the browser viewer
                    # can run in).
                    for name, value in SECURITY_HEADERS.items():
                        headers.setdefault(name, value)
                if PAGE_PATH.match(path):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RedactLinkTokens(logging.Filter):
    """Keeps personal and dashboard link tokens out of the logs, and the personal data a query
    string carries: a lookup's card number, email or phone, a search's text."""

    pattern = re.compile(r"/(c|v|p|u|k|d|l|L|1)/[^/?\s\"]+")
    # A printed code typed into the form at /l; a lookup's value (`GET /v1/contacts/lookup`)
    # and a search (`?q=`), both personal.
    query = re.compile(r"([?&](?:code|value|q)=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.query.sub(r"\1<redacted>", self.pattern.sub(r"/\1/<token>", a))
                if isinstance(a, str) else a for a in record.args
            )
        return True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # The access log, and our own lines that name a request's path (a 503 on a form post).
    for name in ("uvicorn.access", "api"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
            logger.addFilter(RedactLinkTokens())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.database_pool_size)
        counters = make_counter_engine(settings.database_url)
        secret = settings.secret_key.get_secret_value()
        temporal = await connect(settings, lazy=True)
        app.state.journeys = AppState(
            settings=settings, sessions=make_sessionmaker(engine),
            counters=make_sessionmaker(counters or engine), temporal=temporal,
            csrf=Csrf(secret), box=SecretBox(secret),
            endpoints=EndpointDispatcher(temporal, settings))
        try:
            yield
        finally:
            await engine.dispose()
            if counters is not None:
                await counters.dispose()

    app = FastAPI(
        title="contact-journeys",
        version="0.1.0",
        summary="Verified contact data and provable consent, one durable journey per customer.",
        lifespan=lifespan,
        # Served below from our own assets: FastAPI's own pages load them from a CDN, which
        # an air-gapped installation cannot reach and which learns who reads our docs.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)

    @app.exception_handler(RateLimited)
    async def _rate_limited(request: Request, exc: RateLimited) -> Response:
        return errors.error_page(request, "too_many_requests", 429,
                                 {"Retry-After": str(exc.retry_after)})

    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(webhook_endpoints.router)
    app.include_router(campaigns.router)
    app.include_router(launches.router)
    app.include_router(journeys.router)
    app.include_router(enrichment_links.router)
    app.include_router(purposes.router)
    app.include_router(client_settings.router)
    app.include_router(branding.router)
    app.include_router(branding.public)
    app.include_router(consents.router)
    app.include_router(messages.router)
    app.include_router(reports.router)
    app.include_router(bounces.router)
    app.include_router(dashboard.links)
    app.include_router(contacts.settings_router)
    app.include_router(imports.router)
    app.include_router(contacts.router)
    app.include_router(contacts.audit_router)
    app.include_router(suppressions.router)
    app.include_router(customer_page.router)
    app.include_router(printed_links.router)
    app.include_router(preference_centre.router)
    app.include_router(kyc.router)
    app.include_router(kyc_page.router)
    app.include_router(dashboard.pages)
    if settings.dev_mode:
        app.include_router(dev_outbox.router)
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "static"), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")
    return app
