"""Require re-consent: walks all of a client's contacts in batches, resetting their GDPR
consent to Pending and starting a re-consent journey for each. Progress is a query; the
history stays bounded by continuing as new."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reconsent import Reconsent
    from core.contracts import ReconsentBatchInput, ReconsentProgress, ReconsentRunInput

BATCHES_PER_RUN = 25


@workflow.defn(name="ReconsentRun")
class ReconsentRunWorkflow:
    @workflow.init
    def __init__(self, input: ReconsentRunInput) -> None:
        self.progress = input.progress

    @workflow.run
    async def run(self, input: ReconsentRunInput) -> ReconsentProgress:
        cursor = input.after_contact_id
        for _ in range(BATCHES_PER_RUN):
            batch = await workflow.execute_activity_method(
                Reconsent.reconsent_batch,
                ReconsentBatchInput(input.campaign_id, cursor, input.batch_size),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(minutes=2),
            )
            self.progress.contacts_reset += batch.contacts_reset
            self.progress.journeys_started += batch.journeys_started
            self.progress.skipped += batch.skipped
            if batch.contacts_seen < input.batch_size:
                self.progress.done = True
                return self.progress
            cursor = batch.last_contact_id
        workflow.continue_as_new(ReconsentRunInput(
            input.campaign_id, input.batch_size, cursor, self.progress))

    @workflow.query(description="The run's progress, which GET /v1/campaigns/{id}/reconsent-run "
                    "shows: contacts reset, journeys started, skipped (no email, or consent "
                    "withdrawn), done.")
    def state(self) -> ReconsentProgress:
        return self.progress
