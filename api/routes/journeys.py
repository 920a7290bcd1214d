"""Journeys as the client sees them: stage and history, read from the database of record."""

import uuid
from typing import Any

from datetime import UTC, datetime
from decimal import Decimal

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select, update
from temporalio.service import RPCError

from api import withdrawals
from api.deps import ClientDep, NoBody, Reads, ReadsDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems
from api.routes.campaigns import campaign_of
from api.schemas import (
    FieldError,
    JourneyEventOut,
    JourneyOut,
    JourneyPage,
    PaymentCompleted,
    minor_units_problem,
)
from core.vocabulary import FINAL_STAGES, EngagementState, EventType, Stage
from db import crud
from db.models import Campaign, Contact, Journey, JourneyEvent
from workflows.journey import JourneyWorkflow

router = APIRouter(tags=["journeys"], responses=ERROR_RESPONSES)


def pending(journey: Journey, kind: str) -> Any:
    """What the customer entered of this kind and is not verified (or kept) yet."""
    collected = journey.collected or {}
    if journey.stage == Stage.verified or collected.get(f"{kind}_verified_at"):
        return None
    return collected.get(kind)


def journey_out(journey: Journey, contact: Contact, events: list[JourneyEvent] | None) -> JourneyOut:
    return JourneyOut(
        id=journey.id, workflow_id=journey.workflow_id, campaign_id=journey.campaign_id,
        contact_id=journey.contact_id, external_id=contact.external_id, stage=journey.stage,
        language=journey.language, pending_email=pending(journey, "email"),
        pending_mobile=pending(journey, "mobile"), pending_address=pending(journey, "address"),
        created_at=journey.created_at, updated_at=journey.updated_at,
        finished_at=journey.finished_at, claim=journey.claim, paid_at=journey.paid_at,
        history=None if events is None else [
            JourneyEventOut(type=e.type, at=e.at, detail=e.detail) for e in events],
    )


@router.get("/v1/campaigns/{campaign_id}/journeys", response_model=JourneyPage)
async def list_journeys(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep, reads: ReadsDep,
    stage: Stage | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
) -> JourneyPage:
    await campaign_of(session, client.id, campaign_id)
    query = (select(Journey, Contact).join(Contact, Contact.id == Journey.contact_id)
             .where(Journey.campaign_id == campaign_id, Journey.client_id == client.id)
             .order_by(Journey.id).limit(limit + 1))
    if stage is not None:
        query = query.where(Journey.stage == stage)
    if cursor is not None:
        query = query.where(Journey.id > cursor)
    rows = (await session.execute(query)).all()
    items = [journey_out(j, c, None) for j, c in rows[:limit]]
    await reads.of(item.contact_id for item in items)
    return JourneyPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


async def journey_of(session: SessionDep, client_id: uuid.UUID, journey_id: uuid.UUID) -> Journey:
    journey = await session.get(Journey, journey_id)
    if journey is None or journey.client_id != client_id:
        raise HTTPException(404, "journey not found")
    return journey


async def claim_journeys(session: SessionDep, journey: Journey) -> list[Journey]:
    """The journeys of the journey's claim (its contact's in the campaign with that reference),
    locked and read afresh: the claim is paid once, on whichever of them the payment is
    reported. Locked all at once, oldest first, whichever of them is named: reports on two of
    them at the same moment wait for each other rather than deadlock."""
    return list(await session.scalars(select(Journey).where(
        Journey.campaign_id == journey.campaign_id, Journey.contact_id == journey.contact_id,
        Journey.claim["reference"].as_string() == journey.claim["reference"])
        .order_by(Journey.created_at, Journey.id).with_for_update()
        .execution_options(populate_existing=True)))


async def claim_payment(session: SessionDep, journeys: list[Journey]) -> dict[str, Any] | None:
    """What the payment-completed call recorded for the claim (reference, paid_at, amount)."""
    return await session.scalar(select(JourneyEvent.detail).where(
        JourneyEvent.journey_id.in_([j.id for j in journeys]),
        JourneyEvent.step == crud.PAYMENT_STEP).order_by(JourneyEvent.at).limit(1))


async def detailed(session: SessionDep, journey: Journey) -> JourneyOut:
    contact = await session.get_one(Contact, journey.contact_id)
    events = list(await session.scalars(
        select(JourneyEvent).where(JourneyEvent.journey_id == journey.id)
        .order_by(JourneyEvent.at, JourneyEvent.id)))
    return journey_out(journey, contact, events)


