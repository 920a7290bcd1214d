"""What a mail server answers after the recipient, and what journeys, pages and client messages
make of it: a refusal at the end of DATA, no reply to it, a relay without SMTPUTF8."""

import asyncio
import uuid
from contextlib import asynccontextmanager

import pytest
from aiosmtpd.controller import Controller
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from messaging.dev_mail import (
    HANG_UP_DOMAIN,
    SLOW_ACK_DOMAIN,
    RefusingMailbox,
    ensure_maildir,
    read_outbox,
)
from stack import free_port
from tests.helpers import Customer, Mailbox, eventually, on_the_page, own_api, unique_email
from tests.test_consent_ledger import setup_policies
from worker import running_worker
from workflows.client_message import message_workflow_id


async def bounced(tenant, journey_id: str) -> dict:
    async def probe() -> dict | None:
        journey = await tenant.journey(journey_id)
        return next((e for e in journey["history"] if e["type"] == "bounced"), None)
    return await eventually(probe, what="the invitation's bounce")


async def email_point(tenant, contact_id: str) -> dict:
    record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
    return next(p for p in record["contact_points"] if p["kind"] == "email")


async def test_an_invitation_refused_at_the_end_of_data_bounces_hard(tenant):
    """A content filter's 554 after the message: a hard bounce, as a 550 at RCPT is (the
    address marked, `message.bounced`), not a send retried every ten minutes for ever."""
    campaign = await tenant.create_campaign(consents=[])
    address = f"ann-{uuid.uuid4().hex[:8]}@data-reject.example.com"
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    bounce = await bounced(tenant, enrolled["journey_id"])
    assert bounce["detail"]["kind"] == "hard", bounce
    assert "554 5.7.1" in bounce["detail"]["reason"], bounce
    point = await email_point(tenant, enrolled["contact_id"])
    assert "554 5.7.1" in point["undeliverable"]["reason"], point


async def test_an_invitation_deferred_at_the_end_of_data_becomes_a_soft_bounce(tenant):
    """A quota's 452 after the message, again and again: a soft bounce after
    EMAIL_SOFT_BOUNCE_AFTER_ATTEMPTS tries (2 here), which marks nothing."""
    campaign = await tenant.create_campaign(consents=[])
    address = f"bob-{uuid.uuid4().hex[:8]}@data-defer.example.com"
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    bounce = await bounced(tenant, enrolled["journey_id"])
    assert bounce["detail"]["kind"] == "soft", bounce
    assert "452 4.2.2" in bounce["detail"]["reason"], bounce
    assert (await email_point(tenant, enrolled["contact_id"]))["undeliverable"] is None


