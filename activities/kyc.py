"""I/O of a KYC profile's workflow: judging a definition against the contact's information,
recording transitions (with their webhook events) and emailing (or texting) the customer.
Every write is keyed by (contact, step), so a retried activity neither writes nor sends twice."""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.messages import BOUNCE_SOURCE
from activities.webhooks import EndpointWaker
from core.contracts import EmittedEvents, SendMessageResult
from core.kyc_contracts import (
    KYC_PROFILE_JSON,
    EvaluateKycInput,
    KycEvaluation,
    KycProfile,
    RecordKycInput,
    SendKycEmailInput,
)
from core.kyc_rules import last_valid_day
from core.settings import Settings
from core.vocabulary import BounceKind, Channel, ErrorType, KycState, TokenPurpose
from db import bounces, consents, crud, kyc_crud
from db.kyc_models import KycEvent
from db.kyc_models import KycProfile as ProfileRow
from db.models import Client, Contact, utcnow
from db.session import transaction
from messaging import links
from messaging.branding import client_brand
from messaging.email import EmailRejected, OutgoingEmail, SmtpSender, message_id
from messaging.local_outbox import kyc_message_key
from messaging.provider_http import PermanentDeliveryFailure
from messaging.rendering import RenderedEmail, render_email, render_sms
from messaging.sms import OutgoingSms, SmsSender, SmsUnsendable
from messaging.sms_encoding import measure

# The expiry reminder and message: their link is to renew the profile with a document, which a
# definition that relies on none does not ask for (the client renews it).
RENEWED_BY_CLIENT = frozenset({"kyc_expiring", "kyc_expired"})


def profile_payload(profile: KycProfile) -> dict[str, Any]:
    """How webhooks and the API describe a profile."""
    return {
        "state": profile.state,
        "definition": {"id": profile.definition_id, "name": profile.definition_name,
                       "level": profile.level},
        "assigned_at": profile.assigned_at.isoformat() if profile.assigned_at else None,
        "expires_at": profile.expires_at.isoformat() if profile.expires_at else None,
        "expiry_cause": profile.expiry_cause,
        "reason": profile.reason,
    }


async def contact_or_gone(session: AsyncSession, contact_id: uuid.UUID) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        # Retrying cannot bring a deleted contact back; the workflow ends its profile.
        raise ApplicationError("the contact no longer exists", type=ErrorType.kyc_contact_gone,
                               non_retryable=True)
    return contact


def fitting_sms(template: str, language: str, context: dict[str, Any],
                max_segments: int) -> str:
    """The SMS text, with an operator's reason too long for max_segments cut (at a word, with
    "...") to what fits: the customer's upload page shows it whole. A text that does not fit
    even so is left as it is, for the sender to refuse."""
    text = render_sms(template, language, context)
    reason = context.get("reason") or ""
    if measure(text).segments <= max_segments or not reason:
        return text

    def cut(length: int) -> str:
        return reason[:length].rstrip() + "..."

    def fits(length: int) -> bool:
        return measure(render_sms(template, language, {**context, "reason": cut(length)})
                       ).segments <= max_segments

    if not fits(0):
        return text
    low, high = 0, len(reason) - 1  # the longest cut that fits lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    shortened = reason[:low]
    if low and not reason[low].isspace() and " " in shortened.strip():
        shortened = shortened.rstrip().rsplit(" ", 1)[0]  # not in the middle of a word
    return render_sms(template, language, {**context, "reason": cut(len(shortened))})


class KycActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, email: SmtpSender,
        sms: SmsSender, waker: EndpointWaker,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._email = email
        self._sms = sms
        self._waker = waker

    @activity.defn
    async def evaluate_kyc(self, input: EvaluateKycInput) -> KycEvaluation:
        async with self._sessions() as session:
            contact = await contact_or_gone(session, uuid.UUID(input.contact_id))
            return await kyc_crud.evaluate(
                session, contact=contact, at=input.at,
                definition_id=uuid.UUID(input.definition_id) if input.definition_id else None,
                default_remind_before=self._settings.kyc_remind_before)

    @activity.defn
    async def record_kyc(self, input: RecordKycInput) -> EmittedEvents:
        p = input.profile
        contact_id = uuid.UUID(input.contact_id)
        async with transaction(self._sessions) as session:
            contact = await contact_or_gone(session, contact_id)
            row = (await session.scalars(
                select(ProfileRow).where(ProfileRow.contact_id == contact_id)
                .with_for_update())).one_or_none()
            if row is None:
                row = ProfileRow(client_id=contact.client_id, contact_id=contact_id,
                                 workflow_id=kyc_crud.workflow_id(contact.client_id, contact_id))
                session.add(row)
            assert p.state is not None and p.definition_id and p.assigned_at
            if p.state == KycState.verified and row.state != KycState.verified:
                row.verified_at = input.at
            row.definition_id = uuid.UUID(p.definition_id)
            row.state = p.state
            row.reason = p.reason
            row.assigned_at = p.assigned_at
            row.expires_at = p.expires_at
            row.expiry_cause = p.expiry_cause
            row.workflow_profile = KYC_PROFILE_JSON.dump_python(p, mode="json")
            await crud.insert_ignoring_conflicts(session, KycEvent, [{
                "client_id": contact.client_id, "contact_id": contact_id, "step": input.step,
                "type": input.type, "at": input.at, "detail": profile_payload(p)}])
            endpoints: list[str] = []
            if input.event:
                endpoints = await crud.record_webhook_event(
                    session, client_id=contact.client_id, key=f"kyc/{contact_id}/{input.step}",
                    type=input.event, data={"contact": crud.contact_ref(contact),
                                            "kyc": profile_payload(p), "change": input.type,
                                            "at": input.at.isoformat()})
        # Only now, committed, may the endpoints' workflows see the event.
        await self._waker.wake(contact.client_id, endpoints, input.step)
        return EmittedEvents()

    @activity.defn
    async def send_kyc_email(self, input: SendKycEmailInput) -> SendMessageResult:
        """Emails the customer; by SMS when only a mobile number is known."""
        contact_id = uuid.UUID(input.contact_id)
        step = f"{input.step}/email"
        async with transaction(self._sessions) as session:
            sent = (await session.scalars(select(KycEvent).where(
                KycEvent.contact_id == contact_id, KycEvent.step == step))).one_or_none()
            if sent is not None:
                return SendMessageResult(sent=True, recipient=(sent.detail or {}).get("recipient"))
            contact = await contact_or_gone(session, contact_id)
            client = await session.get_one(Client, contact.client_id)
            # As a journey's service messages: not written to what a hard bounce refused, nor
            # where the recipient reported our message as spam (their other address, or the
            # mobile, instead).
            points = await crud.known_points(session, contact_id=contact_id, deliverable=True,
                                             uncomplained=True)
            point = points.get("email")
            mobile = points["mobile"].value if point is None and "mobile" in points else None
            if point is None and mobile is None:
                # Nowhere to write to: the client still learns everything by webhook, and the
                # profile's history says why no message went.
                reason = await self._nowhere(session, contact_id)
                await crud.insert_ignoring_conflicts(session, KycEvent, [{
                    "client_id": client.id, "contact_id": contact_id,
                    "step": f"{input.step}/skipped", "type": f"{input.template}_skipped",
                    "detail": {"reason": reason}}])
                return SendMessageResult(sent=False, recipient=None, skipped=reason)
            brand = client_brand(client, self._settings)
            p = input.profile
            link = None
            # The upload page renews a profile that rests on documents; one that asks for none
            # is renewed by the client, whom the expiry messages then name instead.
            renewed_by_upload = p.document_types or input.template not in RENEWED_BY_CLIENT
            if input.link_expires_at is not None and renewed_by_upload:
                link = await links.issue(
                    session, self._settings, purpose=TokenPurpose.kyc_documents,
                    step=f"kyc/{step}", expires_at=input.link_expires_at, contact_id=contact_id,
                    base_url=brand.base_url)
            context = {
                "client_name": client.name, "first_name": contact.first_name,
                "last_name": contact.last_name,
                "profile_name": p.definition_name, "state": p.state, "reason": p.reason,
                # The last day it is valid: for a profile resting on an ID card, the date
                # printed on the card, not the morning after.
                "expires_at": last_valid_day(p.expires_at) if p.expires_at else None,
                "link": link,
                "link_expires_at": input.link_expires_at, "brand": brand}
            if point is not None:
                context["preferences_link"] = await links.issue(
                    session, self._settings, purpose=TokenPurpose.preferences,
                    step=f"kyc/{step}", contact_id=contact_id,
                    expires_at=utcnow() + self._settings.preference_link_ttl,
                    base_url=brand.base_url)

        recipient = point.value if point is not None else mobile
        assert recipient is not None
        try:
            if point is not None:
                detail = await self._email_to(
                    recipient, brand.email_from_name or client.name, input,
                    render_email(input.template, contact.language, context))
            else:
                detail = await self._sms_to(
                    recipient, brand.sms_sender or self._settings.sms_sender_name, input,
                    fitting_sms(input.template, contact.language, context,
                                self._settings.sms_max_segments))
        except SmsUnsendable as err:
            # Our own text cannot go out (too long even with the reason shortened, or a bad
            # sender id): no fault of the customer's number, which stays deliverable. The
            # profile's history says why no message went, as when there is nowhere to write.
            reason = str(err)[:500]
            async with transaction(self._sessions) as session:
                await crud.insert_ignoring_conflicts(session, KycEvent, [{
                    "client_id": client.id, "contact_id": contact_id,
                    "step": f"{input.step}/skipped", "type": f"{input.template}_skipped",
                    "detail": {"reason": reason, "channel": "sms"}}])
            return SendMessageResult(sent=False, recipient=None, skipped=reason)
        except (EmailRejected, PermanentDeliveryFailure) as refusal:
            # Refused for good: the profile's history and the client's webhooks say so, the
            # registry marks what bounced (no message of any kind goes there again), and the
            # profile goes on (its next message may reach another address).
            channel = Channel.email if point is not None else Channel.sms
            reason, at = str(refusal)[:500], utcnow()
            async with transaction(self._sessions) as session:
                await crud.insert_ignoring_conflicts(session, KycEvent, [{
                    "client_id": client.id, "contact_id": contact_id,
                    "step": f"{input.step}/bounced", "type": f"{input.template}_bounced",
                    "at": at,
                    "detail": {"recipient": recipient, "reason": reason, "channel": channel}}])
                await crud.mark_undeliverable(session, contact_id=contact_id, channel=channel,
                                              recipient=recipient, reason=reason, at=at)
                endpoints = await bounces.announce_kyc_bounce(
                    session, contact_id=contact_id, step=input.step, template=input.template,
                    channel=channel, recipient=recipient, kind=BounceKind.hard, reason=reason,
                    source=BOUNCE_SOURCE[channel], at=at)
            # Only now, committed, may the endpoints' workflows see the event.
            await self._waker.wake(client.id, endpoints, f"{input.step}/bounced")
            return SendMessageResult(sent=False, recipient=recipient, bounced=BounceKind.hard)
        async with transaction(self._sessions) as session:
            await crud.insert_ignoring_conflicts(session, KycEvent, [{
                "client_id": client.id, "contact_id": contact_id, "step": step,
                "type": f"{input.template}_sent", "detail": {"recipient": recipient, **detail}}])
        return SendMessageResult(sent=True, recipient=recipient)

    @staticmethod
    async def _nowhere(session: AsyncSession, contact_id: uuid.UUID) -> str:
        """Why no email address or mobile number may be written to."""
        complained = [p for p in (await crud.known_points(
            session, contact_id=contact_id, deliverable=True)).values() if p.complained_since]
        if complained:
            return consents.complaint_reason(
                min(p.complained_since for p in complained if p.complained_since))
        if await crud.known_points(session, contact_id=contact_id):
            return "no email address or mobile number that did not bounce"
        return "no email address or mobile number"

    async def _email_to(self, address: str, client_name: str, input: SendKycEmailInput,
                        content: RenderedEmail) -> dict[str, str]:
        await self._email.send(OutgoingEmail(
            to=address, content=content, from_name=client_name,
            message_id=message_id(self._settings, f"kyc.{input.contact_id}.{input.step}"),
            headers={"Auto-Submitted": "auto-generated"}))
        return {"channel": "email", "subject": content.subject}

    async def _sms_to(self, number: str, sender: str, input: SendKycEmailInput,
                      text: str) -> dict[str, str]:
        receipt = await self._sms.send(OutgoingSms(
            to=number, sender=sender, text=text,
            idempotency_key=kyc_message_key(input.contact_id, input.step)))
        return {"channel": "sms", "provider_message_id": receipt.provider_message_id}
