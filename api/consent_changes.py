"""Appends customer decisions to the ledger and raises `consent.changed` for each, in the same
transaction; shared by the back-office API, the preference centre, unsubscribe and SMS STOP."""


from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import EventType
from db import consents, crud
from db.models import ConsentEvent, Contact


async def record(session: AsyncSession, *, contact: Contact, decisions: list[consents.Decision]
                 ) -> tuple[list[ConsentEvent], list[str]]:
    """Returns the new ledger events and the webhook deliveries to dispatch once the
    transaction has committed."""
    if not decisions:
        return [], []
    events = await consents.append(session, client_id=contact.client_id, contact_id=contact.id,
                                   decisions=decisions)
    deliveries: list[str] = []
    for event in events:
        deliveries += await crud.record_webhook_event(
            session, client_id=contact.client_id, key=f"consent/{event.id}",
            type=EventType.consent_changed,
            data={"contact": crud.contact_ref(contact), "consent": consents.event_as_dict(event)})
    return events, deliveries


def changed(current: dict, purpose: str, channel: str, granted: bool) -> bool:
    """Whether a decision changes anything: repeating the current state adds no ledger entry."""
    decision = current.get((purpose, channel))
    return decision is None or decision.granted != granted
