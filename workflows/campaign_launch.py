"""A campaign launch: fans out journeys to a selection of the client's contacts in batches
(one activity per page of contacts), can be paused, resumed and cancelled, reports its progress
as a query, and continues as new every few batches so its history stays short.

Started by the API (`campaign/<campaign id>/launch/<n>`) or by the campaign's schedule."""

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.campaign_launch import CampaignLauncher
    from core.contracts import (
        BeginLaunchInput,
        CancelLaunchInput,
        FinishLaunchInput,
        LaunchBatchInput,
        LaunchInput,
        LaunchProgress,
        WithdrawUnreachedInput,
    )
    from core.vocabulary import CancelledBy, ErrorType, LaunchState

# A batch starts up to a few thousand workflows; it heartbeats, so a batch lost with its
# worker is retried elsewhere within half a minute.
BATCH = {"start_to_close_timeout": timedelta(minutes=10),
         "heartbeat_timeout": timedelta(seconds=30)}
DB_WORK = {"start_to_close_timeout": timedelta(minutes=5)}
ENDED = (LaunchState.cancelled, LaunchState.completed)
# Launches cancelled from outside before ended without recording it.
CANCEL_RECORDED = "launch-cancel-recorded"
# Launches before recorded an operator's Cancel as a client's cancel: nothing told the client
# that someone else had stopped its launch.
OPERATOR_CANCEL_NAMED = "launch-operator-cancel-named"
# Launches before cancelled their journeys only after the cancel had answered, so a journey not
# yet invited could still send its invitation then.
UNREACHED_WITHDRAWN = "launch-cancel-withdraws-unreached"


def launch_workflow_id(campaign_id: str, number: int) -> str:
    return f"campaign/{campaign_id}/launch/{number}"


def scheduled_launch_workflow_id(campaign_id: str) -> str:
    # Temporal appends each run's scheduled time to it.
    return f"campaign/{campaign_id}/launch/scheduled"


