"""Deletes from Temporal the workflow histories of erased contacts (contacts/histories.py); a
Temporal Schedule starts it every FORGET_ERASED_HISTORIES_EVERY (worker.py)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.history_erasure import HistoryEraser
    from core.contracts import (
        ForgetErasedHistoriesInput,
        ForgetHistoriesBatchInput,
        ForgetHistoriesResult,
    )

SCHEDULE_ID = "forget-erased-histories"
# Batches per run: each adds a handful of events, so a long backlog continues as new.
BATCHES_PER_RUN = 200


@workflow.defn(name="ForgetErasedHistories")
class ForgetErasedHistoriesWorkflow:
    @workflow.run
    async def run(self, input: ForgetErasedHistoriesInput) -> ForgetHistoriesResult:
        batch = ForgetHistoriesBatchInput(erased_before=workflow.now() - input.settle,
                                          batch_size=input.batch_size)
        total = ForgetHistoriesResult(contacts=0, workflows=0)
        for _ in range(BATCHES_PER_RUN):
            done = await workflow.execute_activity_method(
                HistoryEraser.forget_erased_histories, batch,
                start_to_close_timeout=timedelta(minutes=10))
            total.contacts += done.contacts
            total.workflows += done.workflows
            if done.contacts < input.batch_size:
                return total
        workflow.continue_as_new(input)
