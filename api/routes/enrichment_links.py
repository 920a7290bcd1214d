"""A personal "complete your data" link for any message the client sends: it opens the
contact's running journey, or starts one in the campaign given. Also as a QR code."""

import io
import uuid
from datetime import datetime
from typing import Literal

import segno
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient

from activities.webhooks import EndpointWaker
from api import enrolment, lost_journeys, withdrawals
from api.deps import ActorDep, ClientDep, RegistryDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems
from api.routes.campaigns import campaign_of, collects_data, enrolling_campaign
from api.schemas import MAX_DURATION, ContactIn, FieldError
from core.vocabulary import FINAL_STAGES, JourneyKind, TokenPurpose
from db import launches
from db.models import Campaign, Contact, Journey, LinkToken
from messaging import links
from messaging.branding import brand_for
from workflows.starts import journey_timings, start_journeys

router = APIRouter(prefix="/v1/contacts", tags=["journeys"], responses=ERROR_RESPONSES)


class EnrichmentLink(BaseModel):
    url: str
    # For print beside the QR code: typed into a browser, it leads to `url`.
    short_link: str
    # The journey the link opens, and its campaign: another than the one asked for when the
    # contact's journey there runs already.
    journey_id: uuid.UUID
    campaign_id: uuid.UUID
    expires_at: datetime


async def running_journey(session: AsyncSession, temporal: TemporalClient,
                          waker: EndpointWaker, contact_id: uuid.UUID, campaign_id: uuid.UUID | None) -> Journey | None:
    """The contact's unfinished data-collection journey whose workflow still runs (a
    re-consent journey asks no data): the one in the campaign named, else the newest; the lost
    ones met on the way are ended, so a link never leads to a journey nothing will answer."""
    order = [Journey.created_at.desc()]
    if campaign_id is not None:
        order.insert(0, (Journey.campaign_id == campaign_id).desc())
    while True:
        journey = (await session.scalars(select(Journey).join(
            Campaign, Campaign.id == Journey.campaign_id).where(
            Journey.contact_id == contact_id, Journey.stage.not_in(FINAL_STAGES),
            func.coalesce(Campaign.spec["kind"].as_string(), JourneyKind.data_collection)
            == JourneyKind.data_collection)
            .order_by(*order).limit(1))).first()
        if journey is None or not await lost_journeys.end_lost_among(session, temporal, waker,
                                                                     [journey.id]):
            return journey


@router.get("/{contact_id}/enrichment-link", response_model=EnrichmentLink,
            responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}},
                       409: {"model": ErrorBody,
                             "description": "The campaign is archived, the contact's journey "
                                            "in it has ended, or the contact has nothing to "
                                            "complete there (verified data of every kind it "
                                            "collects)"}})
async def enrichment_link(
    contact_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    reg: RegistryDep, actor: ActorDep,
    campaign_id: uuid.UUID | None = Query(
        None, description="opens the contact's journey here; when none runs here, its running "
                          "journey in another campaign, else starts one here"),
    format: Literal["json", "svg", "png"] = "json",
):
    """A fresh link each call (earlier ones stay valid until the journey ends)."""
    # Locked until commit (FOR NO KEY UPDATE): a second link asked at once for the contact
    # waits, then opens the journey this one starts rather than starting another; a DELETE or
    # anonymisation (FOR UPDATE) waits for that journey, or erased the contact first (404).
    contact = await session.get(Contact, contact_id, with_for_update={"key_share": True},
                                populate_existing=True)
    if contact is None or contact.client_id != client.id:
        raise HTTPException(404, "contact not found")
    if campaign_id is not None:
        # Named, it must be one of the client's, even when a running journey makes it moot,
        # and one that collects data: the link is to complete the contact's data.
        named = await campaign_of(session, client.id, campaign_id)
        if not collects_data(named):
            raise FieldProblems([FieldError(field="campaign_id", message=(
                "an enrichment link opens a data_collection campaign's journey"))])
    journey = await running_journey(session, state.temporal, state.endpoints, contact.id,
                                    campaign_id)
    if journey is None:
        if campaign_id is None:
            await session.commit()  # a lost journey met on the way stays ended
            raise HTTPException(404, "no running journey; give campaign_id to start one")
        campaign = await enrolling_campaign(session, client.id, campaign_id)
        if await session.scalar(select(Contact.id).where(
                Contact.id == contact.id, launches.missing_verified(campaign.spec))) is None:
            # A journey would ask for nothing and only send reminders.
            await session.commit()  # a lost journey met on the way stays ended
            raise HTTPException(409, "the contact has verified data of every kind this campaign "
                                     "collects: there is nothing to complete")
        results, journeys = await enrolment.write_contacts_and_journeys(
            session, reg, actor, state.temporal, state.endpoints, campaign=campaign,
            items={0: ContactIn(external_id=contact.external_id)})
        if not journeys:
            # Why this campaign cannot take the contact (no address it can reach, a claim it
            # needs): a problem of the campaign named.
            raise FieldProblems([FieldError(field="campaign_id", message=e.message)
                                 for e in results[0].errors])
        await session.commit()
        # The client prints the link on its own message: that is the invitation.
        await start_journeys(state.temporal, state.settings, campaign=campaign, journeys=journeys,
                             invited_by_client=True)
        journey = journeys[0]
        if journey.stage in FINAL_STAGES:
            raise HTTPException(409, f"the contact's journey in this campaign is {journey.stage}")
    campaign = await session.get_one(Campaign, journey.campaign_id)
    # The journey's own deadline, fixed as it started: the links it was given carry it, where
    # the campaign, changed since, would give another (a link dead on arrival, or one promising
    # days the journey has not).
    expires_at = await session.scalar(select(func.max(LinkToken.expires_at)).where(
        LinkToken.journey_id == journey.id, LinkToken.purpose == TokenPurpose.contact_page))
    if expires_at is None:
        # Bounded: a campaign stored before durations were may end its journeys past the
        # clock's last date (its workflow then ends them at once).
        expires_at = journey.created_at + min(
            journey_timings(campaign.spec, state.settings).expires_after, MAX_DURATION)
    # Printed links and QR codes lead to the client's own host name when it has one.
    brand = brand_for(client.name, client.branding, campaign.spec.get("branding"), state.settings)
    link = {"purpose": TokenPurpose.contact_page, "step": f"{withdrawals.ENRICHMENT}{uuid.uuid4()}",
            "base_url": brand.base_url}
    url = await links.issue(session, state.settings, expires_at=expires_at,
                            journey_id=journey.id, printed=True, **link)
    await session.commit()
    if format == "json":
        return EnrichmentLink(
            url=url, short_link=links.printed_link(state.settings, owner=journey.id, **link),
            journey_id=journey.id, campaign_id=journey.campaign_id, expires_at=expires_at)
    image = io.BytesIO()
    segno.make(url, error="m").save(image, kind=format, scale=8, border=2)
    return Response(image.getvalue(), media_type="image/svg+xml" if format == "svg"
                    else "image/png", headers={"Cache-Control": "no-store"})
