"""A bounce the client's email provider reports later for the client's own message
(`POST /v1/messages`) or for a KYC email, named by the Message-ID our mail carried: it marks the
address in the registry as a journey message's bounce does."""

import uuid

from sqlalchemy import update

from db.models import ContactPoint
from db.session import transaction
from tests.helpers import eventually, unique_email
from tests.test_consent_ledger import setup_policies
from tests.test_kyc import IDENTITY, define, new_contact, profile


async def email_point(tenant, contact_id: str) -> dict:
    record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
    return next(p for p in record["contact_points"] if p["kind"] == "email")


async def message_status(tenant, message_id: str, status: str) -> dict | None:
    message = await tenant.ok("GET", f"/v1/messages/{message_id}")
    return message if message["status"] == status else None


async def invoice_sent(tenant, mailbox, email: str, **names: str) -> tuple[dict, ...]:
    """A contact with `email` sent the client's own invoice: (contact, invoice, message, mail)."""
    contact = await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"own-{uuid.uuid4().hex[:6]}", "last_name": "Own", **names,
        "contact_points": [{"kind": "email", "value": email}]}, 201)
    invoice = {"contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 1",
               "text": "Please pay."}
    sent = await tenant.ok("POST", "/v1/messages", invoice, 202)
    [mail] = await mailbox.wait_for(email)
    await eventually(lambda: message_status(tenant, sent["id"], "sent"), what="sent")
    return contact, invoice, sent, mail


async def test_a_bounce_of_the_clients_own_message_marks_the_address(tenant, other_tenant,
                                                                     mailbox):
    await setup_policies(tenant)
    email = unique_email("own")
    contact, invoice, sent, mail = await invoice_sent(tenant, mailbox, email)
    report = {"message_id": mail.headers["Message-ID"], "recipient": email, "kind": "hard",
              "reason": "smtp; 550 5.1.1 user unknown"}

    # Another client's message is not found; another recipient is a field error.
    theirs = await other_tenant.post("/v1/bounces", report)
    assert theirs.status_code == 404, theirs.text
    wrong = await tenant.post("/v1/bounces", {**report, "recipient": unique_email()})
    assert wrong.status_code == 422, wrong.text

    soft = await tenant.ok("POST", "/v1/bounces", {**report, "kind": "soft",
                                                   "reason": "452 mailbox full"}, 202)
    assert soft["kind"] == "soft" and (await email_point(tenant, contact["id"]))[
        "undeliverable"] is None  # a soft bounce marks nothing
    hard = await tenant.ok("POST", "/v1/bounces", report, 202)
    assert hard == {**hard, "message": "client_message", "client_message_id": sent["id"],
                    "contact_id": contact["id"], "recipient": email, "kind": "hard",
                    "reason": "smtp; 550 5.1.1 user unknown", "source": "api"}
    assert (await email_point(tenant, contact["id"]))["undeliverable"]["reason"] == (
        "smtp; 550 5.1.1 user unknown")
    message = await tenant.ok("GET", f"/v1/messages/{sent['id']}")
    assert message["status"] == "bounced"
    assert message["status_reason"] == "hard bounce: smtp; 550 5.1.1 user unknown"
    # A late soft report is the hard bounce reported again.
    again = await tenant.ok("POST", "/v1/bounces", {**report, "kind": "soft",
                                                    "reason": "452 later"}, 202)
    assert again["kind"] == "hard" and again["reason"] == "smtp; 550 5.1.1 user unknown"

    # The client's next message to the contact is not written to the dead address.
    later = await tenant.ok("POST", "/v1/messages", {**invoice, "subject": "Invoice 2"}, 202)
    await eventually(lambda: message_status(tenant, later["id"], "suppressed"),
                     what="the next message suppressed")
    assert len(mailbox.to(email)) == 1


async def kyc_assignment_mailed(tenant, mailbox, contact_id: str, email: str):
    """Assigns the contact's KYC profile; returns the assignment email once its history has it."""
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    [mail] = await mailbox.wait_for(email)

    async def sent() -> bool:
        return any(e["type"] == "kyc_assigned_sent"
                   for e in (await profile(tenant, contact_id))["history"])
    await eventually(sent, what="the assignment email in the history")
    return mail


