"""Campaigns: what to collect, consents, cadence; and the contacts put into them."""

import json
import uuid
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import and_, exists, or_, select
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from fastapi.responses import JSONResponse

from api import enrolment, launches
from api.changes import commit_settings_change
from api.deps import (
    ActorDep,
    ClientDep,
    NoBody,
    RegistryDep,
    SessionDep,
    StateDep,
)
from api.errors import (
    ERROR_RESPONSES,
    EnrolRefused,
    ErrorBody,
    FieldProblems,
    none_acceptable,
    raise_if_unavailable,
)
from api.idempotency import REPLAYED, IdempotencyDep
from api.lost_workflows import how_lost
from api.message_wording import (
    ClaimSms,
    check_messages,
    domain_problem,
    open_claims_problem,
    preview,
    stored_messages,
    unsent_confirmations,
)
from api.routes.branding import check_branding
from api.schemas import (
    BrandingIn,
    CampaignChangeOut,
    CampaignChangePage,
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignStatus,
    EnrolRequest,
    EnrolResponse,
    FieldError,
    Language,
    MAX_INT4,
    MessageKindName,
    MessagePreview,
    NOT_FOR_RECONSENT,
)
from contacts.audit import Actor
from core.contracts import CancelLaunchInput, ReconsentProgress, ReconsentRunInput
from core.security import sha256_hex
from core.vocabulary import FINAL_STAGES, EventType, JourneyKind, PurposeKind
from db import consents, crud
from db.models import Campaign, CampaignChange, Journey
from messaging.branding import brand_for
from messaging.wording import KINDS
from workflows.campaign_launch import CampaignLaunchWorkflow
from workflows.reconsent import ReconsentRunWorkflow
from workflows.starts import start_journeys

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)


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
    spec["messages"] = stored_messages(body)
    return spec


def collects_data(campaign: Campaign) -> bool:
    """A data-collection campaign (the default), not a re-consent one, which asks no data."""
    return campaign.spec.get("kind", JourneyKind.data_collection) == JourneyKind.data_collection


def consent_form(campaign: Campaign) -> dict | None:
    """A reconsent campaign's one consent: its form. None for one stored without it (before
    creating one was refused), which can ask nobody anything."""
    boxes = campaign.spec.get("consents") or []
    return boxes[0] if len(boxes) == 1 else None


async def campaign_of(session, client_id: uuid.UUID, campaign_id: uuid.UUID, *,
                      to_change: bool = False) -> Campaign:
    """`to_change`: read under a row lock held until commit, so that changes made at once each
    start from what the other stored. NO KEY UPDATE, as a change keeps the id, so enrolments
    (whose journeys name the campaign) go on meanwhile."""
    campaign = await session.get(
        Campaign, campaign_id, populate_existing=to_change,
        with_for_update={"key_share": True} if to_change else None)
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


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CampaignOut,
             responses={409: {"model": ErrorBody, "description": (
                 "The Idempotency-Key was used with another request")}, 201: REPLAYED})
async def create_campaign(body: CampaignCreate, client: ClientDep, session: SessionDep,
                          state: StateDep, response: Response,
                          idempotency: IdempotencyDep) -> CampaignOut | dict[str, Any]:
    """With a `recurrence`, a Temporal Schedule launches the campaign periodically."""
    # As read, so a retry that spells the same campaign otherwise still matches.
    if (first := await idempotency.replay(body.model_dump(mode="json"), response)) is not None:
        return first
    spec = await stored_spec(session, client.id, body)
    if body.branding is not None:
        spec["branding"] = await check_branding(session, state.settings, client, body.branding,
                                                field="branding", under=client.branding)
    check_messages(spec, state.settings, client)
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
    answer = CampaignOut.model_validate(campaign, from_attributes=True)
    await idempotency.answered(answer, status.HTTP_201_CREATED)
    await session.commit()
    return answer


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    client: ClientDep, session: SessionDep, status: CampaignStatus | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
) -> CampaignPage:
    """Oldest first."""
    after = None
    if cursor is not None:
        after = await session.get(Campaign, cursor)
        if after is None or after.client_id != client.id:
            raise FieldProblems([FieldError(field="cursor", message=(
                "not a next_cursor of this list; start again without a cursor"))])
    found = await crud.campaigns_of(session, client_id=client.id, status=status, after=after,
                                    limit=limit + 1)
    return CampaignPage(items=[CampaignOut.model_validate(c, from_attributes=True)
                               for c in found[:limit]],
                        next_cursor=str(found[limit - 1].id) if len(found) > limit else None)


@router.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep) -> Campaign:
    return await campaign_of(session, client.id, campaign_id)


