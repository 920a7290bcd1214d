"""The audit trail: who read or changed which contact and when, old and new values of changes."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import ActorType, AuditAction
from db import crud
from db.models import AuditEntry, utcnow


@dataclass(frozen=True)
class Actor:
    type: ActorType
    id: str


def customer_actor(journey: Any) -> Actor:
    """The customer acting on the page of one journey (the link is all that identifies them)."""
    return Actor(ActorType.customer, f"journey:{journey.id}")


def jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


async def record(
    session: AsyncSession, *, client_id: uuid.UUID, actor: Actor, action: AuditAction,
    contact_ids: list[uuid.UUID], detail: dict[str, Any] | None = None,
) -> None:
    """One entry per contact (a list read is a read of each contact on the page)."""
    if not contact_ids:
        return
    at = utcnow()
    await crud.bulk_insert(session, AuditEntry, [
        {"client_id": client_id, "at": at, "actor_type": actor.type, "actor_id": actor.id,
         "action": action, "contact_id": cid, "detail": detail} for cid in contact_ids])


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"old", "new"}} for each field of `new` whose value differs from `old`."""
    return {f: {"old": jsonable(old.get(f)), "new": jsonable(v)}
            for f, v in new.items() if old.get(f) != v}
