"""Clients register the URLs that receive their signed webhook events, rotate their secrets,
read the delivery log and resend or replay events."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ClientDep, NoBody, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody
from api.schemas import (
    MAX_INT4,
    DeliveryStatusName,
    ReplayRequest,
    ReplayResult,
    SecretRotation,
    WebhookAttemptOut,
    WebhookAttemptPage,
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
)
from core.security import new_webhook_secret
from core.webhook_rules import target_problem
from db import crud
from db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"], responses=ERROR_RESPONSES)
Limit = Annotated[int, Query(ge=1, le=500)]
REPLAY_CHUNK = 500


def endpoint_out(endpoint: WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=endpoint.id, url=endpoint.url, description=endpoint.description,
        events=endpoint.events, enabled=endpoint.enabled,
        failing=endpoint.failing_since is not None, failing_since=endpoint.failing_since,
        last_success_at=endpoint.last_success_at,
        previous_secret_expires_at=endpoint.previous_secret_expires_at
        if endpoint.previous_secret_encrypted else None,
        created_at=endpoint.created_at)


# The endpoint read to queue deliveries (resend, replay) under a key share lock: a DELETE at
# the same time either waits for the deliveries queued (and removes them with the endpoint)
# or has removed the endpoint first (a 404, not a delivery to an endpoint gone). Two of them,
# or the endpoint's workflow logging an attempt, do not wait for each other.
TO_QUEUE = {"read": True, "key_share": True}
# The endpoint read to change it (PATCH, rotate-secret) under a no-key update lock: a second
# change made at the same time starts from the first one's result instead of overwriting it.
TO_CHANGE = {"key_share": True}


async def endpoint_of(session: AsyncSession, client_id: uuid.UUID, endpoint_id: uuid.UUID,
                      lock: dict[str, bool] | None = None) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=lock,
                                 populate_existing=lock is not None)
    if endpoint is None or endpoint.client_id != client_id:
        raise HTTPException(404, "webhook endpoint not found")
    return endpoint


async def check_target(url: str, state: StateDep) -> None:
    problem = await target_problem(
        url, allow_private=state.settings.private_webhook_targets_allowed)
    if problem:
        raise RequestValidationError(
            [{"loc": ("body", "url"), "msg": f"URL refused: {problem}", "type": "value_error"}])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreated)
async def create_endpoint(
    body: WebhookEndpointCreate, client: ClientDep, session: SessionDep, state: StateDep
) -> WebhookEndpointCreated:
    await check_target(str(body.url), state)
    secret = new_webhook_secret()
    endpoint = WebhookEndpoint(
        client_id=client.id, url=str(body.url), events=list(dict.fromkeys(body.events)),
        description=body.description, secret_encrypted=state.box.seal(secret), enabled=True,
        last_sequence=0,
    )
    session.add(endpoint)
    await session.commit()
    return WebhookEndpointCreated(**endpoint_out(endpoint).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookEndpointOut])
async def list_endpoints(client: ClientDep, session: SessionDep) -> list[WebhookEndpointOut]:
    rows = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.client_id == client.id)
        .order_by(WebhookEndpoint.created_at)
    )
    return [endpoint_out(e) for e in rows]


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, client: ClientDep,
                       session: SessionDep) -> WebhookEndpointOut:
    return endpoint_out(await endpoint_of(session, client.id, endpoint_id))


@router.patch("/{endpoint_id}", response_model=WebhookEndpointOut)
async def update_endpoint(
    endpoint_id: uuid.UUID, body: WebhookEndpointUpdate, client: ClientDep, session: SessionDep,
    state: StateDep,
) -> WebhookEndpointOut:
    endpoint = await endpoint_of(session, client.id, endpoint_id)
    if body.url is not None:
        await check_target(str(body.url), state)
    url_changed = body.url is not None and str(body.url) != endpoint.url
    if url_changed or (body.enabled is True and not endpoint.enabled):
        # What waits for a retry to the old URL, or while the endpoint was off, goes now
        # rather than at its retry time (up to 10 hours away). Before the endpoint's lock, as
        # the workflow logging a batch takes its deliveries' and then the endpoint's.
        await deliveries_due_now(session, endpoint_id)
    # Locked once the URL's name is resolved: recording an event for the client waits for it.
    endpoint = await endpoint_of(session, client.id, endpoint_id, TO_CHANGE)
    if body.url is not None:
        endpoint.url = str(body.url)
    if body.events is not None:
        endpoint.events = list(dict.fromkeys(body.events))
    if "description" in body.model_fields_set:
        endpoint.description = body.description
    resumed = body.enabled is True and not endpoint.enabled
    if body.enabled is not None:
        endpoint.enabled = body.enabled
        if body.enabled:
            endpoint.failing_since = None
    await session.commit()
    if resumed or url_changed:
        await state.endpoints.wake(client.id, [str(endpoint.id)],
                                   "enabled" if resumed else "url changed")
    return endpoint_out(endpoint)


async def deliveries_due_now(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    now = utcnow()
    waiting = (WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending",
               WebhookDelivery.next_attempt_at > now)
    # Locked in id order first, as the endpoint's workflow locks a batch it logs.
    await session.execute(select(WebhookDelivery.id).where(*waiting)
                          .order_by(WebhookDelivery.id).with_for_update())
    await session.execute(update(WebhookDelivery).where(*waiting).values(next_attempt_at=now))


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[NoBody])
async def delete_endpoint(endpoint_id: uuid.UUID, client: ClientDep, session: SessionDep,
                          state: StateDep) -> None:
    endpoint = await endpoint_of(session, client.id, endpoint_id)
    await session.delete(endpoint)
    await session.commit()
    # Its workflow finds the endpoint gone and ends.
    await state.endpoints.wake(client.id, [str(endpoint_id)], "deleted")


@router.post("/{endpoint_id}/rotate-secret", response_model=WebhookEndpointCreated)
async def rotate_secret(
    endpoint_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    body: SecretRotation | None = None,
) -> WebhookEndpointCreated:
    """A new signing secret. During `overlap` every delivery carries two signatures, with the
    new and the old secret, so the receiver can switch without rejecting anything."""
    endpoint = await endpoint_of(session, client.id, endpoint_id, TO_CHANGE)
    overlap = (body or SecretRotation()).overlap
    secret = new_webhook_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = utcnow() + overlap
    endpoint.secret_encrypted = state.box.seal(secret)
    await session.commit()
    return WebhookEndpointCreated(**endpoint_out(endpoint).model_dump(), secret=secret)


@router.get("/{endpoint_id}/attempts", response_model=WebhookAttemptPage)
async def list_attempts(
    endpoint_id: uuid.UUID, client: ClientDep, session: SessionDep, limit: Limit = 100,
    cursor: int | None = Query(None, ge=0, le=MAX_INT4,
                               description="next_cursor of the previous page"),
) -> WebhookAttemptPage:
    """The delivery log, newest attempt first."""
    await endpoint_of(session, client.id, endpoint_id)
    query = (select(WebhookAttempt, WebhookDelivery, WebhookEvent.type)
             .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.endpoint_id == endpoint_id)
             .order_by(WebhookAttempt.id.desc()).limit(limit + 1))
    if cursor is not None:
        query = query.where(WebhookAttempt.id < cursor)
    rows = (await session.execute(query)).all()
    items = [WebhookAttemptOut(
        at=a.at, event_id=d.event_id, event_type=event_type, sequence=d.sequence,
        delivery_status=d.status, status_code=a.status_code, latency_ms=a.latency_ms,
        error=a.error, response_excerpt=a.response_excerpt) for a, d, event_type in rows[:limit]]
    more = len(rows) > limit
    return WebhookAttemptPage(items=items, next_cursor=str(rows[limit - 1][0].id) if more else None)


def delivery_out(delivery: WebhookDelivery, event: WebhookEvent) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        event_id=event.id, event_type=event.type, event_created_at=event.created_at,
        sequence=delivery.sequence, status=delivery.status, attempts=delivery.attempts,
        last_status_code=delivery.last_status_code, last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at, delivered_at=delivery.delivered_at)


@router.get("/{endpoint_id}/deliveries", response_model=list[WebhookDeliveryOut])
async def list_deliveries(
    endpoint_id: uuid.UUID, client: ClientDep, session: SessionDep,
    status: DeliveryStatusName | None = None, limit: Limit = 100,
    before_sequence: int | None = Query(None, ge=0, le=MAX_INT4,
                                        description="page on: the last sequence seen"),
) -> list[WebhookDeliveryOut]:
    """The endpoint's queue and its outcome per event, newest sequence first."""
    await endpoint_of(session, client.id, endpoint_id)
    query = (select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.endpoint_id == endpoint_id)
             .order_by(WebhookDelivery.sequence.desc()).limit(limit))
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_sequence is not None:
        query = query.where(WebhookDelivery.sequence < before_sequence)
    return [delivery_out(d, e) for d, e in (await session.execute(query)).all()]


