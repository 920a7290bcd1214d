"""An endpoint's delivery workflow runs for as long as the endpoint exists; changed webhook
settings reach it with the next event's wake-up instead of waiting for a restart.

The workflow runs on the real Temporal dev server; its one activity is replaced by one that
records the policy each pass was given and reports nothing due, which is all the workflow
decides on."""

import uuid
from dataclasses import replace
from datetime import timedelta

from temporalio import activity
from temporalio.worker import Worker

from core.contracts import (
    DeliverDueInput,
    DeliverDueResult,
    DeliveryPolicy,
    EndpointDeliveryInput,
    RetrySchedule,
    WakeEndpointInput,
)
from tests.helpers import eventually
from workflows.webhook_endpoint import WebhookEndpointWorkflow

POLICY = DeliveryPolicy(
    schedule=RetrySchedule(delays=[timedelta(seconds=5)], then_every=timedelta(hours=1),
                           give_up_after=timedelta(days=1)),
    attempt_timeout=timedelta(seconds=10), batch_size=100, parallel=10)


async def test_a_wake_up_brings_the_current_delivery_policy(temporal_env):
    passes: list[DeliveryPolicy] = []

    @activity.defn(name="deliver_due")
    async def deliver_due(input: DeliverDueInput) -> DeliverDueResult:
        passes.append(input.policy)
        return DeliverDueResult(endpoint_state="active", attempted=0, delivered=0,
                                next_due_at=None, more_due=False)

    async def made(count: int) -> None:
        async def probe() -> bool:
            return len(passes) == count
        await eventually(probe, what=f"pass {count}")

    queue = f"endpoint-policy-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_env.client, task_queue=queue,
                      workflows=[WebhookEndpointWorkflow], activities=[deliver_due]):
        handle = await temporal_env.client.start_workflow(
            WebhookEndpointWorkflow.run, EndpointDeliveryInput("e1", POLICY),
            id=f"webhook-endpoint/{uuid.uuid4()}", task_queue=queue)
        await made(1)
        # An event recorded before the settings changed, from a process that did not send a
        # policy, and one after: only the latter changes what the next passes use.
        await handle.signal(WebhookEndpointWorkflow.wake, WakeEndpointInput("old process"))
        await made(2)
        changed = replace(POLICY, batch_size=20, parallel=2)
        await handle.signal(WebhookEndpointWorkflow.wake, WakeEndpointInput("event", changed))
        await made(3)
        await handle.terminate("test over")
    assert passes == [POLICY, POLICY, changed]
