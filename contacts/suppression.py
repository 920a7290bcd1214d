"""Erasure that sticks. When a contact is anonymised or terminated, only a keyed digest of each
of its emails and phone numbers stays in the client's suppression list. A later import, API
call or campaign that brings the same value back is recognised: the contact point shows as
suppressed with the reason, client-asserted marketing consent for it is refused, and marketing
to it is not sent — until the customer opts in again themselves. The list never reveals the
data: only someone who already knows an address can find that it is suppressed."""

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.security import keyed_digest
from core.vocabulary import Channel, ConsentSource, ContactPointKind
from db import crud
from db.models import POINT_IN_USE, Contact, ContactPoint, Suppression

# Consent the customer gave themselves, on our page or by SMS keyword; everything else is the
# client's assertion, which cannot undo an erasure.
CUSTOMER_SOURCES = frozenset({ConsentSource.contact_page, ConsentSource.message_link,
                              ConsentSource.sms_keyword})
# The contact points a consent for a channel is about.
CHANNEL_POINTS = {
    Channel.email: (ContactPointKind.email,),
    Channel.sms: (ContactPointKind.mobile,),
    Channel.phone: (ContactPointKind.mobile, ContactPointKind.phone),
    Channel.any: tuple(ContactPointKind),
}


def family(point_kind: str) -> str:
    # A number is the same person's whether filed as mobile or landline.
    return "email" if point_kind == ContactPointKind.email else "phone"


def digest(secret_key: str, point_kind: str, value: str) -> str:
    canonical = value.strip().lower() if point_kind == ContactPointKind.email else value.strip()
    return keyed_digest(secret_key, b"suppression", f"{family(point_kind)}:{canonical}")


async def suppress(session: AsyncSession, *, secret_key: str, client_id: uuid.UUID,
                   contact_id: uuid.UUID, reason: str) -> None:
    """Files the contact's emails and phones before they are erased, but not one another live
    contact of the client still holds (a shared household address, a second record): that
    value is not erased from the registry, and its holder's consents and messages must not
    pay for someone else's erasure; it is filed when the last contact holding it goes. A value
    already on the list keeps its first reason and date."""
    points = list(await session.scalars(select(ContactPoint).where(
        ContactPoint.contact_id == contact_id)))
    if not points:
        return
    held = await session.execute(
        select(ContactPoint.kind, ContactPoint.value)
        .join(Contact, Contact.id == ContactPoint.contact_id)
        .where(ContactPoint.client_id == client_id, ContactPoint.contact_id != contact_id,
               POINT_IN_USE, Contact.anonymised_at.is_(None),
               func.lower(ContactPoint.value).in_({p.value.strip().lower() for p in points})))
    kept = {digest(secret_key, kind, value) for kind, value in held}
    rows = {digest(secret_key, p.kind, p.value): {
        "id": uuid.uuid4(), "client_id": client_id, "kind": family(p.kind), "reason": reason,
        "digest": digest(secret_key, p.kind, p.value)} for p in points}
    await crud.insert_ignoring_conflicts(
        session, Suppression, [row for key, row in rows.items() if key not in kept])


async def lookup(session: AsyncSession, *, secret_key: str, client_id: uuid.UUID,
                 points: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Suppression]:
    """The suppression entry of each (kind, value) that has one."""
    by_digest = {digest(secret_key, kind, value): (kind, value) for kind, value in points}
    if not by_digest:
        return {}
    found = await session.scalars(select(Suppression).where(
        Suppression.client_id == client_id, Suppression.digest.in_(by_digest)))
    return {by_digest[s.digest]: s for s in found}


async def of_contact(session: AsyncSession, *, secret_key: str, client_id: uuid.UUID,
                     contact_id: uuid.UUID, channel: str) -> Suppression | None:
    """The oldest suppression among the contact's points that a consent or message on the
    channel concerns."""
    points = await session.execute(select(ContactPoint.kind, ContactPoint.value).where(
        ContactPoint.contact_id == contact_id,
        ContactPoint.kind.in_(CHANNEL_POINTS.get(channel, ()))))
    found = await lookup(session, secret_key=secret_key, client_id=client_id,
                         points=[tuple(p) for p in points])
    return min(found.values(), key=lambda s: s.created_at, default=None)


def describe(entry: Suppression) -> str:
    return f"suppressed: this {entry.kind} was erased ({entry.reason} on " \
           f"{entry.created_at.date().isoformat()})"


def lifted_by(entry: Suppression, source: str, given_at: datetime) -> bool:
    """Only the customer's own opt-in after the erasure brings them back into marketing."""
    return source in CUSTOMER_SOURCES and given_at > entry.created_at
