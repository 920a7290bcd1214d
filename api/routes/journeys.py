"""Journeys as the client sees them: stage and history, read from the database of record."""

import uuid

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from api.deps import ClientDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.routes.campaigns import campaign_of
from api.schemas import JourneyEventOut, JourneyOut, JourneyPage
from core.vocabulary import Stage
from db.models import Contact, Journey, JourneyEvent

router = APIRouter(tags=["journeys"], responses=ERROR_RESPONSES)


def journey_out(journey: Journey, contact: Contact, events: list[JourneyEvent] | None) -> JourneyOut:
    return JourneyOut(
        id=journey.id, workflow_id=journey.workflow_id, campaign_id=journey.campaign_id,
        contact_id=journey.contact_id, external_id=contact.external_id, stage=journey.stage,
        language=journey.language, pending_email=(journey.collected or {}).get("email")
        if journey.stage != Stage.verified else None,
        created_at=journey.created_at, updated_at=journey.updated_at,
        finished_at=journey.finished_at,
        history=None if events is None else [
            JourneyEventOut(type=e.type, at=e.at, detail=e.detail) for e in events],
    )


@router.get("/v1/campaigns/{campaign_id}/journeys", response_model=JourneyPage)
async def list_journeys(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
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
    return JourneyPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


@router.get("/v1/journeys/{journey_id}", response_model=JourneyOut)
async def get_journey(journey_id: uuid.UUID, client: ClientDep, session: SessionDep) -> JourneyOut:
    journey = await session.get(Journey, journey_id)
    if journey is None or journey.client_id != client.id:
        raise HTTPException(404, "journey not found")
    contact = await session.get_one(Contact, journey.contact_id)
    events = list(await session.scalars(
        select(JourneyEvent).where(JourneyEvent.journey_id == journey.id)
        .order_by(JourneyEvent.at, JourneyEvent.id)))
    return journey_out(journey, contact, events)
