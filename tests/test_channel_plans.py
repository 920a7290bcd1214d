"""Channel plans and bounces walked on the real stack: a letter first (its PDF read back and its
QR code followed), an email refused by the SMTP server escalating to SMS, a bounce reported
through the API escalating to a letter, and the funnel of a campaign with every kind of bounce."""

import asyncio
import csv
import io
import json
import re
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update

from api.schemas import Reminders
from db import crud
from db.models import Message
from db.session import transaction
from messaging.local_outbox import read_records
from tests.helpers import (
    Customer,
    PrintedLetter,
    Tenant,
    eventually,
    handler_descriptions,
    mark_bounced,
    mark_complained,
    unique_email,
)
from tests.histories import save_history
from workflows.journey import JourneyWorkflow

ADDRESS = {"type": "home", "line1": "Keizersgracht 123", "postal_code": "1015 CJ",
           "city": "Amsterdam", "country": "NL", "primary": True}


def mobile_number() -> str:
    return f"+3161{uuid.uuid4().int % 10**7:07d}"


async def contact(tenant, *, email=None, mobile=None, address=None, **fields) -> dict:
    points = [{"kind": "email", "value": email}] if email else []
    points += [{"kind": "mobile", "value": mobile}] if mobile else []
    body = {"external_id": f"c-{uuid.uuid4().hex[:10]}", "first_name": "Eva",
            "last_name": f"Jansen {uuid.uuid4().hex[:6]}", "language": "en",
            "contact_points": points, "addresses": [address] if address else [], **fields}
    return await tenant.ok("POST", "/v1/contacts", body, status=201)


async def enrol(tenant, campaign_id: str, *contacts: dict) -> list[dict]:
    enrolled = await tenant.enrol(campaign_id, *({"external_id": c["external_id"]}
                                                 for c in contacts))
    return enrolled["results"]


def letters_to(settings, last_name: str) -> list[dict]:
    return [r for r in read_records(settings.letter_outbox_dir)
            if any(last_name in line for line in r["address_lines"])]


def sms_to(settings, number: str) -> list[dict]:
    return sorted((r for r in read_records(settings.sms_outbox_dir) if r["to"] == number),
                  key=lambda r: r["sent_at"])


async def wait_for_letter(settings, last_name: str) -> dict:
    async def probe():
        return letters_to(settings, last_name)
    return (await eventually(probe, what=f"a letter to {last_name}"))[0]


async def wait_for_sms(settings, number: str) -> dict:
    async def probe():
        return sms_to(settings, number)
    return (await eventually(probe, what=f"an SMS to {number}"))[0]


def page_path(url: str) -> str:
    found = re.search(r"https?://testserver(/c/[A-Za-z0-9_\-]+)", url)
    assert found, url
    return found.group(1)


async def complete(http, mailbox, tenant, journey_id: str, page: str, email: str) -> dict:
    """The customer opens the page, enters an address and confirms it from the inbox."""
    customer = Customer(http)
    assert (await customer.open(page)).status_code == 200
    await customer.submit(page, email=email)
    verification = (await mailbox.wait_for(email))[-1]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    return await tenant.wait_for_stage(journey_id, "verified")


async def test_a_letter_asks_to_add_only_what_is_missing_or_to_confirm(tenant, settings):
    """A letter to a contact whose email is known does not ask to add it; in a campaign that
    verifies the known data it asks to check and confirm it."""
    def letter_text(letter: dict) -> str:
        pdf = (settings.letter_outbox_dir / f"{letter['id']}.pdf").read_bytes()
        return PrintedLetter(pdf, settings.letter_outbox_dir / f"read-{letter['id']}").text()

    add_email = "add your email address"
    texts = {}
    for mode in ("collect", "verify_existing"):
        campaign = await tenant.create_campaign(
            languages=["en"], consents=[], mode=mode, channel_plan=[{"channel": "letter"}])
        known = await contact(tenant, email=unique_email("letter-known"), address=ADDRESS)
        unknown = await contact(tenant, address=ADDRESS)
        await enrol(tenant, campaign["id"], known, unknown)
        texts[mode] = [letter_text(await wait_for_letter(settings, c["last_name"]))
                       for c in (known, unknown)]
    [known_collect, unknown_collect] = texts["collect"]
    assert add_email in unknown_collect
    assert add_email not in known_collect and "check your contact details" in known_collect
    for text in texts["verify_existing"]:
        assert add_email not in text and "check and confirm your contact details" in text


