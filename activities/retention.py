"""Deletes data customers entered but never verified, once it is older than the client allows.
Verified data and the consent ledger (the proof of what was decided) are kept."""

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.contracts import PurgeInput, PurgeResult
from core.vocabulary import Stage
from db import crud
from db.models import Client, Journey
from db.session import transaction


class Retention:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn
    async def purge_unverified(self, input: PurgeInput) -> PurgeResult:
        purged = 0
        async with transaction(self._sessions) as session:
            for client in await session.scalars(select(Client)):
                cutoff = input.now - timedelta(days=client.unverified_retention_days)
                journeys = await session.scalars(select(Journey).where(
                    Journey.client_id == client.id, Journey.stage != Stage.verified,
                    Journey.collected.is_not(None), Journey.updated_at < cutoff))
                for journey in journeys:
                    journey.collected = None
                    await crud.add_journey_event(
                        session, journey=journey, step=f"purged-{input.now.date()}",
                        type="unverified_data_purged", at=input.now,
                        detail={"retention_days": client.unverified_retention_days})
                    purged += 1
        return PurgeResult(journeys_purged=purged)
