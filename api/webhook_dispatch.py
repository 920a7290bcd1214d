"""Hands webhook deliveries that the API recorded to a durable delivery workflow."""

import uuid

from temporalio.client import Client as TemporalClient

from core.settings import Settings
from workflows.webhook_delivery import DeliverWebhooksInput, DeliverWebhooksWorkflow


async def dispatch(temporal: TemporalClient, settings: Settings, delivery_ids: list[str]) -> None:
    if not delivery_ids:
        return
    await temporal.start_workflow(
        DeliverWebhooksWorkflow.run,
        DeliverWebhooksInput(delivery_ids, settings.webhook_retry_for,
                             settings.webhook_max_retry_interval),
        id=f"webhooks/{uuid.uuid4()}",
        task_queue=settings.temporal_task_queue,
    )