async def test_a_letter_abroad_prints_the_state_where_the_post_wants_it(tenant, settings,
                                                                        sessions):
    """A US address gets its state between the city and the ZIP code, a Canadian one its
    province: without them the post cannot route the letter. The letter's recorded recipient
    names them as printed; a returned letter marks the address, also one recorded without
    them before."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                            channel_plan=[{"channel": "letter"}])
    addresses = {
        "Mountain View, CA 94043": {"line1": "1600 Amphitheatre Pkwy", "city": "Mountain View",
                                    "region": "CA", "postal_code": "94043", "country": "US"},
        "Toronto ON M5V 2T6": {"line1": "290 Bremner Blvd", "city": "Toronto", "region": "ON",
                               "postal_code": "M5V 2T6", "country": "CA"},
    }
    people = {town: await contact(tenant, address={"type": "home", "primary": True, **address})
              for town, address in addresses.items()}
    await enrol(tenant, campaign["id"], *people.values())
    for town, person in people.items():
        letter = await wait_for_letter(settings, person["last_name"])
        printed = PrintedLetter((settings.letter_outbox_dir / f"{letter['id']}.pdf").read_bytes(),
                                settings.letter_outbox_dir / f"read-{letter['id']}").text()
        assert f"{addresses[town]['line1']} {town}" in printed, printed
        assert letter["address_lines"][2] == town

    us_letter = await wait_for_letter(settings, people["Mountain View, CA 94043"]["last_name"])
    returned = await tenant.ok("POST", "/v1/bounces", {
        "message_id": us_letter["provider_message_id"], "recipient": "1600 Amphitheatre",
        "kind": "hard", "reason": "return to sender"}, status=202)
    assert returned["recipient"] == "1600 Amphitheatre Pkwy, Mountain View, CA 94043, US"

    ca_letter = await wait_for_letter(settings, people["Toronto ON M5V 2T6"]["last_name"])
    async with transaction(sessions) as session:
        await session.execute(update(Message).where(
            Message.provider_message_id == ca_letter["provider_message_id"]).values(
            recipient="290 Bremner Blvd, M5V 2T6 Toronto, CA"))
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": ca_letter["provider_message_id"], "recipient": "290 Bremner Blvd",
        "kind": "hard", "reason": "return to sender"}, status=202)
    for person in people.values():
        [address] = (await tenant.ok("GET", f"/v1/contacts/{person['id']}"))["addresses"]
        assert address["undeliverable"]["reason"] == "return to sender"


async def test_letter_first_plan_then_email_reminder(tenant, http, mailbox, settings,
                                                     temporal_env, record_histories):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT2M",
        channel_plan=[{"channel": "letter"}, {"channel": "email", "after": "PT2S", "max": 1}])
    email = unique_email("letter-first")
    eva = await contact(tenant, email=email, address=ADDRESS)
    [result] = await enrol(tenant, campaign["id"], eva)
    journey_id = result["journey_id"]

    # The letter is an A4 PDF at the print provider; its QR code opens the personal page.
    letter = await wait_for_letter(settings, eva["last_name"])
    pdf = (settings.letter_outbox_dir / f"{letter['id']}.pdf").read_bytes()
    printed = PrintedLetter(pdf, settings.letter_outbox_dir / f"read-{letter['id']}")
    text = printed.text()
    assert f"Eva {eva['last_name']}" in text and "Keizersgracht 123" in text
    assert "1015 CJ Amsterdam" in text and tenant.name in text
    [qr] = printed.qr_codes()
    # Printed for those who type: the host and a short code, which leads to the QR code's page.
    code = re.search(r"testserver/l/([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})", text)
    assert code, text
    typed = await http.get(f"/l/{code.group(1).lower()}")
    assert typed.status_code == 303 and typed.headers["location"] == page_path(qr)
    journey = await tenant.wait_for_stage(journey_id, "invited")
    assert [(e["type"], e["detail"]) for e in journey["history"]][0] == (
        "invitation_sent", {"channel": "letter"})

    # The plan's next step: an email reminder, two seconds after the letter.
    [reminder] = await mailbox.wait_for(email)
    assert reminder.subject.startswith("Reminder")

    async def reminder_recorded():
        history = (await tenant.journey(journey_id))["history"]
        return "reminder_sent" in [e["type"] for e in history]
    # Recorded as sent once the server took it, a moment after it reached the inbox.
    await eventually(reminder_recorded, what="the reminder recorded as sent")

    # The customer scans the QR code: it opens the page, and the journey completes from it.
    journey = await complete(http, mailbox, tenant, journey_id, page_path(qr), email)
    history = [(e["type"], e["detail"]) for e in journey["history"]]
    assert history[2] == ("opened", {"link": "message-1"}), history
    assert [t for t, _ in history[:2]] == ["invitation_sent", "reminder_sent"], history

    # Opened after the email went out, but by the letter's own link: the letter reached the
    # contact, and the funnel (and its CSV) credits it.
    funnel = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/funnel")
    steps = ("invited", "opened", "entered", "verified")
    assert {c: [funnel["by_channel"][c][s] for s in steps] for c in ("letter", "email")} == {
        "letter": [1, 1, 1, 1], "email": [1, 0, 0, 0]}, funnel["by_channel"]
    rows = list(csv.DictReader(io.StringIO(
        (await tenant.get(f"/v1/campaigns/{campaign['id']}/funnel.csv")).text)))
    assert {r["channel"]: [r[s] for s in steps] for r in rows} == {
        "letter": ["1", "1", "1", "1"], "email": ["1", "0", "0", "0"], "*": ["1", "1", "1", "1"]}
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    assert (await handle.result()).stage == "verified"
    if record_histories:
        await save_history(handle, "channel_plan_letter_first")


async def test_a_step_the_contact_cannot_be_reached_on_is_skipped(tenant, mailbox, settings):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT1M",
        channel_plan=[{"channel": "letter"}, {"channel": "sms", "after": "P7D"},
                      {"channel": "email", "after": "P7D"}])
    email = unique_email("no-address")
    eva = await contact(tenant, email=email)
    [result] = await enrol(tenant, campaign["id"], eva)
    # No address and no mobile: both steps are skipped at once, the email goes now.
    [invitation] = await mailbox.wait_for(email)
    assert not invitation.subject.startswith("Reminder")
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    assert [(e["type"], e["detail"]["channel"]) for e in journey["history"]] == [
        ("invitation_skipped", "letter"), ("invitation_skipped", "sms"),
        ("invitation_sent", "email")]
    assert journey["history"][0]["detail"]["reason"] == "no postal address"


async def test_an_sms_too_long_to_send_is_skipped_not_bounced(sessions, http, mailbox, settings):
    """A client whose name makes the invitation longer than SMS_MAX_SEGMENTS: our text, not the
    customer's number, is at fault. The step is skipped and the plan goes on; no bounce."""
    async with transaction(sessions) as session:
        client, key = await crud.create_client(session, name="Łódzka Spółdzielnia " * 8)
    tenant = Tenant(id=client.id, name=client.name, key=key, http=http)
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT1M",
        channel_plan=[{"channel": "sms"}, {"channel": "email", "after": "P7D"}])
    email, mobile = unique_email("long-sms"), mobile_number()
    [result] = await enrol(tenant, campaign["id"], await contact(tenant, email=email,
                                                                 mobile=mobile))
    await mailbox.wait_for(email)
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    [skipped, sent] = journey["history"][:2]
    assert (skipped["type"], skipped["detail"]["channel"]) == ("invitation_skipped", "sms")
    assert "UCS-2 segments" in skipped["detail"]["reason"]
    assert (sent["type"], sent["detail"]["channel"]) == ("invitation_sent", "email")
    assert sms_to(settings, mobile) == []
    bounces = (await tenant.get(f"/v1/campaigns/{campaign['id']}/bounces")).json()
    assert bounces["items"] == []


async def test_email_refused_by_smtp_escalates_to_sms(tenant, http, mailbox, settings,
                                                      webhook_receiver, temporal_env,
                                                      record_histories):
    hook = await tenant.subscribe(webhook_receiver, ["message.bounced"])
    # No plan: today's email invitation, and a bounce switches to SMS.
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M")
    refused = f"gone-{uuid.uuid4().hex[:8]}@hard-bounce.example.com"
    number = mobile_number()
    eva = await contact(tenant, email=refused, mobile=number)
    [result] = await enrol(tenant, campaign["id"], eva)
    journey_id = result["journey_id"]

    sms = await wait_for_sms(settings, number)
    assert tenant.name in sms["text"]
    [event] = await webhook_receiver.wait_for(hook, "message.bounced")
    data = event.payload["data"]
    assert (data["kind"], data["source"], data["message"]["channel"]) == ("hard", "smtp", "email")
    assert "550" in data["reason"] and "User unknown" in data["reason"]
    assert data["message"]["recipient"] == refused

    link = re.search(r"http://testserver(/c/\S+)", sms["text"]).group(1)
    new_email = unique_email("eva-new")
    journey = await complete(http, mailbox, tenant, journey_id, link, new_email)
    types = [e["type"] for e in journey["history"]]
    assert types[:3] == ["bounced", "invitation_sent", "opened"], types
    assert mailbox.to(refused) == []

    bounces = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/bounces")
    [bounce] = bounces["items"]
    assert (bounce["kind"], bounce["channel"], bounce["step"]) == ("hard", "email", "invitation")
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    state = await handle.result()
    assert state.stage == "verified" and state.bounced_channels == ["email"]
    if record_histories:
        await save_history(handle, "email_bounce_escalated_to_sms")


