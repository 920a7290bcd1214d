"""The client withdrawing journeys: one through the API, a contact's open ones before its
erasure, a cancelled launch's (activities.campaign_launch). Each ends as `cancelled` with
history detail `{"by": "client", "reason": ...}`, and its page says the client withdrew it."""

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from api.lost_journeys import end_if_lost
from contacts.gdpr import OPEN_JOURNEY
from core.contracts import WithdrawInput
from core.vocabulary import FINAL_STAGES, Stage
from db import crud
from db.models import Journey, utcnow
from workflows.journey import JourneyWorkflow

OPEN_STAGES = [s.value for s in Stage if s not in FINAL_STAGES]
# How long a request waits for a withdrawn journey to record its end: one workflow task and
# one short activity, unless the worker is down.
RECORDED_WITHIN = timedelta(seconds=10)
# Reasons, as the history detail says them.
BY_API = "journey_cancelled"
FOR_ERASURE = "contact_erasure"


async def withdraw(handle: WorkflowHandle, reason: str) -> None:
    # Told first, the journey records its cancellation as the client's: the customer's page
    # says the client withdrew the request, which after an operator's it does not.
    await handle.signal(JourneyWorkflow.withdraw, WithdrawInput(reason))
    await handle.cancel()


async def mark_cancelled(session: AsyncSession, journey_ids: list[uuid.UUID]) -> None:
    """Most journeys record their cancellation themselves; this catches the others (those
    that never began, or began before journeys did so)."""
    await session.execute(update(Journey).where(
        crud.among(session, Journey.id, journey_ids), Journey.stage.in_(OPEN_STAGES))
        .values(stage=Stage.cancelled, finished_at=utcnow()))


async def cancel(session: AsyncSession, temporal: TemporalClient, journey: Journey,
                 reason: str) -> None:
    """Ends the open journey as withdrawn by the client and waits until it is recorded, so
    the caller reads it ended (and may erase its contact). One whose workflow is gone is ended
    as lost. The caller commits; it must hold no lock the journey's own writes need."""
    if await end_if_lost(session, temporal, journey):
        return
    handle = temporal.get_workflow_handle(journey.workflow_id)
    try:
        await withdraw(handle, reason)
        await asyncio.wait_for(handle.result(), RECORDED_WITHIN.total_seconds())
    except (RPCError, WorkflowFailureError):
        pass  # ended, by this cancellation or on its own meanwhile: its stage says how
    except TimeoutError:
        return  # still recording: the journey reads open until it has
    await mark_cancelled(session, [journey.id])
    await session.refresh(journey)


async def cancel_open_journeys(session: AsyncSession, temporal: TemporalClient,
                               contact_id: uuid.UUID, reason: str) -> None:
    """Withdraws every open journey of the contact, one after the other."""
    for journey in list(await session.scalars(select(Journey).where(
            Journey.contact_id == contact_id, OPEN_JOURNEY))):
        await cancel(session, temporal, journey, reason)
