"""A contact's activity feed: every business event (journey stages, messages, consents, data
changes) in chronological order, read from the records that hold them."""

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contacts.schemas import ActivityOut
from core.vocabulary import AuditAction
from db.models import (
    AuditEntry,
    ClientMessage,
    ConsentEvent,
    Contact,
    Journey,
    JourneyEvent,
    Message,
)

FEED_TYPES = ("journey", "message", "consent", "data")
NOT_BUSINESS_EVENTS = (AuditAction.read, AuditAction.lookup, AuditAction.export)


async def feed(session: AsyncSession, contact: Contact, *, types: list[str] | None = None,
               since: datetime | None = None, limit: int = 500) -> list[ActivityOut]:
    wanted = set(types or FEED_TYPES)
    items: list[ActivityOut] = []

    def add(type_: str, at: datetime, detail: dict[str, Any]) -> None:
        if type_.split(".")[0] in wanted and (since is None or at >= since):
            items.append(ActivityOut(type=type_, at=at, detail=detail))

    journeys = {j.id: j for j in await session.scalars(
        select(Journey).where(Journey.contact_id == contact.id))}
    for e in await session.scalars(select(JourneyEvent).where(
            JourneyEvent.journey_id.in_(list(journeys)))):
        add(f"journey.{e.type}", e.at, {"journey_id": str(e.journey_id),
                                        "campaign_id": str(journeys[e.journey_id].campaign_id)})
    for m in await session.scalars(select(Message).where(Message.journey_id.in_(list(journeys)))):
        add(f"message.{m.status}", m.sent_at or m.created_at, {
            "journey_id": str(m.journey_id), "channel": m.channel, "template": m.template})
    for m in await session.scalars(select(ClientMessage).where(
            ClientMessage.contact_id == contact.id)):
        add(f"message.{m.status}", m.decided_at or m.created_at, {
            "message_type": m.message_type, "channel": m.channel, "reason": m.status_reason})
    for c in await session.scalars(select(ConsentEvent).where(
            ConsentEvent.contact_id == contact.id)):
        add(f"consent.{'granted' if c.granted else 'withdrawn'}", c.given_at, {
            "purpose": c.purpose, "channel": c.channel, "source": c.source})
    for a in await session.scalars(select(AuditEntry).where(
            AuditEntry.client_id == contact.client_id, AuditEntry.contact_id == contact.id,
            AuditEntry.action.not_in(NOT_BUSINESS_EVENTS))):
        detail = a.detail or {}
        add(f"data.{a.action}", a.at, {
            "actor_type": a.actor_type, "actor_id": a.actor_id,
            "fields": sorted(detail.get("changes", {})) or detail.get("fields", [])})
    items.sort(key=lambda i: i.at)
    return items[:limit]