async def test_reported_bounce_escalates_to_a_letter_without_mobile(
        tenant, mailbox, settings, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["message.bounced"])
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M",
                                            reminders={"interval": "PT1H", "max_count": 2})
    email = unique_email("bounces-later")
    eva = await contact(tenant, email=email, address=ADDRESS)
    [result] = await enrol(tenant, campaign["id"], eva)
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(result["journey_id"], "invited")

    report = {"message_id": invitation.headers["Message-ID"], "recipient": email.upper(),
              "kind": "hard", "reason": "smtp; 550 5.1.1 The email account does not exist"}
    bounce = await tenant.ok("POST", "/v1/bounces", report, status=202)
    assert (bounce["channel"], bounce["source"], bounce["reason"]) == (
        "email", "api", report["reason"])
    letter = await wait_for_letter(settings, eva["last_name"])
    assert letter["address_lines"][0] == f"Eva {eva['last_name']}"
    # Reported twice (providers do), it counts once and sends nothing more.
    again = await tenant.ok("POST", "/v1/bounces", report, status=202)
    assert again["id"] == bounce["id"]
    [event] = await webhook_receiver.wait_for(hook, "message.bounced")
    assert event.payload["data"]["reason"] == report["reason"]
    journey = await tenant.journey(result["journey_id"])
    # No mobile known: the SMS is skipped for the letter, which invites: the email reached
    # nobody.
    assert [(e["type"], (e["detail"] or {}).get("channel")) for e in journey["history"]] == [
        ("invitation_sent", "email"), ("bounced", "email"), ("invitation_skipped", "sms"),
        ("invitation_sent", "letter")]
    assert len(letters_to(settings, eva["last_name"])) == 1


async def test_a_soft_bounce_after_the_hard_one_counts_once(tenant, mailbox, settings):
    """The provider reports the message refused for good, then (late) deferred: the hard
    bounce stands, and the journey counts and escalates once."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M")
    email = unique_email("bounces-twice")
    eva = await contact(tenant, email=email, address=ADDRESS)
    [result] = await enrol(tenant, campaign["id"], eva)
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(result["journey_id"], "invited")
    report = {"message_id": invitation.headers["Message-ID"], "recipient": email}
    hard = await tenant.ok("POST", "/v1/bounces", {
        **report, "kind": "hard", "reason": "smtp; 550 5.1.1 user unknown"}, status=202)
    await wait_for_letter(settings, eva["last_name"])

    soft = await tenant.ok("POST", "/v1/bounces", {
        **report, "kind": "soft", "reason": "smtp; 452 4.2.2 mailbox full"}, status=202)
    assert (soft["id"], soft["kind"]) == (hard["id"], "hard")
    base = f"/v1/campaigns/{campaign['id']}"
    assert [b["kind"] for b in (await tenant.ok("GET", f"{base}/bounces"))["items"]] == ["hard"]
    funnel = await tenant.ok("GET", f"{base}/funnel")
    assert (funnel["total"]["bounced_hard"], funnel["total"]["bounced_soft"]) == (1, 0)
    journey = await tenant.journey(result["journey_id"])
    assert [e["type"] for e in journey["history"]].count("bounced") == 1
    assert len(letters_to(settings, eva["last_name"])) == 1


async def test_a_hard_bounce_marks_the_address_undeliverable_until_given_again(
        tenant, mailbox, settings):
    """After a hard bounce the registry marks what bounced; later journeys and the client's
    messages skip it, a soft bounce marks nothing, and the client giving it again clears it."""
    refused = f"jurgen-{uuid.uuid4().hex[:8]}@hard-bounce.example.com"
    number = mobile_number()
    jurgen = await contact(tenant, email=refused, mobile=number, address=ADDRESS)
    first = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M")
    [result] = await enrol(tenant, first["id"], jurgen)
    sms = await wait_for_sms(settings, number)  # the email bounced: the journey went on by SMS

    record = await tenant.ok("GET", f"/v1/contacts/{jurgen['id']}")
    email = next(p for p in record["contact_points"] if p["kind"] == "email")
    assert "550" in email["undeliverable"]["reason"], email
    mobile = next(p for p in record["contact_points"] if p["kind"] == "mobile")
    assert mobile["undeliverable"] is None
    # The SMS was sent, then reported as deferred: a soft bounce marks nothing.
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": sms["provider_message_id"], "recipient": number, "kind": "soft",
        "reason": "queue full"}, status=202)
    await wait_for_letter(settings, jurgen["last_name"])  # the journey's last way to reach him

    await tenant.ok("PUT", "/v1/message-policies/notice", {"category": "service"})
    notice = await tenant.ok("POST", "/v1/messages", {
        "contact_id": jurgen["id"], "message_type": "notice", "subject": "Notice",
        "text": "Notice"}, status=202)

    async def decided():
        message = await tenant.ok("GET", f"/v1/messages/{notice['id']}")
        return message if message["status"] != "queued" else None
    message = await eventually(decided, what="the notice decided")
    assert (message["status"], message["status_reason"]) == (
        "suppressed", "no email address that did not bounce")

    second = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT2M",
        channel_plan=[{"channel": "email"}, {"channel": "letter"}])
    [later] = await enrol(tenant, second["id"], jurgen)

    async def second_letter():
        letters = letters_to(settings, jurgen["last_name"])
        return letters if len(letters) == 2 else None
    letter = max(await eventually(second_letter, what="the second campaign's letter"),
                 key=lambda r: r["sent_at"])
    history = (await tenant.journey(later["journey_id"]))["history"]
    assert [(e["type"], e["detail"]) for e in history][:2] == [
        ("invitation_skipped", {"channel": "email",
                                "reason": "no email address that did not bounce"}),
        ("invitation_sent", {"channel": "letter"})]
    # The letter came back: the address is marked too.
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": letter["provider_message_id"], "recipient": "Keizersgracht 123",
        "kind": "hard", "reason": "adres onbekend / verhuisd"}, status=202)
    record = await tenant.ok("GET", f"/v1/contacts/{jurgen['id']}")
    [address] = record["addresses"]
    assert address["undeliverable"]["reason"] == "adres onbekend / verhuisd"
    assert next(p for p in record["contact_points"] if p["kind"] == "mobile")[
        "undeliverable"] is None

    await tenant.ok("POST", f"/v1/contacts/{jurgen['id']}/contact-points",
                    {"kind": "email", "value": refused}, status=201)
    record = await tenant.ok("GET", f"/v1/contacts/{jurgen['id']}")
    assert next(p for p in record["contact_points"] if p["kind"] == "email")[
        "undeliverable"] is None
    assert mailbox.to(refused) == []


async def test_a_contact_whose_email_bounced_before_is_invited_by_sms(
        tenant, sessions, settings, temporal_env, record_histories):
    """The contact's only email bounced hard in an earlier campaign: an email campaign enrols
    them all the same and its journey falls back to SMS, as on the bounce itself, rather
    than waiting, enrolled, for an email it will never send."""
    number = mobile_number()
    eva = await contact(tenant, email=unique_email("bounced-before"), mobile=number)
    await mark_bounced(sessions, eva["id"], "email")
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT8S")
    [result] = await enrol(tenant, campaign["id"], eva)
    assert result["status"] == "accepted", result

    sms = await wait_for_sms(settings, number)
    assert sms["text"].startswith(f"{tenant.name} asks you to check your contact details"), sms
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    [skipped] = [e for e in journey["history"] if e["type"] == "invitation_skipped"]
    assert skipped["detail"]["reason"] == "no email address that did not bounce"
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    state = await handle.result()
    assert state.bounced_channels == ["email"]
    if record_histories:
        await save_history(handle, "undeliverable_email_falls_back_to_sms")


async def test_a_contact_that_only_bounced_is_not_enrolled(tenant, sessions):
    """Nothing the contact has can be reached: the item is refused saying so, at once, rather
    than enrolled in a journey that reaches nobody; a launch does not select it either."""
    tag = f"t-{uuid.uuid4().hex[:8]}"
    eva = await contact(tenant, email=unique_email("only-bounced"), tags=[tag])
    await mark_bounced(sessions, eva["id"], "email")
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                 {"contacts": [{"external_id": eva["external_id"]}]})
    assert response.status_code == 422, response.text
    [item] = response.json()["results"]
    [error] = item["errors"]
    assert error["field"] == "email" and "bounced" in error["message"], error

    await tenant.ok("POST", f"/v1/campaigns/{campaign['id']}/launch", {"selection": {
        "missing_verified_only": False, "tags": [tag]}}, status=202)

    async def counted():
        launch = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/progress"))["launch"]
        return launch if launch["finished_at"] else None
    assert (await eventually(counted, what="the launch done"))["selected"] == 0


async def invited_by_email(tenant, mailbox, name: str):
    """A contact with an email and a mobile, invited by email: the enrolment's result, the two
    and the invitation."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M",
                                            reminders={"interval": "PT1H", "max_count": 2})
    email = unique_email(name)
    number = mobile_number()
    eva = await contact(tenant, email=email, mobile=number)
    [result] = await enrol(tenant, campaign["id"], eva)
    [invitation] = await mailbox.wait_for(email)
    return result, email, number, invitation


