"""Telling a workflow that is gone while the database still holds its work open: an operator
terminated it in the Temporal UI, or it failed, timed out, or its history was deleted. Nothing
would ever finish that work, so whoever meets it ends it (api.lost_journeys for journeys,
the import routes for CSV imports)."""

from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

# These end without running any of the workflow's code. A cancelled journey records its end
# before it closes, unless it was cancelled before it learned to (patch `cancel-recorded`); an
# import does nothing on cancellation.
ENDED_WITHOUT_A_WORD = {WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT,
                        WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.CANCELED}


async def how_lost(temporal: TemporalClient, workflow_id: str) -> str | None:
    """How the workflow ended without finishing its work ("terminated", "cancelled",
    "not_found", ...), or None while it runs."""
    try:
        status = (await temporal.get_workflow_handle(workflow_id).describe()).status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return "not_found"
    if status not in ENDED_WITHOUT_A_WORD:
        return None
    # Temporal spells it CANCELED; the API, the webhooks and their history details say
    # `cancelled` everywhere else. Details recorded before read `canceled`, and stay so.
    return "cancelled" if status == WorkflowExecutionStatus.CANCELED else status.name.lower()
