"""Runs the purge of unverified data (and of expired Idempotency-Keys); a Temporal Schedule starts
it every day (worker.py)."""

from datetime import timedelta

from temporalio import workflow

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
