"""Sends a journey's messages: renders the template in the customer's language with a personal
link, sends it, and records it. One row per (journey, step) means a retry never sends twice."""

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.contracts import SendMessageInput, SendMessageResult
from core.settings import Settings
from db import consents, crud
from core.vocabulary import FINAL_STAGES, TokenPurpose
from db.models import Campaign, Client, Contact, Journey, Message, utcnow
from db.session import transaction
from messaging import links
from messaging.email import EmailRejected, OutgoingEmail, SmtpSender
from messaging.rendering import render_email

VERIFICATION_TEMPLATES = ("verification", "verification_reminder")


def moved_on(stage: str, stage_after: str | None) -> str:
    """A send that was in flight when its journey was cancelled does not reopen it."""
    return stage if stage_after is None or stage in FINAL_STAGES else stage_after


class MessageSender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, email: SmtpSender
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._email = email

    @activity.defn
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        async with transaction(self._sessions) as session:
            journey = await session.get_one(Journey, uuid.UUID(input.journey_id),
                                           with_for_update=True)
            already = (
                await session.scalars(
                    select(Message).where(
                        Message.journey_id == journey.id, Message.step == input.step
                    )
                )
            ).one_or_none()
            if already is not None and already.status == "sent":
                return SendMessageResult(sent=True, recipient=already.recipient)
            contact = await session.get_one(Contact, journey.contact_id)
            campaign = await session.get_one(Campaign, journey.campaign_id)
            client = await session.get_one(Client, journey.client_id)
            if input.to_pending_email:
                recipient = (journey.collected or {}).get("email")
            else:
                point = await crud.known_email(session, contact_id=contact.id)
                recipient = point.value if point else None
            if recipient is None:
                # Nothing to send to on this channel; the journey waits for the customer or expiry.
                return SendMessageResult(sent=False, recipient=None)
            # Asked now, not when the campaign started: the customer may have opted out since.
            rule = await consents.may_send(session, client_id=client.id, contact_id=contact.id,
                                           message_type=input.template, channel="email")
            if rule.allowed and input.to_pending_email and await crud.messages_to(
                    session, recipient=recipient, templates=VERIFICATION_TEMPLATES,
                    since=utcnow() - timedelta(days=1),
            ) >= self._settings.verification_messages_per_recipient_per_day:
                rule = consents.SendDecision(False, rule.category, None,
                                             "daily cap of verification messages reached")
            if not rule.allowed:
                await crud.add_journey_event(
                    session, journey=journey, step=input.step, type=f"{input.template}_suppressed",
                    at=utcnow(), detail={"reason": rule.reason})
                # The journey moves on all the same; the read model follows it.
                journey.stage = moved_on(journey.stage, input.stage_after)
                return SendMessageResult(sent=False, recipient=None)

            link = await links.issue(
                session, self._settings, purpose=TokenPurpose(input.link_purpose),
                step=input.step, expires_at=input.link_expires_at, journey_id=journey.id)
            preferences = await links.issue(
                session, self._settings, purpose=TokenPurpose.preferences,
                step=f"{journey.id}/{input.step}", contact_id=contact.id,
                expires_at=utcnow() + self._settings.preference_link_ttl)
            content = render_email(
                input.template,
                journey.language,
                {
                    "client_name": client.name,
                    "campaign_name": campaign.name,
                    "first_name": contact.first_name,
                    "last_name": contact.last_name,
                    "link": link,
                    "preferences_link": preferences,
                    "expires_at": input.link_expires_at,
                    "incentive": campaign.spec.get("incentive_text"),
                },
            )
            if already is None:
                already = Message(
                    client_id=journey.client_id, journey_id=journey.id, step=input.step,
                    channel="email", template=input.template, recipient=recipient,
                    subject=content.subject,
                )
                session.add(already)
                await session.flush()

        domain = urlsplit(self._settings.public_base_url).hostname or "contact-journeys.local"
        mail = OutgoingEmail(
            to=recipient,
            content=content,
            message_id=f"<{journey.id}.{input.step}@{domain}>",
            from_name=client.name,
            headers={"Auto-Submitted": "auto-generated"},
        )
        try:
            await self._email.send(mail)
        except EmailRejected as err:
            await self._mark(already.id, "bounced", input)
            raise ApplicationError(str(err), type="EmailRejected", non_retryable=True) from err
        await self._mark(already.id, "sent", input)
        return SendMessageResult(sent=True, recipient=recipient)

    async def _mark(self, message_id: uuid.UUID, status: str, input: SendMessageInput) -> None:
        async with transaction(self._sessions) as session:
            message = await session.get_one(Message, message_id)
            message.status = status
            message.sent_at = utcnow()
            # Locked: a cancellation committed meanwhile is seen, not overwritten.
            journey = await session.get_one(Journey, message.journey_id, with_for_update=True)
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=f"{input.template}_{status}",
                at=message.sent_at, detail={"channel": message.channel},
            )
            if status == "sent":
                journey.stage = moved_on(journey.stage, input.stage_after)