async def test_a_bounce_of_a_kyc_email_marks_the_address(tenant, sessions, mailbox):
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant)
    mail = await kyc_assignment_mailed(tenant, mailbox, contact_id, email)
    bounce = await tenant.ok("POST", "/v1/bounces", {
        "message_id": mail.headers["Message-ID"].strip("<>"), "recipient": email.upper(),
        "kind": "hard", "reason": "smtp; 550 5.1.1 no such user"}, 202)
    assert bounce["message"] == "kyc" and bounce["contact_id"] == contact_id
    assert bounce["kyc_step"] and bounce["kind"] == "hard"
    assert (await email_point(tenant, contact_id))["undeliverable"]["reason"] == (
        "smtp; 550 5.1.1 no such user")
    [event] = [e for e in (await profile(tenant, contact_id))["history"]
               if e["type"] == "kyc_assigned_bounced"]
    assert event["detail"]["reason"] == "smtp; 550 5.1.1 no such user"
    assert event["detail"]["source"] == "api" and event["detail"]["recipient"] == email


async def test_a_bounce_of_the_clients_own_message_is_announced_to_its_webhooks(
        tenant, mailbox, webhook_receiver):
    """A client sending its own mail through us hears of its bounces as of its journeys' ones:
    `client_message.bounced`, once per message and kind, whether its provider reports it
    later or our mail server refused it at once."""
    await setup_policies(tenant)
    hook = await tenant.subscribe(webhook_receiver, ["client_message.bounced"])
    journeys_only = await tenant.subscribe(webhook_receiver, ["message.bounced"])
    email = unique_email("own-hook")
    refused = f"gone-{uuid.uuid4().hex[:8]}@hard-bounce.example.com"
    contact, invoice, sent, mail = await invoice_sent(tenant, mailbox, email,
                                                      first_name="Ann")
    report = {"message_id": mail.headers["Message-ID"], "recipient": email, "kind": "soft",
              "reason": "452 4.2.2 mailbox full"}

    await tenant.ok("POST", "/v1/bounces", report, 202)
    [soft] = await webhook_receiver.wait_for(hook, "client_message.bounced")
    person = {"id": contact["id"], "external_id": contact["external_id"], "first_name": "Ann",
              "last_name": "Own"}
    assert soft.payload["data"] == {
        "message": {"id": sent["id"], "message_type": "invoice", "channel": "email",
                    "recipient": email},
        "contact": person, "kind": "soft", "reason": "452 4.2.2 mailbox full", "source": "api",
        "at": soft.payload["data"]["at"]}
    # The same report again raises nothing; the hard bounce it came to does, once.
    await tenant.ok("POST", "/v1/bounces", report, 202)
    hard = {**report, "kind": "hard", "reason": "smtp; 550 5.1.1 user unknown"}
    await tenant.ok("POST", "/v1/bounces", hard, 202)
    await tenant.ok("POST", "/v1/bounces", hard, 202)
    [_, second] = await webhook_receiver.wait_for(hook, "client_message.bounced", count=2)
    assert (second.payload["data"]["kind"], second.payload["data"]["reason"]) == (
        "hard", "smtp; 550 5.1.1 user unknown")
    # The recipient marked it as spam too.
    await tenant.ok("POST", "/v1/bounces", {**report, "kind": "complaint",
                                            "reason": "feedback loop: abuse"}, 202)
    [*_, spam] = await webhook_receiver.wait_for(hook, "client_message.bounced", count=3)
    assert (spam.payload["data"]["kind"], spam.payload["data"]["message"]["id"]) == (
        "complaint", sent["id"])

    # Refused by the mail server when sent: the message fails, announced as from smtp.
    await tenant.ok("POST", f"/v1/contacts/{contact['id']}/contact-points",
                    {"kind": "email", "value": refused}, 201)
    failed = await tenant.ok("POST", "/v1/messages", {**invoice, "subject": "Invoice 2"}, 202)
    await eventually(lambda: message_status(tenant, failed["id"], "failed"), what="failed")
    [*_, at_once] = await webhook_receiver.wait_for(hook, "client_message.bounced", count=4)
    data = at_once.payload["data"]
    assert (data["message"]["id"], data["message"]["recipient"], data["kind"],
            data["source"]) == (failed["id"], refused, "hard", "smtp")
    assert "550" in data["reason"]
    # Exactly those four; the journeys' event is not raised for a message of no journey.
    await tenant.ok("POST", "/v1/bounces", {**hard, "kind": "soft"}, 202)
    assert len(webhook_receiver.events(hook, "client_message.bounced")) == 4
    assert webhook_receiver.events(journeys_only) == []


