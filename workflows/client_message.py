"""One message a client sends to a contact: decided and sent by an activity, durably retried."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.client_messages import ClientMessageSender
    from core.contracts import ClientMessageInput, ClientMessageResult


def message_workflow_id(message_id: str) -> str:
    return f"message/{message_id}"


@workflow.defn(name="ClientMessage")
class ClientMessageWorkflow:
    @workflow.run
    async def run(self, input: ClientMessageInput) -> ClientMessageResult:
        return await workflow.execute_activity_method(
            ClientMessageSender.send_client_message, input,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)))