async def test_a_hard_bounce_after_the_soft_one_counts_once(tenant, mailbox, settings):
    """The provider reports the message deferred, then (later) refused for good: the bounce
    turns hard, so the journey counts and escalates once, under hard, and the address is
    marked undeliverable."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M")
    email = unique_email("bounces-worse")
    eva = await contact(tenant, email=email, address=ADDRESS)
    [result] = await enrol(tenant, campaign["id"], eva)
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(result["journey_id"], "invited")
    report = {"message_id": invitation.headers["Message-ID"], "recipient": email}
    soft = await tenant.ok("POST", "/v1/bounces", {
        **report, "kind": "soft", "reason": "smtp; 452 4.2.2 mailbox full"}, status=202)
    await wait_for_letter(settings, eva["last_name"])

    hard = await tenant.ok("POST", "/v1/bounces", {
        **report, "kind": "hard", "reason": "smtp; 550 5.1.1 user unknown"}, status=202)
    assert (hard["id"], hard["kind"], hard["reason"]) == (
        soft["id"], "hard", "smtp; 550 5.1.1 user unknown")
    base = f"/v1/campaigns/{campaign['id']}"
    assert [b["kind"] for b in (await tenant.ok("GET", f"{base}/bounces"))["items"]] == ["hard"]
    funnel = await tenant.ok("GET", f"{base}/funnel")
    assert (funnel["total"]["bounced_hard"], funnel["total"]["bounced_soft"]) == (1, 0)
    record = await tenant.ok("GET", f"/v1/contacts/{eva['id']}")
    [point] = [p for p in record["contact_points"] if p["kind"] == "email"]
    assert point["undeliverable"]["reason"] == "smtp; 550 5.1.1 user unknown"
    await asyncio.sleep(1)  # a second escalation would send its letter at once
    assert len(letters_to(settings, eva["last_name"])) == 1


async def test_the_first_sms_after_a_reported_bounce_invites(tenant, mailbox, settings):
    """The invitation email was sent, then reported bounced: the SMS that follows is the first
    message that reaches the contact, so it invites rather than reminds."""
    result, email, number, invitation = await invited_by_email(tenant, mailbox, "bounces-later")
    await tenant.wait_for_stage(result["journey_id"], "invited")
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": invitation.headers["Message-ID"], "recipient": email, "kind": "hard",
        "reason": "smtp; 550 5.1.1 The email account does not exist"}, status=202)

    sms = await wait_for_sms(settings, number)
    assert sms["text"].startswith(f"{tenant.name} asks you to check your contact details"), sms
    assert "Reminder" not in sms["text"]


async def test_the_fallback_after_a_bounce_keeps_the_campaigns_cadence(
        tenant, mailbox, settings, temporal_env, record_histories):
    """Reached by SMS after its email bounced, the customer is reminded there as the email
    would have reminded them: without a plan, the campaign's remaining `reminders`; with one,
    what the bounced step had left, at its `after`. Not one SMS and then silence."""
    no_plan = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT12S",
        reminders={"interval": "PT2S", "max_count": 2})
    planned = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT12S",
        channel_plan=[{"channel": "email", "max": 3, "after": "PT2S"}])
    # The mail server refuses the invitation of the one; the other's is reported bounced.
    refused_number, reported_number = mobile_number(), mobile_number()
    refused = await contact(tenant, email=f"gone-{uuid.uuid4().hex[:8]}@hard-bounce.example.com",
                            mobile=refused_number)
    email = unique_email("plan-bounce")
    reported = await contact(tenant, email=email, mobile=reported_number)
    [first] = await enrol(tenant, no_plan["id"], refused)
    [second] = await enrol(tenant, planned["id"], reported)
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(second["journey_id"], "invited")
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": invitation.headers["Message-ID"], "recipient": email, "kind": "hard",
        "reason": "smtp; 550 5.1.1 user unknown"}, status=202)

    for result, number in ((first, refused_number), (second, reported_number)):
        journey = await tenant.wait_for_stage(result["journey_id"], "expired", timeout=30)
        texts = [r["text"] for r in sms_to(settings, number)]
        assert len(texts) == 3, texts
        assert texts[0].startswith(f"{tenant.name} asks you to check your contact details")
        assert all(t.startswith(f"Reminder from {tenant.name}") for t in texts[1:]), texts
        sent = [(e["type"], e["detail"]["channel"]) for e in journey["history"]
                if e["type"].endswith("_sent")]
        assert sent[-3:] == [("invitation_sent", "sms"), ("reminder_sent", "sms"),
                             ("reminder_sent", "sms")], sent
        at = [datetime.fromisoformat(e["at"]) for e in journey["history"]
              if e["type"].endswith("_sent") and e["detail"]["channel"] == "sms"]
        assert all(b - a >= timedelta(seconds=2) for a, b in zip(at, at[1:])), at
    assert len(mailbox.to(email)) == 1
    if record_histories:
        journey = await tenant.journey(first["journey_id"])
        handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
        await save_history(handle, "email_bounce_fallback_keeps_cadence")


async def test_a_bounce_starts_the_plans_next_step_with_its_own_maximum(tenant, settings):
    """A plan of email three times, then SMS twice: the first email bounces, so the SMS step
    starts at once and sends the two the client asked for, `after` apart. The two emails left
    could never reach the contact: they are not added to the SMS step, as they are to a
    fallback the plan does not name."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT8S", channel_plan=[
            {"channel": "email", "max": 3, "after": "PT2S"},
            {"channel": "sms", "max": 2, "after": "PT2S"}])
    number = mobile_number()
    eva = await contact(tenant, email=f"gone-{uuid.uuid4().hex[:8]}@hard-bounce.example.com",
                        mobile=number)
    [result] = await enrol(tenant, campaign["id"], eva)
    journey = await tenant.wait_for_stage(result["journey_id"], "expired", timeout=30)
    texts = [r["text"] for r in sms_to(settings, number)]
    assert len(texts) == 2, texts
    assert texts[0].startswith(f"{tenant.name} asks you to check your contact details")
    assert texts[1].startswith(f"Reminder from {tenant.name}"), texts
    sent = [(e["type"], e["detail"]["channel"]) for e in journey["history"]
            if e["type"].endswith("_sent") or e["type"] == "bounced"]
    assert sent == [("bounced", "email"), ("invitation_sent", "sms"),
                    ("reminder_sent", "sms")], sent
    first, second = (datetime.fromisoformat(e["at"]) for e in journey["history"]
                     if e["type"].endswith("_sent"))
    assert second - first >= timedelta(seconds=2)