@router.get("/{campaign_id}/messages/preview", response_model=MessagePreview)
async def preview_message(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    kind: MessageKindName = Query(description=", ".join(KINDS)),
    # A locale or upper case is taken as its language (`NL`, `nl-BE`: `nl`), as everywhere.
    language: Language | None = Query(None, description=(
        "default: the campaign's default_language")),
) -> dict[str, Any]:
    """The message as a sample customer would get it now, in the campaign's own wording where
    it has one (`messages`) and the built-in text otherwise: check the wording before a launch."""
    campaign = await campaign_of(session, client.id, campaign_id)
    body = CampaignCreate.model_validate(as_created(campaign.spec))
    language = language or body.default_language
    if language not in body.languages:
        raise FieldProblems([FieldError(field="language", message=(
            f"the campaign speaks {body.languages}; preview one of them"))])
    return preview(body, brand_for(client.name, client.branding, campaign.spec.get("branding"),
                                   state.settings), state.settings, kind, language)


@router.put("/{campaign_id}/branding", response_model=CampaignOut)
async def replace_campaign_branding(campaign_id: uuid.UUID, body: BrandingIn, client: ClientDep,
                                    session: SessionDep, state: StateDep,
                                    actor: ActorDep) -> Campaign:
    """Replaces what this campaign overrides of the client's branding (an empty object: none).
    Messages sent from now on and every page view use it."""
    campaign = await campaign_of(session, client.id, campaign_id, to_change=True)
    before = snapshot(campaign)
    branding = await check_branding(session, state.settings, client, body, under=client.branding)
    # A new dict: the JSON column notices reassignment, not changes inside it.
    spec = {**campaign.spec, "branding": branding}
    # Another domain lengthens or shortens every link, in the campaign's own SMS wording too.
    if problem := domain_problem(spec, state.settings, before=brand_for(
            client.name, client.branding, campaign.spec.get("branding"), state.settings),
            after=brand_for(client.name, client.branding, branding, state.settings)):
        raise FieldProblems([FieldError(field="custom_domain",
                                        message=f"campaign {campaign.name!r}: {problem}")])
    await check_open_claims(session, state, client, campaign, spec, field="custom_domain")
    campaign.spec = spec
    await commit_change(session, state, campaign, before, actor)
    return campaign


def snapshot(campaign: Campaign) -> dict[str, Any]:
    """What a change of the campaign is told by: its name, status and every setting."""
    return {**campaign.spec, "name": campaign.name, "status": campaign.status}


async def commit_change(session, state, campaign: Campaign, before: dict[str, Any],
                        actor: Actor) -> None:
    """Commits the campaign, with what changed since `before` (the old and new value of each
    top-level setting) kept and announced as `campaign.updated`."""
    await commit_settings_change(
        session, state, CampaignChange(
            client_id=campaign.client_id, campaign_id=campaign.id, actor_type=actor.type,
            actor_id=actor.id, changes=crud.changed_settings(before, snapshot(campaign))),
        type=EventType.campaign_updated, data={"campaign": {
            "id": str(campaign.id), "name": campaign.name, "status": campaign.status}})


