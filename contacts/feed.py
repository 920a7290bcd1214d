"""A contact's activity feed: every business event (journey stages, messages, consents, data
changes, KYC profile changes) in chronological order, read page by page from the records that
hold them."""

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas import MAX_INT4
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
from db.kyc_models import KycEvent

FEED_TYPES = ("journey", "message", "consent", "data", "kyc")
NOT_BUSINESS_EVENTS = (AuditAction.read, AuditAction.lookup, AuditAction.export)

# Where an item stands in the feed: its time, then its source's place in SOURCES and its id
# there, so that items of the same moment keep one order from page to page.
Position = tuple[datetime, int, int | uuid.UUID]


class BadCursor(ValueError):
    def __init__(self) -> None:
        super().__init__("not a next_cursor of this feed; start again without a cursor")


@dataclass(frozen=True)
class Source:
    family: str
    model: Any
    at: Callable[[], ColumnElement[datetime]]
    mine: Callable[[Contact, list[uuid.UUID]], ColumnElement[bool]]
    # The item a row stands for: its time (as `at` computes it), type and detail.
    item: Callable[[Any, dict[uuid.UUID, Journey]], ActivityOut]


def _journey_event(e: JourneyEvent, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    return ActivityOut(type=f"journey.{e.type}", at=e.at, detail={
        "journey_id": str(e.journey_id), "campaign_id": str(journeys[e.journey_id].campaign_id)})


def _message(m: Message, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    return ActivityOut(type=f"message.{m.status}", at=m.sent_at or m.created_at, detail={
        "journey_id": str(m.journey_id), "channel": m.channel, "template": m.template})


def _client_message(m: ClientMessage, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    return ActivityOut(type=f"message.{m.status}", at=m.decided_at or m.created_at, detail={
        "message_type": m.message_type, "channel": m.channel, "reason": m.status_reason})


def _consent(c: ConsentEvent, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    return ActivityOut(type=f"consent.{'granted' if c.granted else 'withdrawn'}", at=c.given_at,
                       detail={"purpose": c.purpose, "channel": c.channel, "source": c.source})


def _data(a: AuditEntry, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    detail = a.detail or {}
    return ActivityOut(type=f"data.{a.action}", at=a.at, detail={
        "actor_type": a.actor_type, "actor_id": a.actor_id,
        "fields": sorted(detail.get("changes", {})) or detail.get("fields", [])})


# A KYC profile's history holds its messages too, as `<template>_<outcome>` (kyc_verified_sent):
# those are the feed's messages, the rest its changes of state.
KYC_MESSAGE_OUTCOMES = ("sent", "bounced", "skipped")
# Named in the feed as the webhook announcing it names it (kyc.expiring).
KYC_FEED_TYPES = {"reminded": "expiring"}


def _kyc_sent() -> ColumnElement[bool]:
    return or_(*(KycEvent.type.endswith(f"_{outcome}", autoescape=True)
                 for outcome in KYC_MESSAGE_OUTCOMES))


def _kyc_message(e: KycEvent, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    template, _, outcome = e.type.rpartition("_")
    detail = e.detail or {}
    return ActivityOut(type=f"message.{outcome}", at=e.at, detail={
        "kyc": True, "channel": detail.get("channel"), "template": template,
        **({"reason": detail.get("reason")} if outcome != "sent" else {})})


def _kyc(e: KycEvent, journeys: dict[uuid.UUID, Journey]) -> ActivityOut:
    detail = e.detail or {}
    return ActivityOut(type=f"kyc.{KYC_FEED_TYPES.get(e.type, e.type)}", at=e.at, detail={
        "state": detail.get("state"),
        "definition_id": (detail.get("definition") or {}).get("id"),
        "expires_at": detail.get("expires_at")})


# New sources go last: a cursor names its source by its place here.
SOURCES = (
    Source("journey", JourneyEvent, lambda: JourneyEvent.at,
           lambda c, journeys: JourneyEvent.journey_id.in_(journeys), _journey_event),
    Source("message", Message, lambda: func.coalesce(Message.sent_at, Message.created_at),
           lambda c, journeys: Message.journey_id.in_(journeys), _message),
    Source("message", ClientMessage,
           lambda: func.coalesce(ClientMessage.decided_at, ClientMessage.created_at),
           lambda c, journeys: ClientMessage.contact_id == c.id, _client_message),
    Source("consent", ConsentEvent, lambda: ConsentEvent.given_at,
           lambda c, journeys: ConsentEvent.contact_id == c.id, _consent),
    Source("data", AuditEntry, lambda: AuditEntry.at,
           lambda c, journeys: and_(AuditEntry.client_id == c.client_id,
                                    AuditEntry.contact_id == c.id,
                                    AuditEntry.action.not_in(NOT_BUSINESS_EVENTS)), _data),
    Source("message", KycEvent, lambda: KycEvent.at,
           lambda c, journeys: and_(KycEvent.contact_id == c.id, _kyc_sent()),
           _kyc_message),
    Source("kyc", KycEvent, lambda: KycEvent.at,
           lambda c, journeys: and_(KycEvent.contact_id == c.id, ~_kyc_sent()), _kyc),
)


def _past(after: Position, index: int, source: Source) -> ColumnElement[bool]:
    """The source's items after the position, in the order (time, source, id)."""
    at, after_index, after_id = after
    if index < after_index:
        return source.at() > at
    if index > after_index:
        return source.at() >= at
    return or_(source.at() > at, and_(source.at() == at, source.model.id > after_id))


def encode_cursor(position: Position) -> str:
    at, index, id_ = position
    raw = json.dumps([at.isoformat(), index, str(id_)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        at, index, id_ = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if type(index) is not int or not 0 <= index < len(SOURCES):
            raise BadCursor()
        kind = SOURCES[index].model.id.type.python_type
        position = datetime.fromisoformat(at), index, kind(id_)
        # A time must be one the database can compare in UTC (not year 1 at +01:00), and a
        # numeric id one its column can hold.
        position[0].astimezone(UTC)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as err:
        raise BadCursor() from err
    if position[0].tzinfo is None or (kind is int and not 0 <= position[2] <= MAX_INT4):
        raise BadCursor()
    return position


async def feed(session: AsyncSession, contact: Contact, *, types: list[str] | None = None,
               since: datetime | None = None, after: Position | None = None, limit: int = 100,
               ) -> tuple[list[ActivityOut], Position | None]:
    """A page of the feed after the position (from the start without one), and the position
    of its last item when more follow."""
    wanted = set(types or FEED_TYPES)
    journeys = {j.id: j for j in await session.scalars(
        select(Journey).where(Journey.contact_id == contact.id))}
    found: list[tuple[Position, ActivityOut]] = []
    for index, source in enumerate(SOURCES):
        if source.family not in wanted:
            continue
        query = select(source.model).where(source.mine(contact, list(journeys)))
        if since is not None:
            query = query.where(source.at() >= since)
        if after is not None:
            query = query.where(_past(after, index, source))
        # limit + 1 of each source: the page's items and the one that tells more follow are
        # among them, whichever sources they come from.
        for row in await session.scalars(query.order_by(source.at(), source.model.id)
                                         .limit(limit + 1)):
            item = source.item(row, journeys)
            found.append(((item.at, index, row.id), item))
    found.sort(key=lambda entry: entry[0])
    page = found[:limit]
    return [item for _, item in page], page[-1][0] if len(found) > limit else None