async def test_a_complaint_stops_service_mail_but_not_financial(tenant, mailbox, settings):
    """The customer marked the invitation as spam: as the mail provider expects, the client's
    service messages no longer go to that address, while a bill (financial) still does."""
    result, email, number, invitation = await invited_by_email(tenant, mailbox, "complains")
    await tenant.wait_for_stage(result["journey_id"], "invited")
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": invitation.headers["Message-ID"], "recipient": email, "kind": "complaint",
        "reason": "feedback-type: abuse"}, status=202)
    contact_id = result["contact_id"]
    record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
    [point] = [p for p in record["contact_points"] if p["kind"] == "email"]
    assert point["complained_since"] is not None and point["undeliverable"] is None

    async def decided(message_type: str) -> dict:
        await tenant.ok("PUT", f"/v1/message-policies/{message_type}",
                        {"category": message_type})
        message = await tenant.ok("POST", "/v1/messages", {
            "contact_id": contact_id, "message_type": message_type, "subject": message_type,
            "text": f"Your {message_type} message"}, status=202)

        async def done():
            read = await tenant.ok("GET", f"/v1/messages/{message['id']}")
            return read if read["status"] != "queued" else None
        return await eventually(done, what=f"the {message_type} message decided")
    service = await decided("service")
    assert service["status"] == "suppressed" and "as spam" in service["status_reason"], service
    assert (await decided("financial"))["status"] == "sent"
    assert [m.subject for m in await mailbox.wait_for(email, count=2)][1:] == ["financial"]
    # Another campaign's invitation is a service message too: it goes by SMS instead.
    second = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M",
                                          channel_plan=[{"channel": "email"}, {"channel": "sms"}])
    [later] = await enrol(tenant, second["id"], result)
    journey = await tenant.wait_for_stage(later["journey_id"], "invited")
    [suppressed] = [e for e in journey["history"] if e["type"] == "invitation_suppressed"]
    assert "as spam" in suppressed["detail"]["reason"], suppressed
    assert len(mailbox.to(email)) == 2


async def test_a_complaint_ends_the_campaigns_journey_on_every_channel(
        tenant, mailbox, settings, webhook_receiver, temporal_env, record_histories):
    """The customer marked the invitation as spam: the campaign asks them nothing more, by
    SMS or letter either; the journey ends opted out (by the complaint), as the client hears.
    A campaign whose messages are financial (a bill) goes on by SMS, as after a bounce."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.opted_out"])
    plan = [{"channel": "email"}, {"channel": "sms", "after": "PT1S"},
            {"channel": "letter", "after": "PT1S"}]

    async def complained(name: str) -> tuple[dict, str, dict]:
        campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                                expires_after="PT2M", channel_plan=plan)
        email, number = unique_email(name), mobile_number()
        eva = await contact(tenant, email=email, mobile=number, address=ADDRESS)
        [result] = await enrol(tenant, campaign["id"], eva)
        [invitation] = await mailbox.wait_for(email)
        await tenant.wait_for_stage(result["journey_id"], "invited")
        await tenant.ok("POST", "/v1/bounces", {
            "message_id": invitation.headers["Message-ID"], "recipient": email,
            "kind": "complaint", "reason": "feedback-type: abuse"}, status=202)
        return result, number, eva

    result, number, eva = await complained("complains-plan")
    journey = await tenant.wait_for_stage(result["journey_id"], "opted_out")
    [ended] = [e for e in journey["history"] if e["type"] == "opted_out"]
    assert ended["detail"] == {"by": "complaint", "channel": "email", "step": "message-1"}
    [hooked] = await webhook_receiver.wait_for(hook, "journey.opted_out")
    assert hooked.payload["data"]["detail"]["by"] == "complaint"
    assert sms_to(settings, number) == [] and letters_to(settings, eva["last_name"]) == []
    if record_histories:
        handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
        await save_history(handle, "complaint_ends_journey")

    for message_type in ("invitation", "reminder"):
        await tenant.ok("PUT", f"/v1/message-policies/{message_type}",
                        {"category": "financial"})
    result, number, _ = await complained("complains-bill")
    await wait_for_sms(settings, number)
    assert (await tenant.journey(result["journey_id"]))["stage"] == "invited"


async def test_an_invitation_kept_back_by_email_goes_by_sms(
        tenant, sessions, mailbox, settings, temporal_env, record_histories):
    """A campaign without a plan: the contact reported an earlier campaign's email as spam, so
    its invitation may not go there. It goes by SMS at once, as a plan's fallback would, and
    the journey is invited rather than left `enrolled` reaching nobody."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT2M",
                                            reminders={"interval": "PT1H", "max_count": 1})
    email, number = unique_email("kept-back-sms"), mobile_number()
    eva = await contact(tenant, email=email, mobile=number)
    await mark_complained(sessions, eva["id"], "email")
    [result] = await enrol(tenant, campaign["id"], eva)

    sms = await wait_for_sms(settings, number)
    assert sms["text"].startswith(f"{tenant.name} asks you to check your contact details"), sms
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    assert [(e["type"], e["detail"]["channel"]) for e in journey["history"]] == [
        ("invitation_suppressed", "email"), ("invitation_sent", "sms")]
    assert "as spam" in journey["history"][0]["detail"]["reason"]
    assert mailbox.to(email) == []
    if record_histories:
        handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
        await handle.terminate("recorded")
        await save_history(handle, "unsent_invitation_falls_back_to_sms")


async def test_a_bounce_signal_naming_no_channel_or_kind_is_ignored(
        tenant, mailbox, settings, temporal_env, caplog, record_histories):
    """An operator's `temporal workflow signal` with a channel no message goes on, no kind of
    bounce, or a step the journey never sent on that channel, switches no channel: the journey
    sends no SMS for it and warns in its log."""
    result, email, number, invitation = await invited_by_email(tenant, mailbox, "bogus-bounce")
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    for bogus in ({"step": "message-3", "channel": "fax", "kind": "hard"},
                  {"step": "invitation", "channel": "email", "kind": "bogus"},
                  {"step": "reminder-7", "channel": "email", "kind": "hard"},
                  {"step": "invitation", "channel": "sms", "kind": "hard"}):
        await handle.signal("message_bounced", bogus)

    async def warned():
        return len([r for r in caplog.records if "message_bounced ignored" in r.getMessage()
                    and r.levelname == "WARNING"]) == 4
    await eventually(warned, what="a warning for each signal")
    assert sms_to(settings, number) == []
    assert (await handle.query(JourneyWorkflow.state)).bounced_channels == []
    # A bounce the API stored still switches the channel.
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": invitation.headers["Message-ID"], "recipient": email, "kind": "hard",
        "reason": "smtp; 550 5.1.1 The email account does not exist"}, status=202)
    await wait_for_sms(settings, number)
    assert (await handle.query(JourneyWorkflow.state)).bounced_channels == ["email"]
    assert len(sms_to(settings, number)) == 1
    if record_histories:
        await handle.terminate("recorded")
        await save_history(handle, "bounce_signal_steps_checked")


