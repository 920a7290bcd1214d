"""Launching a campaign to the contact registry: one call starts a launch workflow that fans
out the journeys; pause, resume, cancel; progress; recurring launches by a schedule."""

import uuid
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api import launches as launching
from api.deps import ActorDep, ClientDep, NoBody, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody
from api.idempotency import REPLAYED, IdempotencyDep
from api.launch_views import launch_out
from api.routes.campaigns import campaign_of, collects_data, commit_change, snapshot
from api.schemas import (
    CampaignProgress,
    CancelLaunchRequest,
    LaunchOut,
    LaunchPage,
    LaunchRequest,
    MAX_INT4,
    Recurrence,
    RecurrenceOut,
)
from core.contracts import CancelLaunchInput, LaunchProgress
from core.vocabulary import LaunchState, LaunchTrigger
from db import crud, launches
from db.models import Campaign, CampaignLaunch
from workflows.campaign_launch import CampaignLaunchWorkflow, launch_workflow_id

router = APIRouter(prefix="/v1/campaigns", tags=["launches"], responses=ERROR_RESPONSES)
CONFLICT = {409: {"model": ErrorBody, "description": "Not possible in the campaign's or "
                                                     "launch's present state"}}


def launchable(campaign: Campaign, *, unless: tuple[str, ...] = ("paused", "archived")) -> None:
    if not collects_data(campaign):
        raise HTTPException(409, "a reconsent campaign is started by its reconsent run")
    if campaign.spec.get("payments"):
        # Claims come per contact, so such contacts are enrolled with theirs.
        raise HTTPException(409, "a payment-reminder campaign takes its contacts with their "
                                 "claims through POST /v1/campaigns/{id}/contacts")
    if campaign.status in unless:
        raise HTTPException(409, f"the campaign is {campaign.status}")


@router.post("/{campaign_id}/launch", status_code=status.HTTP_202_ACCEPTED,
             response_model=LaunchOut,
             responses={200: {"model": LaunchOut,
                              "description": "The same launch is already running: that one",
                              **REPLAYED},
                        202: REPLAYED, **CONFLICT})
async def launch_campaign(campaign_id: uuid.UUID, body: LaunchRequest, client: ClientDep,
                          session: SessionDep, state: StateDep, response: Response,
                          idempotency: IdempotencyDep) -> LaunchOut | dict[str, Any]:
    """Starts journeys for the registry contacts the selection matches (by default: all
    contacts the campaign's channels reach still missing verified data), in batches, from one launch
    workflow. Repeating the call while that launch runs returns it; nothing is started twice.
    With an Idempotency-Key, also not once it has finished: the retry is answered as the
    first call was."""
    if (first := await idempotency.replay(
            {"campaign_id": str(campaign_id), **body.model_dump(mode="json")},
            response)) is not None:
        return first
    campaign = await campaign_of(session, client.id, campaign_id)
    launchable(campaign)
    selection = await launching.selection_of(session, client.id, body.selection, "selection")
    # One launch request of a campaign at a time, until its workflow runs: a second request
    # sent at the same moment then finds it running instead of starting another one.
    await crud.lock(session, key=f"campaign-launch/{campaign.id}")
    running = await launching.running_launch(session, state.temporal, campaign.id)
    if running is not None:
        launch, progress = running
        differs = [name for name, same in (("selection", launch.selection == asdict(selection)),
                                           ("spread_over", launch.spread_over == body.spread_over))
                   if not same]
        if differs:
            raise HTTPException(409, f"launch {launch.number} of this campaign is running with "
                                     f"another {' and '.join(differs)}; cancel it or wait for "
                                     "it to finish")
        response.status_code = status.HTTP_200_OK
        answer = launch_out(launch, progress)
        await idempotency.answered(answer, status.HTTP_200_OK)
        await session.commit()
        return answer
    number = await launches.next_launch_number(session, campaign_id=campaign.id)
    launch = CampaignLaunch(id=launch_workflow_id(str(campaign.id), number), client_id=client.id,
                            campaign_id=campaign.id, number=number, trigger=LaunchTrigger.api,
                            selection=asdict(selection), spread_over=body.spread_over)
    session.add(launch)
    try:
        await session.flush()
    except IntegrityError as err:
        if not crud.collided(err):
            raise
        # A scheduled launch took the number (it registers itself, without the lock).
        raise HTTPException(409, "another launch of this campaign began at the same moment"
                            ) from None
    # Started before the row commits, so that the lock lasts until the launch runs. Should
    # its first activity look for the row before the commit, its insert of the same launch
    # waits for this one and, refused, finds the row (`begin_launch`).
    await state.temporal.start_workflow(
        CampaignLaunchWorkflow.run,
        launching.launch_input(state.settings, campaign.id, selection, LaunchTrigger.api,
                               paused=body.paused, spread_over=body.spread_over),
        id=launch.id, task_queue=state.settings.launch_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=launching.campaign_search_attributes(campaign),
        static_summary=f"Launch {number} of campaign {campaign.id}")
    answer = launch_out(launch, LaunchProgress(
        state=LaunchState.paused if body.paused else LaunchState.running, number=number))
    await idempotency.answered(answer, status.HTTP_202_ACCEPTED)
    await session.commit()
    return answer