async def shown(session: SessionDep, journey: Journey, reads: Reads) -> JourneyOut:
    """The journey a change answers with: what the customer typed and its history are personal
    data, read as GET's answer is (audited, naming the route)."""
    out = await detailed(session, journey)
    await reads.of([journey.contact_id])
    return out


@router.get("/v1/journeys/{journey_id}", response_model=JourneyOut)
async def get_journey(journey_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      reads: ReadsDep) -> JourneyOut:
    journey = await journey_of(session, client.id, journey_id)
    await reads.of([journey.contact_id])
    return await detailed(session, journey)


@router.post("/v1/journeys/{journey_id}/payment-completed", response_model=JourneyOut,
             responses={409: {"model": ErrorBody, "description": "The journey has no claim, or "
                              "its payment was recorded with another amount"}})
async def payment_completed(journey_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            state: StateDep, reads: ReadsDep,
                            body: PaymentCompleted | None = None) -> JourneyOut:
    """The client's payment system saw the claim paid: recorded on the journey, announced as
    `journey.payment_completed`, and the journey stops reminding. Whether the customer left
    their data before, after or not at all does not matter. The payment is the claim's: every
    journey of the claim is paid, and the contact engaged (`engagement_state`, `engaged_at`
    unless engaged before). Repeating the call, on any of them, changes nothing;
    repeating it with another amount or time is a conflict."""
    body = body or PaymentCompleted()  # every field has its default: no body is needed
    journey = await journey_of(session, client.id, journey_id)
    if journey.claim is None:
        raise HTTPException(409, "this journey carries no payment")
    if body.reference is not None and body.reference != journey.claim["reference"]:
        raise FieldProblems([FieldError(field="reference",
                                        message="is not the claim reference of this journey")])
    journeys = await claim_journeys(session, journey)
    # The claim as it stands is its newest round's (enrolled again, the contact may owe
    # another amount, by another day, at another link): the payment is of that claim,
    # whichever round the client's books name.
    claim = journeys[-1].claim
    if body.amount is not None and (problem := minor_units_problem(
            body.amount, claim.get("currency", "EUR"))):
        raise FieldProblems([FieldError(field="amount", message=problem)])
    recorded = await claim_payment(session, journeys)
    if recorded is not None:
        # A repeat is harmless, on any journey of the claim; a different amount or time is
        # news the claim cannot take in.
        paid_at = datetime.fromisoformat(recorded["paid_at"])
        news = []
        # Recorded without one (neither the claim nor the first report named it), an amount
        # is news too: taken in silently, it would be lost.
        if body.amount is not None and (recorded.get("amount") is None
                                        or body.amount != Decimal(recorded["amount"])):
            news.append(f"another amount ({body.amount})")
        if body.paid_at is not None and body.paid_at != paid_at:
            news.append(f"another paid_at ({body.paid_at.isoformat()})")
        if news:
            amount = f" with amount {recorded['amount']}" if recorded.get("amount") else ""
            raise HTTPException(409, f"the payment of claim {journey.claim['reference']!r} was "
                                f"recorded on {paid_at.isoformat()}{amount}; "
                                f"{' and '.join(news)} cannot replace it")
    else:
        paid_at = body.paid_at or datetime.now(UTC)
        detail = {"reference": journey.claim["reference"], "paid_at": paid_at.isoformat(),
                  "amount": str(body.amount) if body.amount is not None
                  else claim.get("amount")}
        await crud.add_journey_event(session, journey=journey, step=crud.PAYMENT_STEP,
                                     type="payment_completed", at=paid_at, detail=detail)
        journey.paid_at = paid_at
        await crud.claim_paid(session, journey=journey)
        # A payment is a business transaction (CRM.COM's rule): it engages the contact, as
        # leaving data in a journey does, unless something engaged it before.
        await session.execute(update(Contact).where(
            Contact.id == journey.contact_id, Contact.engaged_at.is_(None))
            .values(engagement_state=EngagementState.engaged, engaged_at=paid_at))
        endpoints = await crud.record_webhook_event(
            session, client_id=client.id, key=f"{journey.id}/payment",
            type=EventType.journey_payment_completed, data={
                **crud.journey_ref(journey, await session.get_one(Campaign, journey.campaign_id)),
                "contact": crud.contact_ref(await session.get_one(Contact, journey.contact_id)),
                "claim": claim, **detail})
        await session.commit()
        await state.endpoints.wake(client.id, endpoints, "payment completed")
    # Every journey of the claim is paid: one still running, though the payment was reported
    # on an earlier one, stops reminding.
    unpaid = [j for j in journeys if j.paid_at is None]
    for other in unpaid:
        other.paid_at = paid_at
    await session.commit()
    for other in dict.fromkeys([journey, *unpaid]):
        try:
            await state.temporal.get_workflow_handle(other.workflow_id).signal(
                JourneyWorkflow.payment_completed)
        except RPCError:
            pass  # the journey has ended: there is nothing left to remind of
    return await shown(session, journey, reads)