@workflow.defn(name="CampaignLaunch")
class CampaignLaunchWorkflow:
    @workflow.init
    def __init__(self, input: LaunchInput) -> None:
        self.progress = replace(input.progress) if input.progress else LaunchProgress(
            state=LaunchState.paused if input.paused else LaunchState.running)
        self.cancel_journeys = input.cancel_journeys
        self.in_batch = False

    @workflow.run
    async def run(self, input: LaunchInput) -> LaunchProgress:
        try:
            return await self._fan_out(input)
        except (asyncio.CancelledError, ActivityError) as err:
            # Cancelled by an operator in the Temporal UI (seen as an activity's cancellation
            # when one was running): the launch's row and progress say so, as after a cancel
            # through the API.
            if (is_cancelled_exception(err) and self.progress.state not in ENDED
                    and workflow.patched(CANCEL_RECORDED)):
                self.progress.state = LaunchState.cancelled
                by = CancelledBy.operator if workflow.patched(OPERATOR_CANCEL_NAMED) else None
                await workflow.execute_activity_method(
                    CampaignLauncher.finish_launch,
                    FinishLaunchInput(workflow.info().workflow_id, self.progress, False, by),
                    **DB_WORK)
            raise

    async def _fan_out(self, input: LaunchInput) -> LaunchProgress:
        launch_id = workflow.info().workflow_id
        if input.progress is None:
            begun = await workflow.execute_activity_method(
                CampaignLauncher.begin_launch,
                BeginLaunchInput(launch_id, input.campaign_id, input.trigger, input.selection),
                **DB_WORK)
            self.progress.number, self.progress.selected = begun.number, begun.selected
            self.progress.began_at = workflow.now()
            if begun.cancelled_because:
                # Due while its campaign is paused or archived: it starts nothing. (Launches
                # before never got a reason from begin_launch, so this needs no patch.)
                self.progress.state = LaunchState.cancelled
        cursor = input.after_contact_id
        for _ in range(input.batches_per_run):
            await workflow.wait_condition(lambda: self.progress.state != LaunchState.paused)
            if self.progress.state == LaunchState.cancelled:
                break
            self.in_batch = True
            batch = await workflow.execute_activity_method(
                CampaignLauncher.launch_batch,
                LaunchBatchInput(
                    launch_id, input.campaign_id, input.selection, cursor, input.batch_size,
                    position=self.progress.started + self.progress.skipped,
                    selected=self.progress.selected, began_at=self.progress.began_at,
                    spread_over=input.spread_over), **BATCH)
            self.in_batch = False
            self.progress.batches += 1
            self.progress.started += batch.started
            self.progress.skipped += batch.skipped
            cursor = batch.last_contact_id
            if batch.seen < input.batch_size:
                if self.progress.state != LaunchState.cancelled:
                    self.progress.state = LaunchState.completed
                break
        else:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(replace(
                input, progress=self.progress, after_contact_id=cursor,
                cancel_journeys=self.cancel_journeys))
        if workflow.patched(UNREACHED_WITHDRAWN):
            # A cancel's withdrawal is counted before the journeys that were left.
            await workflow.wait_condition(workflow.all_handlers_finished)
        finished = await workflow.execute_activity_method(
            CampaignLauncher.finish_launch,
            FinishLaunchInput(launch_id, self.progress, self.cancel_journeys), **DB_WORK)
        self.progress.journeys_cancelled += finished.journeys_cancelled
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress

    # Each change answers once no batch is in flight: after a pause or cancel has answered,
    # no further journey starts.

    @workflow.update(description="No input; as POST /v1/campaigns/{id}/launch/pause: holds "
                     "the launch, answering once no batch is in flight.")
    async def pause(self) -> LaunchProgress:
        self.progress.state = LaunchState.paused
        await workflow.wait_condition(lambda: not self.in_batch)
        return self.progress

    @pause.validator
    def _validate_pause(self) -> None:
        self._check_not_ended()

    @workflow.update(description="No input; as POST /v1/campaigns/{id}/launch/resume.")
    def resume(self) -> LaunchProgress:
        self.progress.state = LaunchState.running
        return self.progress

    @resume.validator
    def _validate_resume(self) -> None:
        self._check_not_ended()

    @workflow.update(description=(
        'As POST /v1/campaigns/{id}/launch/cancel, recorded as the client\'s cancel: '
        '{"cancel_journeys": false}, or true to cancel the journeys it started that have not '
        'finished. An operator\'s Cancel of the workflow is recorded as the operator\'s.'))
    async def cancel(self, input: CancelLaunchInput) -> LaunchProgress:
        self.progress.state = LaunchState.cancelled
        self.cancel_journeys = self.cancel_journeys or input.cancel_journeys
        await workflow.wait_condition(lambda: not self.in_batch)
        if self.cancel_journeys and workflow.patched(UNREACHED_WITHDRAWN):
            # Before answering: once the client has the answer, no journey of the launch that
            # has reached nobody sends anything (their workflows are cancelled after).
            withdrawn = await workflow.execute_activity_method(
                CampaignLauncher.withdraw_unreached_journeys,
                WithdrawUnreachedInput(workflow.info().workflow_id), **DB_WORK)
            self.progress.journeys_cancelled = withdrawn.journeys_cancelled
        return self.progress

    @cancel.validator
    def _validate_cancel(self, input: CancelLaunchInput) -> None:
        self._check_not_ended()

    def _check_not_ended(self) -> None:
        if self.progress.state in ENDED:
            raise ApplicationError(f"the launch is {self.progress.state}",
                                   type=ErrorType.launch_ended)

    @workflow.query(description="The launch's progress: running, paused, cancelled or "
                    "completed, the contacts selected, journeys started and skipped, batches.")
    def state(self) -> LaunchProgress:
        return self.progress
