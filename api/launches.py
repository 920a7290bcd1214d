"""Campaign launches and schedules as the API drives them: the launch workflow's input, the
running launch of a campaign, and the Temporal Schedule of a recurring campaign."""

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from fastapi import HTTPException
from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client as TemporalClient,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from api.errors import FieldProblems
from api.lost_journeys import WORKFLOW_GONE
from api.lost_workflows import how_lost
from api.schemas import FieldError, LaunchSelectionIn
from core.contracts import LaunchInput, LaunchProgress, LaunchSelection, WakeHeldInput
from core.settings import Settings
from core.vocabulary import (
    CAMPAIGN_ID,
    CLIENT_ID,
    ErrorType,
    ImportStatus,
    LaunchState,
    LaunchTrigger,
)
from db import launches
from db.models import Campaign, CampaignLaunch, ContactImport, utcnow
from workflows.campaign_launch import ENDED, CampaignLaunchWorkflow, scheduled_launch_workflow_id
from workflows.held_journeys import WakeHeldJourneysWorkflow, wake_held_workflow_id

_duration = TypeAdapter(timedelta).validate_python
_iso = partial(TypeAdapter(timedelta).dump_python, mode="json")


async def selection_of(session: AsyncSession, client_id: uuid.UUID, body: LaunchSelectionIn,
                       where: str) -> LaunchSelection:
    if body.import_id is not None:
        job = await session.get(ContactImport, body.import_id)
        if job is None or job.client_id != client_id:
            raise FieldProblems([FieldError(field=f"{where}.import_id",
                                            message="no contact import with this id")])
        if job.status != ImportStatus.completed:
            # Its contacts are those written so far: a launch would select part of the file
            # (none, early on) and report it as done.
            raise HTTPException(409, f"the contact import is {job.status}: select it once it "
                                     "has completed")
    return LaunchSelection(missing_verified_only=body.missing_verified_only,
                           tags=list(dict.fromkeys(body.tags)),
                           categories=list(dict.fromkeys(body.categories)),
                           import_id=str(body.import_id) if body.import_id else None)


def campaign_search_attributes(campaign: Campaign) -> TypedSearchAttributes:
    """Operators find a campaign's launches and re-consent runs in the Temporal UI as they
    find its journeys."""
    return TypedSearchAttributes([SearchAttributePair(CLIENT_ID, str(campaign.client_id)),
                                  SearchAttributePair(CAMPAIGN_ID, str(campaign.id))])


def launch_input(settings: Settings, campaign_id: uuid.UUID, selection: LaunchSelection,
                 trigger: LaunchTrigger, *, paused: bool = False,
                 spread_over: timedelta | None = None) -> LaunchInput:
    return LaunchInput(campaign_id=str(campaign_id), selection=selection, trigger=trigger,
                       batch_size=settings.launch_batch_size,
                       batches_per_run=settings.launch_batches_per_run, paused=paused,
                       spread_over=spread_over)


async def launch_progress(temporal: TemporalClient, launch: CampaignLaunch) -> LaunchProgress | None:
    try:
        return await temporal.get_workflow_handle_for(
            CampaignLaunchWorkflow.run, launch.id).query(CampaignLaunchWorkflow.state)
    except RPCError:
        return None  # gone from Temporal (retention): the row holds the final counts


async def shown_progress(session: AsyncSession, temporal: TemporalClient,
                         launch: CampaignLaunch) -> LaunchProgress | None:
    """The progress a read shows. A launch whose workflow an operator terminated in the
    Temporal UI (or that failed, or that Temporal no longer knows) never recorded its end: its
    last progress said `running` or `paused` for ever, while nothing could resume it. Its end
    is recorded now, `cancelled` with the counts it had (`cancelled_because` `workflow_gone`),
    as `finish_launch` would have, though without a webhook; the row then holds it."""
    if launch.finished_at is not None or await how_lost(temporal, launch.id) is None:
        return await launch_progress(temporal, launch)
    last = await launch_progress(temporal, launch)
    counts = {} if last is None else {
        "selected": last.selected, "started": last.started, "skipped": last.skipped,
        "journeys_cancelled": last.journeys_cancelled}
    # Unless the launch recorded its end meanwhile (a cancel closes the workflow after that).
    await session.execute(update(CampaignLaunch).where(
        CampaignLaunch.id == launch.id, CampaignLaunch.finished_at.is_(None)).values(
        state=LaunchState.cancelled, cancelled_because=WORKFLOW_GONE, finished_at=utcnow(),
        **counts))
    await session.commit()
    await session.refresh(launch)
    return None


async def running_launch(session: AsyncSession, temporal: TemporalClient, campaign_id: uuid.UUID
                         ) -> tuple[CampaignLaunch, LaunchProgress] | None:
    # The newest unfinished one: a scheduled launch due while the client's runs ends at once,
    # newer than the one it left running.
    for launch in await session.scalars(select(CampaignLaunch).where(
            CampaignLaunch.campaign_id == campaign_id, CampaignLaunch.finished_at.is_(None))
            .order_by(CampaignLaunch.number.desc()).limit(5)):
        progress = await launch_progress(temporal, launch)
        if progress is None or progress.state in ENDED:
            continue
        # Cancelled or terminated by an operator in the Temporal UI, it ended without saying so.
        handle = temporal.get_workflow_handle_for(CampaignLaunchWorkflow.run, launch.id)
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            continue
        return launch, progress
    return None


