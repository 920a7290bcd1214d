"""A paused campaign holds its own messages (invitations, reminders) until it is resumed, and
an archived one sends no more; what a customer asks for (a verification link) always goes."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import ActivityEnvironment

from activities.messages import MessageSender
from core.contracts import SendMessageInput
from messaging.email import SmtpSender
from messaging.letters import make_letter_sender
from messaging.sms import make_sms_sender
from tests.helpers import Customer, eventually, own_api, unique_email
from tests.histories import save_history
from tests.test_campaign_launch import finished_launch, launch, progress
from workflows.journey import JourneyWorkflow
from workflows.webhook_endpoint import EndpointDispatcher


async def held_count(tenant, campaign_id: str, count: int) -> dict:
    async def probe():
        now = await progress(tenant, campaign_id)
        return now if now["held"] == count else None
    return await eventually(probe, what=f"{count} held journeys")


async def test_pause_holds_invitations_and_reminders_until_resumed(
    tenant, http, mailbox, temporal_env, record_histories
):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT2S", "max_count": 1})
    campaign_id = campaign["id"]
    early, late = unique_email("early"), unique_email("late")
    first = (await tenant.enrol(campaign_id, {"external_id": early, "email": early}))
    [invitation] = await mailbox.wait_for(early)

    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    # A paused campaign still takes contacts; their invitations wait.
    second = await tenant.enrol(campaign_id, {"external_id": late, "email": late})
    # The early contact's reminder falls due during the pause and waits too.
    paused = await held_count(tenant, campaign_id, 2)
    assert paused["stages"]["enrolled"] == 1 and paused["stages"]["invited"] == 1, paused
    assert mailbox.to(late) == [] and len(mailbox.to(early)) == 1
    late_journey = await tenant.journey(second["results"][0]["journey_id"])
    assert [e["type"] for e in late_journey["history"]][-1] == "invitation_held"
    # Operators see it in the Temporal UI: the journey's state and its current details.
    late_handle = temporal_env.client.get_workflow_handle(late_journey["workflow_id"])
    assert (await late_handle.query(JourneyWorkflow.state)).held
    metadata = await late_handle.query("__temporal_workflow_metadata",
                                       result_type=WorkflowMetadata)
    assert "campaign is paused" in metadata.current_details

    # A customer who acts meanwhile gets what they asked for: the verification link.
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=early)
    [_, verification] = await mailbox.wait_for(early, 2)
    assert "confirm" in verification.subject.lower()

    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "active"})
    await mailbox.wait_for(late)
    # The early contact's reminder (to the address typed, one click from verified) goes now.
    [*_, reminder] = await mailbox.wait_for(early, 3)
    await tenant.wait_for_stage(second["results"][0]["journey_id"], "invited")
    assert not (await late_handle.query(JourneyWorkflow.state)).held
    metadata = await late_handle.query("__temporal_workflow_metadata",
                                       result_type=WorkflowMetadata)
    assert metadata.current_details == ""
    resumed = await held_count(tenant, campaign_id, 0)
    assert resumed["stages"]["verification_pending"] == 1, resumed

    link = mailbox.link(reminder)  # the newest link to the address typed
    await customer.open(link)
    await customer.submit(link)
    journey = await tenant.wait_for_stage(first["results"][0]["journey_id"], "verified")
    assert [e["type"] for e in journey["history"]] == [
        "invitation_sent", "reminder_held", "opened", "data_entered", "verification_sent",
        "verification_reminder_sent", "verified"], [e["type"] for e in journey["history"]]
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(journey["workflow_id"]),
                           "email_journey_reminder_held_then_resumed")


async def test_spread_invitations_wait_for_a_resume_or_end_with_the_archive(tenant, mailbox):
    addresses = [unique_email("spread") for _ in range(3)]
    for address in addresses:
        await tenant.ok("POST", "/v1/contacts", {
            "external_id": address, "last_name": "Spread",
            "contact_points": [{"kind": "email", "value": address}]},
            status=201)
    archived, resumed = [
        (await tenant.create_campaign(languages=["en"], consents=[]))["id"] for _ in range(2)]
    for campaign_id in (archived, resumed):
        await launch(tenant, campaign_id, spread_over="PT6S")
        assert (await finished_launch(tenant, campaign_id))["started"] == 3
        await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})

    async def settled(campaign_id: str):
        """Each journey's first step has come: it sent (before the pause) or is held."""
        now = await progress(tenant, campaign_id)
        return now if (now["held"] == now["stages"]["enrolled"]
                       and now["held"] + now["stages"]["invited"] == 3) else None
    paused = {c: await eventually(lambda: settled(c), what="the spread steps due")
              for c in (archived, resumed)}
    # Spread over 6 s, the later invitations fell due during the pause.
    assert all(p["held"] >= 1 for p in paused.values()), paused
    sent_before_pause = sum(p["stages"]["invited"] for p in paused.values())
    assert sum(len(mailbox.to(a)) for a in addresses) == sent_before_pause

    await tenant.ok("PATCH", f"/v1/campaigns/{archived}", {"status": "archived"})
    await tenant.ok("PATCH", f"/v1/campaigns/{resumed}", {"status": "active"})

    async def ended() -> dict | None:
        now = await progress(tenant, archived)
        return now if now["stages"]["cancelled"] == paused[archived]["held"] else None
    gone = await eventually(ended, what="the archived campaign's held journeys cancelled")
    assert gone["held"] == 0 and gone["stages"]["invited"] == paused[archived]["stages"]["invited"]

    async def all_invited() -> dict | None:
        now = await progress(tenant, resumed)
        return now if now["stages"]["invited"] == 3 else None
    assert (await eventually(all_invited, what="the held invitations sent"))["held"] == 0
    # Every contact got the resumed campaign's invitation, and the archived one's only if it
    # went out before the pause.
    expected = sent_before_pause + paused[resumed]["held"]
    await eventually(lambda: _mails(mailbox, addresses, expected), what=f"{expected} mails")
    await asyncio.sleep(1)  # a stray invitation of the archived campaign would be out by now
    assert sum(len(mailbox.to(a)) for a in addresses) == expected


