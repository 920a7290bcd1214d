"""Webhook delivery as it ran before each endpoint got its own workflow (workflows/
webhook_endpoint.py): kept so journeys and DeliverWebhooks runs started then still replay and
finish; their deliver_webhook activity now hands each delivery to the endpoint's workflow."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookSender
    from core.contracts import DeliverWebhookInput

# Since this patch, webhooks are delivered by each endpoint's own workflow; recorded histories
# of older journeys and KYC profiles still deliver their own (the old path stays for them).
PER_ENDPOINT_WEBHOOKS = "per-endpoint-webhooks"


async def deliver(delivery_id: str, retry_for: timedelta, max_interval: timedelta) -> None:
    """Runs in a workflow: one delivery, retried with backoff until delivered or given up."""
    try:
        await workflow.execute_activity_method(
            WebhookSender.deliver_webhook,
            DeliverWebhookInput(delivery_id),
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=retry_for,
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2,
                                     maximum_interval=max_interval),
        )
    except ActivityError as err:
        # The delivery log keeps the failure; what raised the event is not undone by it.
        workflow.logger.warning("webhook delivery %s gave up: %s", delivery_id, err.cause)


@dataclass
class DeliverWebhooksInput:
    delivery_ids: list[str]
    retry_for: timedelta
    max_retry_interval: timedelta


@workflow.defn(name="DeliverWebhooks")
class DeliverWebhooksWorkflow:
    @workflow.run
    async def run(self, input: DeliverWebhooksInput) -> None:
        await asyncio.gather(*(deliver(d, input.retry_for, input.max_retry_interval)
                               for d in input.delivery_ids))
