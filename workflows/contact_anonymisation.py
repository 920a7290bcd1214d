"""Batch anonymisation, run on a schedule: contacts of every client that set a retention period
and have been inactive for longer are anonymised (those a rule still protects are skipped), and
so are contacts whose rejection of consent the client's policy anonymises, once the rule that
blocked it when they answered (an open journey, a KYC review) no longer does."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contact_gdpr import ContactRetention
    from core.contracts import (
        AnonymiseBatchInput,
        AnonymiseInactiveInput,
        AnonymiseInactiveResult,
        ConsequencesBatchInput,
    )

DB_WORK = {"start_to_close_timeout": timedelta(minutes=5)}
SCHEDULE_ID = "anonymise-inactive-contacts"
BLOCKED_CONSEQUENCES_APPLIED = "blocked-consequences-applied"


@workflow.defn(name="AnonymiseInactiveContacts")
class AnonymiseInactiveContactsWorkflow:
    @workflow.run
    async def run(self, input: AnonymiseInactiveInput) -> AnonymiseInactiveResult:
        total = 0
        clients = await workflow.execute_activity_method(
            ContactRetention.clients_with_retention, **DB_WORK)
        for client in clients:
            cutoff = workflow.now() - timedelta(days=client.inactive_after_days)
            while True:
                done = await workflow.execute_activity_method(
                    ContactRetention.anonymise_inactive,
                    AnonymiseBatchInput(client.client_id, cutoff, input.batch_size), **DB_WORK)
                total += done.anonymised
                if done.anonymised < input.batch_size:
                    break
        after_rejection = 0
        if workflow.patched(BLOCKED_CONSEQUENCES_APPLIED):
            after: str | None = None
            while True:
                batch = await workflow.execute_activity_method(
                    ContactRetention.apply_blocked_consequences,
                    ConsequencesBatchInput(after, input.batch_size), **DB_WORK)
                after_rejection += batch.anonymised
                if batch.last_contact_id is None:
                    break
                after = batch.last_contact_id
        return AnonymiseInactiveResult(anonymised=total + after_rejection,
                                       after_rejection=after_rejection)