@router.post("/v1/journeys/{journey_id}/claim-withdrawn", response_model=JourneyOut,
             dependencies=[NoBody],
             responses={409: {"model": ErrorBody, "description": "The journey has no claim, "
                              "its claim was reported paid, or a journey of the claim is open"}})
async def claim_withdrawn(journey_id: uuid.UUID, client: ClientDep, session: SessionDep,
                          reads: ReadsDep) -> JourneyOut:
    """The client no longer asks the contact for the claim (written off, settled otherwise):
    recorded on every journey of the claim (history `claim_withdrawn`, detail `{"reference",
    "by": "client"}`), so the claim no longer blocks the contact's anonymisation or deletion,
    nor keeps the contact from the scheduled anonymisation of inactive contacts. Only once the
    claim's journeys have ended (a running one asks for the payment: cancel it first); a claim
    reported paid has nothing to withdraw. Repeating the call changes nothing; enrolling the
    contact with the claim again asks for it again, and that round's journey owes it anew."""
    journey = await journey_of(session, client.id, journey_id)
    if journey.claim is None:
        raise HTTPException(409, "this journey carries no payment")
    reference = journey.claim["reference"]
    journeys = await claim_journeys(session, journey)
    if journey.paid_at is not None:
        raise HTTPException(409, f"claim {reference!r} was reported paid on "
                            f"{journey.paid_at.isoformat()}: there is nothing to withdraw")
    running = [j for j in journeys if j.finished_at is None and j.stage not in FINAL_STAGES]
    if running:
        raise HTTPException(409, f"journey {running[0].id} of claim {reference!r} is still "
                            "open and asks for the payment: end it first with "
                            f"POST /v1/journeys/{running[0].id}/cancel")
    at = datetime.now(UTC)
    for each in journeys:
        await crud.add_journey_event(session, journey=each, step=crud.CLAIM_WITHDRAWN_STEP,
                                     type="claim_withdrawn", at=at,
                                     detail={"reference": reference, "by": "client"})
    return await shown(session, journey, reads)


@router.post("/v1/journeys/{journey_id}/cancel", response_model=JourneyOut,
             dependencies=[NoBody],
             responses={202: {"model": JourneyOut, "description": "The cancel is on its way: "
                              "the journey's workflow has not recorded it within seconds (it "
                              "will); the journey is shown still open"},
                        409: {"model": ErrorBody, "description": "The journey ended otherwise "
                              "(verified, expired, opted out)"}})
async def cancel_journey(journey_id: uuid.UUID, client: ClientDep, session: SessionDep,
                         state: StateDep, response: Response, reads: ReadsDep) -> JourneyOut:
    """Withdraws the open journey: it ends as `cancelled` (history detail `{"by": "client",
    "reason": "journey_cancelled"}`), sends nothing more, and its page says the client withdrew
    the request. Answers once that is recorded (202 with the journey still open if its
    workflow has not recorded it within seconds: it will); a cancelled journey answers as it
    is."""
    # Not locked: the journey's workflow writes its end to this row while the request waits.
    journey = await journey_of(session, client.id, journey_id)
    if journey.stage in FINAL_STAGES and journey.stage != Stage.cancelled:
        raise HTTPException(409, f"the journey has ended as {journey.stage}: there is nothing "
                            "to cancel")
    if journey.stage != Stage.cancelled:
        await withdrawals.cancel(session, state.temporal, state.endpoints, journey,
                                 withdrawals.BY_API)
        await session.commit()
        if journey.stage in FINAL_STAGES and journey.stage != Stage.cancelled:
            # Ended otherwise while the withdrawal was on its way (the customer confirmed at
            # that moment): nothing was withdrawn, as when the two come one after the other.
            raise HTTPException(409, f"the journey has ended as {journey.stage}: there is "
                                "nothing to cancel")
    if journey.stage not in FINAL_STAGES:
        response.status_code = 202
    return await shown(session, journey, reads)
