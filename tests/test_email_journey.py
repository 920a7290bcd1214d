"""The email double opt-in journey, walked over HTTP as the client and the customer walk it, on
the real stack: PostgreSQL, Temporal dev server, SMTP, and a webhook receiver over HTTP."""

import asyncio
import hashlib
import re
import uuid
from datetime import datetime

import pytest
from starlette.requests import Request
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.errors import UpdateLost
from api.routes.customer_page import refused, resolve
from core.vocabulary import JOURNEY_STAGE, TokenPurpose
from messaging.dev_mail import SLOW_ACK_DOMAIN, start_smtp_sink
from db.models import Campaign
from db.session import transaction
from stack import free_port
from tests.helpers import Customer, eventually, on_the_page, own_api, unique_email
from tests.histories import save_history
from worker import running_worker
from workflows.journey import JourneyWorkflow


async def test_customer_collects_and_verifies_email(
    tenant, http, mailbox, webhook_receiver, temporal_env, record_histories
):
    hook = await tenant.subscribe(webhook_receiver)
    campaign = await tenant.create_campaign()
    known, new = unique_email("ann"), unique_email("ann-new")
    enrolled = await tenant.enrol(campaign["id"], {
        "external_id": "crm-1001", "first_name": "Ann", "last_name": "de Vries",
        "language": "nl", "email": known})
    assert enrolled["accepted"] == 1 and enrolled["rejected"] == 0
    journey_id = enrolled["results"][0]["journey_id"]

    # The invitation arrives by real SMTP, in the customer's language, with a personal link.
    [invitation] = await mailbox.wait_for(known)
    assert "bevestig" in invitation.subject.lower(), invitation.subject
    assert "Beste Ann" in invitation.text
    page_link = mailbox.link(invitation)
    journey = await tenant.wait_for_stage(journey_id, "invited")

    customer = Customer(http)
    opened = await customer.open(page_link)
    assert opened.status_code == 200
    assert known in customer.page  # pre-filled with what the client knows
    assert "Stuur mij de maandelijkse nieuwsbrief." in customer.page
    await tenant.wait_for_stage(journey_id, "opened")

    # Mistakes are explained on the page and nothing is recorded.
    bad = await customer.submit(page_link, email="ann@", consent=["terms"])
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
    unticked = await customer.submit(page_link, email=new, consent=["newsletter"])
    assert unticked.status_code == 422 and "consent-terms-error" in unticked.text
    assert (await tenant.journey(journey_id))["stage"] == "opened"

    before_submit = datetime.now().astimezone()
    done = await customer.submit(page_link, email=new, consent=["terms", "newsletter"])
    assert done.status_code == 200 and new in customer.page  # "check your inbox at <new>"
    journey = await tenant.wait_for_stage(journey_id, "verification_pending")
    assert journey["pending_email"] == new

    [collected] = await webhook_receiver.wait_for(hook, "contact.data_collected")
    data = collected.payload["data"]
    assert data["email"] == {"address": new, "verification_state": "pending"}
    assert data["contact"]["external_id"] == "crm-1001"
    assert data["ip"] == "203.0.113.7"
    assert datetime.fromisoformat(data["submitted_at"]) >= before_submit
    consents = {c["key"]: c for c in data["consents"]}
    assert consents["terms"]["granted"] and consents["newsletter"]["granted"]
    terms_text = consents["terms"]["legal_text"]
    assert terms_text == {
        "language": "nl", "version": "2026-1", "text": "Ik ontvang graag service-e-mails.",
        "sha256": hashlib.sha256("Ik ontvang graag service-e-mails.".encode()).hexdigest()}
    assert consents["terms"]["given_at"] == data["submitted_at"]

    # The verification link goes to the new address; opening it only shows a button, so a
    # mail scanner that fetches every link verifies nobody.
    [verification] = await mailbox.wait_for(new)
    verify_link = mailbox.link(verification)
    assert verify_link.startswith("/v/")
    confirm_page = await customer.open(verify_link)
    assert confirm_page.status_code == 200 and new in customer.page
    assert (await tenant.journey(journey_id))["stage"] == "verification_pending"

    confirmed = await customer.submit(verify_link)
    assert confirmed.status_code == 200
    journey = await tenant.wait_for_stage(journey_id, "verified")
    assert journey["finished_at"] is not None
    history = [e["type"] for e in journey["history"]]
    assert history == ["invitation_sent", "opened", "data_entered", "verification_sent",
                       "verified"], history

    [verified] = await webhook_receiver.wait_for(hook, "contact.data_verified")
    vdata = verified.payload["data"]
    assert vdata["email"]["address"] == new and vdata["email"]["verification_state"] == "verified"
    assert {c["key"] for c in vdata["consents"]} == {"terms", "newsletter"}
    assert verified.headers["webhook-id"] != collected.headers["webhook-id"]
    assert not webhook_receiver.bad_signatures

    # A second click on the same link changes nothing and says so kindly.
    again = await customer.open(verify_link)
    assert again.status_code == 200 and f'action="{verify_link}"' not in again.text

    # Operators see the journey in Temporal: its id, its stage as a search attribute, its state.
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run, journey["workflow_id"])
    assert journey["workflow_id"] == f"journey/{campaign['id']}/{journey['contact_id']}"
    assert (await handle.result()).stage == "verified"
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert description.typed_search_attributes.get(JOURNEY_STAGE) == "verified"
    state = await handle.query(JourneyWorkflow.state)
    assert state.stage == "verified" and state.submissions == 1

    async def listed() -> list:
        query = f"CampaignId = '{campaign['id']}' AND JourneyStage = 'verified'"
        return [w async for w in temporal_env.client.list_workflows(query)]
    assert len(await eventually(listed, what="visibility")) == 1

    # The dev outbox shows every message with its link.
    outbox = await http.get("/dev/outbox")
    assert new in outbox.text and verify_link in outbox.text

    if record_histories:
        await save_history(handle, "email_journey_verified")