async def test_a_typed_address_refused_at_the_end_of_data_is_asked_again_at_once(
        tenant, http, mailbox):
    """The verification mail refused after its message: the page says so where the address
    was typed, at once, as for a refusal at RCPT (it used to hang, then answer 503)."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("invited"))
    typed = f"typo-{uuid.uuid4().hex[:8]}@data-reject.example.com"
    response = await asyncio.wait_for(customer.submit(page, email=typed), 15)
    assert response.status_code == 422
    assert "could not deliver an email to this address" in customer.page
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "data_entered" and journey["pending_email"] == typed


async def test_an_invitation_whose_reply_never_came_is_sent_once(tenant, mailbox):
    """The sink files the mail and hangs up before its reply: most likely taken, so the
    journey counts it sent (its history says unconfirmed) instead of sending it again."""
    campaign = await tenant.create_campaign(consents=[])
    address = f"ida-{uuid.uuid4().hex[:8]}@{HANG_UP_DOMAIN}"
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "invited")
    [sent] = [e for e in journey["history"] if e["type"] == "invitation_sent"]
    assert "no reply to the end of the message" in sent["detail"]["unconfirmed"], sent
    assert len(mailbox.to(address)) == 1


async def test_a_slow_reply_to_the_end_of_data_sends_the_invitation_once(
        settings, tenant, temporal_env, mailbox):
    """A relay slower to acknowledge the message (5 s) than SMTP_TIMEOUT_SECONDS (1 s here)
    is waited for within the send's time: it used to get the same invitation on every
    retry."""
    own = settings.model_copy(update={
        "temporal_task_queue": f"smtp-slow-{uuid.uuid4().hex[:6]}", "smtp_timeout_seconds": 1,
        "opening_message_local_tries": 1})
    address = f"eva-{uuid.uuid4().hex[:8]}@{SLOW_ACK_DOMAIN}"
    async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
        campaign = await client.create_campaign()
        [enrolled] = (await client.enrol(campaign["id"], {"external_id": address,
                                                          "email": address}))["results"]
        journey = await client.wait_for_stage(enrolled["journey_id"], "invited")
    [sent] = [e for e in journey["history"] if e["type"] == "invitation_sent"]
    assert "unconfirmed" not in sent["detail"], sent
    assert len(mailbox.to(address)) == 1


async def test_a_typed_address_outside_ascii_on_a_relay_without_smtputf8(
        settings, tenant, temporal_env, tmp_path):
    """The relay cannot carry a local part outside ASCII: the page answers at once that the
    address could not be reached (it used to hang a minute, then answer 503, the mail
    retried for ever), and the address is not marked undeliverable: it is the relay's limit."""
    ensure_maildir(tmp_path)
    port = free_port()
    relay = Controller(RefusingMailbox(str(tmp_path)), hostname="127.0.0.1", port=port,
                       enable_SMTPUTF8=False)
    relay.start()
    own = settings.model_copy(update={
        "temporal_task_queue": f"no-utf8-{uuid.uuid4().hex[:6]}", "smtp_port": port})
    typed = f"jürgen-{uuid.uuid4().hex[:6]}@example.com"
    try:
        async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
            campaign = await client.create_campaign(languages=["en"], consents=[])
            known = unique_email("known")
            [enrolled] = (await client.enrol(campaign["id"], {"external_id": known,
                                                              "email": known}))["results"]

            async def invitation():
                return [m for m in read_outbox(tmp_path) if m.to == known]
            [mail] = await eventually(invitation, what="the invitation")
            customer = Customer(client.http)
            page = Mailbox.link(mail)
            await customer.open(page)
            response = await asyncio.wait_for(customer.submit(page, email=typed), 15)
            journey = await client.journey(enrolled["journey_id"])
            bounce = await bounced(client, enrolled["journey_id"])
    finally:
        relay.stop()
    assert response.status_code == 422
    assert "could not deliver an email to this address" in customer.page
    assert journey["stage"] == "data_entered"
    assert bounce["detail"]["kind"] == "soft" and "SMTPUTF8" in bounce["detail"]["reason"]
    assert (await email_point(tenant, enrolled["contact_id"]))["undeliverable"] is None


async def new_contact(tenant, email: str) -> dict:
    return await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"cm-{uuid.uuid4().hex[:6]}", "last_name": "Msg",
        "contact_points": [{"kind": "email", "value": email}]}, 201)


async def decided(tenant, email: str) -> tuple[dict, dict]:
    await setup_policies(tenant)
    contact = await new_contact(tenant, email)
    posted = await tenant.ok("POST", "/v1/messages", {
        "contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 1",
        "text": "Please pay"}, 202)

    async def probe() -> dict | None:
        message = await tenant.ok("GET", f"/v1/messages/{posted['id']}")
        return message if message["status"] != "queued" else None
    return contact, await eventually(probe, what="the message decided")


async def test_a_client_message_to_a_mailbox_that_keeps_deferring_fails_as_a_soft_bounce(
        tenant):
    """README: journeys call it a soft bounce after EMAIL_SOFT_BOUNCE_AFTER_ATTEMPTS; a
    client's message stayed `queued`, retried for ever. It is `failed`, the address kept."""
    for domain in ("soft-bounce.example.com", "data-defer.example.com"):
        contact, message = await decided(tenant, f"full-{uuid.uuid4().hex[:6]}@{domain}")
        assert message["status"] == "failed", message
        assert message["status_reason"].startswith("soft bounce, deferred 2 times: 452 4.2.2")
        assert (await email_point(tenant, contact["id"]))["undeliverable"] is None


