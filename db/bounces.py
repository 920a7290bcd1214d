"""Bounces of journey messages: recorded once per message (hard wins over soft) with the
provider's reason, announced as `message.bounced`; a hard one marks the address undeliverable,
a spam complaint marks it (service messages stop there) and ends its marketing opt-ins. A
reported bounce of the client's own message or of a KYC email marks the address the same way,
and is announced as `client_message.bounced` or `kyc.message_bounced`."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import MARKETING_KINDS, BounceKind, EventType
from db import consents, crud
from db.kyc_models import KycEvent
from db.models import Campaign, ClientMessage, Contact, Journey, Message, MessageBounce

REASON_CHARS = 2000


async def record_bounce(session: AsyncSession, *, message: Message, kind: BounceKind,
                        reason: str, source: str, at: datetime
                        ) -> tuple[MessageBounce, list[str]]:
    """Records the bounce (a repeated report finds the first one) and returns it with the
    webhook endpoints to wake after commit."""
    # Reports of one message take turns: a soft and a hard one at once would both be stored.
    await crud.lock(session, key=f"bounce/{message.id}")
    undelivered = (await session.scalars(select(MessageBounce).where(
        MessageBounce.message_id == message.id,
        MessageBounce.kind.in_([BounceKind.hard, BounceKind.soft])))).first()
    if undelivered is not None and kind in (BounceKind.hard, BounceKind.soft):
        # A message bounces once, and hard wins: a late soft report is the hard bounce
        # reported again, a hard one after a soft one is what that deferral came to. Either
        # way the message counts (and escalates) once, as the worse of the two.
        if kind == BounceKind.hard and undelivered.kind == BounceKind.soft:
            undelivered.kind, undelivered.reason = kind, reason[:REASON_CHARS]
            undelivered.source, undelivered.at = source, at
            await session.flush()
        kind = BounceKind(undelivered.kind)
    await crud.insert_ignoring_conflicts(session, MessageBounce, [{
        "client_id": message.client_id, "campaign_id": (await session.get_one(
            Journey, message.journey_id)).campaign_id,
        "journey_id": message.journey_id, "message_id": message.id, "channel": message.channel,
        "recipient": message.recipient, "kind": kind, "reason": reason[:REASON_CHARS],
        "source": source, "at": at}])
    bounce = (await session.scalars(select(MessageBounce).where(
        MessageBounce.message_id == message.id, MessageBounce.kind == kind))).one()
    message.status = "bounced"
    journey = await session.get_one(Journey, message.journey_id)
    contact = await session.get_one(Contact, journey.contact_id)
    campaign = await session.get_one(Campaign, journey.campaign_id)
    if kind == BounceKind.hard:
        await crud.mark_undeliverable(session, contact_id=contact.id, channel=message.channel,
                                      recipient=message.recipient, reason=bounce.reason,
                                      at=bounce.at)
    await crud.add_journey_event(
        session, journey=journey, step=f"{message.step}/bounced-{kind}", type="bounced",
        at=bounce.at, detail={"channel": message.channel, "kind": kind, "step": message.step,
                              "reason": bounce.reason})
    endpoints = await crud.record_webhook_event(
        session, client_id=message.client_id, key=f"bounce/{message.id}/{kind}",
        type=EventType.message_bounced, data={
            "journey_id": str(journey.id),
            "campaign": {"id": str(campaign.id), "name": campaign.name},
            "contact": crud.contact_ref(contact),
            "message": {"step": message.step, "channel": message.channel,
                        "template": message.template, "recipient": message.recipient},
            "kind": kind, "reason": bounce.reason, "source": bounce.source,
            "at": bounce.at.isoformat()})
    if kind == BounceKind.complaint:
        await crud.mark_complained(session, contact_id=contact.id, channel=message.channel,
                                   recipient=message.recipient, at=bounce.at)
        if message.channel == "email":
            endpoints += await _end_marketing_by_email(session, contact, bounce.at,
                                                       f"complaint:{message.step}")
    return bounce, endpoints


async def _end_marketing_by_email(session: AsyncSession, contact: Contact, at: datetime,
                                  shown_in: str) -> list[str]:
    """A spam complaint about an email ends the contact's marketing opt-ins by email."""
    marketing = {p.key for p in (await consents.purposes_by_key(
        session, client_id=contact.client_id)).values() if p.kind in MARKETING_KINDS}
    return await consents.lapse_email_opt_ins(
        session, contact=contact, at=at, shown_in=shown_in,
        actor="spam complaint reported by the email provider", only_purposes=marketing)