async def test_durations_past_the_clock_end_or_skip_rather_than_stall(
        tenant, http, mailbox, sessions, temporal_env, record_histories):
    """Campaigns stored before the API bounded durations: an expiry past the clock's last date
    ends the journey saying why, a reminder there never falls due and the journey expires on
    time; before, each journey's task failed for ever and it stayed enrolled."""
    forever = {"expires_after": "P99999999D"}, {"reminders": {"interval": "P99999999D",
                                                              "max_count": 1}}
    campaigns = []
    for change in forever:
        campaign = await tenant.create_campaign(expires_after="PT4S")
        async with transaction(sessions) as session:
            stored = await session.get(Campaign, uuid.UUID(campaign["id"]))
            stored.spec = {**stored.spec, **change}
        campaigns.append(campaign)
    addresses = [unique_email() for _ in campaigns]
    ended, expiring = [
        (await tenant.enrol(c["id"], {"external_id": f"forever-{n}", "email": address})
         )["results"][0]["journey_id"] for n, (c, address) in enumerate(zip(campaigns, addresses))]

    cancelled = await tenant.wait_for_stage(ended, "cancelled")
    assert cancelled["history"][-1]["detail"]["by"] == "system", cancelled["history"]
    assert "expires_after" in cancelled["history"][-1]["detail"]["reason"]
    assert mailbox.to(addresses[0]) == []
    expired = await tenant.wait_for_stage(expiring, "expired")
    [invitation] = mailbox.to(addresses[1])
    page = await Customer(http).open(mailbox.link(invitation))
    assert page.status_code == 410 and "This request has ended" in page.text
    if record_histories:
        for journey, name in ((cancelled, "journey_expiry_past_the_clock"),
                              (expired, "journey_reminder_past_the_clock")):
            await save_history(temporal_env.client.get_workflow_handle(journey["workflow_id"]),
                               name)


async def test_messages_write_dates_and_times_as_their_language_does(tenant, http, mailbox):
    """'geldig tot 4 december 2026', not 'geldig tot 2026-12-04'; the verification link's time
    with its time zone, as Dutch writes it."""
    campaign = await tenant.create_campaign()
    known, typed = unique_email("datum"), unique_email("datum-new")
    await tenant.enrol(campaign["id"], {"external_id": known, "first_name": "Ann",
                                        "language": "nl", "email": known})
    [invitation] = await mailbox.wait_for(known)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=typed, consent=["terms"])
    [verification] = await mailbox.wait_for(typed)
    day = r"\d{1,2} (januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|" \
          r"november|december) \d{4}"
    for mail in (invitation, verification):
        assert not re.search(r"\d{4}-\d{2}-\d{2}", mail.text + mail.html), mail.text
    assert re.search(rf"geldig tot {day}\.", invitation.text), invitation.text
    assert re.search(rf"geldig tot {day}, \d{{2}}:\d{{2}} UTC\.", verification.text), \
        verification.text


