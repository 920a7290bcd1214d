"""The sweep's activity: deletes from Temporal the workflow histories of contacts erased
before a moment, a batch at a time, and then their rows."""

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client as TemporalClient

from contacts import histories
from core.contracts import ForgetHistoriesBatchInput, ForgetHistoriesResult
from db.models import HistoryErasure, utcnow
from db.session import transaction


class HistoryEraser:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 temporal: TemporalClient) -> None:
        self._sessions = sessions
        self._temporal = temporal

    @activity.defn
    async def forget_erased_histories(self, input: ForgetHistoriesBatchInput
                                      ) -> ForgetHistoriesResult:
        """Idempotent: a retry lists again what is left, and a row goes only once its
        histories have. A contact erased again meanwhile keeps its row for the next sweep, and
        so does one whose KYC profile has not yet forgotten (busy sending a message), from
        now on, so that this sweep's next batch does not take it again."""
        async with transaction(self._sessions) as session:
            erased = (await session.execute(
                select(HistoryErasure.contact_id, HistoryErasure.deleted)
                .where(HistoryErasure.erased_at <= input.erased_before)
                .order_by(HistoryErasure.erased_at, HistoryErasure.contact_id)
                .limit(input.batch_size))).all()
        done = await histories.delete_histories(self._temporal, [tuple(row) for row in erased])
        async with transaction(self._sessions) as session:
            await session.execute(delete(HistoryErasure).where(
                HistoryErasure.contact_id.in_([contact_id for contact_id, _ in erased
                                               if contact_id not in done.unfinished]),
                HistoryErasure.erased_at <= input.erased_before))
            if done.unfinished:
                await session.execute(update(HistoryErasure).where(
                    HistoryErasure.contact_id.in_(done.unfinished)).values(erased_at=utcnow()))
        return ForgetHistoriesResult(contacts=len(erased), workflows=done.workflows)
