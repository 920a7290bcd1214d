"""An erased contact's workflow histories in Temporal. A journey's history holds what the
customer typed (email, mobile, address), the IP address and browser they answered from and
where its messages went; a KYC profile's, an operator's reason. Erasing the contact in the
database leaves all that in Temporal until the namespace's retention (7 days in the compose
stack) after each workflow closed, so the erasure deletes those workflows too: the API's at
once, and a scheduled sweep (workflows/history_erasure.py) every erasure, from the rows the
erasure wrote in its own transaction."""

import asyncio
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError, RPCStatusCode

from db.crud import dialect_insert
from db.models import Contact, HistoryErasure, utcnow

PAGE = 500
CLOSED = "ExecutionStatus != 'Running'"
# The API's erasure answers without waiting longer for Temporal: the sweep does what is left.
AT_ONCE_TIMEOUT = 10.0

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


async def delete_histories(temporal: TemporalClient,
                           erasures: Sequence[tuple[uuid.UUID, bool]]) -> int:
    """Deletes the workflows that carry the contacts' ids (their journeys and KYC profile):
    every closed run, and for a deleted contact (`True`) its running KYC profile too, which
    Temporal terminates first (the profile ends with its contact). An anonymised contact's
    KYC profile goes on as the contact does, so its running workflow stays; so does a journey
    still closing (one the erasure withdrew), for a later sweep. Returns how many it deleted;
    those deleted already (Temporal's list lags a deletion) are skipped."""
    anonymised = [contact_id for contact_id, deleted in erasures if not deleted]
    gone = [contact_id for contact_id, deleted in erasures if deleted]
    queries = ([f"{_of(anonymised)} AND {CLOSED}"] if anonymised else []) + (
        [f"{_of(gone)} AND ({CLOSED} OR WorkflowType = 'Kyc')"] if gone else [])
    count = 0
    for query in queries:
        async for execution in temporal.list_workflows(query, page_size=PAGE):
            try:
                await temporal.workflow_service.delete_workflow_execution(
                    DeleteWorkflowExecutionRequest(
                        namespace=temporal.namespace, workflow_execution=WorkflowExecution(
                            workflow_id=execution.id, run_id=execution.run_id)))
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            count += 1
    return count


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