async def test_german_and_dutch_messages_greet_formally(tenant, http, mailbox):
    """The texts say Sie and u: the invitation and the page greet by full name, or by no name
    where only the first one is known, never by first name alone ("Guten Tag Jürgen,")."""
    campaign = await tenant.create_campaign(languages=["de", "nl"], consents=[])
    full, first_only, dutch = (unique_email(n) for n in ("juergen", "jana", "joost"))
    await tenant.enrol(
        campaign["id"],
        {"external_id": full, "first_name": "Jürgen", "last_name": "Müller", "language": "de",
         "email": full},
        {"external_id": first_only, "first_name": "Jana", "language": "de", "email": first_only},
        {"external_id": dutch, "first_name": "Joost", "last_name": "de Wit", "language": "nl",
         "email": dutch})
    greetings = {}
    for address in (full, first_only, dutch):
        [invitation] = await mailbox.wait_for(address)
        customer = Customer(http)
        assert (await customer.open(mailbox.link(invitation))).status_code == 200
        heading = customer.page.split("<h1>", 1)[1].split("</h1>", 1)[0]
        greetings[address] = (invitation.text.split("\n", 1)[0], heading)
    assert greetings[full] == ("Guten Tag Jürgen Müller,", "Guten Tag Jürgen Müller,")
    assert greetings[first_only] == ("Guten Tag,", "Guten Tag,")
    assert greetings[dutch] == ("Beste Joost de Wit,", "Beste Joost de Wit,")


async def test_a_name_is_shown_as_written_never_as_markup(tenant, http, mailbox):
    """The greeting's name went into the page and the HTML mail unescaped: a client's or an
    import's name '<a href=...>' made a link in our page, under our name."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email("markup")
    await tenant.enrol(campaign["id"], {
        "external_id": address, "first_name": '<a href="https://evil.example/">Ann</a>',
        "last_name": "O'Brien & Co", "email": address})
    [invitation] = await mailbox.wait_for(address)
    written = """Hello <a href="https://evil.example/">Ann</a> O'Brien & Co,"""
    assert invitation.text.split("\n", 1)[0] == written  # plain text keeps it as written
    escaped = ("Hello &lt;a href=&#34;https://evil.example/&#34;&gt;Ann&lt;/a&gt; "
               "O&#39;Brien &amp; Co,")
    assert escaped in invitation.html and "evil.example/\"" not in invitation.html
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert f"<h1>{escaped}</h1>" in customer.page


async def test_reminders_then_expiry(tenant, http, mailbox, webhook_receiver, temporal_env,
                                     record_histories):
    hook = await tenant.subscribe(webhook_receiver, ["journey.expired"])
    campaign = await tenant.create_campaign(
        reminders={"interval": "PT1S", "max_count": 2}, expires_after="PT5S")
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "x-1", "email": address})
    journey_id = enrolled["results"][0]["journey_id"]

    journey = await tenant.wait_for_stage(journey_id, "expired", timeout=30)
    mails = mailbox.to(address)
    assert len(mails) == 3  # invitation + the two reminders the campaign allows
    assert sum("Reminder" in m.subject for m in mails) == 2
    [expired] = await webhook_receiver.wait_for(hook, "journey.expired")
    assert expired.payload["data"]["journey_id"] == journey_id
    assert [e["type"] for e in journey["history"]][-1] == "expired"

    # The links in those messages now say the request has ended, not that they were typed
    # wrong, nor show a form.
    response = await Customer(http).open(mailbox.link(mails[-1]))
    assert response.status_code == 410 and "This request has ended" in response.text
    assert 'name="email"' not in response.text

    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run, journey["workflow_id"])
    assert (await handle.result()).reminders_sent == 2
    if record_histories:
        await save_history(handle, "email_journey_expired")


async def test_a_journey_whose_invitation_was_suppressed_invited_nobody(
        tenant, http, mailbox, temporal_env, record_histories):
    """The client counts invitations as marketing and the contact never agreed: the invitation
    is kept back, and the contact has no mobile or postal address to invite instead, so the
    journey is not `invited` (the reminder, a service message, then is)."""
    await tenant.ensure_purpose("newsletter", "direct_marketing")
    await tenant.ok("PUT", "/v1/message-policies/invitation",
                    {"category": "marketing", "purpose": "newsletter"})
    campaign = await tenant.create_campaign(
        reminders={"interval": "PT4S", "max_count": 1}, expires_after="PT8S")
    address = unique_email("kept-back")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "x-1", "email": address})
    journey_id = enrolled["results"][0]["journey_id"]
    base = f"/v1/campaigns/{campaign['id']}"

    async def kept_back():
        journey = await tenant.journey(journey_id)
        return journey if len(journey["history"]) == 3 else None
    journey = await eventually(kept_back, what="the invitation's fate on every channel")
    assert [(e["type"], e["detail"]["channel"]) for e in journey["history"]] == [
        ("invitation_suppressed", "email"), ("invitation_skipped", "sms"),
        ("invitation_skipped", "letter")]
    assert journey["stage"] == "enrolled"
    stages = (await tenant.ok("GET", f"{base}/progress"))["stages"]
    assert (stages["enrolled"], stages["invited"]) == (1, 0)
    assert (await tenant.ok("GET", f"{base}/funnel"))["total"]["invited"] == 0
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    assert (await handle.query(JourneyWorkflow.state)).stage == "enrolled"

    [reminder] = await mailbox.wait_for(address)
    assert reminder.subject.startswith("Reminder")
    journey = await tenant.wait_for_stage(journey_id, "invited")
    assert (await handle.query(JourneyWorkflow.state)).stage == "invited"
    assert (await handle.result()).stage == "expired"
    if record_histories:
        await save_history(handle, "email_journey_invitation_suppressed")


