"""Journeys the database holds open whose workflow is gone: an operator terminated it in the
Temporal UI (or it failed, timed out, or its history was deleted). Nothing would ever end them,
so whoever meets one ends it as cancelled (history detail and webhook `journey.cancelled`'s
`{"by": "system", "reason": "workflow_gone", "workflow": how}`): the customer's page says the request
has ended instead of thanking them for an answer nobody recorded, erasing the contact is no
longer blocked for ever, and enrolling the contact again starts a new journey in its place."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TypeGuard

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient

from api.lost_workflows import how_lost
from contacts.gdpr import OPEN_JOURNEY
from activities.webhooks import EndpointWaker
from core.vocabulary import FINAL_STAGES, CancelledBy, Stage
from db import crud
from db.models import Campaign, Contact, Journey, JourneyEvent
from db.session import after_commit

LOST = "workflow-lost"  # the history step of a journey ended here
WORKFLOW_GONE = "workflow_gone"  # its reason, as the webhook's detail says it
DESCRIBES_IN_FLIGHT = 50


async def _end(session: AsyncSession, waker: EndpointWaker, journey: Journey, how: str) -> None:
    now = datetime.now(UTC)
    journey.stage, journey.finished_at = Stage.cancelled, now
    # Its history says who ended it, as every other cancellation's does and as the webhook says.
    detail = {"by": CancelledBy.system, "reason": WORKFLOW_GONE, "workflow": how}
    await crud.add_journey_event(session, journey=journey, step=LOST, type=Stage.cancelled,
                                 at=now, detail=detail)
    # Nobody else tells the client: the workflow that would have is gone.
    endpoints = await crud.announce_end(
        session, journey=journey, campaign=await session.get_one(Campaign, journey.campaign_id),
        contact=await session.get_one(Contact, journey.contact_id), step=LOST, detail=detail)
    if endpoints:
        after_commit(session, lambda: waker.wake(journey.client_id, endpoints, LOST))


def lost(how: str | None, journey: Journey) -> TypeGuard[str]:
    """Whether the journey is lost, its workflow gone as `how` (`how_lost`) says. One still
    `enrolled` without a workflow is not: the request or launch batch that wrote it starts it
    after its commit, and enrolling it again starts it too."""
    return how is not None and (how != "not_found" or journey.stage != Stage.enrolled)


async def end_if_lost(session: AsyncSession, temporal: TemporalClient, waker: EndpointWaker,
                      journey: Journey) -> bool:
    """Ends the open journey as cancelled if its workflow is gone; whether it did."""
    how = await how_lost(temporal, journey.workflow_id)
    if not lost(how, journey):
        return False
    await _end(session, waker, journey, how)
    return True


async def end_lost_journeys_of(session: AsyncSession, temporal: TemporalClient,
                               waker: EndpointWaker, contact_id: uuid.UUID) -> None:
    # A journey a worker holds locked is alive, not lost; waiting for it would deadlock with
    # the worker, whose writes then wait for the contact this request has locked.
    for journey in await session.scalars(select(Journey).where(
            Journey.contact_id == contact_id, OPEN_JOURNEY).with_for_update(skip_locked=True)):
        await end_if_lost(session, temporal, waker, journey)


async def end_lost_among(session: AsyncSession, temporal: TemporalClient, waker: EndpointWaker,
                         journey_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Ends those of the journeys that are open and whose workflow is gone, a bounded number
    of workflows described at a time; returns the ones it ended. Enrolment asks this only of
    the journeys that would refuse their contact, so a launch into a fresh selection describes
    nothing."""
    if not journey_ids:
        return set()
    # Locked: two enrolments meeting the same lost journey end it once.
    journeys = list(await session.scalars(select(Journey).where(
        crud.among(session, Journey.id, journey_ids), OPEN_JOURNEY
    ).with_for_update().execution_options(populate_existing=True)))
    gate = asyncio.Semaphore(DESCRIBES_IN_FLIGHT)

    async def how(journey: Journey) -> str | None:
        async with gate:
            return await how_lost(temporal, journey.workflow_id)
    ended = set()
    for journey, gone in zip(journeys, await asyncio.gather(*map(how, journeys))):
        if lost(gone, journey):
            await _end(session, waker, journey, gone)
            ended.add(journey.id)
    return ended


async def lost_among(session: AsyncSession, temporal: TemporalClient, waker: EndpointWaker,
                     journeys: list[Journey], *, skip_launch: uuid.UUID | None = None
                     ) -> set[uuid.UUID]:
    """Those of a campaign's journeys that are lost, ended so earlier or found so now: they no
    longer hold their contact's place. Only the open ones are looked up in Temporal, and not
    those of `skip_launch` (the launch asking: its earlier try of the batch wrote them)."""
    return (await ended_lost(session, journeys)
            | await end_lost_among(session, temporal, waker, [
                j.id for j in journeys if j.stage not in FINAL_STAGES
                and (skip_launch is None or j.launch_id != skip_launch)]))


async def ended_lost(session: AsyncSession, journeys: list[Journey]) -> set[uuid.UUID]:
    """Those of the journeys ended here: they no longer count as the contact's journey in the
    campaign, unlike one the client or an operator cancelled (asked once per campaign)."""
    cancelled = [j.id for j in journeys if j.stage == Stage.cancelled]
    if not cancelled:
        return set()
    return set(await session.scalars(select(JourneyEvent.journey_id).where(
        crud.among(session, JourneyEvent.journey_id, cancelled), JourneyEvent.step == LOST)))
