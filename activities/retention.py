"""Deletes data customers entered but never verified, from journeys that ended without it being
verified, once they ended longer ago than the client allows. Verified data and the consent
ledger (the proof of what was decided) are kept. Also deletes the answers kept for
Idempotency-Keys older than IDEMPOTENCY_KEY_RETENTION (a contact's create holds its data)."""

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.contracts import PurgeInput, PurgeResult
from core.settings import Settings
from core.vocabulary import FINAL_STAGES, Stage
from db import crud
from db.models import Client, IdempotentRequest, Journey
from db.session import transaction

# A journey still open needs what its customer typed: its verification link and code check it,
# and its reminders go to it. `updated_at` is no measure of its use (a reminder that leaves the
# stage as it is writes no journey row), so only an ended journey is purged, counted from its end.
ENDED_UNVERIFIED = sorted(FINAL_STAGES - {Stage.verified})


class Retention:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def purge_unverified(self, input: PurgeInput) -> PurgeResult:
        purged = 0
        async with transaction(self._sessions) as session:
            for client in await session.scalars(select(Client)):
                cutoff = input.now - timedelta(days=client.unverified_retention_days)
                journeys = await session.scalars(select(Journey).where(
                    Journey.client_id == client.id, Journey.stage.in_(ENDED_UNVERIFIED),
                    Journey.collected.is_not(None),
                    func.coalesce(Journey.finished_at, Journey.updated_at) < cutoff))
                for journey in journeys:
                    journey.collected = None
                    await crud.add_journey_event(
                        session, journey=journey, step=f"purged-{input.now.date()}",
                        type="unverified_data_purged", at=input.now,
                        detail={"retention_days": client.unverified_retention_days})
                    purged += 1
        async with transaction(self._sessions) as session:
            keys = await session.execute(delete(IdempotentRequest).where(
                IdempotentRequest.created_at
                < input.now - self._settings.idempotency_key_retention))
        return PurgeResult(journeys_purged=purged, idempotency_keys_purged=keys.rowcount)