async def test_customer_completes_from_a_reminder(tenant, http, mailbox):
    campaign = await tenant.create_campaign(
        reminders={"interval": "PT1S", "max_count": 1}, expires_after="PT2M", languages=["en"],
        consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "r-1", "email": address})
    journey_id = enrolled["results"][0]["journey_id"]

    invitation, reminder = await mailbox.wait_for(address, count=2)
    assert reminder.subject.startswith("Reminder")
    customer = Customer(http)
    await customer.open(mailbox.link(reminder))
    await customer.submit(mailbox.link(reminder), email=address)
    await tenant.wait_for_stage(journey_id, "verification_pending")
    verification = (await mailbox.wait_for(address, count=3))[-1]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(journey_id, "verified")


async def test_the_pages_after_confirming_are_titled_by_what_they_say(tenant, http, mailbox):
    """A tab, a bookmark or a screen reader names the page by its title: the page after the
    link is confirmed says so there too, not only the client's name."""
    campaign = await tenant.create_campaign(consents=[])
    address = unique_email("title")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    await customer.submit(page, email=address)
    [_, verification] = await mailbox.wait_for(address, count=2)
    await customer.open(mailbox.link(verification))
    assert f"<title>Confirm your email address · {tenant.name}</title>" in customer.page
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    title = f"<title>Thank you, your address is confirmed · {tenant.name}</title>"
    assert title in customer.page
    # Opened again, and on the contact page's link, it reads the same.
    for link in (mailbox.link(verification), page):
        assert title in (await customer.open(link)).text


