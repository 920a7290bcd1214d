"""Runs the purge of unverified data; a Temporal Schedule starts it every day."""

from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)

with workflow.unsafe.imports_passed_through():
    from activities.retention import Retention
    from core.contracts import PurgeInput, PurgeResult

SCHEDULE_ID = "purge-unverified-data"


@workflow.defn(name="PurgeUnverifiedData")
class PurgeUnverifiedDataWorkflow:
    @workflow.run
    async def run(self) -> PurgeResult:
        return await workflow.execute_activity_method(
            Retention.purge_unverified, PurgeInput(now=workflow.now()),
            start_to_close_timeout=timedelta(minutes=10))


async def ensure_schedule(client: Client, task_queue: str) -> None:
    """Creates the daily schedule once; an existing one is left as operators may have tuned it."""
    try:
        await client.create_schedule(SCHEDULE_ID, Schedule(
            action=ScheduleActionStartWorkflow(PurgeUnverifiedDataWorkflow.run,
                                               id=SCHEDULE_ID, task_queue=task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))])))
    except ScheduleAlreadyRunningError:
        pass
