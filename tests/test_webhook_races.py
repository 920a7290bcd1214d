"""Webhook endpoint calls that meet each other: resends and replays of one event at once,
a replay while the endpoint is deleted, two secret rotations at once.

Each race is made to happen, not hoped for: a session of the test holds a lock the calls
need, and lets go once every call waits for it."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from core.security import SecretBox
from db.models import WebhookDelivery, WebhookEndpoint
from tests.helpers import eventually, on_the_page, unique_email


async def waiting_for(session, count: int) -> None:
    """Until `count` other transactions wait for a lock (the one this session holds, or a
    place in the queue for it behind another waiter)."""
    async def probe():
        async with session.bind.connect() as conn:
            blocked = await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"))
        return blocked >= count or None
    await eventually(probe, timeout=20, what=f"{count} calls waiting for the test's lock")


async def consent_change(tenant, cid: str) -> None:
    await tenant.ok("POST", f"/v1/contacts/{cid}/consents", {"changes": [{
        "purpose": "newsletter", "channel": "email", "granted": True, "source": "api",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}}]}, 201)


async def an_event_the_endpoint_never_had(tenant, webhook_receiver):
    """(the event, the id of an endpoint registered after it was recorded, its name, the
    contact's id)."""
    first = await tenant.subscribe(webhook_receiver)
    await tenant.create_campaign()  # with the newsletter purpose and its legal text
    r = await tenant.post("/v1/contacts", {"external_id": "w1", "first_name": "Ann",
                                           "contact_points": [{"kind": "email",
                                                               "value": unique_email()}]})
    cid = r.json()["id"]
    await consent_change(tenant, cid)
    [event] = await webhook_receiver.wait_for(first, "consent.changed")
    second = await tenant.subscribe(webhook_receiver)
    return event, tenant.endpoint_ids[second], second, cid


async def deliveries_of(sessions, endpoint_id, event_id) -> list[WebhookDelivery]:
    async with sessions() as session:
        return list(await session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.event_id == event_id)))


async def at_once_behind_endpoint_lock(sessions, endpoint_id, calls):
    """Runs the calls while a test session holds the endpoint's row; lets go once each of
    them waits, so that they all go on together."""
    async with sessions() as session, session.begin():
        await session.scalar(select(WebhookEndpoint.id).where(
            WebhookEndpoint.id == endpoint_id).with_for_update())
        tasks = [asyncio.create_task(call()) for call in calls]
        await waiting_for(session, len(tasks))
    return await asyncio.gather(*tasks)


async def test_resends_at_once_of_an_event_the_endpoint_never_had_queue_it_once(
        tenant, webhook_receiver, sessions):
    event, endpoint_id, name, _ = await an_event_the_endpoint_never_had(tenant, webhook_receiver)
    url = f"/v1/webhook-endpoints/{endpoint_id}/events/{event.id}/resend"
    answers = await at_once_behind_endpoint_lock(sessions, endpoint_id, [
        lambda: tenant.http.post(url, headers=tenant.auth) for _ in range(3)])
    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    [delivery] = await deliveries_of(sessions, endpoint_id, event.id)
    assert {a.json()["sequence"] for a in answers} == {delivery.sequence}
    [got] = await webhook_receiver.wait_for(name, "consent.changed")
    assert got.headers["webhook-id"] == str(event.id)


async def test_replays_at_once_of_an_event_the_endpoint_never_had_queue_it_once(
        tenant, webhook_receiver, sessions):
    event, endpoint_id, name, _ = await an_event_the_endpoint_never_had(tenant, webhook_receiver)
    body = {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    url = f"/v1/webhook-endpoints/{endpoint_id}/replay"
    answers = await at_once_behind_endpoint_lock(sessions, endpoint_id, [
        lambda: tenant.post(url, body) for _ in range(3)])
    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    [delivery] = await deliveries_of(sessions, endpoint_id, event.id)
    assert delivery.sequence == 1


async def test_a_replay_while_the_endpoint_is_deleted_is_a_404(
        tenant, webhook_receiver, sessions):
    event, endpoint_id, name, cid = await an_event_the_endpoint_never_had(
        tenant, webhook_receiver)
    # An event the endpoint did get: its delivery is what the test holds, so that the DELETE
    # has removed the endpoint's row, uncommitted, and waits to remove the delivery with it.
    await consent_change(tenant, cid)
    await webhook_receiver.wait_for(name, "consent.changed")
    base = f"/v1/webhook-endpoints/{endpoint_id}"
    body = {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    async with sessions() as session, session.begin():
        await session.scalar(select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == endpoint_id).with_for_update())
        delete = asyncio.create_task(tenant.http.delete(base, headers=tenant.auth))
        await waiting_for(session, 1)
        # The replay reads the endpoint while its deletion is not committed yet.
        replay = asyncio.create_task(tenant.post(f"{base}/replay", body))
        await asyncio.sleep(1)
    deleted, replayed = await asyncio.gather(delete, replay)
    assert deleted.status_code == 204
    assert replayed.status_code == 404, replayed.text
    assert await deliveries_of(sessions, endpoint_id, event.id) == []


async def test_two_secret_rotations_at_once_each_rotate_the_one_before(
        tenant, webhook_receiver, sessions, settings):
    """Both answers' secrets sign: the second rotation keeps the first one's secret as the
    old one, as two rotations one after the other do."""
    name = await tenant.subscribe(webhook_receiver)
    endpoint_id = tenant.endpoint_ids[name]
    url = f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret"
    answers = await at_once_behind_endpoint_lock(sessions, endpoint_id, [
        lambda: tenant.post(url, {"overlap": "PT1H"}) for _ in range(2)])
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    box = SecretBox(settings.secret_key.get_secret_value())
    async with sessions() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        signing = {box.open(endpoint.secret_encrypted),
                   box.open(endpoint.previous_secret_encrypted)}
    assert signing == {a.json()["secret"] for a in answers}


async def test_a_cancel_meeting_the_customers_confirmation_is_a_409(tenant, http, mailbox):
    """The client cancels while the customer confirms: the journey read open, but by the time
    the withdrawal reached its workflow the customer had confirmed and it ended verified, and
    the cancel answered 200 for it, which reads as withdrawn. Sent at once, the two now end
    as one after the other would: withdrawn (200, cancelled), or verified and the cancel a 409.
    (Not a webhook call, but a race of the same kind; a few rounds, as it is timing.)"""
    campaign = await tenant.create_campaign()
    for _ in range(4):
        enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                     unique_email("cc"))
        typed = unique_email("typed")
        await customer.submit(page, email=typed, consent=["terms"])
        [verification] = await mailbox.wait_for(typed)
        link = mailbox.link(verification)
        await customer.open(link)
        form = {**customer.hidden_fields(), "csrf_token": customer.csrf()}
        journey_id = enrolled["journey_id"]
        confirm, cancel = await asyncio.gather(
            http.post(link, data=form), tenant.post(f"/v1/journeys/{journey_id}/cancel", {}))
        assert confirm.status_code < 500 and cancel.status_code in (200, 409), cancel.text
        stage = (await tenant.journey(journey_id))["stage"]
        if cancel.status_code == 200:
            assert stage == cancel.json()["stage"] == "cancelled"
        else:
            assert stage == "verified" and "verified" in cancel.json()["error"]["message"]
