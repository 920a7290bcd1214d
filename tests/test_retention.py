"""Data entered but never verified is purged after the client's retention; verified data stays.
The answers kept for Idempotency-Keys go after IDEMPOTENCY_KEY_RETENTION."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from db.models import IdempotentRequest, Journey
from db.session import transaction
from tests.helpers import Customer, unique_email
from worker import ensure_schedules
from workflows.retention import SCHEDULE_ID, PurgeUnverifiedDataWorkflow


async def test_unverified_data_is_purged_after_the_retention(
    tenant, http, mailbox, sessions, temporal_env, settings
):
    """Data typed on the page and never verified is purged once its journey ended more than
    the client's retention ago; a journey still open keeps it whatever its age, so that its
    verification link (and reminders) still work."""
    assert (await tenant.http.patch("/v1/settings", json={"unverified_retention_days": 7},
                                    headers=tenant.auth)).json()["unverified_retention_days"] == 7
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="P60D",
                                            verification_link_ttl="P30D")
    journeys, verifications = [], []
    for name in ("ended-long-ago", "ended-recently", "open-for-long"):
        address = unique_email(name)
        enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
        [invitation] = await mailbox.wait_for(address)
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        typed = unique_email(f"typed-{name}")
        await customer.submit(mailbox.link(invitation), email=typed)
        journeys.append(enrolled["results"][0]["journey_id"])
        await tenant.wait_for_stage(journeys[-1], "verification_pending")
        verifications.append((await mailbox.wait_for(typed))[0])
    ended_long_ago, ended_recently, open_for_long = journeys
    for journey_id in (ended_long_ago, ended_recently):
        cancelled = await tenant.http.post(f"/v1/journeys/{journey_id}/cancel",
                                           headers=tenant.auth)
        assert cancelled.status_code in (200, 202), cancelled.text
        await tenant.wait_for_stage(journey_id, "cancelled")
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    async with transaction(sessions) as session:
        await session.execute(update(Journey).where(Journey.id == uuid.UUID(ended_long_ago))
                              .values(finished_at=eight_days_ago, updated_at=eight_days_ago))
        # Typed eight days ago, the journey still waiting for the customer's confirmation (a
        # reminder writes no journey row, so its `updated_at` stays where the typing left it).
        await session.execute(update(Journey).where(Journey.id == uuid.UUID(open_for_long))
                              .values(updated_at=eight_days_ago))

    result = await temporal_env.client.execute_workflow(
        PurgeUnverifiedDataWorkflow.run, id=f"purge-test-{uuid.uuid4()}",
        task_queue=settings.temporal_task_queue)
    assert result.journeys_purged >= 1
    purged = await tenant.journey(ended_long_ago)
    assert purged["pending_email"] is None
    assert purged["history"][-1]["type"] == "unverified_data_purged"
    assert (await tenant.journey(ended_recently))["pending_email"] is not None
    still_open = await tenant.journey(open_for_long)
    assert still_open["pending_email"] is not None
    assert still_open["history"][-1]["type"] != "unverified_data_purged"
    # Its customer confirms the address with the link they were sent.
    confirm = Customer(http)
    link = mailbox.link(verifications[2])
    assert (await confirm.open(link)).status_code == 200
    await confirm.submit(link)
    await tenant.wait_for_stage(open_for_long, "verified")

    # The worker keeps a daily schedule for it.
    await ensure_schedules(temporal_env.client, settings)
    schedule = await temporal_env.client.get_schedule_handle(SCHEDULE_ID).describe()
    assert schedule.schedule.spec.intervals[0].every == timedelta(days=1)


async def test_retention_setting_is_validated(tenant):
    response = await tenant.http.patch("/v1/settings", json={"unverified_retention_days": 0},
                                       headers=tenant.auth)
    assert response.status_code == 422


async def test_idempotency_keys_are_new_again_after_their_retention_and_then_purged(
        tenant, sessions, temporal_env, settings):
    """An Idempotency-Key answers the retries of its request for IDEMPOTENCY_KEY_RETENTION:
    sent later it is a new request, and the daily purge deletes the keys older than that with
    their answers (a contact's create answers with the person's data); a recent key stays."""
    n = uuid.uuid4().hex[:8]

    async def send(path: str, body: dict, key: str):
        return await tenant.http.post(path, json=body,
                                      headers={**tenant.auth, "Idempotency-Key": f"{key}-{n}"})

    campaign = {"name": f"Retried {n}", "consents": []}
    old_campaign = await send("/v1/campaigns", campaign, "old-campaign")
    assert old_campaign.status_code == 201, old_campaign.text
    for key in ("old-contact", "recent-contact"):
        created = await send("/v1/contacts", {"first_name": "Ann", "last_name": f"{key}-{n}"},
                             key)
        assert created.status_code == 201, created.text
    past_retention = datetime.now(UTC) - settings.idempotency_key_retention - timedelta(minutes=1)
    async with transaction(sessions) as session:
        await session.execute(update(IdempotentRequest).where(
            IdempotentRequest.client_id == tenant.id,
            IdempotentRequest.key.in_([f"old-campaign-{n}", f"old-contact-{n}"]))
            .values(created_at=past_retention))

    # Not purged yet, the old key is new all the same: a second campaign.
    again = await send("/v1/campaigns", campaign, "old-campaign")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers, again.text
    assert again.json()["id"] != old_campaign.json()["id"]

    result = await temporal_env.client.execute_workflow(
        PurgeUnverifiedDataWorkflow.run, id=f"purge-test-{uuid.uuid4()}",
        task_queue=settings.temporal_task_queue)
    assert result.idempotency_keys_purged >= 1
    async with transaction(sessions) as session:
        kept = set(await session.scalars(select(IdempotentRequest.key).where(
            IdempotentRequest.client_id == tenant.id)))
    assert kept == {f"old-campaign-{n}", f"recent-contact-{n}"}
    recent = await send("/v1/contacts", {"first_name": "Ann", "last_name": f"recent-contact-{n}"},
                        "recent-contact")
    assert recent.status_code == 201 and recent.headers["Idempotent-Replayed"] == "true"
