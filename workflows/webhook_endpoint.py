"""One long-lived workflow per webhook endpoint (`webhook-endpoint/<id>`) works through that
endpoint's queue of deliveries in the database: due ones in sequence order, failed ones again
on the retry schedule, idle until woken by a signal when nothing is due.

Recording activities wake it with signal-with-start after their transaction commits, so an
event is in the database before anything may deliver it, and never waits for a journey.
"""

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookSender
    from core.contracts import (
        DeliverDueInput,
        DeliveryPolicy,
        EndpointDeliveryInput,
        RetrySchedule,
        WakeEndpointInput,
    )
    from core.settings import Settings
    from core.vocabulary import CLIENT_ID

# A pass is one activity call plus a timer or a signal: a few events of history each.
PASSES_BEFORE_CONTINUE_AS_NEW = 200


def endpoint_workflow_id(endpoint_id: str) -> str:
    return f"webhook-endpoint/{endpoint_id}"


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        schedule=RetrySchedule(
            delays=list(settings.webhook_retry_delays), then_every=settings.webhook_retry_every,
            give_up_after=settings.webhook_retry_for),
        attempt_timeout=timedelta(seconds=settings.webhook_timeout_seconds),
        batch_size=settings.webhook_batch_size,
        parallel=settings.webhook_parallel_per_endpoint,
    )


@workflow.defn(name="WebhookEndpoint")
class WebhookEndpointWorkflow:
    @workflow.init
    def __init__(self, input: EndpointDeliveryInput) -> None:
        self.wakeups = 0
        self.passes = 0
        self.policy = input.policy

    @workflow.run
    async def run(self, input: EndpointDeliveryInput) -> None:
        while True:
            policy = self.policy
            # Long enough for a full batch of slow receivers, sent `parallel` at a time.
            rounds = -(-policy.batch_size // policy.parallel)
            timeout = policy.attempt_timeout * rounds + timedelta(seconds=30)
            seen = self.wakeups
            result = await workflow.execute_activity_method(
                WebhookSender.deliver_due,
                DeliverDueInput(endpoint_id=input.endpoint_id, policy=policy),
                start_to_close_timeout=timeout,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                summary="deliver due webhooks",
            )
            self.passes += 1
            if result.endpoint_state == "deleted":
                return
            if not result.more_due:
                sleep = None
                if result.endpoint_state == "active" and result.next_due_at is not None:
                    sleep = max(result.next_due_at - workflow.now(), timedelta(milliseconds=10))
                try:
                    await workflow.wait_condition(
                        lambda: self.wakeups > seen, timeout=sleep,
                        timeout_summary="next retry" if sleep else None)
                except asyncio.TimeoutError:
                    pass
            if self.passes >= PASSES_BEFORE_CONTINUE_AS_NEW or (
                    workflow.info().is_continue_as_new_suggested()):
                await workflow.wait_condition(workflow.all_handlers_finished)
                # The queue lives in the database, so the next run starts with a pass anyway.
                workflow.continue_as_new(replace(input, policy=self.policy))

    @workflow.signal(description=(
        'Sent (with start) once an event for the endpoint is recorded, the endpoint is '
        'changed or deleted, a delivery resent or replayed, and by the hourly '
        'end-lost-journeys sweep: the workflow delivers what is due now; a delivery waiting '
        'for its next retry waits on. An operator may send it by hand: {"reason": '
        '"operator"}.'))
    def wake(self, input: WakeEndpointInput) -> None:
        self.wakeups += 1
        if input.policy is not None:
            self.policy = input.policy


class EndpointDispatcher:
    """Wakes endpoints' delivery workflows, starting those not running (signal-with-start)."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def wake(self, client_id: uuid.UUID, endpoint_ids: Iterable[str], reason: str) -> None:
        """Wakes the client's endpoints; one started here carries the client as its `ClientId`
        (an operator filters by it in the Temporal UI, as journeys and launches)."""
        policy = delivery_policy(self._settings)
        attributes = TypedSearchAttributes([SearchAttributePair(CLIENT_ID, str(client_id))])
        await asyncio.gather(*(
            self._client.start_workflow(
                WebhookEndpointWorkflow.run,
                EndpointDeliveryInput(endpoint_id=str(endpoint_id), policy=policy),
                id=endpoint_workflow_id(str(endpoint_id)),
                task_queue=self._settings.temporal_task_queue,
                start_signal="wake",
                start_signal_args=[WakeEndpointInput(reason=reason, policy=policy)],
                search_attributes=attributes,
                static_summary=f"Webhook deliveries of endpoint {endpoint_id}",
            )
            for endpoint_id in dict.fromkeys(str(e) for e in endpoint_ids)
        ))