async def test_a_bounce_of_a_kyc_message_is_announced_to_its_webhooks(
        tenant, sessions, mailbox, webhook_receiver):
    """The KYC profile writes to the customer on the client's behalf: the client hears of each
    of its messages that did not arrive, `kyc.message_bounced`, once per message and kind,
    whether the provider reports it later or it was refused when sent."""
    hook = await tenant.subscribe(webhook_receiver, ["kyc.message_bounced"])
    others = await tenant.subscribe(webhook_receiver, ["message.bounced",
                                                       "client_message.bounced"])
    await define(tenant, 1, [{"field": "last_name"}])
    contact_id, email = await new_contact(sessions, tenant)
    mail = await kyc_assignment_mailed(tenant, mailbox, contact_id, email)
    report = {"message_id": mail.headers["Message-ID"], "recipient": email, "kind": "soft",
              "reason": "452 4.2.2 mailbox full"}

    step = (await tenant.ok("POST", "/v1/bounces", report, 202))["kyc_step"]
    [soft] = await webhook_receiver.wait_for(hook, "kyc.message_bounced")
    assert soft.payload["data"] == {
        "contact": {"id": contact_id, "external_id": soft.payload["data"]["contact"][
            "external_id"], "first_name": "Eva", "last_name": "Janssen"},
        "message": {"step": step, "template": "kyc_assigned", "channel": "email",
                    "recipient": email},
        "kind": "soft", "reason": "452 4.2.2 mailbox full", "source": "api",
        "at": soft.payload["data"]["at"]}
    # The same report again raises nothing; the hard bounce it came to does, and a complaint.
    await tenant.ok("POST", "/v1/bounces", report, 202)
    hard = {**report, "kind": "hard", "reason": "smtp; 550 5.1.1 user unknown"}
    await tenant.ok("POST", "/v1/bounces", hard, 202)
    await tenant.ok("POST", "/v1/bounces", hard, 202)
    await tenant.ok("POST", "/v1/bounces", {**report, "kind": "complaint",
                                            "reason": "feedback loop: abuse"}, 202)
    [_, second, spam] = await webhook_receiver.wait_for(hook, "kyc.message_bounced", count=3)
    assert [(e.payload["data"]["kind"], e.payload["data"]["reason"]) for e in (second, spam)] == [
        ("hard", "smtp; 550 5.1.1 user unknown"), ("complaint", "feedback loop: abuse")]

    # Refused when sent, by the mail server or (a number no provider takes) by SMS.
    refused_id, refused = await new_contact(sessions, tenant,
                                            email_domain="hard-bounce.example.com")
    texted_id, _ = await new_contact(sessions, tenant)
    # A mobile number no SMS provider takes (too short), as a registry filled before its
    # numbers were checked may hold one.
    async with transaction(sessions) as session:
        await session.execute(update(ContactPoint).where(
            ContactPoint.contact_id == uuid.UUID(texted_id)).values(kind="mobile", value="+31"))
    for contact in (refused_id, texted_id):
        assert (await tenant.post(f"/v1/kyc/contacts/{contact}/assign", {})).status_code == 200
    *_, first, then = await webhook_receiver.wait_for(hook, "kyc.message_bounced", count=5)
    by_contact = {e.payload["data"]["contact"]["id"]: e.payload["data"] for e in (first, then)}
    at_once, texted = by_contact[refused_id], by_contact[texted_id]
    assert (at_once["message"]["recipient"], at_once["message"]["channel"], at_once["kind"],
            at_once["source"]) == (refused, "email", "hard", "smtp")
    assert "550" in at_once["reason"]
    assert (texted["message"]["recipient"], texted["message"]["channel"], texted["kind"],
            texted["source"]) == ("+31", "sms", "hard", "sms_provider")
    # Exactly those five; the journeys' and the client's own messages' events are not raised.
    assert len(webhook_receiver.events(hook, "kyc.message_bounced")) == 5
    assert webhook_receiver.events(others) == []