# Fixed once the campaign exists: its running journeys read them (what the page asks and how,
# whether a claim is owed) and could not follow a change halfway.
FIXED = ("kind", "mode", "payments", "collect")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key (its default
    applies), anything else (a list too) replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def as_created(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored campaign as the body that would create it, which a change is merged into."""
    # A reconsent campaign is stored with the defaults of what it may not be given.
    left_out = {"recurrence", *(NOT_FOR_RECONSENT if spec.get("kind") == JourneyKind.reconsent
                                else ())}
    body = {key: value for key, value in spec.items()
            if key in CampaignCreate.model_fields and key not in left_out and value is not None}
    body["consents"] = [
        {**box, "texts": {language: {"version": text["version"], "text": text["text"]}
                          for language, text in box["texts"].items()}}
        for box in spec.get("consents", [])]
    if body.get("channel_plan"):
        # Stored with their defaults, which a plan does not use: given beside the plan they
        # would be refused, and every preview or change of the campaign with them.
        body.pop("reminders", None)
    return body


def as_given(consents: Any) -> Any:
    """Consents as read back carry each text's `language` and `sha256`, which follow from it:
    where they are those of the text, they are dropped, so what was read may be sent back."""
    if not isinstance(consents, list):
        return consents  # for the validation to refuse
    boxes = []
    for box in consents:
        if isinstance(box, dict) and isinstance(box.get("texts"), dict):
            texts = {}
            for language, text in box["texts"].items():
                if isinstance(text, dict):
                    derived = {"language": language, "sha256": sha256_hex(str(text.get("text")))}
                    text = {k: v for k, v in text.items() if not (k in derived
                                                                 and derived[k] == v)}
                texts[language] = text
            box = {**box, "texts": texts}
        boxes.append(box)
    return boxes


# The settings that shape the SMS naming a claim, most telling first.
SMS_SETTINGS = ("messages", "languages", "branding", "name", "incentive_text")


async def changed_spec(session, state, client, campaign: Campaign,
                       patch: dict[str, Any]) -> dict[str, Any]:
    """The campaign's settings with the patch merged in, checked as on creation."""
    if "consents" in patch:
        patch = {**patch, "consents": as_given(patch["consents"])}
    if "recurrence" in patch:
        raise FieldProblems([FieldError(field="recurrence", message=(
            "set with PUT /v1/campaigns/{id}/recurrence, removed with DELETE"))])
    # Judged first, as the rest would be judged by them (a reconsent campaign's one consent).
    # One given as it is (as read back) is no change; `null`, as everywhere, is the default.
    default = {key: CampaignCreate.model_fields[key].get_default(call_default_factory=True)
               for key in FIXED}
    was = {key: campaign.spec.get(key, default[key]) for key in FIXED}
    fixed = [FieldError(field=key, message=(
        f"cannot be changed once the campaign exists, as its journeys follow it; create a new "
        f"campaign for another {key} (this one's is {json.dumps(was[key])})"))
        for key in FIXED if key in patch and (
            default[key] if patch[key] is None else patch[key]) != was[key]]
    if fixed:
        raise FieldProblems(fixed)
    merged = merge_patch(as_created(campaign.spec), patch)
    if merged.get("channel_plan") and "reminders" not in patch:
        # Stored with their defaults, which a plan does not use: merged in, they would count
        # as given beside the plan, and refuse every change (a new plan replaces them).
        merged.pop("reminders", None)
    try:
        body = CampaignCreate.model_validate(merged)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None
    spec = await stored_spec(session, client.id, body)
    spec["branding"] = campaign.spec.get("branding")
    if "branding" in patch:
        spec["branding"] = None if body.branding is None else await check_branding(
            session, state.settings, client, body.branding, field="branding",
            under=client.branding)
    spec["recurrence"] = campaign.spec.get("recurrence")
    check_messages(spec, state.settings, client, before=campaign.spec,
                   confirming=await confirmations_owed(session, campaign, spec))
    # Named after the change most likely to have lengthened the SMS.
    await check_open_claims(session, state, client, campaign, spec, field=next(
        (key for key in SMS_SETTINGS if key in patch), next(iter(patch))))
    return spec


async def confirmations_owed(session, campaign: Campaign, spec: dict[str, Any]) -> bool:
    """Whether journeys of the campaign started while it sent a confirmation are still open:
    `send_confirmation` is their workflow's input, so they thank the customer in the
    campaign's wording however it is set now. Asked only of a change that would leave
    confirmation wording with `send_confirmation` off."""
    if not unsent_confirmations(spec, campaign.spec):
        return False  # the change keeps no wording a confirmation would not read
    # When it was on: from its switches as the campaign's changes kept them.
    switches = [(at, changes["send_confirmation"]) for at, changes in await session.execute(
        select(CampaignChange.at, CampaignChange.changes)
        .where(CampaignChange.campaign_id == campaign.id).order_by(CampaignChange.id))
        if "send_confirmation" in changes]
    on = bool(switches[0][1]["old"] if switches else campaign.spec.get("send_confirmation"))
    since, windows = campaign.created_at, []
    for at, switch in switches:
        if on:
            windows.append(and_(Journey.created_at >= since, Journey.created_at < at))
        on, since = bool(switch["new"]), at
    if on:  # up to this change
        windows.append(Journey.created_at >= since)
    return bool(windows) and bool(await session.scalar(select(exists().where(
        Journey.campaign_id == campaign.id, Journey.stage.not_in(FINAL_STAGES),
        or_(*windows)))))


async def check_open_claims(session, state, client, campaign: Campaign, spec: dict[str, Any],
                            *, field: str) -> None:
    """Refuses a change (to `spec`) of a payment-reminder campaign that would leave an open
    journey's SMS too long to name its claim."""
    if problem := await open_claims_problem(session, state.settings, client, campaign,
                                            spec=spec, client_branding=client.branding):
        raise FieldProblems([FieldError(field=field, message=problem)])


async def change_status(session, state, campaign: Campaign, new: str) -> None:
    """Pauses or resumes the campaign's schedule and running launch with it, or (archived)
    deletes the one and cancels the other."""
    if campaign.status == "archived" and new != "archived":
        raise HTTPException(409, "an archived campaign stays archived")
    running = await launches.running_launch(session, state.temporal, campaign.id)
    if new == "archived":
        await launches.delete_schedule(state.temporal, campaign.id)
        campaign.spec = {**campaign.spec, "recurrence": None}
        if running is not None:
            await launches.change_launch(state.temporal, running[0],
                                         CampaignLaunchWorkflow.cancel, CancelLaunchInput())
    else:
        await launches.set_schedule_paused(state.temporal, campaign, new == "paused")
        # Resumed only as the campaign leaves `paused`: `active` said again (a client syncing
        # its record) leaves a launch the client paused, or started paused, as it is.
        if running is not None and (new == "paused" or campaign.status == "paused"):
            await launches.change_launch(state.temporal, running[0], (
                CampaignLaunchWorkflow.pause if new == "paused"
                else CampaignLaunchWorkflow.resume))
    campaign.status = new


@router.patch("/{campaign_id}", response_model=CampaignOut, responses={
    409: {"model": ErrorBody, "description": "An archived campaign stays archived"}})
async def change_campaign(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    actor: ActorDep,
    body: Annotated[dict[str, Any], Body(description=(
        "A JSON merge patch (RFC 7396) of the campaign: `status` (active, paused, archived), "
        "`name`, and any setting of POST /v1/campaigns but `kind`, `mode`, `payments`, "
        "`collect` and `recurrence`; nested objects (`reminders`, `verification`, `branding`) "
        "merge key by key, lists (`consents`, `languages`, `channel_plan`) are replaced whole, "
        "`null` restores a setting's default. Checked as on creation. Journeys started from "
        "now on follow the new settings; see README, Changing a campaign, for running ones."),
        openapi_examples={"rename and remind more": {"value": {
            "name": "Spring update (2nd wave)", "reminders": {"max_count": 3}}},
            "pause": {"value": {"status": "paused"}}})],
) -> Campaign:
    """Changes the campaign's name, settings or status (paused: its schedule and running launch
    pause, and its invitations and reminders wait; active: all resume; archived, for good: its
    schedule is deleted, a running launch cancelled, and it sends no more invitations or
    reminders). Each change is kept (GET /v1/campaigns/{id}/changes) and announced as
    `campaign.updated`."""
    campaign = await campaign_of(session, client.id, campaign_id, to_change=True)
    before = snapshot(campaign)
    patch = dict(body)
    new_status = patch.pop("status", campaign.status)
    if new_status not in get_args(CampaignStatus):
        raise FieldProblems([FieldError(field="status", message=(
            f"must be one of {', '.join(get_args(CampaignStatus))}"))])
    if patch:
        campaign.spec = await changed_spec(session, state, client, campaign, patch)
        campaign.name = campaign.spec["name"]
    if "status" in body:
        await change_status(session, state, campaign, new_status)
    await commit_change(session, state, campaign, before, actor)
    if "status" in body and new_status != "paused":
        # Asked each time, not only when leaving `paused`: a repeated call starts the wake-up
        # that Temporal being unavailable kept from starting the first time.
        await launches.wake_held_journeys(session, state.temporal, state.settings, campaign)
    return campaign


@router.get("/{campaign_id}/changes", response_model=CampaignChangePage)
async def campaign_changes(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: int | None = Query(None, ge=0, le=MAX_INT4,
                               description="next_cursor of the previous page"),
) -> CampaignChangePage:
    """Every change of the campaign's name, status and settings, oldest first: when, by whom
    (the API key), and the old and new value of each setting it changed."""
    await campaign_of(session, client.id, campaign_id)
    changes, next_cursor = await crud.settings_changes(
        session, CampaignChange, CampaignChange.campaign_id == campaign_id, after=cursor,
        limit=limit)
    return CampaignChangePage(items=[CampaignChangeOut.of(c) for c in changes],
                              next_cursor=next_cursor)


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
    brand = brand_for(client.name, client.branding, campaign.spec.get("branding"),
                      state.settings)
    valid, rejected = enrolment.validate_items(
        body.contacts, claim_problem=ClaimSms(campaign.spec, brand, state.settings).problem,
        local_payment_pages=state.settings.dev_mode)
    results, journeys = [], []
    if valid:
        results, journeys = await enrolment.write_contacts_and_journeys(
            session, reg, actor, state.temporal, state.endpoints, campaign=campaign,
            items=valid)
        await session.commit()
        await start_journeys(state.temporal, state.settings, campaign=campaign,
                             journeys=journeys)
    results = sorted(results + rejected, key=lambda r: r.index)
    refused = sum(r.status == "rejected" for r in results)
    response = EnrolResponse(accepted=len(results) - refused, rejected=refused, results=results)
    if response.accepted == 0:
        return none_acceptable(response, items="contacts", code="no_acceptable_contact",
                               message="no contact in this request was acceptable")
    return response


@router.post("/{campaign_id}/reconsent-run", status_code=status.HTTP_202_ACCEPTED,
             dependencies=[NoBody],
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
            static_summary=f"Re-consent run of campaign {campaign.id}",
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