async def _change(session: SessionDep, state: StateDep, client: ClientDep,
                  campaign_id: uuid.UUID, update: Any, *args: Any) -> LaunchOut:
    campaign = await campaign_of(session, client.id, campaign_id)
    if update == CampaignLaunchWorkflow.resume and campaign.status == "paused":
        # Its journeys would only wait: the campaign's pause holds their invitations.
        raise HTTPException(409, "the campaign is paused: resume the campaign itself")
    running = await launching.running_launch(session, state.temporal, campaign_id)
    if running is None:
        raise HTTPException(409, "no launch of this campaign is running")
    launch = running[0]
    return launch_out(launch, await launching.change_launch(
        state.temporal, launch, update, *args))


@router.post("/{campaign_id}/launch/pause", response_model=LaunchOut, responses=CONFLICT,
             dependencies=[NoBody])
async def pause_launch(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                       state: StateDep) -> LaunchOut:
    """Holds the running launch; answers once no batch is in flight (nothing more starts)."""
    return await _change(session, state, client, campaign_id, CampaignLaunchWorkflow.pause)


@router.post("/{campaign_id}/launch/resume", response_model=LaunchOut, responses=CONFLICT,
             dependencies=[NoBody])
async def resume_launch(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                        state: StateDep) -> LaunchOut:
    return await _change(session, state, client, campaign_id, CampaignLaunchWorkflow.resume)


@router.post("/{campaign_id}/launch/cancel", response_model=LaunchOut, responses=CONFLICT)
async def cancel_launch(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                        state: StateDep, body: CancelLaunchRequest | None = None) -> LaunchOut:
    """Stops the fan-out for good; with `cancel_journeys`, the journeys it started that have
    not finished are cancelled too: those that have reached nobody before the answer, the
    others shortly after. Like pause and resume, it needs no body."""
    body = body or CancelLaunchRequest()
    return await _change(session, state, client, campaign_id, CampaignLaunchWorkflow.cancel,
                         CancelLaunchInput(body.cancel_journeys))


@router.get("/{campaign_id}/launches", response_model=LaunchPage)
async def list_launches(
    campaign_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    limit: int = Query(20, ge=1, le=100),
    cursor: int | None = Query(None, ge=1, le=MAX_INT4,
                               description="next_cursor of the previous page"),
) -> LaunchPage:
    """The campaign's launches, newest first, each with its counts: a finished one's final
    counts (kept after Temporal has forgotten it; no `batches`), a running one's from its
    workflow, as `/progress` shows the newest."""
    await campaign_of(session, client.id, campaign_id)
    found = await launches.launches_of(session, campaign_id=campaign_id, before=cursor,
                                       limit=limit + 1)
    items = [launch_out(launch, None if launch.finished_at else await launching.shown_progress(
        session, state.temporal, launch)) for launch in found[:limit]]
    return LaunchPage(items=items,
                      next_cursor=str(found[limit - 1].number) if len(found) > limit else None)