async def test_a_client_message_refused_at_the_end_of_data_fails_and_marks_the_address(
        tenant):
    contact, message = await decided(tenant,
                                     f"ann-{uuid.uuid4().hex[:6]}@data-reject.example.com")
    assert message["status"] == "failed" and "554 5.7.1" in message["status_reason"], message
    assert "554 5.7.1" in (await email_point(tenant, contact["id"]))["undeliverable"]["reason"]


async def test_a_refused_address_is_named_neither_in_temporal_nor_in_the_reason(
        tenant, temporal_env):
    """Servers echo the address they refuse: `550 5.1.1 <ann@...>: Recipient address rejected`
    was the failure an operator read in the Temporal UI (twice, with aiosmtplib's own as its
    cause), kept there after the contact's erasure, and the reason the client read. The reply
    names `<recipient>` instead."""
    address = f"Gone.{uuid.uuid4().hex[:6]}@hard-bounce.example.com"
    contact, message = await decided(tenant, address)
    reply = "550 5.1.1 <recipient>: Recipient address rejected: User unknown"
    assert (message["status"], message["status_reason"]) == ("failed", reply), message
    assert (await email_point(tenant, contact["id"]))["undeliverable"]["reason"] == reply
    handle = temporal_env.client.get_workflow_handle(message_workflow_id(message["id"]))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    history = "\n".join(str(event) for event in (await handle.fetch_history()).events)
    assert reply in history
    assert address.lower() not in history.lower()


@asynccontextmanager
async def message_nobody_sends(settings, tenant, name: str):
    """A client's message posted through an API whose task queue no worker polls: (the API's
    client, the contact, the message, those settings), the message waiting to be sent."""
    stuck = settings.model_copy(update={"temporal_task_queue": f"nobody-{uuid.uuid4().hex[:6]}"})
    async with own_api(stuck, tenant) as client:
        await setup_policies(client)
        contact = await new_contact(client, unique_email(name))
        posted = await client.ok("POST", "/v1/messages", {
            "contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 1",
            "text": "Please pay"}, 202)
        yield client, contact, posted, stuck


async def test_a_message_whose_workflow_an_operator_terminated_reads_failed(
        settings, tenant, temporal_env):
    """Terminated in the Temporal UI before it was sent (retrying through an outage, say, or
    here never picked up), a client's message read `queued` for ever: nothing would send it
    any more. It reads `failed`, saying why."""
    async with message_nobody_sends(settings, tenant, "stuck") as (client, _, posted, _):
        await temporal_env.client.get_workflow_handle(
            message_workflow_id(posted["id"])).terminate("operator")
        message = await client.ok("GET", f"/v1/messages/{posted['id']}")
    assert (message["status"], message["status_reason"]) == (
        "failed", "its workflow was terminated before the message was sent"), message
    assert message["decided_at"]


async def test_an_operator_finds_a_contacts_messages_and_one_cancelled_reads_so(
        settings, tenant, temporal_env):
    """A client's messages carried no search attributes nor summary: an operator could not list
    a client's or a contact's messages in the Temporal UI. Cancelled there before it was sent
    (never picked up here), a message reads `failed`, its workflow `cancelled` as the API
    spells it everywhere (Temporal says CANCELED)."""
    async with message_nobody_sends(settings, tenant, "listed") as (client, contact, posted,
                                                                     stuck):
        handle = temporal_env.client.get_workflow_handle(message_workflow_id(posted["id"]))

        async def listed() -> list[str]:
            return [w.id async for w in temporal_env.client.list_workflows(
                f"ClientId = '{tenant.id}' AND ContactId = '{contact['id']}' "
                "AND WorkflowType = 'ClientMessage'")]
        assert await eventually(listed, what="the message in Temporal's list") == [handle.id]
        summary = await (await handle.describe()).static_summary()
        assert summary == f"Message invoice to contact {contact['id']}"

        await handle.cancel()
        async with running_worker(temporal_env.client, stuck):
            async def cancelled() -> bool:
                return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            await eventually(cancelled, what="the message's workflow cancelled")
        message = await client.ok("GET", f"/v1/messages/{posted['id']}")
    assert (message["status"], message["status_reason"]) == (
        "failed", "its workflow was cancelled before the message was sent"), message
