"""Bounces: reported by the client (or its email/SMS provider, with the client's API key) for a
message a journey sent (listed per campaign with the provider's reason), or for the client's
own email or a KYC email (marking the address in the registry)."""

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError
from temporalio.service import RPCError

from api.deps import ClientDep, ReadsDep, RegistryDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, FieldProblems
from api.routes.campaigns import campaign_of
from api.schemas import MAX_INT4, FieldError, Strict
from contacts import normalise
from core.contracts import BounceInput
from core.vocabulary import BounceKind
from db import bounces
from db.models import Journey, MessageBounce, utcnow
from messaging.phone import PhoneNumberError, provider_number
from workflows.journey import JourneyWorkflow

router = APIRouter(tags=["bounces"], responses=ERROR_RESPONSES)


class BounceReport(Strict):
    message_id: str | None = Field(default=None, min_length=1, max_length=300, description=(
        "The email's Message-ID (with or without <>), or the SMS or print provider's id"))
    journey_id: uuid.UUID | None = Field(default=None, description="With `step`, instead of "
                                         "`message_id`")
    step: str | None = Field(default=None, min_length=1, max_length=100)
    recipient: str = Field(min_length=1, max_length=320,
                           description="The address or number that bounced")
    kind: BounceKind
    reason: str = Field(min_length=1, max_length=2000,
                        description="The provider's own words, kept as given")


class BounceOut(BaseModel):
    id: int
    campaign_id: uuid.UUID
    journey_id: uuid.UUID
    step: str
    channel: str
    recipient: str
    kind: str
    reason: str
    source: str = Field(description="smtp, sms_provider, letter_provider (at send time), api, "
                        "or operator (a message_bounced signal sent to the journey by hand)")
    at: datetime


class OwnMessageBounceOut(BaseModel):
    """A reported bounce of the client's own message (`POST /v1/messages`) or of a KYC email."""

    message: Literal["client_message", "kyc"]
    client_message_id: uuid.UUID | None = Field(description="The message's id, for "
                                                "`client_message`")
    contact_id: uuid.UUID
    kyc_step: str | None = Field(description="The KYC profile's step that sent it, for `kyc`")
    channel: str
    recipient: str
    kind: str = Field(description="As kept: a message bounces once, hard winning over soft")
    reason: str
    source: str
    at: datetime


class BouncePage(BaseModel):
    items: list[BounceOut]
    next_cursor: int | None


def _same_recipient(given: str, sent_to: str, channel: str, region: str) -> bool:
    if channel == "letter":  # returned mail names the address in the provider's own form
        return True
    if channel == "sms":  # sent in E.164; a provider may report it in national form
        try:
            return provider_number(given, region) == sent_to
        except PhoneNumberError:
            return False
    # Mail servers name an international domain in its ASCII form (xn--bcher-kva.example for
    # bücher.example): both are read as the registry reads an address.
    try:
        return normalise.same_email(normalise.email("".join(given.split())), sent_to)
    except PydanticCustomError:
        return False


def bounce_out(bounce: MessageBounce, step: str) -> BounceOut:
    return BounceOut(id=bounce.id, campaign_id=bounce.campaign_id, journey_id=bounce.journey_id,
                     step=step, channel=bounce.channel, recipient=bounce.recipient,
                     kind=bounce.kind, reason=bounce.reason, source=bounce.source, at=bounce.at)


@router.post("/v1/bounces", status_code=status.HTTP_202_ACCEPTED,
             response_model=BounceOut | OwnMessageBounceOut)