async def test_a_bounce_an_operator_signals_is_recorded_as_a_reported_one(
        tenant, mailbox, settings, webhook_receiver, temporal_env, record_histories):
    """An operator tells a journey by hand (`temporal workflow signal --name message_bounced`)
    that its invitation bounced, with the input the signal's description in the Temporal UI
    shows: besides the SMS that follows, the bounce is where the API's would be (the journey's
    history, the campaign's bounces and funnel, `message.bounced`, the address marked
    undeliverable), so the switch of channel is explained and the next campaign does not mail
    the address again."""
    hook = await tenant.subscribe(webhook_receiver, ["message.bounced"])
    result, email, number, _ = await invited_by_email(tenant, mailbox, "operator-bounce")
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    definitions = await handler_descriptions(handle)
    # The UI lists each of them: none leaves an operator guessing what it is for.
    assert [name for name, description in definitions.items() if not description] == []
    [shown] = re.findall(r"\{.*?\}", definitions["message_bounced"])
    assert json.loads(shown) == {"step": "invitation", "channel": "email", "kind": "hard"}
    await handle.signal("message_bounced", json.loads(shown))
    await wait_for_sms(settings, number)

    [event] = await webhook_receiver.wait_for(hook, "message.bounced")
    data = event.payload["data"]
    assert (data["kind"], data["source"], data["message"]["step"]) == (
        "hard", "operator", "invitation")
    journey = await tenant.journey(result["journey_id"])
    assert [(e["type"], e["detail"]["channel"]) for e in journey["history"]] == [
        ("invitation_sent", "email"), ("bounced", "email"), ("invitation_sent", "sms")]
    base = f"/v1/campaigns/{journey['campaign_id']}"
    [bounce] = (await tenant.ok("GET", f"{base}/bounces"))["items"]
    assert (bounce["kind"], bounce["channel"], bounce["source"]) == ("hard", "email", "operator")
    assert (await tenant.ok("GET", f"{base}/funnel"))["total"]["bounced_hard"] == 1
    record = await tenant.ok("GET", f"/v1/contacts/{result['contact_id']}")
    [point] = [p for p in record["contact_points"] if p["kind"] == "email"]
    assert point["undeliverable"] is not None
    if record_histories:
        await handle.terminate("recorded")
        await save_history(handle, "bounce_signalled_by_hand_recorded")


async def test_bad_bounce_reports_are_field_errors(tenant, other_tenant, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    email = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "b-1", "email": email})
    [invitation] = await mailbox.wait_for(email)
    message_id = invitation.headers["Message-ID"]
    journey_id = enrolled["results"][0]["journey_id"]
    good = {"message_id": message_id, "recipient": email, "kind": "soft", "reason": "full"}
    cases = [
        ({**good, "kind": "bounced"}, "kind"),
        ({**good, "reason": ""}, "reason"),
        ({k: v for k, v in good.items() if k != "recipient"}, "recipient"),
        ({**good, "recipient": "someone-else@example.com"}, "recipient"),
        ({k: v for k, v in good.items() if k != "message_id"}, "message_id"),
        ({**good, "journey_id": journey_id, "step": "invitation"}, "message_id"),
        # Half of the other way, given beside message_id or instead of it, was ignored.
        ({**good, "journey_id": str(uuid.uuid4())}, "message_id"),
        ({**{k: v for k, v in good.items() if k != "message_id"}, "journey_id": journey_id},
         "step"),
        ({**good, "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = await tenant.post("/v1/bounces", body)
        assert response.status_code == 422, (body, response.text)
        assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text
    unknown = await tenant.post("/v1/bounces", {**good, "message_id": "<nobody@testserver>"})
    assert unknown.status_code == 404
    # Another client's message is unknown to this one.
    assert (await other_tenant.post("/v1/bounces", good)).status_code == 404
    by_step = {"journey_id": journey_id, "step": "invitation", "recipient": email,
               "kind": "soft", "reason": "mailbox full"}
    assert (await tenant.post("/v1/bounces", by_step)).status_code == 202
    # A mail server names an international domain in its ASCII form.
    abroad = f"{uuid.uuid4().hex[:8]}@bücher.example"
    await tenant.enrol(campaign["id"], {"external_id": "b-2", "email": abroad})
    [invitation] = await mailbox.wait_for(abroad)
    ascii_form = await tenant.post("/v1/bounces", {
        **good, "message_id": invitation.headers["Message-ID"],
        "recipient": abroad.replace("bücher", "xn--bcher-kva")})
    assert ascii_form.status_code == 202, ascii_form.text


async def test_bad_channel_plans_are_field_errors(tenant):
    await tenant.ensure_purpose("service-communication")
    cases = [
        ([{"channel": "pigeon"}], "channel_plan[0].channel"),
        ([{"channel": "email"}, {"channel": "sms", "after": "-P1D"}], "channel_plan[1].after"),
        ([{"channel": "email", "after": "soon"}], "channel_plan[0].after"),
        ([{"channel": "email", "max": 0}], "channel_plan[0].max"),
        ([], "channel_plan"),
    ]
    for plan, field in cases:
        response = await tenant.post("/v1/campaigns", {"name": "x", "channel_plan": plan})
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], response.text


async def test_reminders_beside_a_plan_are_a_field_error(tenant):
    """The plan's steps set the cadence: reminders given beside it would be ignored."""
    response = await tenant.post("/v1/campaigns", {
        "name": "Both", "channel_plan": [{"channel": "email"}, {"channel": "sms", "after": "P3D"}],
        "reminders": {"interval": "P2D", "max_count": 1}})
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["fields"]
    assert error["field"] == "reminders" and "channel_plan's steps" in error["message"], error


async def test_a_campaign_with_a_plan_can_be_changed(tenant):
    """The reminders a plan replaces are stored with their defaults: a change merged into the
    stored campaign must not count them as given beside the plan (every change was refused)."""
    created = await tenant.create_campaign(channel_plan=[{"channel": "email"}])
    path = f"/v1/campaigns/{created['id']}"
    assert (await tenant.ok("PATCH", path, {"name": "Renamed"}))["name"] == "Renamed"
    plan = [{"channel": "email"}, {"channel": "sms", "after": "P3D", "max": 2}]
    changed = await tenant.ok("PATCH", path, {"channel_plan": plan})
    assert [(s["channel"], s["max"]) for s in changed["spec"]["channel_plan"]] == [
        ("email", 1), ("sms", 2)]
    # Given in the change itself, they are still refused.
    refused = await tenant.ok("PATCH", path, {"reminders": {"max_count": 3}}, status=422)
    assert [f["field"] for f in refused["error"]["fields"]] == ["reminders"], refused
    # A plan given to a campaign that had reminders of its own replaces them.
    plain = await tenant.create_campaign(reminders={"interval": "P2D", "max_count": 1})
    planned = await tenant.ok("PATCH", f"/v1/campaigns/{plain['id']}", {"channel_plan": plan})
    assert "reminders" not in planned["spec"] and len(planned["spec"]["channel_plan"]) == 2
    # Dropped again, the campaign reminds by the defaults.
    dropped = await tenant.ok("PATCH", f"/v1/campaigns/{plain['id']}", {"channel_plan": None})
    assert dropped["spec"]["channel_plan"] is None
    assert dropped["spec"]["reminders"] == Reminders().model_dump(mode="json")


async def test_a_campaign_read_back_shows_its_plan_not_the_unused_reminders(tenant):
    """With a channel plan the plan's steps are the invitation and reminders: read back, the
    campaign does not also show `channels` and `reminders`, which do not apply."""
    plan = [{"channel": "email"}, {"channel": "sms", "after": "P3D", "max": 2}]
    created = await tenant.create_campaign(channel_plan=plan)
    plain = await tenant.create_campaign(reminders={"interval": "P2D", "max_count": 1})
    listed = {c["id"]: c for c in (await tenant.ok("GET", "/v1/campaigns"))["items"]}
    for read in (created, await tenant.ok("GET", f"/v1/campaigns/{created['id']}"),
                 listed[created["id"]]):
        assert [s["channel"] for s in read["spec"]["channel_plan"]] == ["email", "sms"]
        assert "reminders" not in read["spec"] and "channels" not in read["spec"]
    read = await tenant.ok("GET", f"/v1/campaigns/{plain['id']}")
    assert read["spec"]["reminders"] == {"interval": "P2D", "max_count": 1}
    assert read["spec"]["channel_plan"] is None


async def test_contact_no_plan_channel_reaches_is_rejected(tenant):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], channel_plan=[{"channel": "letter"}, {"channel": "sms"}])
    eva = await contact(tenant, email=unique_email())
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                 {"contacts": [{"external_id": eva["external_id"]}]})
    assert response.status_code == 422
    [problem] = response.json()["error"]["fields"]
    assert problem == {"field": "contacts[0]", "message": "this campaign reaches contacts by "
                       "letter, sms; the contact needs one of: postal address, mobile number"}