async def test_page_opened_before_the_invitation_is_recorded_as_sent(tenant, http, mailbox):
    """The mail server files the invitation but answers late, and the customer opens the page
    in between: the visit counts, and the send's late report does not undo it."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = f"eva-{uuid.uuid4().hex[:8]}@{SLOW_ACK_DOMAIN}"
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "s-1", "email": address})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    journey = await tenant.journey(journey_id)
    # Still within the server's slow answer: the send is not recorded yet.
    assert [e["type"] for e in journey["history"]] == ["opened"], journey["history"]
    assert journey["stage"] == "opened"

    async def recorded_as_sent() -> dict | None:
        journey = await tenant.journey(journey_id)
        return journey if len(journey["history"]) == 2 else None
    journey = await eventually(recorded_as_sent, what="the invitation recorded as sent")
    assert [e["type"] for e in journey["history"]] == ["invitation_sent", "opened"]
    assert journey["stage"] == "opened"

    await customer.submit(mailbox.link(invitation), email=address)
    [_, verification] = await mailbox.wait_for(address, count=2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(journey_id, "verified")


async def test_corrected_address_supersedes_the_first_link(tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    first, second = unique_email("typo"), unique_email("right")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "t-1", "email": first})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(first)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, email=first)
    [_, stale] = await mailbox.wait_for(first, count=2)
    tab = Customer(http)  # the first link, opened in a tab before the correction
    await tab.open(mailbox.link(stale))
    assert first in tab.page
    await customer.submit(page, email=second)  # the page offers to correct the address
    [fresh] = await mailbox.wait_for(second)

    posted = await tab.submit(mailbox.link(stale))
    assert posted.status_code == 410 and "no longer valid" in tab.page
    # The first mailbox (a stranger's, typed by mistake) never sees the corrected address.
    opened = await Customer(http).open(mailbox.link(stale))
    assert opened.status_code == 410 and "no longer valid" in opened.text
    assert second not in opened.text
    assert "<form" not in opened.text  # nothing to confirm there, nor a language to switch
    assert (await tenant.journey(journey_id))["stage"] == "verification_pending"

    await customer.open(mailbox.link(fresh))
    await customer.submit(mailbox.link(fresh))
    journey = await tenant.wait_for_stage(journey_id, "verified")
    assert journey["pending_email"] is None
    # Once the corrected address is confirmed, the first one's link still confirms nothing.
    later = await Customer(http).open(mailbox.link(stale))
    assert later.status_code == 410 and "no longer valid" in later.text
    assert "your address is confirmed" not in later.text and second not in later.text
    again = await Customer(http).open(mailbox.link(fresh))
    assert again.status_code == 200 and "your address is confirmed" in again.text


async def test_mail_to_a_typed_address_tells_nothing_of_the_contact(tenant, http, mailbox):
    """The address a customer types may be a stranger's (a typo): the mail asking to confirm
    it, and its reminder, greet nobody by name and name no claim; the known address's
    invitation does."""
    campaign = await tenant.create_campaign(
        payments=True, reminders={"interval": "PT2S", "max_count": 1})
    known, typed = unique_email("known"), unique_email("typo")
    await tenant.enrol(campaign["id"], {
        "external_id": known, "email": known, "first_name": "Annemarie",
        "last_name": "Zwartjes", "language": "nl",
        "claim": {"reference": "INV-7731", "payment_url": "https://pay.example.com/7731",
                  "amount": "125.50"}})
    [invitation] = await mailbox.wait_for(known)
    assert "Beste Annemarie" in invitation.text and "INV-7731" in invitation.text
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=typed, consent=["terms"])

    verification, reminder = await mailbox.wait_for(typed, count=2)
    assert "Herinnering" in reminder.subject, reminder.subject
    for mail in (verification, reminder):
        assert mail.text.startswith("Goedendag,\n"), mail.text
        assert mailbox.link(mail).startswith("/v/")
        for personal in ("Annemarie", "Zwartjes", "INV-7731", "125", "pay.example.com"):
            assert personal not in mail.subject + mail.text + mail.html, (personal, mail.text)


async def test_customer_opts_out(tenant, http, mailbox, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["journey.opted_out"])
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "o-1", "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation) + "/opt-out")
    assert "will not be asked again" in customer.page
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "opted_out")
    await webhook_receiver.wait_for(hook, "journey.opted_out")


async def test_an_operator_cancels_a_journey(tenant, http, mailbox, temporal_env,
                                            record_histories):
    """Cancelled in the Temporal UI (here through the client, as the UI does), a journey ends
    as `cancelled` everywhere: in the API (by an operator), the campaign's counts and the
    customer's page, which does not say the client withdrew it."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(address)
    journey = await tenant.wait_for_stage(journey_id, "invited")
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    await handle.cancel()

    journey = await tenant.wait_for_stage(journey_id, "cancelled")
    assert journey["history"][-1] | {"at": None} == {
        "type": "cancelled", "at": None, "detail": {"by": "operator"}}
    assert journey["finished_at"]
    progress = (await tenant.get(f"/v1/campaigns/{campaign['id']}/progress")).json()
    assert progress["stages"]["cancelled"] == 1 and progress["stages"]["invited"] == 0

    async def closed():
        status = (await handle.describe()).status
        return status if status == WorkflowExecutionStatus.CANCELED else None
    await eventually(closed, what="the workflow closed as cancelled")
    customer = Customer(http)
    page = await customer.open(mailbox.link(invitation))
    assert page.status_code == 200 and "This request has ended" in customer.page
    assert f"If you have a question about it, please contact {tenant.name}." in customer.page
    assert "has withdrawn it" not in customer.page
    assert 'name="email"' not in customer.page
    if record_histories:
        await save_history(handle, "email_journey_cancelled_by_operator")


