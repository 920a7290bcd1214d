"""One batch of a re-consent run: consent states back to Pending, a re-consent journey each.

Idempotent: a retried batch finds the same contacts, the same journey rows and workflow ids."""

import asyncio
import uuid
from collections import Counter

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError

from activities.webhooks import EndpointWaker
from api import lost_journeys, withdrawals
from contacts.gdpr import OPEN_JOURNEY
from core.contracts import ReconsentBatchInput, ReconsentBatchResult
from core.settings import Settings
from core.vocabulary import (
    FINAL_STAGES,
    SENT_DESPITE_COMPLAINT,
    GdprConsentState,
    JourneyKind,
    Stage,
)
from db import consents, crud
from db.models import POINT_IN_USE, Campaign, Contact, ContactPoint, Journey, JourneyEvent, utcnow
from db.session import transaction
from workflows.starts import START_CONCURRENCY, journey_language, start_journeys, workflow_id

# The message type a re-consent journey invites with (the journey's `reconsent_` templates).
RECONSENT_INVITATION = "reconsent_invitation"


def answered_since(contact: Contact, journey: Journey) -> bool:
    """Whether the contact's GDPR state changed from pending after the journey asked them."""
    return (contact.gdpr_consent_state != GdprConsentState.pending
            and contact.gdpr_consent_updated_at is not None
            and contact.gdpr_consent_updated_at >= journey.created_at)


class Reconsent:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 temporal: TemporalClient, waker: EndpointWaker) -> None:
        self._sessions = sessions
        self._settings = settings
        self._temporal = temporal
        self._waker = waker

    @activity.defn
    async def reconsent_batch(self, input: ReconsentBatchInput) -> ReconsentBatchResult:
        async with transaction(self._sessions) as session:
            campaign = await session.get_one(Campaign, uuid.UUID(input.campaign_id))
            query = (select(Contact).where(Contact.client_id == campaign.client_id)
                     .order_by(Contact.id).limit(input.batch_size).with_for_update())
            if input.after_contact_id:
                query = query.where(Contact.id > uuid.UUID(input.after_contact_id))
            contacts = list(await session.scalars(query))
            # An email its journey may write to: not one a hard bounce refused, nor, unless
            # the client's rules make the invitation one that must reach them, one whose
            # recipient reported our message as spam.
            usable = [ContactPoint.contact_id.in_([c.id for c in contacts]),
                      ContactPoint.kind == "email", POINT_IN_USE,
                      ContactPoint.undeliverable_since.is_(None)]
            if await consents.category_of(
                    session, client_id=campaign.client_id,
                    message_type=RECONSENT_INVITATION) not in SENT_DESPITE_COMPLAINT:
                usable.append(ContactPoint.complained_since.is_(None))
            reachable = set(await session.scalars(select(ContactPoint.contact_id).where(*usable)))
            chosen = [c for c in contacts if c.id in reachable
                      and c.gdpr_consent_state != GdprConsentState.withdrawn]
            replaced = await self._replace_earlier_requests(session, campaign, chosen)
            theirs = list(await session.scalars(select(Journey).where(
                Journey.campaign_id == campaign.id,
                crud.among(session, Journey.contact_id, [c.id for c in chosen]))))
            # As in a launch: a contact whose journey here expired or was lost with its
            # workflow (terminated in the Temporal UI) is asked again in a new round.
            lost = await lost_journeys.lost_among(session, self._temporal, self._waker, theirs)
            journeys = [j for j in theirs if j.stage != Stage.expired and j.id not in lost]
            # One who answered since this campaign asked them (on its page, or to the back
            # office; enrolled through the API, or asked by an earlier try of this run) keeps
            # the answer: reset, nobody would ask them again.
            by_id = {c.id: c for c in chosen}
            answered = {j.contact_id for j in journeys
                        if j.stage in FINAL_STAGES or answered_since(by_id[j.contact_id], j)}
            reset = [c for c in chosen if c.id not in answered]
            reset_at = utcnow()
            for contact in reset:
                contact.gdpr_consent_state = GdprConsentState.pending
                contact.gdpr_consent_updated_at = reset_at
            rounds, asked = Counter(j.contact_id for j in theirs), {j.contact_id for j in journeys}
            rows = [{"id": uuid.uuid4(), "client_id": campaign.client_id,
                     "campaign_id": campaign.id, "contact_id": c.id,
                     "workflow_id": workflow_id(campaign.id, c.id, rounds[c.id] + 1),
                     "stage": Stage.enrolled,
                     "language": journey_language(campaign.spec, c.language)}
                    for c in chosen if c.id not in asked]
            if rows:
                # A contact enrolled through the API meanwhile keeps that journey instead.
                inserted = set(await session.scalars(crud.insert_ignoring_conflicts_stmt(
                    session, Journey).returning(Journey.id), rows))
                journeys += [Journey(**row) for row in rows if row["id"] in inserted]
        await self._withdraw(replaced)
        await start_journeys(self._temporal, self._settings, campaign=campaign, journeys=journeys)
        activity.heartbeat(len(journeys))
        return ReconsentBatchResult(
            contacts_seen=len(contacts),
            last_contact_id=str(contacts[-1].id) if contacts else None,
            contacts_reset=len(reset), journeys_started=len(journeys),
            skipped=len(contacts) - len(chosen))

    async def _replace_earlier_requests(self, session: AsyncSession, campaign: Campaign,
                                        chosen: list[Contact]) -> list[str]:
        """Ends, in the database, the chosen contacts' open journeys of the client's other
        re-consent campaigns: this one asks about the newer form, and an answer to an outdated
        one must not become the contact's state (their pages say a newer request was sent).
        Returns their workflow ids, to cancel once this has committed; each then ends as the
        database has it, recording nothing more (the first end wins). With them those an
        earlier try of the batch ended: it may have committed and stopped before cancelling
        their workflows, which would run on to their next reminder."""
        superseded = select(JourneyEvent.id).where(
            JourneyEvent.journey_id == Journey.id,
            JourneyEvent.step == withdrawals.CANCELLED_STEP,
            JourneyEvent.detail["reason"].as_string() == withdrawals.SUPERSEDED_BY_RECONSENT,
            # Not those that older forms' runs ended long before this form existed.
            JourneyEvent.at >= campaign.created_at).exists()
        replaced = list((await session.execute(
            select(Journey.id, Journey.workflow_id)
            .join(Campaign, Campaign.id == Journey.campaign_id)
            .where(crud.among(session, Journey.contact_id, [c.id for c in chosen]),
                   Journey.campaign_id != campaign.id, or_(OPEN_JOURNEY, superseded),
                   Campaign.spec["kind"].as_string() == JourneyKind.reconsent))).all())
        await withdrawals.mark_cancelled(session, self._waker, [j for j, _ in replaced],
                                         withdrawals.SUPERSEDED_BY_RECONSENT)
        return [w for _, w in replaced]

    async def _withdraw(self, workflow_ids: list[str]) -> None:
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def withdraw(workflow_id: str) -> None:
            async with gate:
                try:
                    await withdrawals.withdraw(self._temporal.get_workflow_handle(workflow_id),
                                               withdrawals.SUPERSEDED_BY_RECONSENT)
                except RPCError:
                    pass  # ended already, or never started: the database has its end
        await asyncio.gather(*(withdraw(w) for w in workflow_ids))
