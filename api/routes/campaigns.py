"""Campaigns: what to collect, consents, cadence; and the contacts put into them."""

import uuid

from fastapi import APIRouter, HTTPException, Query, status
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from fastapi.responses import JSONResponse
from sqlalchemy import select

from api import enrolment, launches
from api.deps import ActorDep, ClientDep, RegistryDep, SessionDep, StateDep
from api.errors import (
    ERROR_RESPONSES,
    ErrorBody,
    ErrorDetail,
    FieldProblems,
    raise_if_unavailable,
)
from api.lost_workflows import how_lost
from api.routes.branding import check_branding
from api.schemas import (
    BrandingIn,
    CampaignCreate,
    CampaignOut,
    EnrolRequest,
    EnrolResponse,
    FieldError,
)
from core.contracts import ReconsentProgress, ReconsentRunInput
from core.vocabulary import JourneyKind, PurposeKind
from db import consents
from db.models import Campaign
from workflows.reconsent import ReconsentRunWorkflow
from workflows.starts import start_journeys

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)


class EnrolRefused(ErrorBody, EnrolResponse):
    """No item was acceptable: the structured error every 4xx carries, and the per-item results."""


def item_field(index: int, field: str) -> str:
    return f"contacts[{index}]" if field == "item" else f"contacts[{index}].{field}"


async def stored_spec(session, client_id: uuid.UUID, body: CampaignCreate) -> dict:
    """The campaign as stored, each consent text resolved to a registered legal-text version
    (whose hash proves later exactly which words the customer was shown)."""
    spec = body.model_dump(mode="json")
    purposes = await consents.purposes_by_key(session, client_id=client_id)
    problems = []
    for i, box in enumerate(spec["consents"]):
        if box["purpose"] not in purposes:
            problems.append(FieldError(field=f"consents[{i}].purpose",
                                       message=f"unknown purpose {box['purpose']!r}"))
            continue
        is_form = purposes[box["purpose"]].kind == PurposeKind.data_processing
        if is_form != (body.kind == JourneyKind.reconsent):
            problems.append(FieldError(field=f"consents[{i}].purpose", message=(
                "a reconsent campaign asks for a data_processing purpose" if not is_form else
                "the data_processing consent is asked by a reconsent campaign")))
            continue
        for language, text in box["texts"].items():
            where = f"consents[{i}].texts.{language}"
            try:
                stored = await (consents.register_legal_text(
                    session, client_id=client_id, purpose_key=box["purpose"], language=language,
                    version=text["version"], text=text["text"]) if text["text"] else
                    consents.legal_text(session, client_id=client_id, purpose_key=box["purpose"],
                                        language=language, version=text["version"]))
            except consents.LegalTextConflict as err:
                problems.append(FieldError(field=where, message=str(err)))
                continue
            if stored is None:
                problems.append(FieldError(field=where, message=f"no stored version "
                                           f"{text['version']!r}; give its text"))
                continue
            text.update(language=language, text=stored.text, sha256=stored.sha256)
    if problems:
        raise FieldProblems(problems)
    return spec


def collects_data(campaign: Campaign) -> bool:
    """A data-collection campaign (the default), not a re-consent one, which asks no data."""
    return campaign.spec.get("kind", JourneyKind.data_collection) == JourneyKind.data_collection


def consent_form(campaign: Campaign) -> dict | None:
    """A reconsent campaign's one consent: its form. None for one stored without it (before
    creating one was refused), which can ask nobody anything."""
    boxes = campaign.spec.get("consents") or []
    return boxes[0] if len(boxes) == 1 else None