async def test_a_cancelled_journey_tells_the_client_who_cancelled_it(
        tenant, mailbox, temporal_env, webhook_receiver):
    """`journey.cancelled` goes out however a journey is cancelled: by an operator in the
    Temporal UI, by the client's cancel call, before its contact's erasure (queued before it
    and delivered after, it names nobody then)."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    journeys = {}
    for who in ("operator", "client", "erasure"):
        address = unique_email(who)
        enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
        journeys[who] = await tenant.wait_for_stage(enrolled["results"][0]["journey_id"],
                                                    "invited")
    await temporal_env.client.get_workflow_handle(journeys["operator"]["workflow_id"]).cancel()
    await tenant.ok("POST", f"/v1/journeys/{journeys['client']['id']}/cancel")
    told = await webhook_receiver.wait_for(hook, "journey.cancelled", count=2)
    by_journey = {d.payload["data"]["journey_id"]: d.payload["data"] for d in told}
    for who, detail in (("operator", {"by": "operator"}),
                        ("client", {"by": "client", "reason": "journey_cancelled"})):
        data = by_journey[journeys[who]["id"]]
        assert (data["stage"], data["detail"], data["campaign"]["id"], data["contact"]["id"]) == (
            "cancelled", detail, campaign["id"], journeys[who]["contact_id"]), data

    webhook_receiver.failures[hook] = [503] * 1000  # down until the contact is gone
    erased = journeys["erasure"]["contact_id"]
    deleted = await tenant.http.delete(f"/v1/contacts/{erased}", headers=tenant.auth,
                                       params={"cancel_journeys": "true"})
    assert deleted.status_code == 204, deleted.text
    webhook_receiver.failures[hook] = []
    *_, last = await webhook_receiver.wait_for(hook, "journey.cancelled", count=3)
    assert last.payload["data"] == {"deleted": True, "contact_id": erased}, last.payload


async def test_enrolled_again_after_expiry_a_contact_gets_a_new_round(tenant, mailbox):
    """As a launch does, enrolment asks a contact again once every earlier journey of theirs
    in the campaign has expired; while one is live, it answers with that one."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT1H", "max_count": 0},
        expires_after="PT3S")
    address = unique_email()
    item = {"external_id": address, "email": address}
    first = (await tenant.enrol(campaign["id"], item))["results"][0]
    expired = await tenant.wait_for_stage(first["journey_id"], "expired")
    again = (await tenant.enrol(campaign["id"], item))["results"][0]
    assert again["status"] == "accepted" and again["journey_id"] != first["journey_id"]
    repeated = (await tenant.enrol(campaign["id"], item))["results"][0]
    assert (repeated["status"], repeated["journey_id"]) == ("already_enrolled",
                                                            again["journey_id"])
    second = await tenant.journey(again["journey_id"])
    assert second["workflow_id"] == expired["workflow_id"] + "/2"
    await mailbox.wait_for(address, 2)


