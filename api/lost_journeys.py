"""Journeys the database holds open whose workflow is gone: an operator terminated it in the
Temporal UI (or it failed, timed out, or its history was deleted). Nothing would ever end them,
so whoever meets one ends it as cancelled: the customer's page says the request has ended
instead of thanking them for an answer nobody recorded, and erasing the contact is no longer
blocked for ever."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contacts.gdpr import OPEN_JOURNEY
from core.vocabulary import Stage
from db import crud
from db.models import Journey

# These end without running any of the journey's code. A cancelled journey records its end
# before it closes, unless it was cancelled before it learned to (patch `cancel-recorded`).
ENDED_WITHOUT_A_WORD = {WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT,
                        WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.CANCELED}


async def end_if_lost(session: AsyncSession, temporal: TemporalClient, journey: Journey) -> bool:
    """Ends the open journey as cancelled if its workflow is gone; whether it did."""
    try:
        status = (await temporal.get_workflow_handle(journey.workflow_id).describe()).status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        status = None
    if status is not None and status not in ENDED_WITHOUT_A_WORD:
        return False
    now = datetime.now(UTC)
    journey.stage, journey.finished_at = Stage.cancelled, now
    await crud.add_journey_event(
        session, journey=journey, step="workflow-lost", type=Stage.cancelled, at=now,
        detail={"workflow": status.name.lower() if status is not None else "not_found"})
    return True


async def end_lost_journeys_of(session: AsyncSession, temporal: TemporalClient,
                               contact_id: uuid.UUID) -> None:
    for journey in await session.scalars(select(Journey).where(
            Journey.contact_id == contact_id, OPEN_JOURNEY).with_for_update()):
        await end_if_lost(session, temporal, journey)
