"""Data entered but never verified is purged after the client's retention; verified data stays."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from db.models import Journey
from db.session import transaction
from tests.helpers import Customer, unique_email
from worker import ensure_schedules
from workflows.retention import SCHEDULE_ID, PurgeUnverifiedDataWorkflow


async def test_unverified_data_is_purged_after_the_retention(
    tenant, http, mailbox, sessions, temporal_env, settings
):
    assert (await tenant.http.patch("/v1/settings", json={"unverified_retention_days": 7},
                                    headers=tenant.auth)).json()["unverified_retention_days"] == 7
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    journeys = []
    for name in ("old", "recent"):
        address = unique_email(name)
        enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
        [invitation] = await mailbox.wait_for(address)
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        await customer.submit(mailbox.link(invitation), email=unique_email("typed"))
        journeys.append(enrolled["results"][0]["journey_id"])
        await tenant.wait_for_stage(journeys[-1], "verification_pending")
    old, recent = journeys
    async with transaction(sessions) as session:
        await session.execute(update(Journey).where(Journey.id == uuid.UUID(old)).values(
            updated_at=datetime.now(UTC) - timedelta(days=8)))

    result = await temporal_env.client.execute_workflow(
        PurgeUnverifiedDataWorkflow.run, id=f"purge-test-{uuid.uuid4()}",
        task_queue=settings.temporal_task_queue)
    assert result.journeys_purged >= 1
    purged, kept = await tenant.journey(old), await tenant.journey(recent)
    assert purged["pending_email"] is None
    assert purged["history"][-1]["type"] == "unverified_data_purged"
    assert kept["pending_email"] is not None

    # The worker keeps a daily schedule for it.
    await ensure_schedules(temporal_env.client, settings)
    schedule = await temporal_env.client.get_schedule_handle(SCHEDULE_ID).describe()
    assert schedule.schedule.spec.intervals[0].every == timedelta(days=1)


async def test_retention_setting_is_validated(tenant):
    response = await tenant.http.patch("/v1/settings", json={"unverified_retention_days": 0},
                                       headers=tenant.auth)
    assert response.status_code == 422