async def test_an_address_the_mail_server_refuses_is_asked_again_at_once(
        tenant, http, mailbox, temporal_env, record_histories):
    """A typo the server refuses (550): the page says so where the address was typed, no
    reminder goes to it, and reminders go where the invitation went."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT1S", "max_count": 1},
        expires_after="PT1M")
    invited = unique_email("invited")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, invited)
    typo = f"typo-{uuid.uuid4().hex[:8]}@hard-bounce.example.com"
    response = await customer.submit(page, email=typo)
    assert response.status_code == 422
    assert "could not deliver an email to this address" in customer.page
    assert f'value="{typo}"' in customer.page
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "data_entered" and journey["pending_email"] == typo

    # The reminder goes to the address that works.
    [_, reminder] = await mailbox.wait_for(invited, count=2)
    assert reminder.subject.startswith("Reminder")
    right = unique_email("right")
    await customer.open(page)
    await customer.submit(page, email=right)
    [verification] = await mailbox.wait_for(right)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    bounced = [e for e in journey["history"] if e["type"] == "bounced"]
    assert [e["detail"]["step"] for e in bounced] == ["verification-1"]
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    if record_histories:
        await save_history(handle, "verification_refused_asked_again")


async def test_the_same_address_again_sends_a_new_link_once_the_first_timed_out(
        tenant, http, mailbox):
    """The page offers "Send a new link" for a link lost or timed out: the same address posted
    again gets one, and the timed-out link says where to ask for it."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                            verification_link_ttl="PT2S")
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    await customer.submit(page, email=address)
    [_, first] = await mailbox.wait_for(address, count=2)
    await asyncio.sleep(2.5)
    timed_out = await Customer(http).open(mailbox.link(first))
    assert timed_out.status_code == 410 and "This link has expired" in timed_out.text
    assert "newer link" not in timed_out.text

    await customer.open(page)
    assert "Send a new link" in customer.page
    await customer.submit(page, email=address)
    [_, _, fresh] = await mailbox.wait_for(address, count=3)
    assert "newer link" in (await Customer(http).open(mailbox.link(first))).text
    await customer.open(mailbox.link(fresh))
    await customer.submit(mailbox.link(fresh))
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_a_correction_keeps_the_consents_given_unless_changed(tenant, http, mailbox):
    """The boxes show the customer's decisions: correcting the address on "Check your inbox"
    without touching them withdraws nothing given a moment before."""
    campaign = await tenant.create_campaign(languages=["en"])
    typo, right = unique_email("typo"), unique_email("right")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, typo)
    assert customer.ticked("consent") == []
    await customer.submit(page, email=typo, consent=["terms", "newsletter"])
    assert "Check your inbox" in customer.page
    assert sorted(customer.ticked("consent")) == ["newsletter", "terms"]

    async def newsletter() -> list[bool]:
        return [e["granted"] for e in (await tenant.get(
            f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
            if e["purpose"] == "newsletter"]

    await customer.submit(page, email=right, consent=customer.ticked("consent"))
    await mailbox.wait_for(right)
    # Left as the page showed it, the grant given stands: nothing new in the ledger for it.
    assert await newsletter() == [True]
    # A box untouched since stays as decided; one the customer clears is declined.
    await customer.open(page)
    assert sorted(customer.ticked("consent")) == ["newsletter", "terms"]
    await customer.submit(page, email=typo, consent=["terms"])
    assert customer.ticked("consent") == ["terms"]
    assert await newsletter() == [True, False]


async def test_a_form_address_reloaded_leads_back_to_its_page(tenant, http, mailbox):
    """After a form is posted the address bar may show where it went (/c/<t>/code):
    reloading it opens the page, not a 405 in JSON."""
    address = unique_email()
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    page = mailbox.link((await mailbox.wait_for(address))[0]).removeprefix("http://testserver")
    token = page.rsplit("/", 1)[1]
    for prefix, action in (("c", "code"), ("c", "resend-code"), ("c", "opt-out"),
                           ("c", "language"), ("v", "language"), ("p", "language"),
                           ("k", "language")):
        response = await http.get(f"/{prefix}/{token}/{action}")
        assert (response.status_code, response.headers["location"]) == (
            303, f"/{prefix}/{token}"), (prefix, action)
    assert (await http.get(f"/c/{token}/unknown")).status_code == 404


async def test_an_address_entered_counts_in_the_profile(tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                            collect=["email", "address"])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("addr"))
    assert "Your profile is 25% complete" in customer.page  # the email of four parts
    await customer.submit(page, email=enrolled["external_id"], address_line1="Nieuweweg 2",
                          address_postal_code="2801 AA", address_city="Gouda",
                          address_country="nl")
    assert "Your profile is 50% complete" in customer.page  # and the address, awaiting


async def test_a_confirmation_the_server_lost_is_asked_again_not_thanked_for(
        tenant, http, mailbox, app, sessions):
    """A Temporal server restarting clears the updates it has not handed to the workflow and
    answers NOT_FOUND for them (seen in the fault suite, which restarts a server for real):
    the page thanked the customer, and the journey stayed pending. Now the page says to try
    again, and trying again confirms. This suite's one server cannot be restarted under the
    other tests, so its answer is given to the page's handling of a refused request as
    Temporal gives it, for the journey's real, running workflow."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email("lost")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    await customer.submit(page, email=address)
    [_, verification] = await mailbox.wait_for(address, count=2)
    link = mailbox.link(verification)
    lost = RPCError("update wasn't found on server", RPCStatusCode.NOT_FOUND, b"")
    async with sessions() as session:
        visit = await resolve(session, link.rsplit("/", 1)[1], TokenPurpose.verify_email)
        with pytest.raises(UpdateLost):
            await refused(session, app.state.journeys, visit, lost)
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "verification_pending"
    answer = await app.exception_handlers[UpdateLost](Request({
        "type": "http", "method": "POST", "path": link, "query_string": b"",
        "headers": [(b"accept-language", b"en")]}), UpdateLost())
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert "try again" in answer.body.decode().lower()
    await customer.open(link)
    assert (await customer.submit(link)).status_code == 200
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_an_address_entered_takes_the_clients_own_address_types(tenant, http, mailbox):
    """A client whose types do without `home` (billing and shipping) got no journey verified
    that took an address: the registry refused the page's `home`, and the confirmation failed
    for ever while the customer's page waited."""
    async def entered_and_confirmed(types_on_confirming: list[str]) -> dict:
        email = unique_email("typed")
        enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, email)
        await customer.submit(page, email=email, address_line1="Nieuweweg 2",
                              address_postal_code="2801 AA", address_city="Gouda",
                              address_country="nl")
        await tenant.ok("PATCH", "/v1/contact-settings",
                        {"address_types": [{"name": t} for t in types_on_confirming]})
        [_, verification] = await mailbox.wait_for(email, count=2)
        await customer.open(mailbox.link(verification))
        await customer.submit(mailbox.link(verification))
        await tenant.wait_for_stage(enrolled["journey_id"], "verified")
        return await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}")

    await tenant.ok("PATCH", "/v1/contact-settings",
                    {"address_types": [{"name": "billing"}, {"name": "shipping"}]})
    campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                            collect=["email", "address"])
    [address] = (await entered_and_confirmed(["billing", "shipping"]))["addresses"]
    assert (address["type"], address["line1"]) == ("billing", "Nieuweweg 2")
    assert address["confirmed_at"] is not None
    # Types changed between typing and confirming: the address takes the client's type now.
    [address] = (await entered_and_confirmed(["shipping"]))["addresses"]
    assert address["type"] == "shipping"
    # A client that keeps no addresses: the journey is verified all the same.
    assert (await entered_and_confirmed([]))["addresses"] == []