@router.get("/{campaign_id}/progress", response_model=CampaignProgress)
async def campaign_progress(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            state: StateDep) -> CampaignProgress:
    campaign = await campaign_of(session, client.id, campaign_id)
    launch = await launches.latest_launch(session, campaign_id=campaign.id)
    stages = await launches.stage_counts(session, client_id=client.id, campaign_id=campaign.id)
    held = await session.scalar(select(func.count()).select_from(
        launches.held_journeys(campaign.id).subquery()))
    return CampaignProgress(
        campaign_id=campaign.id, status=campaign.status,
        launch=launch_out(launch, await launching.shown_progress(
            session, state.temporal, launch)) if launch else None,
        journeys=sum(stages.values()), stages=stages, held=held or 0)


async def _recurrence_out(state: StateDep, campaign: Campaign) -> RecurrenceOut:
    try:
        described = await state.temporal.get_schedule_handle(
            launching.schedule_id(campaign.id)).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # Deleted outside the API (an operator in the Temporal UI): nothing recurs any more.
        raise HTTPException(404, "this campaign's schedule no longer exists") from None
    # The campaign's status is what counts: a paused campaign's launches start nothing, though
    # an operator unpaused its schedule (whose planned runs Temporal lists even while paused).
    because = ("campaign_paused" if campaign.status != "active" else
               "schedule_paused" if described.schedule.state.paused else None)
    return RecurrenceOut(schedule_id=launching.schedule_id(campaign.id),
                         recurrence=campaign.spec["recurrence"], paused=because is not None,
                         paused_because=because,
                         next_runs=[] if because else described.info.next_action_times[:5])


@router.put("/{campaign_id}/recurrence", response_model=RecurrenceOut, responses=CONFLICT)
async def set_recurrence(campaign_id: uuid.UUID, body: Recurrence, client: ClientDep,
                         session: SessionDep, state: StateDep, actor: ActorDep) -> RecurrenceOut:
    """Launches the campaign periodically; replaces an earlier recurrence."""
    campaign = await campaign_of(session, client.id, campaign_id, to_change=True)
    before = snapshot(campaign)
    # A paused campaign may get a recurrence: its schedule starts paused.
    launchable(campaign, unless=("archived",))
    selection = await launching.selection_of(session, client.id, body.selection,
                                             "selection")
    campaign.spec = {**campaign.spec, "recurrence": body.model_dump(mode="json")}
    await launching.save_schedule(state.temporal, state.settings, campaign, selection, "")
    await commit_change(session, state, campaign, before, actor)
    return await _recurrence_out(state, campaign)


@router.get("/{campaign_id}/recurrence", response_model=RecurrenceOut)
async def get_recurrence(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                         state: StateDep) -> RecurrenceOut:
    campaign = await campaign_of(session, client.id, campaign_id)
    if not campaign.spec.get("recurrence"):
        raise HTTPException(404, "this campaign does not recur")
    return await _recurrence_out(state, campaign)


@router.delete("/{campaign_id}/recurrence", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[NoBody])
async def delete_recurrence(campaign_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            state: StateDep, actor: ActorDep) -> None:
    campaign = await campaign_of(session, client.id, campaign_id, to_change=True)
    before = snapshot(campaign)
    await launching.delete_schedule(state.temporal, campaign.id)
    campaign.spec = {**campaign.spec, "recurrence": None}
    await commit_change(session, state, campaign, before, actor)