async def _mails(mailbox, addresses: list[str], count: int) -> bool | None:
    return sum(len(mailbox.to(a)) for a in addresses) == count or None


async def test_archiving_withdraws_the_journeys_a_spread_launch_has_not_started_yet(
        tenant, mailbox, webhook_receiver):
    """A `spread_over` launch starts its journeys' first steps over an hour: archived after the
    first invitation went, the campaign's other journeys end as withdrawn by the client at
    once (progress, history, webhook), not one by one as their start comes."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    addresses = [unique_email("spread") for _ in range(3)]
    for address in addresses:
        await tenant.ok("POST", "/v1/contacts", {
            "external_id": address, "last_name": "Spread",
            "contact_points": [{"kind": "email", "value": address}]}, status=201)
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    await launch(tenant, campaign_id, spread_over="PT1H")
    assert (await finished_launch(tenant, campaign_id))["started"] == 3

    async def first_invited() -> dict | None:
        now = await progress(tenant, campaign_id)
        return now if now["stages"]["invited"] == 1 else None
    await eventually(first_invited, what="the first invitation")
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "archived"})

    async def withdrawn() -> dict | None:
        now = await progress(tenant, campaign_id)
        return now if now["stages"]["cancelled"] == 2 else None
    ended = await eventually(withdrawn, timeout=10, what="the unstarted journeys withdrawn")
    assert (ended["stages"]["enrolled"], ended["stages"]["invited"], ended["held"]) == (
        0, 1, 0), ended
    told = await webhook_receiver.wait_for(hook, "journey.cancelled", count=2)
    archived = {"by": "client", "reason": "campaign_archived"}
    assert [d.payload["data"]["detail"] for d in told] == [archived, archived]
    for delivery in told:
        journey = await tenant.journey(delivery.payload["data"]["journey_id"])
        assert [(e["type"], e["detail"]) for e in journey["history"]] == [
            ("cancelled", archived)], journey["history"]
    assert sum(len(mailbox.to(a)) for a in addresses) == 1


async def test_a_journey_whose_first_send_meets_the_archive_is_withdrawn_by_the_client(
        tenant, settings, webhook_receiver, temporal_env, record_histories):
    """Archived while a spread launch's journey had not started, the campaign's wake-up
    withdraws it as the client's (`campaign_archived`); one whose own first send came first
    (the wake-up not run yet: here no worker polls its queue) ended cancelled with no
    detail, its page not saying the client withdrew the request, as README promises."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    for address in (unique_email("raced"), unique_email("raced")):
        await tenant.ok("POST", "/v1/contacts", {
            "external_id": address, "last_name": "Raced",
            "contact_points": [{"kind": "email", "value": address}]}, status=201)
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    await launch(tenant, campaign_id, spread_over="PT20S")
    assert (await finished_launch(tenant, campaign_id))["started"] == 2

    async def waiting() -> list | None:
        journeys = (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys")).json()["items"]
        stages = sorted(j["stage"] for j in journeys)
        return [j for j in journeys if j["stage"] == "enrolled"] if stages == [
            "enrolled", "invited"] else None
    [later] = await eventually(waiting, what="the first invitation")
    stuck = settings.model_copy(update={"temporal_task_queue": f"nobody-{uuid.uuid4().hex[:6]}"})
    async with own_api(stuck, tenant) as client:
        await client.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "archived"})
    # Its start comes 10 s after the launch's: it sends, and meets the archive.
    journey = await tenant.wait_for_stage(later["id"], "cancelled")
    archived = {"by": "client", "reason": "campaign_archived"}
    assert [e["detail"] for e in journey["history"] if e["type"] == "cancelled"] == [
        archived], journey["history"]
    [told] = await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert told.payload["data"]["detail"] == archived
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(later["workflow_id"]),
                           "journey_first_send_met_the_archive")


