"""Runs the sweep of lost journeys; a Temporal Schedule starts it every hour (worker.py)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.lost_journeys import LostJourneySweep
    from core.contracts import EndLostJourneysResult

SCHEDULE_ID = "end-lost-journeys"


@workflow.defn(name="EndLostJourneys")
class EndLostJourneysWorkflow:
    @workflow.run
    async def run(self) -> EndLostJourneysResult:
        return await workflow.execute_activity_method(
            LostJourneySweep.end_lost_journeys,
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2))
