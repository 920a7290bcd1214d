"""The client withdrawing journeys: one through the API, a contact's open ones before its
erasure, a cancelled launch's and an archived campaign's (activities.campaign_launch). Each ends
as `cancelled` with history detail `{"by": "client", "reason": ...}` (webhook
`journey.cancelled`, raised here for those cancelled in the database only), and its page says
the client withdrew it."""

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.webhooks import EndpointWaker
from api.lost_journeys import end_if_lost
from contacts.gdpr import OPEN_JOURNEY
from core.contracts import WithdrawInput
from core.vocabulary import FINAL_STAGES, CancelledBy, Stage
from db import crud
from db.models import Campaign, Contact, Journey, JourneyEvent, LinkToken, Message, utcnow
from db.session import after_commit
from workflows.journey import JourneyWorkflow

OPEN_STAGES = [s.value for s in Stage if s not in FINAL_STAGES]
# How long a request waits for a withdrawn journey to record its end: one workflow task and
# one short activity, unless the worker is down.
RECORDED_WITHIN = timedelta(seconds=10)
STARTING_POLL = timedelta(milliseconds=100)
# Reasons, as the history detail says them.
BY_API = "journey_cancelled"
FOR_ERASURE = "contact_erasure"
LAUNCH_CANCELLED = "launch_cancelled"
CAMPAIGN_ARCHIVED = "campaign_archived"
# A re-consent request that a newer one (another re-consent campaign run) replaced.
SUPERSEDED_BY_RECONSENT = "superseded_by_reconsent"
# The history step a journey records its cancellation under.
CANCELLED_STEP = "cancelled"


async def withdraw(handle: WorkflowHandle, reason: str) -> None:
    # Told first, the journey records its cancellation as the client's: the customer's page
    # says the client withdrew the request, which after an operator's it does not.
    await handle.signal(JourneyWorkflow.withdraw, WithdrawInput(reason))
    await handle.cancel()


# The step of the links GET /v1/contacts/{id}/enrichment-link issues.
ENRICHMENT = "enrichment/"


async def withdraw_unreached(session: AsyncSession, waker: EndpointWaker,
                             journeys: ColumnElement[bool], reason: str) -> list[uuid.UUID]:
    """Cancels, in the database, those of the journeys that have reached nobody yet (still
    `enrolled`, no message on its way); returns them. A send checks the stage under the
    journey's lock, so none of them sends once this has committed, though their workflows are
    cancelled only after (`withdraw`), which then changes nothing (the first end wins)."""
    now = utcnow()
    unreached = [journeys, Journey.stage == Stage.enrolled]
    # Locked first, so a send that passed its check meanwhile has committed its message, which
    # the update (a statement of its own, seeing what committed before it) then finds: that
    # journey's invitation is on its way.
    await session.execute(select(Journey.id).where(*unreached).with_for_update())
    ids = list(await session.scalars(update(Journey).where(
        *unreached, ~select(Message.id).where(Message.journey_id == Journey.id,
                                              Message.status != "bounced").exists(),
        # An enrichment link given out went on the client's own message: that reached them.
        ~select(LinkToken.token_sha256).where(LinkToken.journey_id == Journey.id,
                                              LinkToken.step.startswith(ENRICHMENT)).exists())
        .values(stage=Stage.cancelled, finished_at=now).returning(Journey.id)))
    await _record(session, waker, ids, reason)
    return ids


async def mark_cancelled(session: AsyncSession, waker: EndpointWaker,
                         journey_ids: list[uuid.UUID], reason: str) -> None:
    """Most journeys record their cancellation themselves; this catches the others (those
    that never began, or began before journeys did so)."""
    ids = list(await session.scalars(update(Journey).where(
        crud.among(session, Journey.id, journey_ids), Journey.stage.in_(OPEN_STAGES))
        .values(stage=Stage.cancelled, finished_at=utcnow()).returning(Journey.id)))
    await _record(session, waker, ids, reason)


async def _record(session: AsyncSession, waker: EndpointWaker, ids: list[uuid.UUID],
                  reason: str) -> None:
    """Records the client's cancellation of the journeys just cancelled in the database, in
    their history and as `journey.cancelled`: their workflows, not started or already ended,
    record nothing. Under the step a workflow records it under, so neither comes twice."""
    if not ids:
        return
    detail = {"by": CancelledBy.client, "reason": reason}
    ended = (await session.execute(
        select(Journey, Campaign, Contact).join(Campaign, Campaign.id == Journey.campaign_id)
        .join(Contact, Contact.id == Journey.contact_id)
        .where(crud.among(session, Journey.id, ids))
        .execution_options(populate_existing=True))).all()
    await crud.insert_ignoring_conflicts(session, JourneyEvent, [
        {"journey_id": j.id, "step": CANCELLED_STEP, "type": Stage.cancelled,
         "at": j.finished_at, "detail": detail} for j, _, _ in ended])
    for journey, campaign, contact in ended:
        endpoints = await crud.announce_end(session, journey=journey, campaign=campaign,
                                            contact=contact, step=CANCELLED_STEP, detail=detail)
        if endpoints:
            after_commit(session, lambda c=journey.client_id, e=endpoints: waker.wake(
                c, e, CANCELLED_STEP))


async def cancel(session: AsyncSession, temporal: TemporalClient, waker: EndpointWaker,
                 journey: Journey, reason: str) -> None:
    """Ends the open journey as withdrawn by the client and waits until it is recorded, so
    the caller reads it ended (and may erase its contact). One whose workflow is gone is ended
    as lost. The caller commits; it must hold no lock the journey's own writes need."""
    if await end_if_lost(session, temporal, waker, journey):
        return
    try:
        await asyncio.wait_for(_withdrawn(temporal, journey.workflow_id, reason),
                               RECORDED_WITHIN.total_seconds())
    except (RPCError, WorkflowFailureError):
        pass  # ended, by this cancellation or on its own meanwhile: its stage says how
    except TimeoutError:
        return  # still recording: the journey reads open until it has
    await mark_cancelled(session, waker, [journey.id], reason)
    await session.refresh(journey)


async def _withdrawn(temporal: TemporalClient, workflow_id: str, reason: str) -> None:
    """Withdraws the journey and waits for its workflow to record it. A workflow not found
    (while not lost: `enrolled`) is about to start, as its enrolment starts it after its
    commit: it is withdrawn once it has."""
    handle = temporal.get_workflow_handle(workflow_id)
    while True:
        try:
            await withdraw(handle, reason)
            break
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            status = await _status(handle)
            if status not in (None, WorkflowExecutionStatus.RUNNING):
                raise  # closed meanwhile
            if status is None:
                await asyncio.sleep(STARTING_POLL.total_seconds())
    await handle.result()


async def _status(handle: WorkflowHandle) -> WorkflowExecutionStatus | None:
    """The workflow's status, None while it does not exist."""
    try:
        return (await handle.describe()).status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def cancel_open_journeys(session: AsyncSession, temporal: TemporalClient,
                               waker: EndpointWaker, contact_id: uuid.UUID, reason: str) -> None:
    """Withdraws every open journey of the contact, one after the other."""
    for journey in list(await session.scalars(select(Journey).where(
            Journey.contact_id == contact_id, OPEN_JOURNEY))):
        await cancel(session, temporal, waker, journey, reason)
