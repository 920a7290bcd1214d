"""A journey whose workflow an operator terminated in the Temporal UI: the database holds it
open, and nothing would ever end it. Whoever meets it ends it as cancelled."""

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from db.models import Journey, WebhookEvent
from db.session import transaction
from tests.helpers import (
    Customer,
    eventually,
    on_the_page,
    sweep_lost_work,
    unique_email,
    worker_schedules,
)
from tests.histories import save_history
from workflows.lost_journeys import SCHEDULE_ID
from workflows.starts import workflow_id

# Who ended a journey whose workflow was gone, in its history as in its webhook.
GONE = {"by": "system", "reason": "workflow_gone", "workflow": "terminated"}


async def entered(tenant, http, mailbox) -> tuple[dict, Customer, str]:
    """A journey waiting for its email to be confirmed: (enrolment, the customer, the link)."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("lost"))
    typed = unique_email("typed")
    await customer.submit(page, email=typed)
    await tenant.wait_for_stage(enrolled["journey_id"], "verification_pending")
    [verification] = await mailbox.wait_for(typed)
    return enrolled, customer, mailbox.link(verification)


async def terminate(temporal_env, tenant, journey_id: str) -> None:
    journey = await tenant.journey(journey_id)
    await temporal_env.client.get_workflow_handle(journey["workflow_id"]).terminate(
        reason="operator")


async def test_the_customer_is_told_the_request_ended_not_thanked(tenant, http, mailbox,
                                                                  temporal_env):
    enrolled, customer, link = await entered(tenant, http, mailbox)
    await terminate(temporal_env, tenant, enrolled["journey_id"])

    await customer.open(link)
    response = await customer.submit(link)
    assert "This request has ended" in response.text and "Thank you" not in response.text
    # Nobody withdrew it: the page does not say the client did, as it does for a cancellation.
    for page in (response.text, (await customer.open(link)).text):
        assert "withdrawn" not in page
        assert "It can no longer be completed here" in page and "please contact" in page
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "cancelled" and journey["pending_email"] is not None
    assert (journey["history"][-1]["type"], journey["history"][-1]["detail"]) == (
        "cancelled", GONE)
    funnel = await tenant.ok("GET", f"/v1/campaigns/{journey['campaign_id']}/funnel")
    assert (funnel["finished"], funnel["total"]["cancelled"]) == (1, 1)

    # Nothing holds the contact's erasure back any more.
    done = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise", {})
    assert done.status_code == 200, done.text


async def test_erasing_the_contact_ends_its_lost_journey(tenant, http, mailbox, temporal_env):
    enrolled, _, _ = await entered(tenant, http, mailbox)
    contact = f"/v1/contacts/{enrolled['contact_id']}"
    # While the workflow runs, the open journey blocks the erasure.
    assert (await tenant.post(f"{contact}/anonymise", {})).status_code == 409
    await terminate(temporal_env, tenant, enrolled["journey_id"])
    deleted = await tenant.http.delete(contact, headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text


async def test_enrolling_again_replaces_the_lost_journey(tenant, http, mailbox, temporal_env):
    enrolled, _, _ = await entered(tenant, http, mailbox)
    campaign_id = (await tenant.journey(enrolled["journey_id"]))["campaign_id"]
    address = enrolled["external_id"]
    item = {"external_id": address, "email": address}
    # While its workflow runs, the contact is enrolled already.
    [again] = (await tenant.enrol(campaign_id, item))["results"]
    assert (again["status"], again["journey_id"]) == ("already_enrolled", enrolled["journey_id"])
    await terminate(temporal_env, tenant, enrolled["journey_id"])

    [again] = (await tenant.enrol(campaign_id, item))["results"]
    assert again["status"] == "accepted" and again["journey_id"] != enrolled["journey_id"]
    old = await tenant.journey(enrolled["journey_id"])
    assert old["stage"] == "cancelled" and old["history"][-1]["detail"] == GONE
    new = await tenant.wait_for_stage(again["journey_id"], "invited")
    assert new["workflow_id"] == f"{old['workflow_id']}/2"
    await mailbox.wait_for(address, count=2)
    # The new journey is the contact's one in the campaign: asked again, it stays.
    [repeated] = (await tenant.enrol(campaign_id, item))["results"]
    assert (repeated["status"], repeated["journey_id"]) == ("already_enrolled", new["id"])


async def journey_not_started(tenant, sessions, name: str) -> tuple[str, str, str, uuid.UUID]:
    """A journey row as its enrolment commits it, before the enrolment starts its workflow:
    (campaign id, contact id, the contact's email, journey id)."""
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    address = unique_email(name)
    contact_id = (await tenant.ok("POST", "/v1/contacts", {
        "external_id": address, "first_name": "Una",
        "contact_points": [{"kind": "email", "value": address}]},
        201))["id"]
    written = uuid.uuid4()
    async with transaction(sessions) as session:
        session.add(Journey(id=written, client_id=tenant.id, campaign_id=uuid.UUID(campaign_id),
                            contact_id=uuid.UUID(contact_id), language="en", stage="enrolled",
                            workflow_id=workflow_id(uuid.UUID(campaign_id),
                                                    uuid.UUID(contact_id))))
    return campaign_id, contact_id, address, written


async def test_a_journey_not_started_yet_is_not_lost(tenant, mailbox, sessions):
    """Written by a request that starts its workflow after its commit: another enrolment
    meanwhile finds no workflow, and must neither end it nor start a second journey."""
    campaign_id, contact_id, address, written = await journey_not_started(
        tenant, sessions, "unstarted")

    [again] = (await tenant.enrol(campaign_id, {"external_id": address}))["results"]
    assert (again["status"], again["journey_id"]) == ("already_enrolled", str(written))
    await tenant.wait_for_stage(str(written), "invited")  # the enrolment started it
    assert len(await mailbox.wait_for(address)) == 1


async def test_a_journey_not_started_yet_is_withdrawn_not_ended_as_lost(
        tenant, sessions, temporal_env):
    """Between its enrolment's commit and its workflow's start, a journey is not lost: its
    contact's erasure waits for it (409), and the client's cancel withdraws it once it has
    started, as the client's cancellation rather than a lost workflow."""
    campaign_id, contact_id, address, written = await journey_not_started(
        tenant, sessions, "starting")

    erased = await tenant.http.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert erased.status_code == 409, erased.text
    assert erased.json()["error"]["code"] == "terminate_blocked"
    assert (await tenant.journey(str(written)))["stage"] == "enrolled"

    cancel = asyncio.create_task(tenant.post(f"/v1/journeys/{written}/cancel", {}))
    await asyncio.sleep(0.5)  # the cancel meets no workflow yet
    assert not cancel.done()
    await tenant.enrol(campaign_id, {"external_id": address})  # starts it, as its request would
    cancelled = await cancel
    assert cancelled.status_code == 200, cancelled.text
    journey = cancelled.json()
    assert journey["stage"] == "cancelled"
    assert [e["detail"] for e in journey["history"] if e["type"] == "cancelled"] == [
        {"by": "client", "reason": "journey_cancelled"}]
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_a_launch_replaces_a_lost_journey(tenant, mailbox, temporal_env):
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    addresses = [unique_email("launched") for _ in range(2)]
    enrolled = (await tenant.enrol(campaign_id, *({"external_id": a, "email": a}
                                                  for a in addresses)))["results"]
    for address in addresses:
        await mailbox.wait_for(address)
    lost = enrolled[0]
    await terminate(temporal_env, tenant, lost["journey_id"])

    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch",
                    {}, 202)

    async def finished() -> dict | None:
        launch = (await tenant.get(f"/v1/campaigns/{campaign_id}/progress")).json()["launch"]
        return launch if launch["finished_at"] else None
    launch = await eventually(finished, what="the launch to finish")
    assert (launch["started"], launch["skipped"]) == (1, 1), launch
    await mailbox.wait_for(addresses[0], count=2)
    assert len(mailbox.to(addresses[1])) == 1
    assert (await tenant.journey(lost["journey_id"]))["stage"] == "cancelled"
    journeys = (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys")).json()["items"]
    assert sorted(j["stage"] for j in journeys if j["contact_id"] == lost["contact_id"]) == [
        "cancelled", "invited"]


async def test_an_enrichment_link_replaces_the_lost_journey(tenant, http, mailbox, temporal_env):
    enrolled, _, _ = await entered(tenant, http, mailbox)
    campaign_id = (await tenant.journey(enrolled["journey_id"]))["campaign_id"]
    link = f"/v1/contacts/{enrolled['contact_id']}/enrichment-link"
    await terminate(temporal_env, tenant, enrolled["journey_id"])

    # Nothing runs any more: a link needs a campaign, as for a contact without a journey.
    assert (await tenant.get(link)).status_code == 404
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "cancelled"
    started = await tenant.get(link, campaign_id=campaign_id)
    assert started.status_code == 200, started.text
    # Not invited by us: the client's message with the link is the invitation.
    new = await tenant.journey(started.json()["journey_id"])
    assert new["id"] != enrolled["journey_id"] and new["campaign_id"] == campaign_id
    assert new["stage"] == "enrolled"
    customer = Customer(http)
    await customer.open(started.json()["url"].removeprefix("http://testserver"))
    assert "This request has ended" not in customer.page


async def test_a_reconsent_run_asks_again_a_contact_whose_journey_was_lost(tenant, mailbox,
                                                                         temporal_env):
    from tests.test_reconsent import reconsent_campaign, run_reconsent
    address = unique_email("reconsent")
    earlier = await reconsent_campaign(tenant)
    [first] = (await tenant.enrol(earlier["id"], {"external_id": address, "email": address})
               )["results"]
    await mailbox.wait_for(address)
    await terminate(temporal_env, tenant, first["journey_id"])

    # The same campaign's run, then a later campaign's: each asks the contact again.
    for campaign, asked in ((earlier, 2), (await reconsent_campaign(tenant), 3)):
        progress = await run_reconsent(tenant, campaign["id"])
        assert (progress["contacts_reset"], progress["journeys_started"]) == (1, 1), progress
        await mailbox.wait_for(address, count=asked)
    old = await tenant.journey(first["journey_id"])
    assert old["stage"] == "cancelled" and old["history"][-1]["detail"] == GONE


async def test_the_sweep_ends_a_lost_journey_nobody_meets(tenant, http, mailbox, temporal_env,
                                                          settings, record_histories):
    lost, _, _ = await entered(tenant, http, mailbox)
    running, _, _ = await entered(tenant, http, mailbox)
    await terminate(temporal_env, tenant, lost["journey_id"])

    async def swept() -> dict | None:
        # Temporal's list of closed workflows may lag the termination a moment.
        sweep = await sweep_lost_work(temporal_env.client, settings.temporal_task_queue)
        journey = await tenant.journey(lost["journey_id"])
        if journey["stage"] != "cancelled":
            return None
        if record_histories:
            await save_history(sweep, "end_lost_journeys")
        return journey
    journey = await eventually(swept, what="the sweep to end the lost journey")
    assert journey["history"][-1]["detail"] == GONE
    assert (await tenant.journey(running["journey_id"]))["stage"] == "verification_pending"
    funnel = await tenant.ok("GET", f"/v1/campaigns/{journey['campaign_id']}/funnel")
    assert (funnel["finished"], funnel["total"]["cancelled"]) == (1, 1)

    # The worker keeps an hourly schedule for it.
    async with worker_schedules(temporal_env.client, settings):
        schedule = temporal_env.client.get_schedule_handle(SCHEDULE_ID)
        assert (await schedule.describe()).schedule.spec.intervals[0].every == timedelta(hours=1)


async def test_the_client_is_told_once_that_a_lost_journey_ended(tenant, http, mailbox, sessions,
                                                                 temporal_env, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    enrolled, customer, link = await entered(tenant, http, mailbox)
    await terminate(temporal_env, tenant, enrolled["journey_id"])

    await customer.open(link)
    await customer.submit(link)  # meets the lost journey, which ends
    [ended] = await webhook_receiver.wait_for(hook, "journey.cancelled")
    data = ended.payload["data"]
    assert (data["journey_id"], data["stage"], data["detail"]) == (
        enrolled["journey_id"], "cancelled", GONE)
    # Erasing the contact, and the customer again, meet it ended: nothing more to tell.
    done = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise", {})
    assert done.status_code == 200, done.text
    await customer.open(link)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(
            WebhookEvent.type == "journey.cancelled",
            WebhookEvent.key.startswith(enrolled["journey_id"]))) == 1