async def test_an_address_the_contact_verified_before_is_taken_without_a_new_link(
    tenant, http, mailbox, webhook_receiver, temporal_env, record_histories
):
    """The contact confirmed his address in campaign A; typed again on campaign B's page, it
    is the same contact's proven address: verified at once, no mail to confirm it again."""
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_collected",
                                                     "contact.data_verified"])
    address = unique_email("proven")
    first = await tenant.create_campaign(languages=["en"], consents=[])
    a, customer, page = await on_the_page(tenant, http, mailbox, first, address)
    await customer.submit(page, email=address)
    [_, verification] = await mailbox.wait_for(address, count=2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(a["journey_id"], "verified")

    later = await tenant.create_campaign(languages=["en"], consents=[])
    [b] = (await tenant.enrol(later["id"], {"external_id": address}))["results"]
    [*_, invitation] = await mailbox.wait_for(address, count=3)
    await customer.open(mailbox.link(invitation))
    response = await customer.submit(mailbox.link(invitation), email=address)
    assert response.status_code == 200, customer.page
    assert "Check your inbox" not in customer.page
    journey = await tenant.wait_for_stage(b["journey_id"], "verified", timeout=5)
    assert [e["type"] for e in journey["history"]] == [
        "invitation_sent", "opened", "data_entered", "verified"], journey["history"]
    assert set(journey["history"][-1]["detail"]) == {"verified_before"}
    [collected] = [e.payload["data"] for e in await webhook_receiver.wait_for(
        hook, "contact.data_collected", 2) if e.payload["data"]["journey_id"] == b["journey_id"]]
    assert collected["email"]["verification_state"] == "verified"
    events = await webhook_receiver.wait_for(hook, "contact.data_verified", 2)
    by_journey = {e.payload["data"]["journey_id"]: e.payload["data"] for e in events}
    assert by_journey[b["journey_id"]]["email"] == by_journey[a["journey_id"]]["email"]
    await asyncio.sleep(1)
    assert len(mailbox.to(address)) == 3  # two invitations and the first confirmation link
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(journey["workflow_id"]),
                           "email_journey_address_verified_before")


async def test_an_invitation_the_mail_server_cannot_take_yet_goes_on_by_an_activity(
        settings, tenant, mailbox, temporal_env):
    # The mail server is down: nothing listens on its port until the test starts it.
    port = free_port()
    own = settings.model_copy(update={
        "temporal_task_queue": f"smtp-down-{uuid.uuid4().hex[:6]}", "smtp_port": port,
        "opening_message_local_tries": 2})
    async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
        campaign = await client.create_campaign()
        address = unique_email("server-down")
        enrolled = await client.enrol(campaign["id"], {"external_id": address, "email": address})
        journey_id = enrolled["results"][0]["journey_id"]
        handle = temporal_env.client.get_workflow_handle(
            (await client.journey(journey_id))["workflow_id"])

        async def sending_by_activity() -> bool:
            return any(e.HasField("activity_task_scheduled_event_attributes")
                       for e in (await handle.fetch_history()).events)
        await eventually(sending_by_activity, what="the invitation handed to an activity")
        assert (await client.journey(journey_id))["stage"] == "enrolled"

        sink = start_smtp_sink(mailbox.maildir, port=port)  # the server is back
        try:
            [invitation] = await mailbox.wait_for(address)
            await client.wait_for_stage(journey_id, "invited")
        finally:
            sink.stop()
    # Tried twice within the first workflow task, then by the activity until it went: one
    # invitation, and a history that grew by one activity, not by each retry.
    assert mailbox.link(invitation)
    assert len(mailbox.to(address)) == 1
    events = (await handle.fetch_history()).events
    local = [e.marker_recorded_event_attributes for e in events
             if e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
    assert len(local) == 1 and local[0].HasField("failure")
    assert sum(e.HasField("activity_task_scheduled_event_attributes") for e in events) == 1
