"""Delivers one webhook event to one endpoint, signed in the Standard Webhooks format.

Temporal retries the activity with backoff; every attempt is logged. 2xx delivers; a 4xx other
than 408/409/429 will never succeed, so it fails for good instead of retrying for days.
"""

import json
import time
import uuid
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.contracts import DeliverWebhookInput
from core.security import SecretBox
from core.vocabulary import ErrorType
from db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from db.session import transaction

RETRYABLE_4XX = {408, 409, 425, 429}


def retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None


class WebhookSender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, box: SecretBox
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._box = box

    @activity.defn
    async def deliver_webhook(self, input: DeliverWebhookInput) -> None:
        async with self._sessions() as session:
            delivery = await session.get_one(WebhookDelivery, uuid.UUID(input.delivery_id))
            if delivery.status != "pending":
                return
            event = await session.get_one(WebhookEvent, delivery.event_id)
            endpoint = await session.get_one(WebhookEndpoint, delivery.endpoint_id)
            secret = self._box.open(endpoint.secret_encrypted)

        body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
        sent_at = utcnow()
        signature = Webhook(secret).sign(str(event.id), sent_at, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": str(event.id),
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
            "user-agent": "contact-journeys-webhooks/1",
        }
        started = time.monotonic()
        response: httpx.Response | None = None
        error: str | None = None
        try:
            response = await self._http.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        latency_ms = int((time.monotonic() - started) * 1000)

        code = response.status_code if response is not None else None
        if code is not None and 200 <= code < 300:
            status = "delivered"
        elif code is not None and 400 <= code < 500 and code not in RETRYABLE_4XX:
            status = "failed"
        else:
            status = "pending"
        async with transaction(self._sessions) as session:
            delivery = await session.get_one(WebhookDelivery, uuid.UUID(input.delivery_id))
            delivery.attempts += 1
            delivery.status = status
            delivery.last_status_code = code
            delivery.last_error = error
            if status == "delivered":
                delivery.delivered_at = utcnow()
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id, status_code=code, latency_ms=latency_ms, error=error,
                    response_excerpt=response.text[:500] if response is not None else None,
                )
            )
        if status == "failed":
            raise ApplicationError(
                f"endpoint answered {code}", type=ErrorType.webhook_rejected, non_retryable=True
            )
        if status == "pending":
            raise ApplicationError(
                f"delivery failed: {error or code}",
                next_retry_delay=retry_after(response) if response is not None else None,
            )
