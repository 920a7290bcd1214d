"""A CSV contact import: plans the file's batches, imports them one after another (each an
idempotent activity), optionally enrols the contacts into a campaign, then drops the file.

Batches run in file order, so a later row about the same contact updates what an earlier one
created, the same way on every run.
"""

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contact_import import ContactImporter
    from core.contracts import (
        ContactImportInput,
        EnrolImportedInput,
        FinishImportInput,
        ImportBatchInput,
        ImportCounts,
        ImportProgress,
        PlanImportInput,
    )

DB_WORK = {"start_to_close_timeout": timedelta(minutes=5)}


def import_workflow_id(import_id: str) -> str:
    return f"contact-import/{import_id}"


@workflow.defn(name="ContactImport")
class ContactImportWorkflow:
    @workflow.init
    def __init__(self, input: ContactImportInput) -> None:
        self.total_rows = 0
        self.processed_rows = 0
        self.counts = ImportCounts()

    @workflow.run
    async def run(self, input: ContactImportInput) -> ImportProgress:
        plan = await workflow.execute_activity_method(
            ContactImporter.plan_import, PlanImportInput(input.import_id, input.batch_size),
            **DB_WORK)
        self.total_rows = plan.total_rows
        for batch in plan.batches:
            done = await workflow.execute_activity_method(
                ContactImporter.import_batch, ImportBatchInput(input.import_id, batch), **DB_WORK)
            self.counts = ImportCounts(
                created=self.counts.created + done.created,
                updated=self.counts.updated + done.updated,
                unchanged=self.counts.unchanged + done.unchanged,
                failed=self.counts.failed + done.failed)
            self.processed_rows += batch.rows
        enrolled = None
        if input.campaign_id:
            enrolled = await workflow.execute_activity_method(
                ContactImporter.enrol_imported,
                EnrolImportedInput(input.import_id, input.campaign_id),
                start_to_close_timeout=timedelta(minutes=30))
        await workflow.execute_activity_method(
            ContactImporter.finish_import, FinishImportInput(input.import_id, enrolled), **DB_WORK)
        return self.progress()

    @workflow.query(description="The import's progress, which GET /v1/contact-imports/{id} shows: "
                    "rows in the file and processed, contacts created, updated, unchanged and "
                    "failed.")
    def progress(self) -> ImportProgress:
        return ImportProgress(self.total_rows, self.processed_rows, replace(self.counts))
