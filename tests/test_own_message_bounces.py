"""A bounce the client's email provider reports later for the client's own message
(`POST /v1/messages`) or for a KYC email, named by the Message-ID our mail carried: it marks the
address in the registry as a journey message's bounce does."""

import uuid

from tests.helpers import eventually, unique_email
from tests.test_consent_ledger import setup_policies
from tests.test_kyc import IDENTITY, define, new_contact, profile


async def email_point(tenant, contact_id: str) -> dict:
    record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
    return next(p for p in record["contact_points"] if p["kind"] == "email")


async def message_status(tenant, message_id: str, status: str) -> dict | None:
    message = await tenant.ok("GET", f"/v1/messages/{message_id}")
    return message if message["status"] == status else None


async def test_a_bounce_of_the_clients_own_message_marks_the_address(tenant, other_tenant,
                                                                     mailbox):
    await setup_policies(tenant)
    email = unique_email("own")
    contact = await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"own-{uuid.uuid4().hex[:6]}", "last_name": "Own",
        "contact_points": [{"kind": "email", "value": email}]}, 201)
    invoice = {"contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 1",
               "text": "Please pay."}
    sent = await tenant.ok("POST", "/v1/messages", invoice, 202)
    [mail] = await mailbox.wait_for(email)
    await eventually(lambda: message_status(tenant, sent["id"], "sent"), what="sent")
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


async def test_a_bounce_of_a_kyc_email_marks_the_address(tenant, sessions, mailbox):
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    [mail] = await mailbox.wait_for(email)

    async def sent() -> bool:
        return any(e["type"] == "kyc_assigned_sent"
                   for e in (await profile(tenant, contact_id))["history"])
    await eventually(sent, what="the assignment email in the history")
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
