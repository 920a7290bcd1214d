"""Every end of a journey reaches the client once, as it was first recorded: a journey cancelled
in the database only (its workflow never started or had ended) raises `journey.cancelled`, and a
workflow outliving such a cancellation changes nothing when it ends in turn."""

import uuid

from api import withdrawals
from db.session import transaction
from tests.helpers import unique_email
from workflows.webhook_endpoint import EndpointDispatcher


async def test_a_workflow_outliving_its_journeys_cancellation_does_not_end_it_again(
        tenant, sessions, settings, temporal_env, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled", "journey.expired"])
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT5S")
    address = unique_email("outlived")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    journey_id = enrolled["journey_id"]
    journey = await tenant.wait_for_stage(journey_id, "invited")
    # Cancelled in the database only, as a cancelled launch does to the journeys whose
    # workflow it met closed or not yet started: this one runs on, and expires.
    async with transaction(sessions) as session:
        await withdrawals.mark_cancelled(
            session, EndpointDispatcher(temporal_env.client, settings),
            [uuid.UUID(journey_id)], withdrawals.LAUNCH_CANCELLED)

    [cancelled] = await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert (cancelled.payload["data"]["journey_id"], cancelled.payload["data"]["detail"]) == (
        journey_id, {"by": "client", "reason": "launch_cancelled"})
    await temporal_env.client.get_workflow_handle(journey["workflow_id"]).result()
    journey = await tenant.journey(journey_id)
    assert journey["stage"] == "cancelled"
    assert [e["type"] for e in journey["history"]][-1] == "cancelled"
    assert "expired" not in [e["type"] for e in journey["history"]]
    await tenant.wait_for_stage(journey_id, "cancelled")
    assert webhook_receiver.events(hook, "journey.expired") == []
    assert len(webhook_receiver.events(hook, "journey.cancelled")) == 1