@router.post("/{endpoint_id}/events/{event_id}/resend", status_code=status.HTTP_202_ACCEPTED,
             dependencies=[NoBody], response_model=WebhookDeliveryOut,
             responses={409: {"model": ErrorBody, "description": (
                 "The endpoint does not subscribe to the event's type")}})
async def resend_event(endpoint_id: uuid.UUID, event_id: uuid.UUID, client: ClientDep,
                       session: SessionDep, state: StateDep) -> WebhookDeliveryOut:
    """Sends one event again, same id and payload, with a fresh retry schedule; only an event
    of a type the endpoint subscribes to, as a replay."""
    endpoint = await endpoint_of(session, client.id, endpoint_id, TO_QUEUE)
    event = await session.get(WebhookEvent, event_id)
    if event is None or event.client_id != client.id:
        raise HTTPException(404, "webhook event not found")
    if not crud.subscribes(endpoint, event.type):
        raise HTTPException(409, f"the endpoint does not subscribe to {event.type}")
    delivery = await crud.queue_delivery(session, event=event, endpoint=endpoint)
    await session.commit()
    await state.endpoints.wake(client.id, [str(endpoint.id)], "resend")
    return delivery_out(delivery, event)


@router.post("/{endpoint_id}/replay", status_code=status.HTTP_202_ACCEPTED,
             response_model=ReplayResult)
