"""An erased contact's workflow histories in Temporal. A journey's history holds what the
customer typed (email, mobile, address), the IP address and browser they answered from and
where its messages went; a KYC profile's, an operator's reason. Erasing the contact in the
database leaves all that in Temporal until the namespace's retention (7 days in the compose
stack) after each workflow closed, so the erasure deletes those workflows too: the API's at
once, and a scheduled sweep (workflows/history_erasure.py) every erasure, from the rows the
erasure wrote in its own transaction. An anonymised contact's KYC profile runs on: it forgets
the reason and continues in a fresh run, and the run before goes."""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from db.crud import dialect_insert
from db.models import Contact, HistoryErasure, utcnow
from workflows.kyc import KycWorkflow

PAGE = 500
CLOSED = "ExecutionStatus != 'Running'"
# The API's erasure answers without waiting longer for Temporal: the sweep does what is left.
AT_ONCE_TIMEOUT = 10.0
# A profile busy sending (an email retried for minutes) forgets later, at the next sweep.
FORGET_TIMEOUT = 5.0

log = logging.getLogger(__name__)


async def erasure_pending(session: AsyncSession, contact: Contact, *, deleted: bool) -> None:
    """Files the contact's histories for deletion, with the erasure's transaction. Erasing it
    again files them again, so that the sweep also takes what closed since."""
    stmt = dialect_insert(session, HistoryErasure)
    stmt = stmt.on_conflict_do_update(index_elements=["contact_id"], set_={
        "erased_at": stmt.excluded.erased_at, "deleted": stmt.excluded.deleted})
    await session.execute(stmt, [{"contact_id": contact.id, "client_id": contact.client_id,
                                  "erased_at": utcnow(), "deleted": deleted}])


def _of(contact_ids: Sequence[uuid.UUID]) -> str:
    # Ids are UUIDs: nothing in them needs quoting.
    return "ContactId IN ({})".format(", ".join(f"'{contact_id}'" for contact_id in contact_ids))


@dataclass
class Deleted:
    workflows: int = 0
    # Anonymised contacts whose running KYC profile has not yet forgotten: file them again.
    unfinished: set[uuid.UUID] = field(default_factory=set)


async def delete_histories(temporal: TemporalClient,
                           erasures: Sequence[tuple[uuid.UUID, bool]]) -> Deleted:
    """Deletes the workflows that carry the contacts' ids (their journeys and KYC profile):
    every closed run, and for a deleted contact (`True`) its running KYC profile too, which
    Temporal terminates first (the profile ends with its contact). An anonymised contact's
    KYC profile goes on as the contact does: it forgets what the erasure took from the
    database and continues in a new run, and the run before is deleted. A journey still
    closing (one the erasure withdrew) stays for a later sweep. Those deleted already
    (Temporal's list lags a deletion) are skipped."""
    anonymised = [contact_id for contact_id, deleted in erasures if not deleted]
    gone = [contact_id for contact_id, deleted in erasures if deleted]
    done = Deleted()
    if anonymised:
        await _forget_running_profiles(temporal, anonymised, done)
    queries = ([f"{_of(anonymised)} AND {CLOSED}"] if anonymised else []) + (
        [f"{_of(gone)} AND ({CLOSED} OR WorkflowType = 'Kyc')"] if gone else [])
    for query in queries:
        async for execution in temporal.list_workflows(query, page_size=PAGE):
            if await _delete(temporal, execution.id, execution.run_id):
                done.workflows += 1
    return done


async def _forget_running_profiles(temporal: TemporalClient, contact_ids: Sequence[uuid.UUID],
                                   done: Deleted) -> None:
    query = f"{_of(contact_ids)} AND WorkflowType = 'Kyc' AND ExecutionStatus = 'Running'"
    async for execution in temporal.list_workflows(query, page_size=PAGE):
        contact_id = uuid.UUID(execution.search_attributes["ContactId"][0])
        run = temporal.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            async with asyncio.timeout(FORGET_TIMEOUT):
                await run.execute_update(KycWorkflow.forget_personal_data)
            closed = (await run.describe()).status != WorkflowExecutionStatus.RUNNING
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # the run ended meanwhile: the closed runs' query takes it
        except (TimeoutError, WorkflowUpdateFailedError) as err:
            log.warning("anonymised contact %s: its KYC profile forgets at the next sweep (%r)",
                        contact_id, err)
            closed = False
        # Deleting a running workflow would terminate the profile: only the run it left.
        if not closed:
            done.unfinished.add(contact_id)
        elif await _delete(temporal, execution.id, execution.run_id):
            done.workflows += 1


async def _delete(temporal: TemporalClient, workflow_id: str, run_id: str) -> bool:
    try:
        await temporal.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=temporal.namespace, workflow_execution=WorkflowExecution(
                    workflow_id=workflow_id, run_id=run_id)))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def delete_at_once(temporal: TemporalClient, contact_id: uuid.UUID, *,
                         deleted: bool) -> None:
    """After an erasure through the API has committed: its histories go before it answers,
    but for a workflow still closing (a journey it withdrew) or Temporal out of reach, which
    the sweep then deletes."""
    try:
        async with asyncio.timeout(AT_ONCE_TIMEOUT):
            await delete_histories(temporal, [(contact_id, deleted)])
    except (RPCError, TimeoutError) as err:
        log.warning("erased contact %s: its workflow histories are left to the sweep (%r)",
                    contact_id, err)