async def test_a_new_contact_the_campaign_cannot_reach_is_not_created(tenant):
    """Rejected items leave nothing behind: the external id stays free for the registry."""
    n = uuid.uuid4().hex[:8]
    for plan in (None, [{"channel": "letter"}, {"channel": "email"}]):
        campaign = await tenant.create_campaign(
            languages=["en"], consents=[], **({"channel_plan": plan} if plan else {}))
        response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                     {"contacts": [{"external_id": f"ghost-{n}"}]})
        assert response.status_code == 422, response.text
        [result] = response.json()["results"]
        assert result["status"] == "rejected" and result["contact_id"] is None, result
    assert (await tenant.get("/v1/contacts", external_id=f"ghost-{n}")).json()["items"] == []
    await tenant.ok("POST", "/v1/contacts", {"external_id": f"ghost-{n}", "first_name": "Gus"},
                    status=201)


async def test_a_bounce_falls_back_to_sms_when_the_rest_of_the_plan_cannot_reach(
        tenant, settings, temporal_env, record_histories):
    """Email, then a letter: the email bounces and no postal address is known, so the letter
    reaches nobody either, and the journey turns to SMS as a plan with nothing left does."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], channel_plan=[
        {"channel": "email"}, {"channel": "letter", "after": "PT1H"}])
    mobile = mobile_number()
    eva = await contact(tenant, email=f"e-{uuid.uuid4().hex[:8]}@hard-bounce.example.com",
                        mobile=mobile)
    [result] = await enrol(tenant, campaign["id"], eva)
    sms = await wait_for_sms(settings, mobile)
    assert "/c/" in sms["text"]
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    types = [e["type"] for e in journey["history"]]
    assert types[:3] == ["bounced", "invitation_skipped", "invitation_sent"], types
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    state = await handle.query(JourneyWorkflow.state)
    assert state.bounced_channels == ["email"]
    if record_histories:
        await save_history(handle, "channel_plan_bounce_then_fallback_after_plan")
    # The SMS provider reports that SMS bounced too, naming the number in national form.
    bounce = await tenant.ok("POST", "/v1/bounces", {
        "message_id": sms["id"], "recipient": "0" + mobile.removeprefix("+31"), "kind": "hard",
        "reason": "unknown subscriber"}, status=202)
    assert (bounce["channel"], bounce["recipient"]) == ("sms", mobile)


async def test_funnel_by_channel_and_language_with_every_kind_of_bounce(
        tenant, http, mailbox, settings):
    campaign = await tenant.create_campaign(
        languages=["en", "nl"], consents=[], expires_after="PT2M",
        channel_plan=[{"channel": "email", "max": 1}])
    await tenant.ensure_purpose("newsletter")
    await tenant.ok("POST", "/v1/purposes/newsletter/legal-texts",
                    {"language": "en", "version": "1", "text": "Send me the newsletter."},
                    status=201)
    hard_mobile = mobile_number()
    hard = await contact(tenant, email=f"x-{uuid.uuid4().hex[:8]}@hard-bounce.example.com",
                         mobile=hard_mobile)
    soft = await contact(tenant, email=f"y-{uuid.uuid4().hex[:8]}@soft-bounce.example.com",
                         address=ADDRESS, language="nl")
    complains, verifies, leaves = (unique_email("complains"), unique_email("verifies"),
                                   unique_email("leaves"))
    complainer = await contact(tenant, email=complains)
    verifier = await contact(tenant, email=verifies, language="nl")
    leaver = await contact(tenant, email=leaves)
    await tenant.ok("POST", f"/v1/contacts/{complainer['id']}/consents", {"changes": [{
        "purpose": "newsletter", "channel": "email", "granted": True,
        "given_at": "2026-01-05T10:00:00Z", "source": "back_office",
        "legal_text": {"language": "en"}}]}, status=201)
    results = await enrol(tenant, campaign["id"], hard, soft, complainer, verifier, leaver)
    journeys = [r["journey_id"] for r in results]

    await wait_for_sms(settings, hard_mobile)
    await wait_for_letter(settings, soft["last_name"])
    [mail] = await mailbox.wait_for(complains)
    await tenant.ok("POST", "/v1/bounces", {
        "message_id": mail.headers["Message-ID"], "recipient": complains, "kind": "complaint",
        "reason": "abuse report: feedback-type=abuse (ARF)"}, status=202)
    [mail] = await mailbox.wait_for(verifies)
    await complete(http, mailbox, tenant, journeys[3], mailbox.link(mail), verifies)
    [mail] = await mailbox.wait_for(leaves)
    customer = Customer(http)
    await customer.open(mailbox.link(mail))
    await customer.submit(mailbox.link(mail) + "/opt-out")
    await tenant.wait_for_stage(journeys[4], "opted_out")

    # The complaint ended the complainer's journey (opted out) and newsletter by email.
    await tenant.wait_for_stage(journeys[2], "opted_out")
    async def newsletter_withdrawn():
        prefs = await tenant.ok("GET", f"/v1/contacts/{complainer['id']}/preferences")
        return [p for p in prefs if p["purpose"] == "newsletter" and not p["granted"]]
    await eventually(newsletter_withdrawn, what="complaint withdrawing the newsletter")

    zero = dict.fromkeys(["invited", "opened", "entered", "verified", "expired", "opted_out",
                          "cancelled", "bounced_hard", "bounced_soft", "complaints"], 0)
    expected_rows = [
        {"channel": "email", "language": "en", **zero, "invited": 2, "opened": 1,
         "opted_out": 2, "bounced_hard": 1, "complaints": 1},
        {"channel": "email", "language": "nl", **zero, "invited": 1, "opened": 1, "entered": 1,
         "verified": 1, "bounced_soft": 1},
        {"channel": "letter", "language": "nl", **zero, "invited": 1},
        {"channel": "sms", "language": "en", **zero, "invited": 1},
    ]
    total = {**zero, "invited": 5, "opened": 2, "entered": 1, "verified": 1, "opted_out": 2,
             "bounced_hard": 1, "bounced_soft": 1, "complaints": 1}
    base = f"/v1/campaigns/{campaign['id']}"

    async def settled():
        funnel = await tenant.ok("GET", f"{base}/funnel")
        return funnel if funnel["by_channel_language"] == expected_rows else None
    funnel = await eventually(settled, what="the funnel to count every journey")
    assert funnel["total"] == total
    assert (funnel["journeys"], funnel["finished"]) == (5, 3)
    assert funnel["by_channel"]["email"]["invited"] == 3

    response = await tenant.get(f"{base}/funnel.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [{k: v if k in ("channel", "language") else int(v) for k, v in r.items()}
            for r in rows] == [*expected_rows, {"channel": "*", "language": "*", **total}]

    bounces = (await tenant.ok("GET", f"{base}/bounces"))["items"]
    assert sorted((b["kind"], b["source"]) for b in bounces) == [
        ("complaint", "api"), ("hard", "smtp"), ("soft", "smtp")]
    soft_bounce = next(b for b in bounces if b["kind"] == "soft")
    assert "452" in soft_bounce["reason"] and "Mailbox full" in soft_bounce["reason"]
    only_hard = (await tenant.get(f"{base}/bounces", kind="hard")).json()["items"]
    assert [b["kind"] for b in only_hard] == ["hard"]
    report = await tenant.get(f"{base}/bounces.csv")
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert sorted((r["kind"], r["language"], r["channel"]) for r in rows) == [
        ("complaint", "en", "email"), ("hard", "en", "email"), ("soft", "nl", "email")]
    assert all(r["reason"] and r["recipient"] for r in rows)


async def test_confirmation_email_after_verification(tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["nl"], default_language="nl",
                                            consents=[], send_confirmation=True)
    email = unique_email("thanked")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "t-1", "email": email,
                                                   "first_name": "Eva", "last_name": "Jansen"})
    [invitation] = await mailbox.wait_for(email)
    await complete(http, mailbox, tenant, enrolled["results"][0]["journey_id"],
                   mailbox.link(invitation), email)
    thanks = (await mailbox.wait_for(email, count=3))[-1]
    assert thanks.subject == "Uw contactgegevens zijn bevestigd"
    assert "Beste Eva Jansen," in thanks.text and "/c/" not in thanks.text and "/v/" not in thanks.text


async def verify_mobile(http, mailbox, settings, email: str, number: str) -> None:
    """The customer opens the invitation mailed to `email`, enters `number` on the page and
    types the code texted to it."""
    from tests.test_mobile_journey import wait_codes

    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, mobile=number)
    [code] = await wait_codes(settings, number, 1)
    await customer.submit(page + "/code", code=code)


async def test_confirmation_sms_when_only_a_mobile_was_verified(tenant, http, mailbox, settings):
    campaign = await tenant.create_campaign(languages=["en"], consents=[], collect=["mobile"],
                                            send_confirmation=True)
    email, number = unique_email(), mobile_number()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "t-2", "email": email})
    await verify_mobile(http, mailbox, settings, email, number)
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")

    async def thanked():
        return [s for s in sms_to(settings, number) if "Thank you" in s["text"]]
    [sms] = await eventually(thanked, what="the confirmation SMS")
    assert tenant.name in sms["text"]


async def verify_email(tenant, http, mailbox, person: dict, email: str) -> None:
    """The customer confirms their address in a journey of a campaign of its own."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    [result] = await enrol(tenant, campaign["id"], person)
    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=email)
    [_, verification] = await mailbox.wait_for(email, count=2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(result["journey_id"], "verified")


async def newsletter_by_policy(tenant, *message_types: str) -> None:
    await tenant.ensure_purpose("newsletter")
    await tenant.ok("POST", "/v1/purposes/newsletter/legal-texts",
                    {"language": "en", "version": "rules", "text": "Offers, please."},
                    status=201)
    for message_type in message_types:
        await tenant.ok("PUT", f"/v1/message-policies/{message_type}",
                        {"category": "marketing", "purpose": "newsletter"})


async def grant(tenant, person: dict, *channels: str) -> None:
    await tenant.ok("POST", f"/v1/contacts/{person['id']}/consents", {"changes": [{
        "purpose": "newsletter", "channel": channel, "granted": True,
        "given_at": "2026-01-05T10:00:00Z", "source": "back_office",
        "legal_text": {"language": "en"}} for channel in channels]}, status=201)


async def test_sending_rules_are_asked_per_channel(tenant, http, mailbox, settings):
    """The client made invitations marketing: the contact agreed to it by email only (and
    confirmed that address), so the SMS step is suppressed and the email goes."""
    email, number = unique_email("rules"), mobile_number()
    eva = await contact(tenant, email=email, mobile=number)
    await verify_email(tenant, http, mailbox, eva, email)
    await newsletter_by_policy(tenant, "invitation")
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[],
        channel_plan=[{"channel": "sms"}, {"channel": "email", "after": "P1D"}])
    await grant(tenant, eva, "email")
    [result] = await enrol(tenant, campaign["id"], eva)
    await mailbox.wait_for(email, count=3)
    journey = await tenant.wait_for_stage(result["journey_id"], "invited")
    suppressed, sent = journey["history"]
    assert (suppressed["type"], suppressed["detail"]["channel"]) == ("invitation_suppressed",
                                                                    "sms")
    assert suppressed["detail"]["reason"] == "no consent for newsletter by sms"
    assert (sent["type"], sent["detail"]) == ("invitation_sent", {"channel": "email"})
    assert sms_to(settings, number) == []


