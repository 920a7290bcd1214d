"""The client's dashboard: campaigns with their funnel (server-rendered SVG), progress, and
failing webhook endpoints. Reached by a signed link from the API or by signing in with an API
key; read-only, works without JavaScript."""

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ApiKeyDep, NoBody, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, browser_language
from api.public_forms import limit_posts_per_ip
from api.routes.customer_page import csrf_ok, html, invalid_link
from api.routes.reports import first_channel
from api.schemas import DashboardLink
from core.security import dashboard_token, key_of_dashboard_token
from db import crud, reports
from core.vocabulary import DeliveryStatus
from db.models import ApiKey, Campaign, Client, WebhookDelivery, WebhookEndpoint

pages = APIRouter(include_in_schema=False)
links = APIRouter(prefix="/v1/dashboard-links", tags=["dashboard"], responses=ERROR_RESPONSES)
# Width in SVG units of a bar for 100 % of a campaign's journeys.
BAR_WIDTH = 220


def dashboard_path(state: StateDep, key_id: uuid.UUID) -> tuple[str, datetime]:
    expires = int(time.time() + state.settings.dashboard_link_ttl.total_seconds())
    token = dashboard_token(state.settings.secret_key.get_secret_value(), key_id, expires)
    return f"/d/{token}", datetime.fromtimestamp(expires, UTC)


@links.post("", status_code=status.HTTP_201_CREATED, response_model=DashboardLink,
            dependencies=[NoBody])
async def create_dashboard_link(key: ApiKeyDep, state: StateDep) -> DashboardLink:
    path, expires_at = dashboard_path(state, key.id)
    return DashboardLink(url=state.settings.public_base_url.rstrip("/") + path,
                         expires_at=expires_at)


async def dashboard_context(session: AsyncSession, client: Client) -> dict[str, Any]:
    campaigns = list(await session.scalars(
        select(Campaign).where(Campaign.client_id == client.id)
        .order_by(Campaign.created_at.desc())))
    funnels = await reports.funnels(session, client_id=client.id,
                                    campaigns={c.id: first_channel(c) for c in campaigns})
    rows = []
    for campaign in campaigns:
        funnel = funnels[campaign.id]
        scale = max(funnel.journeys, 1)
        steps = reports.shown_steps(campaign.spec)
        rows.append({
            "id": campaign.id, "name": campaign.name, "status": campaign.status,
            "journeys": funnel.journeys, "finished": funnel.finished, "running": funnel.running,
            "by_channel": funnel.by_channel, "steps": steps,
            "bars": [{"step": step, "count": funnel.steps[step],
                      "width": round(BAR_WIDTH * funnel.steps[step] / scale)}
                     for step in steps],
        })
    endpoints = list(await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.client_id == client.id)
        .order_by(WebhookEndpoint.created_at)))
    # Events whose delivery failed and waits for its next try: an endpoint is disabled as
    # failing only once the retry schedule (days) is spent, long after it stopped delivering.
    retrying = dict((await session.execute(
        select(WebhookDelivery.endpoint_id, func.count())
        .where(WebhookDelivery.client_id == client.id,
               WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.attempts > 0)
        .group_by(WebhookDelivery.endpoint_id))).all())
    return {"client_name": client.name, "campaigns": rows,
            "failing": [e for e in endpoints if e.failing_since is not None],
            "retrying": [(e, retrying[e.id]) for e in endpoints
                         if e.enabled and e.id in retrying],
            "disabled": [e for e in endpoints if not e.enabled and e.failing_since is None]}


@pages.get("/d/{token}", response_class=HTMLResponse)
async def dashboard(token: str, request: Request, session: SessionDep, state: StateDep):
    key_id = key_of_dashboard_token(state.settings.secret_key.get_secret_value(), token)
    client = key_id and (await session.scalars(
        select(Client).join(ApiKey, ApiKey.client_id == Client.id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))).first()
    if client is None:
        return invalid_link(request, state)
    return html(request, state, "dashboard", client.default_language,
                await dashboard_context(session, client))


def _login_form(request: Request, state, error: str | None = None,
                status_code: int = 200) -> HTMLResponse:
    return html(request, state, "dashboard_login", browser_language(request), {"error": error},
                status_code)


@pages.get("/dashboard/login", response_class=HTMLResponse)
async def login_form(request: Request, state: StateDep):
    return _login_form(request, state)


@pages.post("/dashboard/login", response_class=HTMLResponse,
            dependencies=[Depends(limit_posts_per_ip)])
async def login(request: Request, session: SessionDep, state: StateDep):
    if not await csrf_ok(request, state):
        return _login_form(request, state, "expired", status.HTTP_403_FORBIDDEN)
    key = str((await request.form()).get("api_key", "")).strip()
    found = await crud.api_key_and_client(session, key=key) if key else None
    if found is None:
        return _login_form(request, state, "invalid_key", status.HTTP_401_UNAUTHORIZED)
    key, _ = found
    path, _ = dashboard_path(state, key.id)
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)