async def replay_events(endpoint_id: uuid.UUID, body: ReplayRequest, client: ClientDep,
                        session: SessionDep, state: StateDep) -> ReplayResult:
    """Queues again every event of the time range [since, until) that the endpoint subscribes
    to, including those recorded before it existed, oldest first."""
    endpoint = await endpoint_of(session, client.id, endpoint_id, TO_QUEUE)
    if body.until - body.since > timedelta(days=90):
        raise RequestValidationError(
            [{"loc": ("body", "until"), "msg": "a replay covers at most 90 days",
              "type": "value_error"}])
    wanted = [event_id for event_id, event_type in (await session.execute(
        select(WebhookEvent.id, WebhookEvent.type).where(
            WebhookEvent.client_id == client.id, WebhookEvent.created_at >= body.since,
            WebhookEvent.created_at < body.until)
        .order_by(WebhookEvent.created_at, WebhookEvent.id))).all()
        if crud.subscribes(endpoint, event_type)]
    for start in range(0, len(wanted), REPLAY_CHUNK):
        chunk = wanted[start:start + REPLAY_CHUNK]
        by_id = {e.id: e for e in await session.scalars(
            select(WebhookEvent).where(WebhookEvent.id.in_(chunk)))}
        for event_id in chunk:
            await crud.queue_delivery(session, event=by_id[event_id], endpoint=endpoint)
        session.expunge_all()  # payloads of a long range must not pile up in the session
        endpoint = await endpoint_of(session, client.id, endpoint_id, TO_QUEUE)
    queued = len(wanted)
    await session.commit()
    if queued:
        await state.endpoints.wake(client.id, [str(endpoint.id)], "replay")
    return ReplayResult(queued=queued)
