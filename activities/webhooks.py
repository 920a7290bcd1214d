"""Delivers an endpoint's due webhook deliveries, signed in the Standard Webhooks format.

The database is the queue: each call sends the endpoint's due deliveries in sequence order,
logs every attempt and schedules the next one by the retry schedule. A crash between the POST
and the log sends that event again later, with the same webhook-id (at-least-once delivery).
"""

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core import webhook_rules as rules
from core.contracts import DeliverDueInput, DeliverDueResult, DeliverWebhookInput, RetrySchedule
from core.security import SecretBox
from core.vocabulary import EventType
from db import crud
from db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from db.session import transaction

EXCERPT_CHARS = 500
ERROR_CHARS = 1000
# C0 controls but tab and line breaks: PostgreSQL refuses NUL in text (and \u0000 in JSON),
# and a receiver's binary answer (a UTF-16 "OK") is full of them. One such answer must not
# fail the transaction that logs the whole batch, or every event in it is posted again.
UNLOGGABLE = dict.fromkeys([c for c in range(32) if chr(c) not in "\t\n\r"], "\ufffd")
USER_AGENT = "contact-journeys-webhooks/2"


class EndpointWaker(Protocol):
    """Tells endpoints' delivery workflows that deliveries are waiting (signal-with-start)."""

    async def wake(self, client_id: uuid.UUID, endpoint_ids: Iterable[str], reason: str
                   ) -> None: ...


@dataclass
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error: str | None
    excerpt: str | None
    retry_after: timedelta | None