async def find_message(session: AsyncSession, *, client_id: uuid.UUID,
                       provider_message_id: str | None = None, journey_id: uuid.UUID | None = None,
                       step: str | None = None) -> Message | None:
    """The client's journey message by the id its provider knows (an email's Message-ID, with
    or without angle brackets, or the SMS/print provider's id), or by journey and step."""
    query = select(Message).where(Message.client_id == client_id)
    if provider_message_id is not None:
        bare = provider_message_id.strip().strip("<>")
        query = query.where(Message.provider_message_id.in_([bare, f"<{bare}>"]))
    else:
        query = query.where(Message.journey_id == journey_id, Message.step == step)
    return (await session.scalars(query.limit(1))).first()


async def campaign_bounces(session: AsyncSession, *, client_id: uuid.UUID,
                           campaign_id: uuid.UUID, kind: str | None = None,
                           channel: str | None = None, after: int | None = None,
                           limit: int = 100) -> list[tuple[MessageBounce, str]]:
    """The campaign's bounces in the order they were recorded, each with its message's step."""
    query = (select(MessageBounce, Message.step)
             .join(Message, Message.id == MessageBounce.message_id)
             .where(MessageBounce.client_id == client_id,
                    MessageBounce.campaign_id == campaign_id)
             .order_by(MessageBounce.id).limit(limit))
    if kind is not None:
        query = query.where(MessageBounce.kind == kind)
    if channel is not None:
        query = query.where(MessageBounce.channel == channel)
    if after is not None:
        query = query.where(MessageBounce.id > after)
    return [(b, step) for b, step in (await session.execute(query)).all()]


@dataclass
class OwnMessage:
    """An email not of a journey that a bounce report names by its Message-ID: the client's
    own (`POST /v1/messages`) or a KYC profile's."""

    contact_id: uuid.UUID
    recipient: str | None
    sent: bool
    client_message: ClientMessage | None = None
    kyc_sent: KycEvent | None = None
    kyc_step: str | None = None


def _local_part(message_id: str) -> str:
    return message_id.strip().strip("<>").rpartition("@")[0]


async def find_own_message(session: AsyncSession, *, client_id: uuid.UUID,
                           message_id: str) -> OwnMessage | None:
    """The client's own message (`<message.<id>@host>`) or KYC email
    (`<kyc.<contact id>.<step>@host>`) the Message-ID names, as our mails write them."""
    local = _local_part(message_id)
    kind, _, rest = local.partition(".")
    if kind == "message":
        try:
            own_id = uuid.UUID(rest)
        except ValueError:
            return None
        message = await session.get(ClientMessage, own_id)
        if message is None or message.client_id != client_id:
            return None
        return OwnMessage(message.contact_id, message.recipient,
                          message.status in ("sent", "bounced"), client_message=message)
    if kind == "kyc":
        contact, _, step = rest.partition(".")
        try:
            contact_id = uuid.UUID(contact)
        except ValueError:
            return None
        sent = (await session.scalars(select(KycEvent).where(
            KycEvent.client_id == client_id, KycEvent.contact_id == contact_id,
            KycEvent.step == f"{step}/email", KycEvent.type.endswith("_sent", autoescape=True)))
        ).one_or_none()
        if sent is None or (sent.detail or {}).get("channel") != "email":
            return None
        return OwnMessage(contact_id, (sent.detail or {}).get("recipient"), True,
                          kyc_sent=sent, kyc_step=step)
    return None


async def record_own_bounce(session: AsyncSession, *, own: OwnMessage, kind: BounceKind,
                            reason: str, at: datetime) -> tuple[BounceKind, str, list[str]]:
    """A reported bounce of the client's own message or a KYC email: a hard one marks the
    address undeliverable, a complaint marks it complained and ends its marketing opt-ins by
    email, as for a journey's message. Hard wins over soft, as there; returns the kind and
    reason kept and the webhook endpoints to wake after commit."""
    assert own.recipient is not None
    key = (f"bounce/message/{own.client_message.id}" if own.client_message
           else f"bounce/kyc/{own.contact_id}/{own.kyc_step}")
    await crud.lock(session, key=key)
    if own.client_message is not None:  # as a report that held the lock before left it
        await session.refresh(own.client_message)
    endpoints: list[str] = []
    reason = reason[:REASON_CHARS]
    if kind in (BounceKind.hard, BounceKind.soft):
        kind, reason = await _own_undelivered(session, own, kind, reason, at)
        if kind == BounceKind.hard:
            await crud.mark_undeliverable(session, contact_id=own.contact_id, channel="email",
                                          recipient=own.recipient, reason=reason, at=at)
    else:
        contact = await session.get_one(Contact, own.contact_id)
        await crud.mark_complained(session, contact_id=contact.id, channel="email",
                                   recipient=own.recipient, at=at)
        shown_in = (f"complaint:message/{own.client_message.id}" if own.client_message
                    else f"complaint:kyc/{own.kyc_step}")
        endpoints += await _end_marketing_by_email(session, contact, at, shown_in)
    if own.client_message is not None:
        endpoints += await announce_client_message_bounce(
            session, message=own.client_message, kind=kind, reason=reason, source="api", at=at)
    else:
        assert own.kyc_sent is not None and own.kyc_step is not None
        endpoints += await announce_kyc_bounce(
            session, contact_id=own.contact_id, step=own.kyc_step,
            template=own.kyc_sent.type.removesuffix("_sent"), channel="email",
            recipient=own.recipient, kind=kind, reason=reason, source="api", at=at)
    return kind, reason, endpoints