async def test_marketing_journey_messages_need_a_verified_address(tenant, mailbox, settings):
    """Invitations the client's policy makes marketing follow the rule of its own marketing
    messages: with an opt-in recorded but the address and number never confirmed by their
    owner (no double opt-in), neither the SMS nor the email of the plan goes, as the client's
    own marketing message to that address does not."""
    await newsletter_by_policy(tenant, "invitation", "offer")
    email, number = unique_email("unconfirmed"), mobile_number()
    eva = await contact(tenant, email=email, mobile=number)
    await grant(tenant, eva, "email", "sms")
    offer = await tenant.ok("POST", "/v1/messages", {
        "contact_id": eva["id"], "message_type": "offer", "subject": "Offer", "text": "Buy",
        "idempotency_key": uuid.uuid4().hex}, status=202)

    async def decided():
        message = await tenant.ok("GET", f"/v1/messages/{offer['id']}")
        return message if message["status"] != "queued" else None
    message = await eventually(decided, what="the client's offer decided")
    assert (message["status"], message["status_reason"]) == ("suppressed",
                                                             "no verified email address")

    campaign = await tenant.create_campaign(
        languages=["en"], consents=[],
        channel_plan=[{"channel": "sms"}, {"channel": "email", "after": "P1D"}])
    [result] = await enrol(tenant, campaign["id"], eva)

    def steps(count: int):
        async def probe():
            history = (await tenant.journey(result["journey_id"]))["history"]
            return history if len(history) >= count else None
        return probe
    by_sms = (await eventually(steps(1), what="the plan's SMS step"))[0]
    assert (by_sms["type"], by_sms["detail"]) == ("invitation_suppressed", {
        "channel": "sms", "reason": "no verified mobile number"})
    _, by_email = await eventually(steps(2), what="the plan's email step")
    assert (by_email["type"], by_email["detail"]) == ("invitation_suppressed", {
        "channel": "email", "reason": "no verified email address"})
    assert (await tenant.journey(result["journey_id"]))["stage"] == "enrolled"
    assert sms_to(settings, number) == []
    assert mailbox.to(email) == []