def signing_secrets(endpoint: WebhookEndpoint, box: SecretBox, now: datetime) -> list[str]:
    secrets = [box.open(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at and (
            endpoint.previous_secret_expires_at > now):
        secrets.append(box.open(endpoint.previous_secret_encrypted))
    return secrets


class WebhookSender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, box: SecretBox,
        waker: EndpointWaker, *, allow_private_targets: bool,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._box = box
        self._waker = waker
        self._allow_private = allow_private_targets

    @activity.defn
    async def deliver_due(self, input: DeliverDueInput) -> DeliverDueResult:
        endpoint_id = uuid.UUID(input.endpoint_id)
        policy = input.policy
        now = utcnow()
        async with self._sessions() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                return DeliverDueResult("deleted", 0, 0, None, False)
            if not endpoint.enabled:
                return DeliverDueResult("disabled", 0, 0, None, False)
            due = (await session.execute(
                select(WebhookDelivery.id, WebhookDelivery.sequence, WebhookDelivery.round_started_at,
                       WebhookEvent)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.endpoint_id == endpoint_id,
                       WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.sequence).limit(policy.batch_size)
            )).all()
            secrets = signing_secrets(endpoint, self._box, now)

        results: list[AttemptResult] = []
        if due:
            refused = await rules.target_problem(endpoint.url, allow_private=self._allow_private)
            gate = asyncio.Semaphore(policy.parallel)

            async def attempt(sequence: int, event: WebhookEvent) -> AttemptResult:
                if refused:
                    return AttemptResult(None, 0, f"refused: {refused}", None, None)
                async with gate:
                    return await self._post(endpoint.url, event, sequence, secrets,
                                            policy.attempt_timeout)

            results = list(await asyncio.gather(*(attempt(row.sequence, row.WebhookEvent)
                                                  for row in due)))

        async with transaction(self._sessions) as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            if endpoint is None:
                return DeliverDueResult("deleted", len(due), 0, None, False)
            delivered, wake = await self._record(
                session, endpoint, {row.id: row.round_started_at for row in due}, results,
                policy.schedule)
            next_due_at = await session.scalar(
                select(func.min(WebhookDelivery.next_attempt_at)).where(
                    WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending"))
            state = "active" if endpoint.enabled else "disabled"
        if wake:
            await self._waker.wake(endpoint.client_id, wake, "endpoint disabled")
        more_due = state == "active" and next_due_at is not None and next_due_at <= utcnow()
        return DeliverDueResult(state, len(due), delivered, next_due_at, more_due)

    async def _post(self, url: str, event: WebhookEvent, sequence: int, secrets: list[str],
                    timeout: timedelta) -> AttemptResult:
        # Sorted and compact, so every attempt sends the very same bytes.
        body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
        sent_at = utcnow()
        headers = {
            "content-type": "application/json",
            "webhook-id": str(event.id),
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": rules.signature_header(
                secrets, msg_id=str(event.id), timestamp=sent_at, body=body),
            "webhook-sequence": str(sequence),
            "user-agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            # The whole attempt, connect to last byte, within the per-attempt timeout.
            async with asyncio.timeout(timeout.total_seconds()):
                async with self._http.stream("POST", url, content=body, headers=headers) as response:
                    excerpt = await _excerpt(response)
        except (httpx.HTTPError, TimeoutError) as err:
            latency_ms = int((time.monotonic() - started) * 1000)
            message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            return AttemptResult(None, latency_ms, message, None, None)
        return AttemptResult(
            response.status_code, int((time.monotonic() - started) * 1000), None, excerpt,
            rules.parse_retry_after(response.headers.get("retry-after"), utcnow()))

    async def _record(
        self, session: AsyncSession, endpoint: WebhookEndpoint,
        rounds: dict[uuid.UUID, datetime], results: list[AttemptResult], schedule: RetrySchedule,
    ) -> tuple[int, list[str]]:
        """Logs the attempts and moves each delivery on; returns (delivered, endpoints to wake).

        Rows are locked, like a resend or replay locks them, so neither overwrites the other.
        """
        now = utcnow()
        delivery_ids = list(rounds)
        results = [loggable(r) for r in results]
        # In id order, as a PATCH that makes the endpoint's deliveries due locks them: two
        # transactions taking the same rows in one order cannot deadlock.
        deliveries = {d.id: d for d in await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))
            .order_by(WebhookDelivery.id).with_for_update())}
        if results:
            await session.execute(insert(WebhookAttempt), [
                {"delivery_id": i, "at": now, "status_code": r.status_code,
                 "latency_ms": r.latency_ms, "error": r.error, "response_excerpt": r.excerpt}
                for i, r in zip(delivery_ids, results)])
        delivered = 0
        gave_up: list[WebhookDelivery] = []
        for delivery_id, result in zip(delivery_ids, results):
            delivery = deliveries.get(delivery_id)
            if delivery is None or delivery.round_started_at != rounds[delivery_id]:
                continue  # deleted, or queued again (resend, replay) while this attempt ran
            delivery.attempts += 1
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error
            verdict = rules.outcome(result.status_code)
            if verdict == rules.Outcome.delivered:
                delivered += 1
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                    "delivered", now, None)
                continue
            delay = None if verdict == rules.Outcome.failed else rules.next_attempt_delay(
                schedule, attempts=delivery.attempts, round_started_at=delivery.round_started_at,
                now=now, retry_after=result.retry_after)
            if delay is None:
                delivery.status, delivery.next_attempt_at = "failed", None
                if verdict == rules.Outcome.retry:
                    gave_up.append(delivery)
            else:
                delivery.next_attempt_at = now + delay
        if delivered:
            endpoint.last_success_at = now
        # Failing means: a whole schedule ran out without one success since it began.
        failing = [d for d in gave_up
                   if endpoint.last_success_at is None or endpoint.last_success_at < d.round_started_at]
        if failing and endpoint.enabled:
            return delivered, await self._disable_failing(session, endpoint, failing[0], now)
        return delivered, []

    @staticmethod
    async def _disable_failing(session: AsyncSession, endpoint: WebhookEndpoint,
                               delivery: WebhookDelivery, now: datetime) -> list[str]:
        # Holding this endpoint's row before the event below locks them all could deadlock
        # with another event being recorded for the client (seen in the fuzz test).
        await session.execute(crud.endpoints_locked(endpoint.client_id))
        endpoint.enabled = False
        endpoint.failing_since = delivery.round_started_at
        await session.flush()
        # Told on the client's other endpoints; this one is disabled, so it is not among them.
        return await crud.record_webhook_event(
            session, client_id=endpoint.client_id,
            key=f"endpoint-disabled/{endpoint.id}/{now.isoformat()}",
            type=EventType.endpoint_disabled,
            data={"endpoint": {"id": str(endpoint.id), "url": endpoint.url},
                  "reason": "failing", "failing_since": delivery.round_started_at.isoformat(),
                  "disabled_at": now.isoformat(),
                  "last_status_code": delivery.last_status_code,
                  "last_error": delivery.last_error})

    @activity.defn
    async def deliver_webhook(self, input: DeliverWebhookInput) -> None:
        """Kept for journeys started before per-endpoint delivery: hands their delivery to the
        endpoint's workflow instead of posting it here."""
        async with transaction(self._sessions) as session:
            delivery = await session.get_one(WebhookDelivery, uuid.UUID(input.delivery_id))
            if delivery.status != "pending":
                return
            event = await session.get_one(WebhookEvent, delivery.event_id)
            endpoint = await session.get_one(WebhookEndpoint, delivery.endpoint_id)
            await crud.queue_delivery(session, event=event, endpoint=endpoint)
        await self._waker.wake(endpoint.client_id, [str(endpoint.id)],
                               "journey recorded before 0200")


def _clean(text: str | None, limit: int) -> str | None:
    return None if text is None else text.translate(UNLOGGABLE)[:limit]


def loggable(result: AttemptResult) -> AttemptResult:
    """The attempt as the delivery log can store it, whatever the receiver answered."""
    return replace(result, error=_clean(result.error, ERROR_CHARS),
                   excerpt=_clean(result.excerpt, EXCERPT_CHARS))


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer for the delivery log; a huge body is not read to its end."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_CHARS * 4:
            break
    return b"".join(chunks).decode("utf-8", "replace")[:EXCERPT_CHARS]
