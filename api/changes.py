"""Changes of a client's settings (a campaign's, its contact settings): each kept with who made
it and announced by webhook in the transaction that makes it; one that changes nothing leaves no
trace."""

from typing import Any

from api.deps import AppState
from api.schemas import ChangeOut
from core.vocabulary import EventType
from db import crud
from db.models import SettingsChange


async def commit_settings_change(session, state: AppState, change: SettingsChange, *,
                                 type: EventType, data: dict[str, Any]) -> None:
    """Commits the session, keeping `change` and raising `type` with `data` and the change as
    the changes list shows it (`id`, `at`, `actor`, `changes`), unless it changes nothing."""
    endpoints = []
    if change.changes:
        session.add(change)
        await session.flush()
        endpoints = await crud.record_webhook_event(
            session, client_id=change.client_id, key=f"{change.__tablename__}/{change.id}",
            type=type, data={**data, **ChangeOut.of(change).model_dump(mode="json")})
    await session.commit()
    await state.endpoints.wake(change.client_id, endpoints, type)