async def change_launch(temporal: TemporalClient, launch: CampaignLaunch, update: Any,
                        *args: Any) -> LaunchProgress:
    """Pauses, resumes or cancels: answers once no batch is in flight any more."""
    handle = temporal.get_workflow_handle_for(CampaignLaunchWorkflow.run, launch.id)
    try:
        return await handle.execute_update(update, *args)
    except WorkflowUpdateFailedError as err:
        if getattr(err.cause, "type", None) == ErrorType.launch_ended:
            raise HTTPException(409, str(err.cause)) from None
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(409, "the launch has ended") from None
        raise


# --- recurring campaigns -------------------------------------------------------------------


def schedule_id(campaign_id: uuid.UUID) -> str:
    return f"campaign/{campaign_id}/recurrence"


def _schedule(settings: Settings, campaign: Campaign, selection: LaunchSelection) -> Schedule:
    recurrence = campaign.spec["recurrence"]
    if recurrence.get("every"):
        every = _duration(recurrence["every"])
        # Temporal counts the intervals from the epoch (P30D then ran on some day at midnight
        # UTC, P7D on Thursdays); offset to now, the first run is one interval after the
        # recurrence was set, and so on from there.
        now = timedelta(seconds=int(datetime.now(UTC).timestamp()))
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every, offset=now % every)])
    else:
        spec = ScheduleSpec(cron_expressions=[recurrence["cron"]])
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CampaignLaunchWorkflow.run,
            launch_input(settings, campaign.id, selection, LaunchTrigger.schedule),
            id=scheduled_launch_workflow_id(str(campaign.id)),
            task_queue=settings.launch_task_queue,
            typed_search_attributes=campaign_search_attributes(campaign),
            static_summary=f"Scheduled launch of campaign {campaign.id}"),
        spec=spec,
        # A launch still running when the next is due is not doubled: that one is skipped.
        state=ScheduleState(paused=campaign.status != "active",
                            note=f"recurrence of campaign {campaign.id}"))


async def save_schedule(temporal: TemporalClient, settings: Settings, campaign: Campaign,
                        selection: LaunchSelection, field: str) -> None:
    """Creates the campaign's schedule, or replaces what an existing one does and when; an
    interval under `RECURRENCE_MIN_INTERVAL`, a cron expression the server refuses or one
    that never fires is a problem of the request's `field` (the recurrence object's path)."""
    every = campaign.spec["recurrence"].get("every")
    if every and _duration(every) < settings.recurrence_min_interval:
        raise FieldProblems([FieldError(
            field=f"{field}.every" if field else "every",
            message=f"at least {_iso(settings.recurrence_min_interval)} "
                    "(RECURRENCE_MIN_INTERVAL)")])
    cron_field = f"{field}.cron" if field else "cron"
    schedule = _schedule(settings, campaign, selection)
    handle = temporal.get_schedule_handle(schedule_id(campaign.id))
    previous: Schedule | None = None

    def replace(current: ScheduleUpdateInput) -> ScheduleUpdate:
        nonlocal previous
        previous = current.description.schedule
        return ScheduleUpdate(schedule=schedule)
    try:
        try:
            await temporal.create_schedule(schedule_id(campaign.id), schedule)
        except ScheduleAlreadyRunningError:
            await handle.update(replace)
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise FieldProblems([FieldError(field=cron_field, message=err.message)]) from None
        raise
    # The server accepts a cron expression for a day that never comes (31 February), or one
    # that fires every minute; only the runs it plans tell, so the schedule as it was is put
    # back.
    problem = None if every else cron_problem(
        (await handle.describe()).info.next_action_times, settings.recurrence_min_interval)
    if problem:
        await (handle.update(lambda _: ScheduleUpdate(schedule=previous)) if previous
               else handle.delete())
        raise FieldProblems([FieldError(field=cron_field, message=problem)])


def cron_problem(runs: list[datetime], min_interval: timedelta) -> str | None:
    if not runs:
        return "never fires: no date matches it"
    if any(b - a < min_interval for a, b in zip(runs, runs[1:])):
        return (f"fires more often than every {_iso(min_interval)} "
                "(RECURRENCE_MIN_INTERVAL)")
    return None


async def set_schedule_paused(temporal: TemporalClient, campaign: Campaign, paused: bool) -> None:
    if not campaign.spec.get("recurrence"):
        return
    handle = temporal.get_schedule_handle(schedule_id(campaign.id))
    try:
        await (handle.pause() if paused else handle.unpause())
    except RPCError as err:
        # Deleted by an operator in the Temporal UI: nothing left to pause (GET /recurrence
        # answers 404 then).
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


async def delete_schedule(temporal: TemporalClient, campaign_id: uuid.UUID) -> None:
    try:
        await temporal.get_schedule_handle(schedule_id(campaign_id)).delete()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


async def wake_held_journeys(session: AsyncSession, temporal: TemporalClient, settings: Settings,
                             campaign: Campaign) -> None:
    """Starts waking the campaign's held journeys, if it has any, and withdrawing the archived
    campaign's that reached nobody. A wake-up still running gives way to the new one, which
    reads the journeys afresh."""
    held = await session.scalar(launches.held_journeys(campaign.id).limit(1))
    if held is None and (campaign.status != "archived" or await session.scalar(
            launches.unreached_journeys(campaign.id).limit(1)) is None):
        return
    await temporal.start_workflow(
        WakeHeldJourneysWorkflow.run, WakeHeldInput(str(campaign.id)),
        id=wake_held_workflow_id(str(campaign.id)), task_queue=settings.launch_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        static_summary=f"Wake the held journeys of campaign {campaign.id}")
