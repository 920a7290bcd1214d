"""Webhook deliveries survive a receiver outage and stop on a permanent refusal."""

from sqlalchemy import select

from db.models import WebhookAttempt, WebhookDelivery
from tests.helpers import Customer, eventually, unique_email


async def delivery_in(sessions, tenant, status: str) -> WebhookDelivery | None:
    """The tenant's one delivery, once it has reached `status`."""
    async with sessions() as session:
        row = (await session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.client_id == tenant.id))).one_or_none()
        return row if row is not None and row.status == status else None


async def walk_to_data_collected(tenant, http, mailbox) -> str:
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "w", "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=address)
    return enrolled["results"][0]["journey_id"]


async def test_receiver_outage_is_retried_until_delivered_once(
    tenant, http, mailbox, webhook_receiver, sessions
):
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_collected"])
    webhook_receiver.failures[hook] = [500, 503]
    await walk_to_data_collected(tenant, http, mailbox)

    [delivery] = await webhook_receiver.wait_for(hook, "contact.data_collected", timeout=30)
    row = await eventually(lambda: delivery_in(sessions, tenant, "delivered"), what="delivered")
    async with sessions() as session:
        attempts = (await session.scalars(select(WebhookAttempt.status_code).where(
            WebhookAttempt.delivery_id == row.id).order_by(WebhookAttempt.id))).all()
    assert row.attempts == 3
    assert attempts == [500, 503, 204]
    assert str(row.event_id) == delivery.headers["webhook-id"]
    assert len(webhook_receiver.events(hook)) == 1


async def test_gone_endpoint_is_not_retried(tenant, http, mailbox, webhook_receiver, sessions):
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_collected"])
    webhook_receiver.failures[hook] = [410, 410, 410]
    journey_id = await walk_to_data_collected(tenant, http, mailbox)
    await tenant.wait_for_stage(journey_id, "verification_pending")

    async def failed() -> WebhookDelivery | None:
        async with sessions() as session:
            row = (await session.scalars(select(WebhookDelivery).where(
                WebhookDelivery.client_id == tenant.id))).one_or_none()
            return row if row is not None and row.status == "failed" else None


    row = await eventually(failed, what="delivery marked failed")
    assert row.attempts == 1 and row.last_status_code == 410
    assert webhook_receiver.failures[hook] == [410, 410]  # exactly one request was made