async def test_an_archived_campaign_takes_no_contacts(tenant):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "archived"})
    address = unique_email()
    refused = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                {"contacts": [{"external_id": address, "email": address}]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["message"] == "the campaign is archived"


async def test_archiving_a_paused_campaign_leaves_nothing_held(tenant, mailbox):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT1S", "max_count": 2})
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    await mailbox.wait_for(address)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "paused"})
    await held_count(tenant, campaign["id"], 1)  # the first reminder
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "archived"})
    # Reached, the journey stays open to its customer, and nothing waits any more.
    now = await held_count(tenant, campaign["id"], 0)
    assert now["stages"]["invited"] == 1, now
    journey = await tenant.journey(enrolled["results"][0]["journey_id"])
    assert journey["stage"] == "invited"
    await asyncio.sleep(1.5)  # past the reminders' cadence
    assert len(mailbox.to(address)) == 1


async def test_a_launch_waits_for_its_paused_campaign(tenant):
    address = unique_email()
    await tenant.ok("POST", "/v1/contacts", {
        "external_id": address, "last_name": "Waits",
        "contact_points": [{"kind": "email", "value": address}]}, status=201)
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    await launch(tenant, campaign_id, paused=True)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    refused = await tenant.post(f"/v1/campaigns/{campaign_id}/launch/resume", {})
    assert refused.status_code == 409 and "resume the campaign" in refused.json()["error"][
        "message"]
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "active"})
    assert (await finished_launch(tenant, campaign_id))["started"] == 1


async def test_a_send_that_waited_past_its_journeys_cancel_sends_nothing(
        tenant, mailbox, settings, sessions, temporal_env):
    """A launch's cancel marks its journeys while their sends may still wait for a turn: a
    send that finds its journey cancelled goes nowhere."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email("cancelled")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    await mailbox.wait_for(address)
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "invited")
    await temporal_env.client.get_workflow_handle(journey["workflow_id"]).cancel()
    await tenant.wait_for_stage(enrolled["journey_id"], "cancelled")

    async with httpx.AsyncClient() as http:
        sender = MessageSender(sessions, settings, SmtpSender(settings),
                               make_sms_sender(settings, http),
                               make_letter_sender(settings, http),
                               EndpointDispatcher(temporal_env.client, settings))
        result = await ActivityEnvironment().run(sender.send_message, SendMessageInput(
            journey_id=enrolled["journey_id"], step="reminder-1", template="reminder",
            link_purpose="contact_page", link_expires_at=datetime.now(UTC) + timedelta(days=1),
            only_while_campaign_active=True))
    assert (result.sent, result.skipped) == (False, "the journey was cancelled")
    # A send is handed to the SMTP server before the activity returns: none was.
    assert len(mailbox.to(address)) == 1


async def test_a_customer_who_answered_a_held_invitation_is_reminded_once_resumed(
        tenant, http, mailbox):
    """The invitation waits for the paused campaign; the customer answers meanwhile through
    the link the client gave out. Resumed, the campaign reminds them of the verification link
    on its cadence, as any journey that awaits it."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT2S", "max_count": 2})
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "paused"})
    address = unique_email("held")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    await held_count(tenant, campaign["id"], 1)
    link = await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    page = link["url"].removeprefix("http://testserver")
    customer = Customer(http)
    await customer.open(page)
    await customer.submit(page, email=address)
    [verification] = await mailbox.wait_for(address)
    assert "confirm" in verification.subject.lower()
    await tenant.wait_for_stage(enrolled["journey_id"], "verification_pending")

    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "active"})
    await held_count(tenant, campaign["id"], 0)
    [_, *reminders] = await mailbox.wait_for(address, 3, timeout=15)
    assert all("confirm" in r.subject.lower() for r in reminders), [r.subject for r in reminders]
    await customer.open(mailbox.link(reminders[-1]))
    await customer.submit(mailbox.link(reminders[-1]))
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    assert [e["type"] for e in journey["history"]] == [
        "invitation_held", "opened", "data_entered", "verification_sent",
        "verification_reminder_sent", "verification_reminder_sent", "verified"], [
        e["type"] for e in journey["history"]]


async def test_a_held_journey_an_operator_cancels_no_longer_reads_as_held(tenant, temporal_env):
    """Cancelled in the Temporal UI while its paused campaign held its invitation, a journey
    still said there (current details, the `state` query) that the invitation goes once the
    campaign is resumed. Ended, it says nothing is held."""
    campaign_id = (await tenant.create_campaign(languages=["en"], consents=[]))["id"]
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    address = unique_email("held-cancelled")
    [enrolled] = (await tenant.enrol(campaign_id, {"external_id": address, "email": address})
                  )["results"]
    await held_count(tenant, campaign_id, 1)
    journey = await tenant.journey(enrolled["journey_id"])
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    await handle.cancel()

    journey = await tenant.wait_for_stage(enrolled["journey_id"], "cancelled")
    assert journey["history"][-1]["detail"] == {"by": "operator"}
    await held_count(tenant, campaign_id, 0)
    assert not (await handle.query(JourneyWorkflow.state)).held
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details == ""