async def campaign_of(session, client_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.client_id != client_id:
        raise HTTPException(404, "campaign not found")
    return campaign


async def enrolling_campaign(session, client_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    """The campaign, if it may take new journeys: a paused one does (their invitations wait),
    an archived one no longer."""
    campaign = await campaign_of(session, client_id, campaign_id)
    if campaign.status == "archived":
        raise HTTPException(409, "the campaign is archived")
    return campaign


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
async def create_campaign(body: CampaignCreate, client: ClientDep, session: SessionDep,
                          state: StateDep) -> Campaign:
    """With a `recurrence`, a Temporal Schedule launches the campaign periodically."""
    spec = await stored_spec(session, client.id, body)
    if body.branding is not None:
        spec["branding"] = await check_branding(session, state.settings, client, body.branding,
                                                field="branding", under=client.branding)
    campaign = Campaign(client_id=client.id, name=body.name, spec=spec)
    session.add(campaign)
    await session.flush()
    if body.recurrence is not None:
        if body.kind != JourneyKind.data_collection or body.payments:
            raise FieldProblems([FieldError(field="recurrence", message=(
                "only a data_collection campaign without payments recurs"))])
        await launches.save_schedule(state.temporal, state.settings, campaign, (
            await launches.selection_of(session, client.id, body.recurrence.selection,
                                        "recurrence.selection")), "recurrence")
    await session.commit()
    return campaign


@router.get("", response_model=list[CampaignOut])
async def list_campaigns(client: ClientDep, session: SessionDep) -> list[Campaign]:
    return list(await session.scalars(
        select(Campaign).where(Campaign.client_id == client.id).order_by(Campaign.created_at)))


@router.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep) -> Campaign:
    return await campaign_of(session, client.id, campaign_id)


@router.put("/{campaign_id}/branding", response_model=CampaignOut)
async def replace_campaign_branding(campaign_id: uuid.UUID, body: BrandingIn, client: ClientDep,
                                    session: SessionDep, state: StateDep) -> Campaign:
    """Replaces what this campaign overrides of the client's branding (an empty object: none).
    Messages sent from now on and every page view use it."""
    campaign = await campaign_of(session, client.id, campaign_id)
    branding = await check_branding(session, state.settings, client, body, under=client.branding)
    # A new dict: the JSON column notices reassignment, not changes inside it.
    campaign.spec = {**campaign.spec, "branding": branding}
    await session.commit()
    return campaign


@router.post(
    "/{campaign_id}/contacts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EnrolResponse,
    responses={
        409: {"model": ErrorBody, "description": "The campaign is archived"},
        413: {"model": ErrorBody, "description": "More contacts than one request may carry"},
        422: {"model": EnrolRefused | ErrorBody,
              "description": "Validation failed, or no item was acceptable"},
    },
)
async def enrol_contacts(
    campaign_id: uuid.UUID, body: EnrolRequest, client: ClientDep, session: SessionDep,
    state: StateDep, reg: RegistryDep, actor: ActorDep,
) -> EnrolResponse | JSONResponse:
    """Puts contacts into the campaign; each accepted one gets a journey.

    Items are judged one by one: bad ones are reported by index, good ones are kept.
    Repeating a request is safe: enrolled contacts come back as `already_enrolled`.
    """
    campaign = await enrolling_campaign(session, client.id, campaign_id)
    limit = state.settings.max_contacts_per_request
    if len(body.contacts) > limit:
        raise HTTPException(413, f"at most {limit} contacts per request")
    valid, rejected = enrolment.validate_items(body.contacts)
    results, journeys = [], []
    if valid:
        results, journeys = await enrolment.write_contacts_and_journeys(
            session, reg, actor, state.temporal, campaign=campaign, items=valid)
        await session.commit()
        await start_journeys(state.temporal, state.settings, campaign=campaign,
                             journeys=journeys)
    results = sorted(results + rejected, key=lambda r: r.index)
    refused = sum(r.status == "rejected" for r in results)
    response = EnrolResponse(accepted=len(results) - refused, rejected=refused, results=results)
    if response.accepted == 0:
        rejection = EnrolRefused(
            **response.model_dump(),
            error=ErrorDetail(
                code="no_acceptable_contact", message="no contact in this request was acceptable",
                fields=[FieldError(field=item_field(r.index, e.field), message=e.message)
                        for r in results for e in r.errors]))
        return JSONResponse(rejection.model_dump(mode="json"), status_code=422)
    return response


@router.post("/{campaign_id}/reconsent-run", status_code=status.HTTP_202_ACCEPTED,
             response_model=ReconsentProgress, response_model_exclude_none=True,
             responses={409: {"model": ErrorBody, "description": (
                 "Not a reconsent campaign, archived, or without a consent form")}})
async def require_reconsent(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            state: StateDep, batch_size: int = Query(200, ge=1, le=1000)
                            ) -> ReconsentProgress:
    """Requires re-consent from all your contacts: Accepted, Rejected and Pending go back to
    Pending (Withdrawn stays) and each gets this reconsent campaign's journey; a contact who
    has answered this campaign's form already keeps the answer. Starting it again while it runs,
    or once it finished, returns that run; one an operator terminated starts anew."""
    campaign = await enrolling_campaign(session, client.id, campaign_id)
    if campaign.spec.get("kind") != JourneyKind.reconsent:
        raise HTTPException(409, "only a reconsent campaign can require re-consent")
    if consent_form(campaign) is None:
        # Running it would set everyone's consent to pending with no form to answer.
        raise HTTPException(409, "this reconsent campaign has no consent form (it was created "
                            "without exactly one consent); archive it and create a new one "
                            "whose `consents` holds the form")
    run_id = f"reconsent/{campaign.id}"
    try:
        handle = await state.temporal.start_workflow(
            ReconsentRunWorkflow.run, ReconsentRunInput(str(campaign.id), batch_size),
            id=run_id, task_queue=state.settings.temporal_task_queue,
            search_attributes=launches.campaign_search_attributes(campaign),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A finished run is not repeated: a new consent form is a new campaign. One an
            # operator terminated (or that failed) may be started again, and asks whom it
            # did not reach.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
    except WorkflowAlreadyStartedError:
        handle = state.temporal.get_workflow_handle_for(ReconsentRunWorkflow.run, run_id)
    return await handle.query(ReconsentRunWorkflow.state)


@router.get("/{campaign_id}/reconsent-run", response_model=ReconsentProgress,
            response_model_exclude_none=True)
async def reconsent_progress(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                             state: StateDep) -> ReconsentProgress:
    """The run's progress; `stopped` says how a run ended without finishing (`terminated` by an
    operator, ...): it will not be `done`, and posting again starts a new run."""
    await campaign_of(session, client.id, campaign_id)
    handle = state.temporal.get_workflow_handle_for(ReconsentRunWorkflow.run,
                                                    f"reconsent/{campaign_id}")
    stopped = await how_lost(state.temporal, handle.id)
    if stopped == "not_found":
        raise HTTPException(404, "no re-consent run for this campaign")
    try:
        progress = await handle.query(ReconsentRunWorkflow.state)
    except RPCError as err:
        if stopped is None:
            raise
        # Terminated before its first task: it has no state to query.
        raise_if_unavailable(err)
        progress = ReconsentProgress()
    progress.stopped = stopped
    return progress