async def announce_client_message_bounce(session: AsyncSession, *, message: ClientMessage,
                                         kind: BounceKind, reason: str, source: str,
                                         at: datetime) -> list[str]:
    """Raises `client_message.bounced` once per message and kind kept (a report repeated, or a
    late soft one after the hard, raises nothing new); returns the endpoints to wake after
    commit. The client sent the message itself, so it hears of its bounce as it does of its
    journeys' ones."""
    assert message.recipient is not None
    return await _announce(
        session, type=EventType.client_message_bounced, key=f"bounce/message/{message.id}/{kind}",
        contact_id=message.contact_id, message={
            "id": str(message.id), "message_type": message.message_type,
            "channel": message.channel, "recipient": message.recipient},
        kind=kind, reason=reason, source=source, at=at)


async def announce_kyc_bounce(session: AsyncSession, *, contact_id: uuid.UUID, step: str,
                              template: str, channel: str, recipient: str, kind: BounceKind,
                              reason: str, source: str, at: datetime) -> list[str]:
    """Raises `kyc.message_bounced` once per message and kind kept, as for the client's own
    message; returns the endpoints to wake after commit. The profile writes on the client's
    behalf, and a client relying on it to reach its customer must hear when it did not."""
    return await _announce(
        session, type=EventType.kyc_message_bounced, key=f"bounce/kyc/{contact_id}/{step}/{kind}",
        contact_id=contact_id, message={"step": step, "template": template, "channel": channel,
                                        "recipient": recipient},
        kind=kind, reason=reason, source=source, at=at)


async def _announce(session: AsyncSession, *, type: EventType, key: str,
                    contact_id: uuid.UUID, message: dict[str, str], kind: BounceKind,
                    reason: str, source: str, at: datetime) -> list[str]:
    """A bounce of a message of no journey, told as `message.bounced` tells a journey's."""
    contact = await session.get_one(Contact, contact_id)
    return await crud.record_webhook_event(
        session, client_id=contact.client_id, key=key, type=type, data={
            "message": message, "contact": crud.contact_ref(contact), "kind": kind,
            "reason": reason, "source": source, "at": at.isoformat()})


async def _own_undelivered(session: AsyncSession, own: OwnMessage, kind: BounceKind,
                           reason: str, at: datetime) -> tuple[BounceKind, str]:
    """Records that the message did not arrive, once, the worse kind winning; returns the
    kind and reason kept."""
    if own.client_message is not None:
        message = own.client_message
        if message.status == "bounced":
            kept, _, kept_reason = (message.status_reason or "").partition(" bounce: ")
            if kept == BounceKind.hard or kind == BounceKind.soft:
                return BounceKind(kept if kept == BounceKind.soft else BounceKind.hard), kept_reason
        message.status, message.decided_at = "bounced", at
        message.status_reason = f"{kind} bounce: {reason}"[:300]
        return kind, reason
    assert own.kyc_sent is not None and own.kyc_step is not None
    step = f"{own.kyc_step}/bounced"
    earlier = (await session.scalars(select(KycEvent).where(
        KycEvent.contact_id == own.contact_id, KycEvent.step == step))).one_or_none()
    detail = {"recipient": own.recipient, "reason": reason, "channel": "email", "kind": kind,
              "source": "api"}
    if earlier is None:
        session.add(KycEvent(client_id=own.kyc_sent.client_id, contact_id=own.contact_id,
                             step=step, type=own.kyc_sent.type.removesuffix("_sent") + "_bounced",
                             at=at, detail=detail))
        await session.flush()
        return kind, reason
    kept = earlier.detail or {}
    if kept.get("kind") == BounceKind.soft and kind == BounceKind.hard:
        earlier.detail, earlier.at = detail, at
        return kind, reason
    return BounceKind(kept.get("kind") or BounceKind.hard), kept.get("reason") or reason