async def report_bounce(body: BounceReport, client: ClientDep, session: SessionDep,
                        state: StateDep, reg: RegistryDep) -> BounceOut | OwnMessageBounceOut:
    """A message a journey sent bounced, or its recipient complained (marked it as spam).

    The bounce is kept with its reason and raises `message.bounced`; the journey stops using
    that channel and continues on the next one (SMS if a mobile is known, else a letter). A
    complaint also withdraws the contact's marketing opt-ins by email. Reporting the same
    bounce again changes nothing, nor does a soft bounce of a message that bounced hard: the
    answer is then the hard bounce. A hard bounce of a message that bounced soft turns that
    bounce hard (same id, the new reason): a message bounces once.

    The Message-ID of the client's own email (`POST /v1/messages`) or of a KYC email names
    that message: a hard bounce marks the address undeliverable (the message's status becomes
    `bounced`), a complaint marks it complained and ends its marketing opt-ins by email; no
    journey is involved, so the client's own message raises `client_message.bounced` and a
    KYC email `kyc.message_bounced` rather than `message.bounced`."""
    by_step = body.journey_id is not None or body.step is not None
    if (body.message_id is not None) == by_step:
        raise FieldProblems([FieldError(field="message_id", message=(
            "give either message_id, or journey_id and step"))])
    if body.message_id is None and (body.journey_id is None or body.step is None):
        raise FieldProblems([FieldError(
            field="step" if body.step is None else "journey_id",
            message="give journey_id and step together: the two name the message")])
    message = await bounces.find_message(
        session, client_id=client.id, provider_message_id=body.message_id,
        journey_id=body.journey_id, step=body.step)
    if message is None and body.message_id is not None:
        own = await bounces.find_own_message(session, client_id=client.id,
                                             message_id=body.message_id)
        if own is not None:
            return await report_own_bounce(own, body, client.id, session, state,
                                           reg.settings.default_region)
    if message is None:
        raise HTTPException(404, "no message of yours with this id")
    _check_sent(message.status in ("sent", "bounced"), body.recipient, message.recipient,
                message.channel, reg.settings.default_region)
    bounce, endpoints = await bounces.record_bounce(
        session, message=message, kind=body.kind, reason=body.reason, source="api", at=utcnow())
    step, channel, template = message.step, message.channel, message.template
    journey = await session.get_one(Journey, message.journey_id)
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "bounce")
    handle = state.temporal.get_workflow_handle_for(JourneyWorkflow.run, journey.workflow_id)
    try:
        await handle.signal(JourneyWorkflow.message_bounced,
                            BounceInput(step, channel, BounceKind(bounce.kind), template))
    except RPCError:
        pass  # the journey has ended: the bounce is kept and reported all the same
    return bounce_out(bounce, step)


def _check_sent(sent: bool, given: str, recipient: str | None, channel: str,
                region: str) -> None:
    """A bounce is of a message that went, and names the recipient it went to."""
    if not sent or recipient is None:
        raise FieldProblems([FieldError(field="message_id", message="this message was not sent")])
    if not _same_recipient(given, recipient, channel, region):
        raise FieldProblems([FieldError(field="recipient", message=(
            "is not the recipient this message was sent to"))])


async def report_own_bounce(own: bounces.OwnMessage, body: BounceReport, client_id: uuid.UUID,
                            session: SessionDep, state: StateDep, region: str
                            ) -> OwnMessageBounceOut:
    _check_sent(own.sent, body.recipient, own.recipient, "email", region)
    at = utcnow()
    kind, reason, endpoints = await bounces.record_own_bounce(
        session, own=own, kind=body.kind, reason=body.reason, at=at)
    out = OwnMessageBounceOut(
        message="client_message" if own.client_message else "kyc",
        client_message_id=own.client_message.id if own.client_message else None,
        contact_id=own.contact_id, kyc_step=own.kyc_step, channel="email",
        recipient=own.recipient, kind=kind, reason=reason, source="api", at=at)
    await session.commit()
    await state.endpoints.wake(client_id, endpoints, "bounce")
    return out


@router.get("/v1/campaigns/{campaign_id}/bounces", response_model=BouncePage)
async def list_bounces(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep, reads: ReadsDep,
    kind: BounceKind | None = None, channel: Literal["email", "sms", "letter"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: int | None = Query(None, ge=0, le=MAX_INT4,
                               description="next_cursor of the previous page"),
) -> BouncePage:
    """The campaign's bounces, oldest first, each with the provider's reason."""
    await campaign_of(session, client.id, campaign_id)
    rows = await bounces.campaign_bounces(session, client_id=client.id, campaign_id=campaign_id,
                                          kind=kind, channel=channel, after=cursor,
                                          limit=limit + 1)
    items = [bounce_out(b, step) for b, step in rows[:limit]]
    await reads.of_journeys(item.journey_id for item in items)  # recipients are personal data
    return BouncePage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)
