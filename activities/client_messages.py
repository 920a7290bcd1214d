"""Sends a message a client addressed to a contact (invoice, newsletter, ...), applying the
sending rules at the moment of sending: marketing only with a granted consent."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.messages import BOUNCE_SOURCE
from activities.webhooks import EndpointWaker
from core.contracts import ClientMessageInput, ClientMessageResult
from core.settings import Settings
from core.vocabulary import BounceKind, Channel, MessageCategory, TokenPurpose
from db import bounces, consents, crud
from db.models import Client, ClientMessage, Contact, utcnow
from db.session import transaction
from messaging import links
from messaging.branding import client_brand
from messaging.email import (
    EmailDeferred,
    EmailRejected,
    EmailUnsendable,
    OutgoingEmail,
    SmtpSender,
    deferred_long_enough,
    message_id,
)
from messaging.rendering import render_email


class ClientMessageSender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 email: SmtpSender, waker: EndpointWaker) -> None:
        self._sessions = sessions
        self._settings = settings
        self._email = email
        self._waker = waker

    @activity.defn
    async def send_client_message(self, input: ClientMessageInput) -> ClientMessageResult:
        async with transaction(self._sessions) as session:
            message = await session.get_one(ClientMessage, uuid.UUID(input.message_id))
            if message.status != "queued":
                return ClientMessageResult(message.status, message.status_reason or "")
            contact = await session.get_one(Contact, message.contact_id)
            client = await session.get_one(Client, message.client_id)
            point = await crud.known_point(session, contact_id=contact.id, kind="email",
                                           deliverable=True)
            rule = consents.on_verified_point(consents.after_complaint(await consents.may_send(
                session, client_id=client.id, contact_id=contact.id,
                message_type=message.message_type, channel=message.channel,
                secret_key=self._settings.secret_key.get_secret_value()), point), point,
                message.channel)
            if not rule.allowed or point is None:
                message.status, message.decided_at = "suppressed", utcnow()
                message.status_reason = rule.reason if not rule.allowed else (
                    "no email address that did not bounce" if await crud.only_undeliverable(
                        session, contact_id=contact.id, channel="email") else "no email address")
                return ClientMessageResult(message.status, message.status_reason)

            brand = client_brand(client, self._settings)
            context = {"client_name": client.name, "subject": message.subject,
                       "body": message.body, "link": None, "brand": brand,
                       "preferences_link": await links.issue(
                           session, self._settings, purpose=TokenPurpose.preferences,
                           step=f"message/{message.id}", contact_id=contact.id,
                           expires_at=utcnow() + self._settings.preference_link_ttl,
                           base_url=brand.base_url)}
            headers = {"Auto-Submitted": "auto-generated"}
            if rule.category == MessageCategory.marketing:
                context["unsubscribe_link"], unsubscribe = await links.one_click_unsubscribe(
                    session, self._settings, step=f"message/{message.id}",
                    contact_id=contact.id, purpose=rule.purpose, channel=message.channel,
                    base_url=brand.base_url)
                headers |= unsubscribe
            content = render_email("client_message", contact.language, context)
            message.recipient = point.value

        try:
            await self._email.send(OutgoingEmail(
                to=point.value, content=content,
                message_id=message_id(self._settings, f"message.{message.id}"),
                from_name=brand.email_from_name or client.name, headers=headers))
        except EmailRejected as err:
            await self._decide(message.id, "failed", str(err), bounced=BounceKind.hard)
            raise ApplicationError(str(err), type="EmailRejected", non_retryable=True) from err
        except EmailUnsendable as err:
            # Our relay's limit, not the address's: nothing marks it undeliverable.
            await self._decide(message.id, "failed", str(err))
            raise ApplicationError(str(err), type="EmailUnsendable", non_retryable=True) from err
        except EmailDeferred as err:
            # Deferred again and again (a full mailbox): a soft bounce, as for a journey's
            # message, which marks nothing; not retried for ever.
            if not deferred_long_enough(self._settings):
                raise
            reason = f"soft bounce, deferred {activity.info().attempt} times: {err}"
            await self._decide(message.id, "failed", reason, bounced=BounceKind.soft)
            raise ApplicationError(reason, type="EmailDeferred", non_retryable=True) from err
        await self._decide(message.id, "sent", rule.reason)
        return ClientMessageResult("sent", rule.reason)

    async def _decide(self, message_id: uuid.UUID, status: str, reason: str,
                      bounced: BounceKind | None = None) -> None:
        """`bounced`: how the mail server refused the message, announced as a reported bounce
        is."""
        endpoints: list[str] = []
        async with transaction(self._sessions) as session:
            message = await session.get_one(ClientMessage, message_id)
            message.status, message.status_reason, message.decided_at = status, reason, utcnow()
            if bounced == BounceKind.hard:
                # Refused for good: the address is as dead for the journeys as for the client.
                await crud.mark_undeliverable(session, contact_id=message.contact_id,
                                              channel="email", recipient=message.recipient,
                                              reason=reason, at=message.decided_at)
            if bounced is not None:
                endpoints = await bounces.announce_client_message_bounce(
                    session, message=message, kind=bounced, reason=reason, source=BOUNCE_SOURCE[Channel.email],
                    at=message.decided_at)
        # Only now, committed, may the endpoints' workflows see the event.
        await self._waker.wake(message.client_id, endpoints, f"message/{message_id}")
