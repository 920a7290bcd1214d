"""Webhook deliveries survive a receiver outage, odd answers and a URL fixed late, and stop\non a permanent refusal."""

import json
import re
import uuid
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from db.models import WebhookAttempt, WebhookDelivery
from stack import free_port
from tests.helpers import (
    AppServer,
    Customer,
    eventually,
    handler_descriptions,
    own_api,
    sweep_lost_work,
    unique_email,
)
from worker import running_worker
from workflows.webhook_endpoint import endpoint_workflow_id


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


class OddReceiver:
    """A receiver answering as scripted (the last answer over and over), counting the POSTs
    of each webhook-id: for answers the signing receiver never gives."""

    def __init__(self, *answers: tuple[int, bytes, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.posts: list[str] = []
        self.server = AppServer(app=self._app())

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            await request.body()
            self.posts.append(request.headers["webhook-id"])
            status, body, headers = self.answers[0] if len(self.answers) == 1 else (
                self.answers.pop(0))
            return Response(content=body, status_code=status, headers=headers)
        return app

    async def endpoint(self, tenant) -> str:
        await self.server.start()
        return (await tenant.ok("POST", "/v1/webhook-endpoints", {
            "url": f"http://127.0.0.1:{self.server.port}/hook",
            "events": ["campaign.updated"]}, 201))["id"]


async def rename_campaigns(tenant, count: int) -> None:
    """`campaign.updated` events, one per rename: the quickest events to raise."""
    for _ in range(count):
        campaign = await tenant.create_campaign()
        await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}",
                        {"name": f"renamed {uuid.uuid4().hex[:6]}"})


async def delivered(tenant, endpoint_id: str, count: int) -> list[dict] | None:
    rows = await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
    return rows if len(rows) == count and all(d["status"] == "delivered" for d in rows) else None


async def test_a_binary_answer_is_delivered_once_and_logged(tenant):
    """A 200 with NUL bytes in its body (a UTF-16 "OK", any binary answer) is a delivery: the
    log keeps a readable excerpt, instead of failing to store it and posting again for ever."""
    receiver = OddReceiver((200, b"\xff\xfeO\x00K\x00 ok\x00bin\x07ary\r\n",
                            {"content-type": "application/octet-stream"}))
    try:
        endpoint_id = await receiver.endpoint(tenant)
        await rename_campaigns(tenant, 2)
        rows = await eventually(lambda: delivered(tenant, endpoint_id, 2), what="2 deliveries")
        log = (await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/attempts"))["items"]
    finally:
        await receiver.server.stop()
    assert [d["attempts"] for d in rows] == [1, 1]
    assert sorted(receiver.posts) == sorted(d["event_id"] for d in rows)  # each POSTed once
    assert [a["status_code"] for a in log] == [200, 200]
    assert log[0]["response_excerpt"] == "\ufffd\ufffdO\ufffdK\ufffd ok\ufffdbin\ufffdary\r\n"


async def test_a_huge_retry_after_is_capped_and_the_answer_logged(tenant):
    """A Retry-After of 20 digits waits the schedule's longest gap (0.5 s in the tests), it
    does not crash the delivery into posting again every minute with nothing logged."""
    receiver = OddReceiver((503, b"busy", {"retry-after": "9" * 20}),
                           (503, b"busy", {"retry-after": "1" * 3000}), (204, b"", {}))
    try:
        endpoint_id = await receiver.endpoint(tenant)
        await rename_campaigns(tenant, 1)
        [row] = await eventually(lambda: delivered(tenant, endpoint_id, 1), what="delivered")
        log = (await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/attempts"))["items"]
    finally:
        await receiver.server.stop()
    assert row["attempts"] == 3 and len(receiver.posts) == 3
    assert [a["status_code"] for a in reversed(log)] == [503, 503, 204]
    assert log[-1]["response_excerpt"] == "busy"


async def test_fixing_the_url_delivers_what_waits_at_once(settings, tenant, temporal_env,
                                                          webhook_receiver):
    """A client fixes a wrong URL while its event waits a minute (10 hours in production)
    for the next retry: the event goes to the new URL at once."""
    own = settings.model_copy(update={
        "temporal_task_queue": f"hook-fix-{uuid.uuid4().hex[:6]}",
        "webhook_retry_delays": [timedelta(seconds=60)],
        "webhook_retry_every": timedelta(seconds=60), "webhook_retry_for": timedelta(hours=1)})
    async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
        endpoint = await client.ok("POST", "/v1/webhook-endpoints", {
            "url": f"http://127.0.0.1:{free_port()}/typo", "events": ["campaign.updated"]}, 201)
        await rename_campaigns(client, 1)

        async def failed_once() -> list[dict] | None:
            rows = await client.ok("GET", f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")
            return rows if rows and rows[0]["attempts"] == 1 else None
        [waiting] = await eventually(failed_once, what="a failed attempt")
        assert waiting["status"] == "pending" and waiting["last_error"]

        name = uuid.uuid4().hex[:8]
        webhook_receiver.secrets[name] = endpoint["secret"]
        await client.ok("PATCH", f"/v1/webhook-endpoints/{endpoint['id']}",
                        {"url": webhook_receiver.url(name)})
        [got] = await webhook_receiver.wait_for(name, "campaign.updated", timeout=15)
        assert got.id == waiting["event_id"]
        [row] = await eventually(lambda: delivered(client, endpoint["id"], 1), what="logged")
        assert row["attempts"] == 2


async def test_the_hourly_sweep_restarts_an_endpoint_an_operator_terminated(
        settings, tenant, temporal_env, webhook_receiver):
    """An operator terminated an endpoint's delivery workflow while an event waited for its
    retry: nothing retried it until the endpoint's next event, however long that took. The
    sweep of lost work (`end-lost-journeys`) wakes the endpoint, and the event goes."""
    own = settings.model_copy(update={
        "temporal_task_queue": f"hook-lost-{uuid.uuid4().hex[:6]}",
        "webhook_retry_delays": [timedelta(seconds=1)],
        "webhook_retry_every": timedelta(seconds=1), "webhook_retry_for": timedelta(hours=1)})
    async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
        name = await client.subscribe(webhook_receiver, ["campaign.updated"])
        endpoint_id = client.endpoint_ids[name]
        webhook_receiver.failures[name] = [503]
        await rename_campaigns(client, 1)

        async def failed_once() -> list[dict] | None:
            rows = await client.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
            return rows if rows and rows[0]["attempts"] == 1 else None
        await eventually(failed_once, what="a failed attempt")
        handle = temporal_env.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
        # The Temporal UI says what its signal is for and the input to send it with by hand.
        [shown] = re.findall(r"\{.*?\}", (await handler_descriptions(handle))["wake"])
        await handle.signal("wake", json.loads(shown))
        await handle.terminate("operator")

        async def swept() -> list[dict] | None:
            await sweep_lost_work(temporal_env.client, own.temporal_task_queue)
            return await delivered(client, endpoint_id, 1)
        [row] = await eventually(swept, what="the waiting event delivered")
        assert row["attempts"] == 2
        assert len(webhook_receiver.events(name, "campaign.updated")) == 1
