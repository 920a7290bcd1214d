"""Database writes of a journey: stages, submitted data, consents, verification, and the webhook
events they raise. Each write is keyed by (journey, step), so a retried activity adds nothing."""

import asyncio
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError, RPCStatusCode

from activities.webhooks import EndpointWaker
from core.contracts import (
    EmittedEvents,
    FinishJourneyInput,
    MessageCategoryInput,
    RecordConsentAnswerInput,
    RecordStageInput,
    RecordSubmissionInput,
    RecordVerificationInput,
    SubmitDataInput,
    ValueVerifiedInput,
)
from contacts import audit, gdpr, normalise, registry
from contacts.schemas import AddressIn
from core.settings import Settings
from core.vocabulary import (
    ANONYMISATION_BLOCKED,
    INVITING_TEMPLATES,
    PAGE_ADDRESS_FIELDS,
    AuditAction,
    CampaignMode,
    CancelledBy,
    ConsentSource,
    EngagementState,
    EventType,
    GdprConsentState,
    HouseholdRule,
    Stage,
    VerificationState,
)
from db import consents as consents_db
from db import crud
from db.models import (
    POINT_IN_USE,
    Campaign,
    Client,
    ConsentEvent,
    Contact,
    ContactAddress,
    ContactPoint,
    Journey,
    LegalText,
    Message,
    utcnow,
)
from db.session import transaction


VERIFIED_VIA = {"email": "email_link", "mobile": "sms_code"}
FIELD_NAME = {"email": "address", "mobile": "number"}


class JourneyRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 waker: EndpointWaker, temporal: TemporalClient) -> None:
        self._sessions = sessions
        self._settings = settings
        self._waker = waker
        self._temporal = temporal

    @staticmethod
    async def _load(session: AsyncSession, journey_id: str) -> tuple[Journey, Contact, Campaign]:
        journey, contact, campaign, _ = await crud.locked_journey(session, uuid.UUID(journey_id))
        return journey, contact, campaign

    @staticmethod
    def _ended_before(journey: Journey, own_end: datetime | None = None) -> EmittedEvents | None:
        """What the workflow learns when the journey has ended outside it (`crud.ended_outside`):
        no progress recorded, nothing told to the client."""
        if ended := crud.ended_outside(journey, own_end):
            return EmittedEvents(ended=ended)
        return None

    @activity.defn
    async def record_stage(self, input: RecordStageInput) -> EmittedEvents | None:
        """None in the histories of journeys before `EmittedEvents.ended`."""
        async with transaction(self._sessions) as session:
            journey, _, _ = await self._load(session, input.journey_id)
            if ended := self._ended_before(journey):
                return ended
            journey.stage = input.stage
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=input.stage, at=input.at
            )
        return EmittedEvents()

    @activity.defn
    async def record_submission(self, input: RecordSubmissionInput) -> EmittedEvents:
        sub = input.submission
        async with transaction(self._sessions) as session:
            journey, contact, campaign = await self._load(session, input.journey_id)
            if ended := self._ended_before(journey):
                return ended
            checkboxes = {c["key"]: c for c in campaign.spec.get("consents", [])}
            before = journey.collected or {}
            again = self._verified_before(before, sub)
            # Verified by the contact already (another journey): taken as it stands, no link
            # or code sent to prove it again.
            known = [kind for kind in await crud.verified_points(
                session, contact_id=contact.id,
                values={"email": sub.email, "mobile": sub.mobile})
                if kind not in again]
            proven = again + [kind for kind in await self._proven(session, journey, campaign, sub)
                              if kind not in again + known]
            # Kept on the journey, apart from the contact's verified data, until confirmed.
            journey.collected = {
                "email": sub.email,
                "mobile": sub.mobile,
                "address": sub.address,
                "submitted_at": sub.given_at.isoformat(),
                "submission_step": input.step,
                "ip": sub.ip,
                "user_agent": sub.user_agent,
                **{f"{kind}_verified_via": "invitation_link" for kind in proven
                   if kind not in again},
                **{key: before[key] for kind in again
                   for key in (f"{kind}_verified_at", f"{kind}_verified_via") if key in before},
            }
            journey.stage = Stage.verification_pending if input.code_kept else Stage.data_entered
            if contact.engaged_at is None:
                # The first business event: the contact answered a journey.
                contact.engagement_state = EngagementState.engaged
                contact.engaged_at = sub.given_at
            rows = []
            asked = {d.key: (checkboxes[d.key]["purpose"], checkboxes[d.key]["channel"],
                             d.display_id) for d in sub.consents if d.key in checkboxes}
            # Given to another consent (PATCH) while the form was open: the answer was to the
            # words shown, which the box no longer asks; as for a box taken out, not recorded.
            # (The page leaves them out; a change in the moment of the post reaches here.)
            repurposed = await consents_db.asked_otherwise(session, contact_id=contact.id,
                                                           boxes=asked)
            standing = await consents_db.preferences(session, contact_id=contact.id) if any(
                d.shown is not None for d in sub.consents) else {}
            for decision in sub.consents:
                box = checkboxes.get(decision.key)
                if box is None or decision.key in repurposed:
                    # Taken out of the campaign (PATCH) between the form's post and this
                    # record: not granted, rather than a record retried for ever.
                    continue
                if (decision.shown is not None and decision.granted == decision.shown
                        and not box["mandatory"] and consents_db.governing(
                            standing, box["purpose"], box["channel"]) is not None):
                    # Left as the page showed it, the contact's decision on it stands: one
                    # given before (through the client too) is not withdrawn by a box the
                    # customer never touched, nor one given since the page was shown undone.
                    # A box about something never decided is the customer's first answer; a
                    # mandatory one, this submission's condition, is recorded as its proof.
                    continue
                text, display_id = await self._answered(session, contact, box, sub.language,
                                                        decision.display_id)
                rows.append(consents_db.decision_row(
                    client_id=journey.client_id, contact_id=contact.id, journey_id=journey.id,
                    step=input.step, checkbox_key=decision.key,
                    d=consents_db.Decision(
                        purpose=box["purpose"], channel=box["channel"], granted=decision.granted,
                        given_at=sub.given_at, source=ConsentSource.contact_page, text=text,
                        ip=sub.ip, user_agent=sub.user_agent, shown_in="contact_page",
                        display_id=display_id)))
            await crud.insert_ignoring_conflicts(session, ConsentEvent, rows)
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=Stage.data_entered, at=sub.given_at,
                detail={"ip": sub.ip},
            )
            consents = await crud.consents_of_step(session, journey_id=journey.id, step=input.step)
            data = {
                **crud.journey_ref(journey, campaign),
                "contact": crud.contact_ref(contact),
                **{k: {FIELD_NAME[k]: v,
                       "verification_state": "verified" if k in again + known else "pending"}
                   for k, v in (("email", sub.email), ("mobile", sub.mobile)) if v},
                **({"address": sub.address} if sub.address else {}),
                "submitted_at": sub.given_at.isoformat(),
                "ip": sub.ip,
                "user_agent": sub.user_agent,
                "consents": [consents_db.event_as_dict(c) for c in consents],
            }
            endpoints = await crud.record_webhook_event(
                session, client_id=journey.client_id, key=f"{journey.id}/{input.step}",
                type=EventType.data_collected, data=data,
            )
            endpoints += await consents_db.announce(session, contact=contact, events=consents)
        # Only now, committed, may the endpoints' workflows see the events.
        await self._waker.wake(journey.client_id, endpoints, input.step)
        return EmittedEvents(proven=proven, verified=known)

    @staticmethod
    async def _answered(session: AsyncSession, contact: Contact, box: dict[str, Any],
                        language: str, display_id: str | None) -> tuple[Any, uuid.UUID | None]:
        """The consent text the customer answered, with the display that showed it: the one
        shown, should the campaign's text have changed since (PATCH /v1/campaigns/{id})."""
        current = box["texts"].get(language) or next(iter(box["texts"].values()))
        return await consents_db.answered_text(
            session, display_id=display_id, contact_id=contact.id, purpose=box["purpose"],
            current=LegalText(**{k: current[k] for k in ("language", "version", "text",
                                                         "sha256")}))

    @staticmethod
    def _verified_before(collected: dict[str, Any], sub: SubmitDataInput) -> list[str]:
        """The contact points this journey verified already (a code typed, a link confirmed)
        that the customer submitted again unchanged, correcting something else: no second code
        or link for them."""
        return [kind for kind, value in (("email", sub.email), ("mobile", sub.mobile))
                if value and collected.get(kind) == value
                and collected.get(f"{kind}_verified_at")]

    @staticmethod
    async def _proven(session: AsyncSession, journey: Journey, campaign: Campaign,
                      sub: SubmitDataInput) -> list[str]:
        """In a verify-existing campaign, a contact point the customer kept unchanged is proven
        when the customer came through the link of our invitation or reminder to exactly that
        address, and the point is still the contact's (the client did not remove it, nor did
        the household rule move it to another person since). A correction, or a point seen
        on a page opened through another link (a letter's, a printed one, a message to the
        other point), is verified like new data."""
        if campaign.spec.get("mode") != CampaignMode.verify_existing or sub.link_step is None:
            return []
        reached = set((await session.execute(select(Message.channel, Message.recipient).where(
            Message.journey_id == journey.id, Message.step == sub.link_step,
            Message.status == "sent", Message.template.in_(INVITING_TEMPLATES)))).all())
        in_use = {(kind, normalise.point_key(kind, value)) for kind, value in (
            await session.execute(select(ContactPoint.kind, ContactPoint.value).where(
                ContactPoint.contact_id == journey.contact_id, POINT_IN_USE))).all()}
        return [kind for kind, value, channel in (("email", sub.email, "email"),
                                                  ("mobile", sub.mobile, "sms"))
                if value and (channel, value) in reached
                and (kind, normalise.point_key(kind, value)) in in_use]

    @activity.defn
    async def record_verification(self, input: RecordVerificationInput) -> EmittedEvents:
        """One collected contact point is verified (email by link, mobile by code). When it is
        the last one awaited, the journey is verified and `contact.data_verified` raised."""
        async with transaction(self._sessions) as session:
            emitted, endpoints = await self._verification(session, input)
            # Loaded (and locked) by the verification: no second query.
            journey = await session.get_one(Journey, uuid.UUID(input.journey_id))
            # A value taken as verified before was confirmed in a journey that told them.
            awaiting = ([] if emitted.refused or emitted.ended or input.verified_before else
                        await crud.journeys_awaiting(session, journey=journey, kind=input.kind))
        # Only now, committed, may the endpoints' workflows see the events, and the contact's
        # other journeys find the value verified.
        await self._waker.wake(journey.client_id, endpoints, input.step)
        await self._tell_verified(awaiting, input.kind)
        return emitted

    async def _tell_verified(self, workflow_ids: list[str], kind: str) -> None:
        """Tells the contact's other journeys awaiting the value that it is verified, so they
        end as verified now instead of at their next reminder, or expiring."""
        async def tell(workflow_id: str) -> None:
            try:
                await self._temporal.get_workflow_handle(workflow_id).signal(
                    "value_verified", ValueVerifiedInput(kind))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise  # retried: the verification's writes are keyed, done once
                # Ended meanwhile: nothing awaits the value there.

        await asyncio.gather(*(tell(w) for w in workflow_ids))

    async def _verification(self, session: AsyncSession, input: RecordVerificationInput
                            ) -> tuple[EmittedEvents, list[str]]:
        """The verification's writes; returns what the workflow learns and the endpoints to
        wake after commit."""
        confirm, kind = input.confirm, input.kind
        journey, contact, campaign = await self._load(session, input.journey_id)
        # A retry of the final verification finds its own end, and records it again.
        if ended := self._ended_before(journey, confirm.confirmed_at):
            return ended, []
        collected = journey.collected or {}
        value = collected.get(kind)
        if value is None:
            # Purged after the client's retention: there is nothing left to verify.
            return EmittedEvents(refused="data_purged"), []
        if collected.get(f"{kind}_verified_at") and not input.final:
            # Verified earlier in this journey and submitted again unchanged beside a
            # correction (record_submission keeps its verification): it stays verified as it
            # was, its time and its one `<kind>_verified` event. (A retry of the verification
            # that wrote it finds it done.)
            return EmittedEvents(), []
        if input.verified_before:
            point = (await crud.verified_points(session, contact_id=contact.id,
                                                values={kind: value})).get(kind)
            if point is None or point.verified_at is None:
                # Released or withdrawn since the send found it verified: still awaited.
                return EmittedEvents(refused="not_verified"), []
            released: list[str] = []
            collected = {**collected, f"{kind}_verified_at": point.verified_at.isoformat(),
                         f"{kind}_verified_via": point.verified_via}
        else:
            released = await self._confirm_point(session, journey, contact, input, value)
            if released is None:
                return EmittedEvents(refused="address_belongs_to_another_contact"), []
            collected = {**collected, f"{kind}_verified_at": confirm.confirmed_at.isoformat()}
        journey.collected = collected
        # Taken as the contact verified it before: when, instead of a visitor's IP.
        detail = ({"verified_before": collected[f"{kind}_verified_at"]} if input.verified_before
                  else {"ip": confirm.ip})
        if not input.final:
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=f"{kind}_verified",
                at=confirm.confirmed_at, detail=detail)
            return EmittedEvents(), released
        journey.stage = Stage.verified
        journey.finished_at = confirm.confirmed_at
        if collected.get("address"):
            await self._keep_address(session, journey, contact, collected["address"],
                                     confirm.confirmed_at)
        await crud.add_journey_event(
            session, journey=journey, step=input.step, type=Stage.verified,
            at=confirm.confirmed_at, detail=detail,
        )
        consents = await crud.consents_of_step(
            session, journey_id=journey.id, step=collected["submission_step"]
        )
        data = {
            **crud.journey_ref(journey, campaign),
            "contact": crud.contact_ref(contact),
            **{k: {FIELD_NAME[k]: collected[k], "verification_state": "verified",
                   "verified_at": collected[f"{k}_verified_at"],
                   "verified_via": collected.get(f"{k}_verified_via", VERIFIED_VIA[k])}
               for k in VERIFIED_VIA if collected.get(k)},
            **({"address": collected["address"]} if collected.get("address") else {}),
            "submitted_at": collected["submitted_at"],
            "verified_at": confirm.confirmed_at.isoformat(),
            "ip": confirm.ip,
            "user_agent": confirm.user_agent,
            "submission_ip": collected.get("ip"),
            "consents": [consents_db.event_as_dict(c) for c in consents],
        }
        endpoints = await crud.record_webhook_event(
            session, client_id=journey.client_id, key=f"{journey.id}/{input.step}",
            type=EventType.data_verified, data=data,
        )
        return EmittedEvents(), released + endpoints

    async def _confirm_point(self, session: AsyncSession, journey: Journey, contact: Contact,
                             input: RecordVerificationInput, value: str) -> list[str] | None:
        """Makes the confirmed value the contact's verified contact point, moving it from
        another contact under the household rule; returns the endpoints to wake, or None when
        the rule refuses it (recorded)."""
        confirm, kind = input.confirm, input.kind
        client = await session.get_one(Client, journey.client_id)
        # One mailbox in any letter case: two persons confirming `Ann@x.nl` and `ann@x.nl` at
        # once take turns, and the second finds the first's as the same address.
        _, key = normalise.point_key(kind, value)
        await crud.lock(session, key=f"contact-point/{client.id}/{kind}/{key}")
        claimed = (await session.scalars(select(ContactPoint).where(
            ContactPoint.client_id == client.id, crud.is_point(kind, value),
            ContactPoint.contact_id != contact.id,
            ContactPoint.verification_state == VerificationState.verified, POINT_IN_USE))).all()
        if claimed and client.household_rule == HouseholdRule.reject:
            # A step of its own: the same confirmation may succeed later (the client
            # switches to the move rule), and its `verified` event must not be lost as a
            # repeat.
            await crud.add_journey_event(
                session, journey=journey, step=f"{input.step}/refused",
                type="confirmation_refused", at=confirm.confirmed_at,
                detail={"reason": "address_belongs_to_another_contact"})
            return None
        released = [
            e for point in claimed
            for e in await self._release(session, point, contact, confirm.confirmed_at)]
        await crud.insert_ignoring_conflicts(session, ContactPoint, [{
            "id": uuid.uuid4(), "client_id": journey.client_id, "contact_id": contact.id,
            "kind": kind, "value": value}])
        # An address typed in another letter case than the contact's is that point.
        point = await crud.same_point(session, contact_id=contact.id, kind=kind, value=value)
        assert point is not None
        before = point.verification_state
        # The customer confirmed it: a point the client had removed is in use again.
        removed, point.removed_at = point.removed_at, None
        point.verification_state = VerificationState.verified
        point.verified_at = confirm.confirmed_at
        # The customer received and confirmed it: whatever bounced before reaches them now,
        # and they want our messages there again, whatever they reported as spam before.
        crud.clear_undeliverable(point)
        point.complained_since = None
        point.verified_via = (journey.collected or {}).get(f"{kind}_verified_via",
                                                           VERIFIED_VIA[kind])
        # The registry changed: a client syncing by `updated_since` must hear of it.
        contact.updated_at = utcnow()
        if before != VerificationState.verified or removed:
            await audit.record(
                session, client_id=journey.client_id, actor=audit.customer_actor(journey),
                action=AuditAction.update, contact_ids=[contact.id],
                detail={"changes": {"contact_points": {
                    "old": {"kind": kind, "value": point.value, "state": before,
                            "removed_at": removed and removed.isoformat()},
                    "new": {"kind": kind, "value": point.value, "state": "verified",
                            "removed_at": None}}}})
        return released

    async def _keep_address(self, session: AsyncSession, journey: Journey, contact: Contact,
                            entered: dict[str, Any], at: datetime) -> None:
        """The address the customer confirmed or corrected becomes the contact's address of its
        type, confirmed, the previous one kept inactive; an unchanged one is only confirmed."""
        reg = await registry.registry_for(
            session, client_id=journey.client_id,
            secret_key=self._settings.secret_key.get_secret_value())
        address = AddressIn.model_validate({**entered, "primary": True})
        if address.type not in {t.name for t in reg.settings.address_types}:
            # The client changed its types since the customer typed it; refused by the registry,
            # the confirmation would fail for ever. The journey keeps the address as typed.
            if reg.settings.entered_address_type is None:
                activity.logger.warning("client %s keeps no addresses: the one confirmed in "
                                        "journey %s stays on the journey", journey.client_id,
                                        journey.id)
                return
            address = address.model_copy(update={"type": reg.settings.entered_address_type})
        current = (await session.scalars(select(ContactAddress).where(
            ContactAddress.contact_id == contact.id, ContactAddress.type == address.type,
            ContactAddress.active))).first()
        if current is not None and "region" not in entered and current.country == address.country:
            # Not asked on the page (its country uses none, or it predates the field): a
            # corrected street in the same country keeps the region known.
            address = address.model_copy(update={"region": current.region})
        # Entered before the page asked for line 2, an address says nothing about it.
        if current is None or any(getattr(current, f) != getattr(address, f)
                                  for f in PAGE_ADDRESS_FIELDS if f in entered):
            current = await registry.add_address(session, reg, contact, address,
                                                 audit.customer_actor(journey))
        current.confirmed_at = at
        contact.updated_at = utcnow()

    @staticmethod
    async def _release(session: AsyncSession, point: ContactPoint, new_owner: Contact,
                       at: datetime) -> list[str]:
        """Moves a verified address to its new owner: the previous owner's opt-ins by email
        lapse with it, recorded in their ledger (an opt-in belongs to one person)."""
        point.verification_state = VerificationState.released
        point.verified_via = f"moved to contact {new_owner.id}"
        previous = await session.get_one(Contact, point.contact_id)
        previous.updated_at = utcnow()
        return await consents_db.lapse_email_opt_ins(
            session, contact=previous, at=at, shown_in="household_rule",
            actor=f"household rule: address moved to contact {new_owner.id}")

    @activity.defn
    async def record_consent_answer(self, input: RecordConsentAnswerInput) -> EmittedEvents:
        """The customer accepted or rejected the client's consent form (GDPR state)."""
        answer = input.answer
        async with transaction(self._sessions) as session:
            journey, contact, campaign = await self._load(session, input.journey_id)
            if ended := self._ended_before(journey, answer.given_at):
                return ended
            # As it stands once the client's own recording of an answer has committed: that
            # one may be newer than the customer's on this page.
            await session.refresh(contact, with_for_update=consents_db.DECIDING)
            [box] = campaign.spec["consents"]
            text, display_id = await self._answered(session, contact, box, answer.language,
                                                    answer.display_id)
            _, endpoints = await consents_db.record(session, contact=contact, decisions=[
                consents_db.Decision(
                    purpose=box["purpose"], channel=box["channel"], granted=answer.accepted,
                    given_at=answer.given_at, source=ConsentSource.contact_page, text=text,
                    ip=answer.ip, user_agent=answer.user_agent, shown_in="reconsent_page",
                    display_id=display_id)],
                journey_id=journey.id, step=input.step, checkbox_key=box["key"])
            # An answer older than the contact's state (the client recorded a newer one
            # meanwhile) is history in the ledger, as the API's older answers are: it neither
            # undoes the newer one nor anonymises.
            newest = (contact.gdpr_consent_updated_at is None
                      or answer.given_at >= contact.gdpr_consent_updated_at)
            if newest:
                contact.gdpr_consent_state = (GdprConsentState.accepted if answer.accepted
                                              else GdprConsentState.rejected)
                contact.gdpr_consent_updated_at = answer.given_at
            journey.stage = Stage.accepted if answer.accepted else Stage.rejected
            journey.finished_at = answer.given_at
            await crud.add_journey_event(session, journey=journey, step=input.step,
                                         type=journey.stage, at=answer.given_at,
                                         detail={"ip": answer.ip})
            blocked = await gdpr.apply_consent_consequence(
                session, await session.get_one(Client, journey.client_id), contact,
                audit.customer_actor(journey), settings=self._settings) if newest else None
            if blocked:
                await crud.add_journey_event(session, journey=journey, step=f"{input.step}/gdpr",
                                             type=ANONYMISATION_BLOCKED, at=answer.given_at,
                                             detail={"reasons": blocked})
        await self._waker.wake(journey.client_id, endpoints, input.step)
        return EmittedEvents()

    @activity.defn
    async def message_category(self, input: MessageCategoryInput) -> str | None:
        """The category the client's sending rules give the journey's message type, asked
        when a complaint may stop the journey's invitations and reminders."""
        async with transaction(self._sessions) as session:
            journey = await session.get_one(Journey, uuid.UUID(input.journey_id))
            return await consents_db.category_of(session, client_id=journey.client_id,
                                                 message_type=input.message_type)

    @activity.defn
    async def finish_journey(self, input: FinishJourneyInput) -> EmittedEvents:
        detail = input.detail
        if input.stage == Stage.cancelled:
            # Journeys cancelled before they recorded who did it (and those their archived
            # campaign ended before they reached anyone) were the client's.
            detail = {"by": CancelledBy.client, **(detail or {})}
        async with transaction(self._sessions) as session:
            journey, contact, campaign = await self._load(session, input.journey_id)
            # A journey ended already is not ended again, nor announced twice. (A retry of
            # this write finds its own end, at the same time, and wakes the endpoints again.)
            if ended := self._ended_before(journey, input.at):
                return ended
            journey.stage = input.stage
            journey.finished_at = input.at
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=input.stage, at=input.at,
                detail=input.detail,
            )
            if input.stage not in crud.END_EVENTS:
                return EmittedEvents()
            endpoints = await crud.announce_end(session, journey=journey, campaign=campaign,
                                                contact=contact, step=input.step, detail=detail)
        # Only now, committed, may the endpoints' workflows see the event.
        await self._waker.wake(journey.client_id, endpoints, input.step)
        return EmittedEvents()
