"""Provable opt-in, opt-out everywhere: walked by a customer, a client and a mail scanner."""

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.helpers import Customer, eventually, on_the_page, unique_email

NEWSLETTER_TEXT = "Send me the monthly newsletter."
SWITCH = re.compile(r'name="language" value="(\w+)"')


async def setup_policies(tenant) -> None:
    await tenant.ensure_purpose("newsletter", "direct_marketing")
    for message_type, body in [("newsletter", {"category": "marketing", "purpose": "newsletter"}),
                               ("invoice", {"category": "financial"})]:
        response = await tenant.http.put(f"/v1/message-policies/{message_type}", json=body,
                                         headers=tenant.auth)
        assert response.status_code == 200, response.text


async def test_a_policy_put_at_once_by_retries_answers_each(tenant):
    """PUT is safe to repeat: retries of a new type's policy sent at once were 500s."""
    answers = await asyncio.gather(*(tenant.http.put(
        "/v1/message-policies/invoice-retried", json={"category": "service"},
        headers=tenant.auth) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    policies = (await tenant.get("/v1/message-policies")).json()
    assert [p for p in policies if p["message_type"] == "invoice-retried"] == [
        {"message_type": "invoice-retried", "category": "service", "purpose": None}]


async def test_a_marketing_policy_names_its_marketing_purpose(tenant):
    await tenant.ensure_purpose("service-communication", "service")
    for body, message in [
        ({"category": "marketing"}, "a marketing message type needs the purpose it markets"),
        ({"category": "marketing", "purpose": "service-communication"},
         "purpose 'service-communication' is service, not marketing"),
        ({"category": "marketing", "purpose": "lottery"}, "unknown purpose 'lottery'"),
    ]:
        response = await tenant.http.put("/v1/message-policies/promo", json=body,
                                         headers=tenant.auth)
        assert response.status_code == 422, response.text
        [field] = response.json()["error"]["fields"]
        assert field["field"] == "purpose" and message in field["message"], field

    # A policy can go again: the type is then unknown until it has one.
    await tenant.ok("PUT", "/v1/message-policies/promo", {"category": "service"})
    gone = await tenant.http.delete("/v1/message-policies/promo", headers=tenant.auth)
    assert gone.status_code == 204
    assert "promo" not in [p["message_type"] for p in
                           (await tenant.get("/v1/message-policies")).json()]
    again = await tenant.http.delete("/v1/message-policies/promo", headers=tenant.auth)
    assert again.status_code == 404


async def verified_contact(tenant, http, mailbox, consent: list[str]) -> tuple[str, str]:
    """Walks the journey: the customer ticks `consent` and confirms the address."""
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=address, consent=consent)
    [_, verification] = await mailbox.wait_for(address, count=2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")
    return enrolled["results"][0]["contact_id"], address


async def send(tenant, contact_id: str, message_type: str, subject: str) -> dict:
    response = await tenant.post("/v1/messages", {
        "contact_id": contact_id, "message_type": message_type, "subject": subject,
        "text": f"{subject}\n\nKind regards"})
    assert response.status_code == 202, response.text

    async def decided():
        message = (await tenant.get(f"/v1/messages/{response.json()['id']}")).json()
        return message if message["status"] != "queued" else None
    return await eventually(decided, what=f"{message_type} decided")


def link_to(mail, path: str) -> str:
    found = re.search(rf"http://testserver({path}[A-Za-z0-9_\-]+)", mail.text)
    assert found, f"no {path} link in {mail.subject!r}"
    return found.group(1)


async def test_mail_to_a_typed_address_cannot_change_the_contacts_consents(
    tenant, http, mailbox
):
    """The address a customer types may be a stranger's (a typo): its verification email and
    reminder confirm that address and nothing else; the known address keeps its preference
    link."""
    campaign = await tenant.create_campaign(
        languages=["en"], reminders={"interval": "PT2S", "max_count": 1})
    known, typed = unique_email("known"), unique_email("typo")
    await tenant.enrol(campaign["id"], {"external_id": known, "email": known})
    [invitation] = await mailbox.wait_for(known)
    assert (await http.get(link_to(invitation, "/p/"))).status_code == 200

    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=typed, consent=["terms"])
    verification, reminder = await mailbox.wait_for(typed, count=2)
    assert "Reminder" in reminder.subject
    for mail in (verification, reminder):
        assert mailbox.link(mail).startswith("/v/")
        assert "/p/" not in mail.text and "/p/" not in mail.html, mail.subject
        assert "communication preferences" not in mail.text


async def test_preference_centre_speaks_the_language_of_the_message_and_switches(
    tenant, http, mailbox
):
    """The customer chose Dutch on the contact page (kept on the journey): the next message's
    preference link opens in Dutch, though the contact's language is English; the page's
    own switch keeps a choice as the contact's language."""
    campaign = await tenant.create_campaign(reminders={"interval": "PT2S", "max_count": 1},
                                            languages=["nl", "en"])
    address = unique_email("lang")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "language": "en",
                                                   "email": address})
    contact_id = enrolled["results"][0]["contact_id"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert SWITCH.findall(customer.page) == ["nl", "en"]  # the campaign's order
    await http.post(f"{mailbox.link(invitation)}/language",
                    data={"language": "nl", "csrf_token": customer.csrf()})
    [_, reminder] = await mailbox.wait_for(address, count=2)
    assert "Herinnering" in reminder.subject, reminder.subject

    preferences = link_to(reminder, "/p/")
    page = await customer.open(preferences)
    assert page.status_code == 200 and '<html lang="nl">' in customer.page
    assert "Uw communicatievoorkeuren" in customer.page
    assert f'action="{preferences}/language"' in customer.page
    # Every language, the client's default (English) first: the client's order.
    assert SWITCH.findall(customer.page) == ["en", "de", "nl"]
    # The invitation's link, sent in English, still opens in English.
    assert '<html lang="en">' in (await http.get(link_to(invitation, "/p/"))).text

    forged = await http.post(f"{preferences}/language", data={"language": "de"})
    assert forged.status_code == 403
    switched = await http.post(f"{preferences}/language",
                               data={"language": "de", "csrf_token": customer.csrf()})
    assert switched.status_code == 303 and switched.headers["location"] == preferences
    await customer.open(preferences)
    assert '<html lang="de">' in customer.page and "Ihre Kommunikationseinstellungen" in customer.page
    contact = (await tenant.get(f"/v1/contacts/{contact_id}")).json()
    assert contact["language"] == "de"
    # A language we do not speak changes nothing.
    await http.post(f"{preferences}/language", data={"language": "fr",
                                                     "csrf_token": customer.csrf()})
    await customer.open(preferences)
    assert '<html lang="de">' in customer.page


async def test_opt_in_opt_out_opt_in_again_is_proven_by_the_ledger(
    tenant, http, mailbox, webhook_receiver
):
    await setup_policies(tenant)
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    before = datetime.now(UTC)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])

    newsletter = await send(tenant, contact_id, "newsletter", "Our May news")
    assert newsletter["status"] == "sent"
    mail = [m for m in mailbox.to(address) if m.subject == "Our May news"][0]
    unsubscribe = link_to(mail, "/u/")
    assert "".join(mail.headers["List-Unsubscribe"].split()) == f"<http://testserver{unsubscribe}>"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # A mail scanner fetching the link changes nothing: only the POST unsubscribes.
    assert (await http.get(unsubscribe)).status_code == 200
    assert (await http.get(link_to(mail, "/p/"))).status_code == 200
    ledger = (await tenant.get(f"/v1/contacts/{contact_id}/consents")).json()
    assert [e["granted"] for e in ledger if e["purpose"] == "newsletter"] == [True]

    # RFC 8058: the mail client POSTs once, with no cookie and no CSRF token.
    http.cookies.clear()
    opted_out_at = datetime.now(UTC)
    one_click = await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and "You are unsubscribed" in one_click.text

    # Marketing now stays unsent, with the reason logged; the invoice still goes.
    suppressed = await send(tenant, contact_id, "newsletter", "Our June news")
    assert suppressed["status"] == "suppressed"
    assert suppressed["status_reason"].startswith("newsletter by email not granted")
    invoice = await send(tenant, contact_id, "invoice", "Invoice 2026-001")
    assert invoice["status"] == "sent" and "financial" in invoice["status_reason"]
    [invoice_mail] = [m for m in await mailbox.wait_for(address, count=4)
                      if m.subject == "Invoice 2026-001"]
    assert not [m for m in mailbox.to(address) if m.subject == "Our June news"]
    assert "List-Unsubscribe" not in invoice_mail.headers

    # The preference centre, reached from the invoice, opts in again.
    customer = Customer(http)
    preferences = link_to(invoice_mail, "/p/")
    await customer.open(preferences)
    assert 'value="newsletter:email"' in customer.page and "checked" not in customer.page
    opted_in_at = datetime.now(UTC)
    saved = await customer.submit(preferences, granted=["newsletter:email"])
    assert saved.status_code == 200 and "preferences are saved" in customer.page

    ledger = [e for e in (await tenant.get(f"/v1/contacts/{contact_id}/consents")).json()
              if e["purpose"] == "newsletter"]
    assert [(e["granted"], e["source"], e["shown_in"]) for e in ledger] == [
        (True, "contact_page", "contact_page"),
        (False, "message_link", ledger[1]["shown_in"]),
        (True, "message_link", "preference_centre")]
    assert ledger[1]["shown_in"].startswith("unsubscribe:")
    digest = hashlib.sha256(NEWSLETTER_TEXT.encode()).hexdigest()
    for entry in ledger:
        assert entry["legal_text"] == {"language": "en", "version": "3", "sha256": digest,
                                       "text": NEWSLETTER_TEXT}
        assert entry["ip"] == "203.0.113.7" and entry["channel"] == "email"
    times = [datetime.fromisoformat(e["given_at"]) for e in ledger]
    assert before < times[0] < opted_out_at < times[1] < opted_in_at < times[2]

    marketing = await send(tenant, contact_id, "newsletter", "Our July news")
    assert marketing["status"] == "sent"
    # Every decision is announced: the two on the page, the opt-out, the opt-in again.
    changes = await webhook_receiver.wait_for(hook, "consent.changed", count=4)
    newsletter = sorted((c.payload["data"]["consent"] for c in changes
                         if c.payload["data"]["consent"]["purpose"] == "newsletter"),
                        key=lambda c: c["given_at"])
    assert [(c["granted"], c["source"]) for c in newsletter] == [
        (True, "contact_page"), (False, "message_link"), (True, "message_link")]

    receipt = (await tenant.get(f"/v1/contacts/{contact_id}/consent-receipt")).json()
    current = {(c["purpose"], c["channel"]): c for c in receipt["current"]}
    assert current[("newsletter", "email")]["granted"] is True
    assert current[("newsletter", "email")]["legal_text"]["sha256"] == digest
    assert len(receipt["history"]) == 4  # terms + newsletter at submit, then the two changes


async def test_the_preference_centre_refuses_a_choice_it_does_not_offer(tenant, http, mailbox):
    """A tampered or stale form (a channel that is none of ours, a purpose not offered) was
    answered "saved" with that choice silently dropped: it is refused whole, as an unreachable
    channel is."""
    await setup_policies(tenant)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms"])
    assert (await send(tenant, contact_id, "invoice", "Invoice 9"))["status"] == "sent"
    [invoice] = [m for m in await mailbox.wait_for(address, count=3) if m.subject == "Invoice 9"]
    preferences = link_to(invoice, "/p/")

    async def newsletter_choices() -> list[tuple[str, bool]]:
        return [(p["channel"], p["granted"]) for p in (await tenant.get(
            f"/v1/contacts/{contact_id}/preferences")).json() if p["purpose"] == "newsletter"]
    before = await newsletter_choices()
    customer = Customer(http)
    for stray in ("newsletter:post", "newsletter:bogus", "raffle:email", "newsletter"):
        await customer.open(preferences)
        refused = await customer.submit(preferences, granted=["newsletter:email", stray])
        assert refused.status_code == 422, stray
        assert "does not offer" in customer.page and "preferences are saved" not in customer.page
        assert 'value="newsletter:email" checked' in customer.page
        assert await newsletter_choices() == before
    saved = await customer.submit(preferences, granted=["newsletter:email"])
    assert saved.status_code == 200 and "preferences are saved" in customer.page
    assert ("email", True) in await newsletter_choices()


async def test_a_page_shown_before_a_withdrawal_does_not_undo_it(tenant, http, mailbox):
    """Saved with the box left as it was shown, a page opened before the customer unsubscribed
    (or sent STOP, or told the client) granted the newsletter again."""
    await setup_policies(tenant)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    assert (await send(tenant, contact_id, "invoice", "Invoice 9"))["status"] == "sent"
    [invoice] = [m for m in await mailbox.wait_for(address, count=3) if m.subject == "Invoice 9"]
    preferences = link_to(invoice, "/p/")
    customer = Customer(http)
    await customer.open(preferences)
    assert 'value="newsletter:email" checked' in customer.page
    await tenant.ok("POST", f"/v1/contacts/{contact_id}/consents", {"changes": [{
        "purpose": "newsletter", "channel": "email", "granted": False, "source": "api",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}}]}, 201)

    async def newsletter_by_email() -> bool:
        return next(p["granted"] for p in (await tenant.get(
            f"/v1/contacts/{contact_id}/preferences")).json()
            if (p["purpose"], p["channel"]) == ("newsletter", "email"))
    saved = await customer.submit(preferences, granted=["newsletter:email"])
    assert saved.status_code == 200 and "preferences are saved" in customer.page
    assert not await newsletter_by_email()
    # Ticked again on the page as it now stands, it is the customer's new choice.
    await customer.submit(preferences, granted=["newsletter:email"])
    assert await newsletter_by_email()


async def test_a_choice_sent_twice_at_once_is_recorded_once(tenant, http, mailbox):
    """A double click on Save (or a reload while the first post is still on its way) sends the
    same choices twice at once, as a mail client may send its one-click unsubscribe: each post
    read the decisions before the other had saved, and the ledger got the change twice, with
    a consent.changed each. Only a change of the contact's standing decision is recorded."""
    await setup_policies(tenant)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms"])
    assert (await send(tenant, contact_id, "invoice", "Invoice 9"))["status"] == "sent"
    [invoice] = [m for m in await mailbox.wait_for(address, count=3) if m.subject == "Invoice 9"]
    preferences = link_to(invoice, "/p/")
    customer = Customer(http)
    await customer.open(preferences)
    answers = await asyncio.gather(*(customer.submit(preferences, granted=["newsletter:email"])
                                     for _ in range(3)))
    assert all(a.status_code == 200 and "preferences are saved" in a.text for a in answers)

    assert (await send(tenant, contact_id, "newsletter", "Our May news"))["status"] == "sent"
    [news] = [m for m in mailbox.to(address) if m.subject == "Our May news"]
    answers = await asyncio.gather(*(http.post(link_to(news, "/u/"), data={
        "List-Unsubscribe": "One-Click"}) for _ in range(3)))
    assert all(a.status_code == 200 and "You are unsubscribed" in a.text for a in answers)
    ledger = (await tenant.get(f"/v1/contacts/{contact_id}/consents")).json()
    assert [(e["granted"], e["source"], e["shown_in"].split(":")[0]) for e in ledger
            if e["purpose"] == "newsletter"] == [(False, "contact_page", "contact_page"),
                                                 (True, "message_link", "preference_centre"),
                                                 (False, "message_link", "unsubscribe")]


async def test_the_dutch_preference_centre_writes_sms_the_dutch_way(tenant, http, mailbox):
    """The Dutch page labelled the SMS box "sms" beside "E-mail" and "Post", and wrote "via
    E-mail" inside sentences: a label starts with a capital ("Sms"), a sentence says "sms"."""
    await setup_policies(tenant)
    campaign = await tenant.create_campaign(languages=["nl"])
    address = unique_email("nl")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "language": "nl",
                                                   "email": address})
    [invitation] = await mailbox.wait_for(address)
    preferences = link_to(invitation, "/p/")
    customer = Customer(http)
    await customer.open(preferences)
    refused = await customer.submit(preferences, granted=["newsletter:sms"])
    assert refused.status_code == 422
    assert "dus u kunt sms niet kiezen." in customer.page, customer.page
    await tenant.ok("POST", f"/v1/contacts/{enrolled['results'][0]['contact_id']}/consents", {
        "changes": [{"purpose": "newsletter", "channel": "sms", "granted": True,
                     "given_at": datetime.now(UTC).isoformat(), "source": "back_office",
                     "legal_text": {"language": "nl", "version": "3"}}]}, status=201)
    await customer.open(preferences)
    assert '">E-mail</label>' in customer.page and '">Sms</label>' in customer.page


async def test_a_legal_text_is_in_a_language_our_pages_speak(tenant):
    """A legal text in French was stored, though no page or message speaks French, so no
    customer could be shown it: the language is a field error naming the supported ones."""
    await tenant.ensure_purpose("newsletter")
    response = await tenant.post("/v1/purposes/newsletter/legal-texts", {
        "language": "fr", "version": "1", "text": "La lettre, s'il vous plaît."})
    assert response.status_code == 422, response.text
    [field] = response.json()["error"]["fields"]
    assert field["field"] == "language" and "supported: ['de', 'en', 'nl']" in field["message"]
    # Nor as a campaign's checkbox text, which registers one.
    box = {"key": "news", "purpose": "newsletter", "channel": "email",
           "texts": {"en": {"text": "News, please.", "version": "1"},
                     "fr": {"text": "La lettre, s'il vous plaît.", "version": "1"}}}
    campaign = await tenant.post("/v1/campaigns", {"name": "News", "languages": ["en"],
                                                   "consents": [box]})
    assert campaign.status_code == 422, campaign.text
    [field] = campaign.json()["error"]["fields"]
    assert field["field"].startswith("consents[0].texts.fr"), field
    assert "unsupported language 'fr'" in field["message"], field
    texts = (await tenant.get("/v1/purposes/newsletter/legal-texts")).json()
    assert "fr" not in [t["language"] for t in texts], texts


async def test_marketing_needs_a_consent_and_a_verified_address(tenant, http, mailbox):
    await setup_policies(tenant)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms"])
    message = await send(tenant, contact_id, "newsletter", "No consent, no newsletter")
    assert message["status"] == "suppressed"
    assert message["status_reason"].startswith("newsletter by email not granted")
    # A contact who never decided anything gets no marketing either.
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    undecided = await send(tenant, enrolled["results"][0]["contact_id"], "newsletter", "Hi")
    assert undecided["status_reason"] == "no consent for newsletter by email"


async def test_a_withdrawal_on_every_channel_stops_marketing_until_a_newer_grant(
    tenant, http, mailbox
):
    """A withdrawal recorded on channel `any` did not stop the newsletter by email (only the
    email decision was asked). The newest of a channel's own decision and a withdrawal on
    `any` rules: sending, contact search, the preferences and the preference centre agree."""
    await setup_policies(tenant)
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    path = f"/v1/contacts/{contact_id}/consents"

    def decision(channel: str, granted: bool) -> dict:
        return {"purpose": "newsletter", "channel": channel, "granted": granted,
                "given_at": datetime.now(UTC).isoformat(), "source": "call_centre",
                "legal_text": {"language": "en", "version": "3"}}

    async def found(**filters: str) -> bool:
        page = (await tenant.get("/v1/contacts", consent_purpose="newsletter",
                                 external_id=address, **filters)).json()
        return contact_id in [c["id"] for c in page["items"]]

    async def email_preference() -> bool:
        granted = {(p["purpose"], p["channel"]): p["granted"] for p in (await tenant.get(
            f"/v1/contacts/{contact_id}/preferences")).json()}[("newsletter", "email")]
        # The receipt names the decision that rules, as the preferences do.
        receipt = (await tenant.get(f"/v1/contacts/{contact_id}/consent-receipt")).json()
        [ruling] = [c for c in receipt["current"]
                    if (c["purpose"], c["channel"]) == ("newsletter", "email")]
        assert ruling["granted"] == granted, ruling
        return granted

    await tenant.ok("POST", path, {"changes": [decision("any", False)]}, status=201)
    stopped = await send(tenant, contact_id, "newsletter", "After the withdrawal")
    assert stopped["status"] == "suppressed", stopped
    assert stopped["status_reason"].startswith("newsletter by email not granted"), stopped
    assert stopped["status_reason"].endswith("on every channel)"), stopped
    assert not await found() and not await found(consent_channel="email")
    assert await found(consent_granted="false", consent_channel="email")
    assert await email_preference() is False
    receipt = (await tenant.get(f"/v1/contacts/{contact_id}/consent-receipt")).json()
    assert [c["decision_channel"] for c in receipt["current"]
            if c["purpose"] == "newsletter"] == ["any", "any"]  # any, and email by it

    # The customer's newer, specific word allows email again; a grant on `any` allows none.
    await tenant.ok("POST", path, {"changes": [decision("email", True)]}, status=201)
    assert (await send(tenant, contact_id, "newsletter", "Welcome back"))["status"] == "sent"
    assert await found(consent_channel="email") and await email_preference() is True
    await tenant.ok("POST", path, {"changes": [decision("email", False),
                                               decision("any", True)]}, status=201)
    assert (await send(tenant, contact_id, "newsletter", "Blanket"))["status"] == "suppressed"
    assert not await found() and await found(consent_channel="any")

    # The preference centre shows the standing grant on every channel, to be withdrawn; a box
    # left ticked beside it stays granted.
    await tenant.ok("POST", path, {"changes": [decision("sms", True)]}, status=201)
    assert (await send(tenant, contact_id, "invoice", "Invoice 12"))["status"] == "sent"
    [invoice] = [m for m in await mailbox.wait_for(address, count=4) if m.subject == "Invoice 12"]
    customer = Customer(http)
    await customer.open(link_to(invoice, "/p/"))
    assert set(customer.ticked("granted")) == {"newsletter:any", "newsletter:sms"}
    assert "Every channel" in customer.page
    saved = await customer.submit(link_to(invoice, "/p/"), granted=["newsletter:email"])
    assert saved.status_code == 200 and "preferences are saved" in customer.page, customer.page
    assert customer.ticked("granted") == ["newsletter:email"]
    prefs = {(p["purpose"], p["channel"]): p["granted"] for p in (await tenant.get(
        f"/v1/contacts/{contact_id}/preferences")).json()}
    assert (prefs[("newsletter", "any")], prefs[("newsletter", "email")],
            prefs[("newsletter", "sms")]) == (False, True, False), prefs
    assert (await send(tenant, contact_id, "newsletter", "Chosen again"))["status"] == "sent"
    # A grant on every channel is not offered where none stands.
    await customer.open(link_to(invoice, "/p/"))
    refused = await customer.submit(link_to(invoice, "/p/"), granted=["newsletter:any"])
    assert refused.status_code == 422 and "does not offer" in customer.page


async def test_back_office_changes_and_historical_import(tenant, http, mailbox,
                                                         webhook_receiver):
    await setup_policies(tenant)
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    response = await tenant.post("/v1/purposes/newsletter/legal-texts", {
        "language": "en", "version": "1", "text": "Newsletter, please."})
    assert response.status_code == 201
    conflict = await tenant.post("/v1/purposes/newsletter/legal-texts", {
        "language": "en", "version": "1", "text": "Other words."})
    assert conflict.status_code == 409
    nowhere = await tenant.post("/v1/purposes/newsletter/legal-texts", {
        "language": "xx", "version": "1", "text": "In no language."})
    assert nowhere.status_code == 422 and nowhere.json()["error"]["fields"][0]["field"] == \
        "language", nowhere.text
    contact_id, external_id = await verified_contact(tenant, http, mailbox,
                                                     ["terms", "newsletter"])
    path = f"/v1/contacts/{contact_id}/consents"
    last_week = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    change = {"purpose": "newsletter", "channel": "sms", "granted": True, "given_at": last_week,
              "source": "call_centre", "actor": "agent:7",
              "legal_text": {"language": "en", "version": "1"}}
    recorded = await tenant.post(path, {"changes": [change]})
    assert recorded.status_code == 201, recorded.text
    [event] = recorded.json()
    assert event["given_at"].startswith(last_week[:19]) and event["actor"] == "agent:7"
    assert event["legal_text"]["text"] == "Newsletter, please."
    assert datetime.fromisoformat(event["recorded_at"]) > datetime.fromisoformat(event["given_at"])
    # A retry (the answer lost on the way) is the same entry, not a second decision.
    retried = await tenant.post(path, {"changes": [change]})
    assert retried.status_code == 201 and [e["id"] for e in retried.json()] == [event["id"]]

    # An older decision arriving late does not override a newer one.
    older = {**change, "granted": False,
             "given_at": (datetime.now(UTC) - timedelta(days=30)).isoformat()}
    assert (await tenant.post(path, {"changes": [older]})).status_code == 201
    prefs = {(p["purpose"], p["channel"]): p
             for p in (await tenant.get(f"/v1/contacts/{contact_id}/preferences")).json()}
    assert prefs[("newsletter", "sms")]["granted"] is True
    # Announced as history, so a receiver applying events in order does not opt them out.
    changes = await webhook_receiver.wait_for(hook, "consent.changed", count=4)
    by_channel = {(c.payload["data"]["consent"]["channel"], c.payload["data"]["consent"]["granted"]):
                  c.payload["data"]["current"] for c in changes}
    assert by_channel[("sms", True)] is True and by_channel[("sms", False)] is False
    assert by_channel[("email", True)] is True  # the page's own, current when made

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for bad, field in [
        ({**change, "purpose": "lottery"}, "changes[0].purpose"),
        ({**change, "given_at": future}, "changes[0].given_at"),
        ({**change, "given_at": "2026-01-01T10:00:00"}, "changes[0].given_at"),
        ({**change, "legal_text": {"language": "de"}}, "changes[0].legal_text"),
        ({**change, "legal_text": {"language": "en", "version": "99"}}, "changes[0].legal_text"),
        ({**change, "source": "contact_page"}, "changes[0].source"),
    ]:
        response = await tenant.post(path, {"changes": [bad]})
        assert response.status_code == 422, response.text
        assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text
    # The allowed values as a client sends them, not as Python names them.
    [wrong_source] = (await tenant.post(path, {"changes": [{**change, "source": "contact_page"}]})
                      ).json()["error"]["fields"]
    assert wrong_source["message"] == ("Input should be 'back_office', 'api', 'call_centre' or "
                                       "'import'"), wrong_source

    imported = await tenant.post("/v1/consents/import", {"items": [
        {**change, "source": "import", "external_id": "nobody"},
        {**change, "source": "import", "external_id": external_id, "given_at": future},
        {**change, "source": "import", "channel": "letter",
         "given_at": "2019-03-01T09:30:00+01:00", "external_id": external_id},
        {"purpose": "newsletter"},
        {**change, "source": "import", "purpose": "lottery", "external_id": external_id},
    ]})
    assert imported.status_code == 202
    results = imported.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "accepted", "rejected",
                                              "rejected"]
    assert results[0]["errors"][0]["field"] == "external_id"
    assert results[1]["errors"][0]["field"] == "given_at"
    assert results[1]["external_id"] == external_id
    # Each item's fields are named within the item; its index says which item.
    assert (results[4]["index"], results[4]["errors"][0]["field"]) == (4, "purpose")
    ledger = (await tenant.get(f"/v1/contacts/{contact_id}/consents")).json()
    assert ledger[0]["channel"] == "letter" and ledger[0]["given_at"].startswith("2019-03-01T08:30")
    # The file sent again once its bad items are fixed: the good ones are not doubled.
    again = await tenant.post("/v1/consents/import", {"items": [
        {**change, "source": "import", "channel": "letter",
         "given_at": "2019-03-01T09:30:00+01:00", "external_id": external_id}]})
    assert again.json()["accepted"] == 1
    assert len((await tenant.get(f"/v1/contacts/{contact_id}/consents")).json()) == len(ledger)
    # An external id with blanks around it (a spreadsheet's) is the contact's, as it is when
    # contacts are created, enrolled or searched.
    padded = await tenant.post("/v1/consents/import", {"items": [
        {**change, "source": "import", "channel": "letter",
         "given_at": "2019-03-01T09:30:00+01:00", "external_id": f" {external_id} "}]})
    assert padded.json()["accepted"] == 1
    found = (await tenant.get("/v1/contacts", external_id=f" {external_id}\t")).json()["items"]
    assert [c["id"] for c in found] == [contact_id]


async def test_no_consent_is_recorded_for_an_anonymised_contact(tenant):
    """The API and the import appended decisions to an anonymised contact's ledger, as if a
    person nobody can name any more had decided something: both refuse it now."""
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "1", "text": "Newsletter, please."})
    n = uuid.uuid4().hex[:8]
    gone = await tenant.ok("POST", "/v1/contacts", {"external_id": f"gone-{n}",
                                                       "last_name": "Gone"}, status=201)
    kept = await tenant.ok("POST", "/v1/contacts", {"external_id": f"kept-{n}",
                                                       "last_name": "Kept"}, status=201)
    await tenant.ok("POST", f"/v1/contacts/{gone['id']}/anonymise", {})
    change = {"purpose": "newsletter", "channel": "email", "granted": False,
              "given_at": datetime.now(UTC).isoformat(), "source": "back_office",
              "legal_text": {"language": "en"}}

    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "1", "text": "We keep your data."})
    for refused in [
            await tenant.post(f"/v1/contacts/{gone['id']}/consents", {"changes": [change]}),
            await tenant.post(f"/v1/contacts/{gone['id']}/gdpr-consent", {
                "state": "accepted", "purpose": "data-processing", "source": "back_office",
                "given_at": change["given_at"], "legal_text": {"language": "en"}})]:
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "contact_anonymised"
        assert "anonymised" in refused.json()["error"]["message"]

    anonymised_id = (await tenant.get(f"/v1/contacts/{gone['id']}")).json()["external_id"]
    imported = await tenant.post("/v1/consents/import", {"items": [
        {**change, "source": "import", "external_id": anonymised_id},
        {**change, "source": "import", "external_id": kept["external_id"]}]})
    assert imported.status_code == 202, imported.text
    [anonymised, accepted] = imported.json()["results"]
    assert anonymised["status"] == "rejected" and accepted["status"] == "accepted"
    assert anonymised["errors"][0]["field"] == "external_id"
    assert "anonymised" in anonymised["errors"][0]["message"]
    assert (await tenant.get(f"/v1/contacts/{gone['id']}/consents")).json() == []


async def test_the_gdpr_consent_is_answered_through_its_own_route_only(tenant):
    """Recorded as a plain ledger entry, an answer to the consent form left the contact's GDPR
    state pending, and nothing that follows from an answer (anonymisation, no messages)."""
    contact = await newsletter_contact(tenant, "former")
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "1", "text": "We keep your data."})
    answer = dated("any", True, 3, purpose="data-processing", source="back_office")
    refused = await tenant.post(f"/v1/contacts/{contact['id']}/consents", {"changes": [answer]})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["error"]["fields"]
    assert error["field"] == "changes[0].purpose" and "/gdpr-consent" in error["message"]
    imported = await tenant.post("/v1/consents/import", {"items": [
        {**answer, "external_id": contact["external_id"]}]})
    [item] = imported.json()["results"]
    assert item["status"] == "rejected" and item["errors"][0]["field"] == "purpose", item
    assert (await tenant.get(f"/v1/contacts/{contact['id']}/consents")).json() == []
    accepted = await tenant.ok("POST", f"/v1/contacts/{contact['id']}/gdpr-consent", {
        "state": "accepted", "purpose": "data-processing", "source": "back_office",
        "given_at": answer["given_at"], "legal_text": {"language": "en"}})
    assert accepted["state"] == "accepted"


async def test_a_decision_dated_by_a_number_is_a_field_error(tenant):
    """Read as seconds since 1970, 0 was a consent given on 1970-01-01."""
    contact = await newsletter_contact(tenant, "epoch")
    for given_at in (0, "1700000000"):
        refused = await tenant.post(f"/v1/contacts/{contact['id']}/consents", {
            "changes": [dated("email", True, 1, given_at=given_at)]})
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["error"]["fields"]
        assert error["field"] == "changes[0].given_at" and "not as a number" in error["message"]


async def test_the_ip_address_kept_as_proof_is_one(tenant):
    """Any text was kept as the IP address a decision came from, where it is proof."""
    contact = await newsletter_contact(tenant, "proven")
    path = f"/v1/contacts/{contact['id']}/consents"
    refused = await tenant.post(path, {"changes": [dated("email", True, 4, ip="not an ip")]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"][0]["field"] == "changes[0].ip"
    [kept] = await tenant.ok("POST", path, {"changes": [dated("email", True, 4,
                                                              ip=" 2001:DB8::0:1 ")]}, 201)
    assert kept["ip"] == "2001:db8::1"


async def newsletter_contact(tenant, name: str) -> dict:
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "1", "text": "Newsletter, please."})
    return await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"{name}-{uuid.uuid4().hex[:8]}", "last_name": name.title()}, status=201)


def dated(channel: str, granted: bool, day: int, **more) -> dict:
    return {"purpose": "newsletter", "channel": channel, "granted": granted,
            "given_at": f"2026-01-{day:02}T10:00:00Z", "source": "import",
            "legal_text": {"language": "en"}, **more}


async def test_an_imported_decision_that_becomes_current_is_announced(tenant, webhook_receiver):
    """The import raised no webhook, so a receiver kept an opt-in the import's newer
    withdrawal ended. Each imported decision that now decides its purpose and channel raises
    `consent.changed` once; history older than the ledger's decision raises none."""
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    contact = await newsletter_contact(tenant, "importee")
    await tenant.ok("POST", f"/v1/contacts/{contact['id']}/consents", {"changes": [
        dated("email", True, 10, source="back_office")]}, status=201)
    items = [dated(*d, external_id=contact["external_id"]) for d in [
        ("email", False, 5),  # older than the grant of the 10th: history
        ("sms", True, 1), ("sms", False, 2), ("sms", False, 2),  # the 2nd decides SMS
        ("letter", True, 3)]]

    async def queued() -> list[str]:
        return [d["event_type"] for d in (await tenant.get(
            f"/v1/webhook-endpoints/{tenant.endpoint_ids[hook]}/deliveries")).json()]
    imported = await tenant.post("/v1/consents/import", {"items": items})
    assert imported.status_code == 202 and imported.json()["accepted"] == 5, imported.text
    assert await queued() == ["consent.changed"] * 3  # the API's, then the two new current ones
    received = await webhook_receiver.wait_for(hook, "consent.changed", count=3)
    announced = sorted((c.payload["data"]["consent"]["channel"],
                        c.payload["data"]["consent"]["granted"], c.payload["data"]["current"])
                       for c in received if c.payload["data"]["consent"]["source"] == "import")
    assert announced == [("letter", True, True), ("sms", False, True)]
    # The same file again is no news.
    assert (await tenant.post("/v1/consents/import", {"items": items})).status_code == 202
    assert len(await queued()) == 3


async def test_an_import_with_no_acceptable_item_is_refused(tenant):
    """A file of which nothing was imported was answered 202 Accepted; it is a 422 naming
    each item's fields, while a partly good one stays 202 with the refused items listed."""
    contact = await newsletter_contact(tenant, "refused")
    response = await tenant.post("/v1/consents/import", {"items": [
        dated("email", True, 1, external_id="nobody"),
        dated("email", True, 1, external_id=contact["external_id"], purpose="lottery"),
        {"purpose": "newsletter"}]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "no_acceptable_item"
    fields = [f["field"] for f in body["error"]["fields"]]
    assert fields[:2] == ["items[0].external_id", "items[1].purpose"], fields
    assert "items[2].external_id" in fields, fields
    assert (body["accepted"], body["rejected"]) == (0, 3)
    assert [r["status"] for r in body["results"]] == ["rejected"] * 3
    assert (await tenant.get(f"/v1/contacts/{contact['id']}/consents")).json() == []


async def test_an_anonymised_contacts_consent_event_keeps_its_shape_when_resent(
    tenant, webhook_receiver
):
    """After anonymisation, resend and replay delivered `consent.changed` as `{"anonymised",
    "contact_id"}`, a shape the README did not describe, and a receiver no longer learnt what
    the customer had decided (a withdrawal still queued was lost on it). It goes out in its
    usual shape without what named the person, as README's *Webhooks* describes."""
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    endpoint = f"/v1/webhook-endpoints/{tenant.endpoint_ids[hook]}"
    contact = await newsletter_contact(tenant, "forgotten")
    since = datetime.now(UTC) - timedelta(seconds=1)
    await tenant.ok("POST", f"/v1/contacts/{contact['id']}/consents", {"changes": [dated(
        "email", False, 3, source="back_office", ip="203.0.113.9", user_agent="Phone/1")]},
        status=201)
    [first] = await webhook_receiver.wait_for(hook, "consent.changed")
    assert first.payload["data"]["consent"]["ip"] == "203.0.113.9"
    await tenant.ok("POST", f"/v1/contacts/{contact['id']}/anonymise", {})

    await tenant.ok("POST", f"{endpoint}/events/{first.id}/resend", status=202)
    _, resent = await webhook_receiver.wait_for(hook, "consent.changed", count=2)
    await tenant.ok("POST", f"{endpoint}/replay", {
        "since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(seconds=1))
        .isoformat()}, status=202)
    *_, replayed = await webhook_receiver.wait_for(hook, "consent.changed", count=3)
    documented = {"type": "consent.changed", "timestamp": first.payload["timestamp"], "data": {
        "anonymised": True, "current": True,
        "contact": {"id": contact["id"], "external_id": f"anonymised-{contact['id']}",
                    "first_name": None, "last_name": None},
        "consent": {**first.payload["data"]["consent"], "ip": None, "user_agent": None}}}
    for delivery in (resent, replayed):
        assert delivery.id == first.id and delivery.payload == documented, delivery.payload


async def test_sms_stop_and_start(tenant, sessions, http):
    await setup_policies(tenant)
    from db.models import Contact, ContactPoint
    from db.session import transaction
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id="sms-1", language="en")
        session.add(contact)
        await session.flush()
        session.add(ContactPoint(client_id=tenant.id, contact_id=contact.id, kind="mobile",
                                 value="+31612345678", verification_state="verified"))
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "1", "text": "News by SMS."})
    path = f"/v1/contacts/{contact.id}/consents"
    grant = {"purpose": "newsletter", "channel": "sms", "granted": True,
             "given_at": datetime.now(UTC).isoformat(), "source": "api",
             "legal_text": {"language": "en"}}
    assert (await tenant.post(path, {"changes": [grant]})).status_code == 201

    stop = await tenant.post("/v1/inbound/sms", {"from": "31612345678", "text": " Stop "})
    assert stop.json() == {"action": "stop", "contacts": 1}
    start = await tenant.post("/v1/inbound/sms", {"from": "+31612345678", "text": "START"})
    assert start.json() == {"action": "start", "contacts": 1}
    # A provider that sends the number in national form: read in the client's region (NL).
    national = await tenant.post("/v1/inbound/sms", {"from": "0612345678", "text": "STOP"})
    assert national.json() == {"action": "stop", "contacts": 1}
    again = await tenant.post("/v1/inbound/sms", {"from": "0031612345678", "text": "START"})
    assert again.json() == {"action": "start", "contacts": 1}
    other = await tenant.post("/v1/inbound/sms", {"from": "+31612345678", "text": "hello"})
    assert other.json()["action"] == "ignored"
    ledger = (await tenant.get(path)).json()
    assert [(e["granted"], e["source"]) for e in ledger] == [
        (True, "api"), (False, "sms_keyword"), (True, "sms_keyword"), (False, "sms_keyword"),
        (True, "sms_keyword")]
    bad = await tenant.post("/v1/inbound/sms", {"from": "abc", "text": "STOP"})
    assert bad.status_code == 422
    naive = await tenant.post("/v1/inbound/sms", {"from": "+31612345678", "text": "STOP",
                                                  "received_at": "2026-12-03T10:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["fields"][0]["field"] == \
        "received_at", naive.text
    # A provider's clock ahead of ours: the STOP counts, dated now, so a later opt-in wins.
    ahead = await tenant.post("/v1/inbound/sms", {"from": "+31612345678", "text": "STOP",
                                                  "received_at": "2099-01-01T00:00:00Z"})
    assert ahead.json() == {"action": "stop", "contacts": 1}
    assert (await tenant.get(path)).json()[-1]["given_at"] < "2027"


async def test_sms_stop_as_handsets_and_german_customers_send_it(tenant, sessions):
    """Phones autocorrect "Stop." and add "!", some quote it or type it full-width, and the
    product speaks German: each such reply was ignored, and marketing SMS went on."""
    await setup_policies(tenant)
    from db.models import Contact, ContactPoint
    from db.session import transaction
    number = "+31612345679"
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id="sms-variants", language="de")
        session.add(contact)
        await session.flush()
        session.add(ContactPoint(client_id=tenant.id, contact_id=contact.id, kind="mobile",
                                 value=number, verification_state="verified"))
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "de", "version": "1", "text": "News per SMS."})
    path = f"/v1/contacts/{contact.id}/consents"
    grant = {"purpose": "newsletter", "channel": "sms", "granted": True,
             "given_at": datetime.now(UTC).isoformat(), "source": "api",
             "legal_text": {"language": "de"}}
    assert (await tenant.post(path, {"changes": [grant]})).status_code == 201

    async def reply(text: str) -> str:
        answer = await tenant.post("/v1/inbound/sms", {"from": number, "text": text})
        assert answer.status_code == 200, answer.text
        return answer.json()["action"]

    stops = ["Stop.", "STOP!", '"STOP"', "stop\u200b", "\uff33\uff34\uff2f\uff30", "Stop please",
             "STOP \U0001f6d1", "Abmelden", "ABBESTELLEN"]
    for text in stops:
        assert await reply(text) == "stop", text
        # Not a sentence that merely starts with START, but the word alone, in German too.
        assert await reply("Start date?") == "ignored"
        assert await reply("Anmelden!") == "start", text
    assert await reply("Don't stop") == "ignored"
    ledger = (await tenant.get(path)).json()
    assert [e["granted"] for e in ledger] == [True] + [False, True] * len(stops)
    assert {e["source"] for e in ledger[1:]} == {"sms_keyword"}


@pytest.mark.parametrize("path", ["/p/not-a-token", "/u/not-a-token"])
async def test_unknown_preference_links_are_404(http, path):
    assert (await http.get(path)).status_code == 404
    assert (await http.post(path, data={"List-Unsubscribe": "One-Click"})).status_code == 404


async def test_consent_endpoints_are_tenant_isolated(tenant, other_tenant, http, mailbox):
    await setup_policies(tenant)
    contact_id, _ = await verified_contact(tenant, http, mailbox, ["terms"])
    for path in ["consents", "preferences", "consent-receipt"]:
        assert (await other_tenant.get(f"/v1/contacts/{contact_id}/{path}")).status_code == 404
    sent = await other_tenant.post("/v1/messages", {
        "contact_id": contact_id, "message_type": "newsletter", "subject": "x", "text": "y"})
    assert sent.status_code == 404


async def test_journey_reminders_follow_the_clients_policy(tenant, http, mailbox):
    """A client that calls its reminders marketing: they stop when the customer opts out."""
    await setup_policies(tenant)
    response = await tenant.http.put("/v1/message-policies/reminder", headers=tenant.auth,
                                     json={"category": "marketing", "purpose": "newsletter"})
    assert response.status_code == 200
    campaign = await tenant.create_campaign(
        languages=["en"], reminders={"interval": "PT1S", "max_count": 2}, expires_after="PT4S")
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    journey = await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "expired",
                                          timeout=30)
    assert [m.subject.startswith("Reminder") for m in mailbox.to(address)] == [False]
    suppressed = [e for e in journey["history"] if e["type"] == "reminder_suppressed"]
    assert len(suppressed) == 2
    assert suppressed[0]["detail"]["reason"] == "no consent for newsletter by email"


async def test_shown_and_accepted_are_linked_and_reported_per_notice_version(
    tenant, http, mailbox
):
    """What was shown (text version, language, page, time) is kept apart from what was saved,
    linked; the client sees the shown→accepted conversion per notice version."""
    await setup_policies(tenant)
    campaign = await tenant.create_campaign(languages=["en"])
    outcomes = []
    for ticks in (["terms", "newsletter"], ["terms"], ["terms"]):
        address = unique_email()
        enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
        [invitation] = await mailbox.wait_for(address)
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        await customer.submit(mailbox.link(invitation), email=address, consent=ticks)
        outcomes.append(enrolled["results"][0]["contact_id"])
    # One more customer only looks at the page.
    address = unique_email()
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    [invitation] = await mailbox.wait_for(address)
    await Customer(http).open(mailbox.link(invitation))

    [entry] = [e for e in (await tenant.get(f"/v1/contacts/{outcomes[0]}/consents")).json()
               if e["purpose"] == "newsletter"]
    assert entry["granted"] and entry["legal_text"]["version"] == "3"
    report = (await tenant.get("/v1/consent-notices/conversion", purpose="newsletter")).json()
    # Each page view is a display: three customers saw it twice (page, then "check your inbox"
    # with the form again), the fourth once.
    [row] = report
    assert (row["legal_text_version"], row["legal_text_language"], row["shown_in"]) == (
        "3", "en", "contact_page")
    assert (row["accepted"], row["declined"]) == (1, 2)
    assert row["shown"] == 7 and row["conversion"] == round(1 / 7, 4)
    # A purpose the client does not have is a mistake to tell, not an empty report.
    unknown = await tenant.get("/v1/consent-notices/conversion", purpose="nope")
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["fields"] == [
        {"field": "purpose", "message": "unknown purpose 'nope'"}]


async def test_a_message_idempotency_key_stands_for_one_message(tenant):
    await setup_policies(tenant)
    contact = await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"idem-{uuid.uuid4().hex[:6]}", "last_name": "Idem",
        "contact_points": [{"kind": "email", "value": unique_email()}]}, 201)
    message = {"contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 9",
               "text": "Please pay", "idempotency_key": "invoice-9"}
    first = await tenant.post("/v1/messages", message)
    again = await tenant.post("/v1/messages", message)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    # The same key for another message is the client's bug, not a repeat to ignore.
    other = await tenant.post("/v1/messages", {**message, "subject": "Invoice 10"})
    assert other.status_code == 409, other.text
    for bad, field in [({**message, "idempotency_key": ""}, "idempotency_key"),
                       ({**message, "message_type": "lottery"}, "message_type")]:
        response = await tenant.post("/v1/messages", bad)
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == field, response.text


async def test_a_message_idempotency_key_may_come_as_the_standard_header(tenant):
    """Idempotency-Key in the header means what idempotency_key in the body means."""
    await setup_policies(tenant)
    contact = await tenant.ok("POST", "/v1/contacts", {
        "external_id": f"idem-{uuid.uuid4().hex[:6]}", "last_name": "Idem",
        "contact_points": [{"kind": "email", "value": unique_email()}]}, 201)
    message = {"contact_id": contact["id"], "message_type": "invoice", "subject": "Invoice 9",
               "text": "Please pay"}
    key = f"invoice-{uuid.uuid4().hex[:6]}"

    async def post(body: dict, header: str | None = key) -> httpx.Response:
        return await tenant.http.post("/v1/messages", json=body, headers={
            **tenant.auth, **({"Idempotency-Key": header} if header is not None else {})})
    first, again = await post(message), await post(message)
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["id"] == again.json()["id"]
    same = await post({**message, "idempotency_key": key}, header=None)
    assert same.json()["id"] == first.json()["id"]
    assert (await post({**message, "subject": "Invoice 10"})).status_code == 409
    for bad in (await post({**message, "idempotency_key": "other"}), await post(message, "")):
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["fields"][0]["field"] == "Idempotency-Key", bad.text


async def test_journey_messages_the_client_calls_marketing_can_be_unsubscribed(
        tenant, http, mailbox):
    """Sent, with the customer's consent, they carry the one-click unsubscribe of any
    marketing email, which withdraws that consent."""
    await setup_policies(tenant)
    await tenant.ok("PUT", "/v1/message-policies/reminder",
                    {"category": "marketing", "purpose": "newsletter"})
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    campaign = await tenant.create_campaign(
        languages=["en"], reminders={"interval": "PT1S", "max_count": 1}, expires_after="PT1M")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    reminder = next(m for m in await mailbox.wait_for(address, count=4)
                    if m.subject.startswith("Reminder"))
    # A long header is folded across lines.
    unsubscribe = "".join(reminder.headers["List-Unsubscribe"].split()).strip("<>").removeprefix(
        "http://testserver")
    assert reminder.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    invitation = mailbox.to(address)[2]  # the campaign's invitation: a service message
    assert "List-Unsubscribe" not in invitation.headers
    assert (await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
            ).status_code == 200
    prefs = await tenant.ok("GET", f"/v1/contacts/{contact_id}/preferences")
    assert ("newsletter", "email", False) in {(p["purpose"], p["channel"], p["granted"])
                                             for p in prefs}


async def test_the_unsubscribe_page_speaks_the_language_of_its_message(tenant, http, mailbox):
    """A Dutch reminder to an English contact (the campaign speaks Dutch only): its preference
    link opened in Dutch, its one-click unsubscribe in English."""
    await setup_policies(tenant)
    await tenant.ok("PUT", "/v1/message-policies/reminder",
                    {"category": "marketing", "purpose": "newsletter"})
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    campaign = await tenant.create_campaign(
        languages=["nl"], default_language="nl", reminders={"interval": "PT1S", "max_count": 1},
        expires_after="PT1M")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    reminder = next(m for m in await mailbox.wait_for(address, count=4)
                    if m.subject.startswith("Herinnering"))
    unsubscribe = "".join(reminder.headers["List-Unsubscribe"].split()).strip("<>").removeprefix(
        "http://testserver")
    page = await http.get(unsubscribe)
    assert "<h1>Afmelden</h1>" in page.text, page.text
    done = await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert 'lang="nl"' in done.text and "Afmelden" in done.text
    assert (await tenant.ok("GET", f"/v1/contacts/{contact_id}"))["language"] == "en"


async def test_a_consent_in_a_language_of_neither_contact_nor_client_can_be_withdrawn(
        tenant, sessions, http, mailbox):
    """A German contact granted the newsletter under its only text, in Dutch (the client's
    default is English): STOP answered "stop" and withdrew nothing, the one-click unsubscribe
    was a 500 and the preference centre did not show the opt-in. Each now withdraws it, under
    the text it was granted under, and the page shows it to be withdrawn."""
    await setup_policies(tenant)
    await tenant.ok("POST", "/v1/purposes/newsletter/legal-texts", {
        "language": "nl", "version": "1", "text": "Stuur mij de nieuwsbrief."}, status=201)
    from db.models import Contact, ContactPoint
    from db.session import transaction
    address, mobile = unique_email("dutch-text"), "+31612340001"
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id=address, language="de")
        session.add(contact)
        await session.flush()
        session.add_all([ContactPoint(client_id=tenant.id, contact_id=contact.id, kind=kind,
                                      value=value, verification_state="verified")
                         for kind, value in [("email", address), ("mobile", mobile)]])
    path = f"/v1/contacts/{contact.id}/consents"
    await tenant.ok("POST", path, {"changes": [
        {"purpose": "newsletter", "channel": channel, "granted": True, "source": "api",
         "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "nl"}}
        for channel in ("email", "sms")]}, status=201)
    assert (await send(tenant, str(contact.id), "newsletter", "Unsere News"))["status"] == "sent"
    [mail] = await mailbox.wait_for(address)

    customer = Customer(http)
    await customer.open(link_to(mail, "/p/"))
    assert sorted(customer.ticked("granted")) == ["newsletter:email", "newsletter:sms"]
    assert "Stuur mij de nieuwsbrief." in customer.page

    one_click = await http.post(link_to(mail, "/u/"), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200, one_click.text
    stop = await tenant.post("/v1/inbound/sms", {"from": mobile, "text": "STOP"})
    assert stop.json() == {"action": "stop", "contacts": 1}

    prefs = await tenant.ok("GET", f"/v1/contacts/{contact.id}/preferences")
    assert {(p["channel"], p["granted"]) for p in prefs} == {("email", False), ("sms", False)}
    withdrawals = [e for e in await tenant.ok("GET", path) if not e["granted"]]
    assert [(e["source"], e["legal_text"]["language"]) for e in withdrawals] == [
        ("message_link", "nl"), ("sms_keyword", "nl")]


async def test_a_decision_dated_before_1900_is_a_field_error(tenant):
    """A given_at in year 1 with a zone ahead of UTC was a 500 (it cannot be stored), and lost
    an import's good items with it: it is the field's error, the import keeping the others."""
    contact = await newsletter_contact(tenant, "ancient")
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "1", "text": "We keep your data."})
    ancient = "0001-01-01T00:30:00+01:00"
    for path, body, field in [
            (f"/v1/contacts/{contact['id']}/consents",
             {"changes": [dated("email", True, 1, source="api", given_at=ancient)]},
             "changes[0].given_at"),
            (f"/v1/contacts/{contact['id']}/gdpr-consent",
             {"state": "accepted", "purpose": "data-processing", "source": "back_office",
              "given_at": ancient, "legal_text": {"language": "en"}}, "given_at"),
            ("/v1/inbound/sms", {"from": "+31612340002", "text": "STOP", "received_at": ancient},
             "received_at")]:
        response = await tenant.post(path, body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"] == [
            {"field": field, "message": "must be 1900-01-01 or later"}], response.text

    imported = await tenant.post("/v1/consents/import", {"items": [
        dated("email", True, 1, external_id=contact["external_id"], given_at=ancient),
        dated("email", True, 2, external_id=contact["external_id"])]})
    assert imported.status_code == 202, imported.text
    [old, good] = imported.json()["results"]
    assert (old["status"], old["errors"][0]["field"], good["status"]) == (
        "rejected", "given_at", "accepted")
    assert len(await tenant.ok("GET", f"/v1/contacts/{contact['id']}/consents")) == 1


async def test_a_gdpr_consent_names_its_own_legal_text_field(tenant):
    """A legal text the client does not have was reported on `changes[0].legal_text`, a field
    this request has not: it is `legal_text`."""
    contact = await newsletter_contact(tenant, "gdpr")
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "1", "text": "We keep your data."})
    for text in ({"language": "de"}, {"language": "en", "version": "99"}):
        response = await tenant.post(f"/v1/contacts/{contact['id']}/gdpr-consent", {
            "state": "accepted", "purpose": "data-processing", "source": "back_office",
            "given_at": datetime.now(UTC).isoformat(), "legal_text": text})
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["error"]["fields"]] == ["legal_text"]


async def test_a_policy_of_any_category_names_a_purpose_the_client_has(tenant):
    """A service policy naming a purpose the client does not have was stored as given."""
    for category in ("service", "financial", "mandatory"):
        response = await tenant.http.put("/v1/message-policies/promo", headers=tenant.auth,
                                         json={"category": category, "purpose": "does-not-exist"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"] == [
            {"field": "purpose", "message": "unknown purpose 'does-not-exist'"}]
    assert "promo" not in [p["message_type"] for p in
                           await tenant.ok("GET", "/v1/message-policies")]
    await tenant.ensure_purpose("newsletter")
    kept = await tenant.ok("PUT", "/v1/message-policies/promo",
                           {"category": "service", "purpose": "newsletter"})
    assert kept["purpose"] == "newsletter"


async def test_a_purpose_has_a_name_to_show(tenant):
    """A purpose named only spaces was created, to show customers no name on their pages."""
    for name in ("   ", "News\nletter"):
        response = await tenant.post("/v1/purposes", {"key": "blank", "name": name,
                                                      "kind": "direct_marketing"})
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["error"]["fields"]] == ["name"]
    created = await tenant.ok("POST", "/v1/purposes", {"key": "blank", "name": "  News  ",
                                                        "kind": "direct_marketing"}, status=201)
    assert created["name"] == "News"


async def test_an_import_item_that_is_no_object_is_named_as_the_item(tenant):
    """Items that were no JSON objects were refused on `items[0].body`, a field nobody sent,
    with a message naming one of our classes: the item itself must be an object."""
    contact = await newsletter_contact(tenant, "objects")
    refused = await tenant.post("/v1/consents/import", {"items": ["x", None, 5]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"] == [
        {"field": f"items[{i}]", "message": "must be an object"} for i in range(3)]
    imported = await tenant.post("/v1/consents/import", {"items": [
        "x", dated("email", True, 1, external_id=contact["external_id"], legal_text="en"),
        dated("email", True, 1, external_id=contact["external_id"])]})
    assert imported.status_code == 202, imported.text
    [no_object, bad_text, good] = imported.json()["results"]
    assert no_object["errors"] == [{"field": "item", "message": "must be an object"}]
    assert bad_text["errors"] == [{"field": "legal_text", "message": "must be an object"}]
    assert good["status"] == "accepted"


async def test_a_language_chosen_in_the_preference_centre_reaches_the_running_journey(
        tenant, http, mailbox):
    """The choice is kept as the contact's so later messages speak it: the running journey's
    reminder came in English all the same, as a journey's messages speak the journey's."""
    campaign = await tenant.create_campaign(reminders={"interval": "PT4S", "max_count": 1},
                                            languages=["en", "nl"])
    other = await tenant.create_campaign(languages=["en"])
    address = unique_email("prefs-lang")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "language": "en",
                                                     "email": address}))["results"]
    [english_only] = (await tenant.enrol(other["id"], {"external_id": address}))["results"]
    invitations = await mailbox.wait_for(address, count=2)
    customer = Customer(http)
    preferences = link_to(invitations[0], "/p/")
    await customer.open(preferences)
    switched = await http.post(f"{preferences}/language",
                               data={"language": "nl", "csrf_token": customer.csrf()})
    assert switched.status_code == 303
    assert (await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}"))["language"] == "nl"
    reminder = (await mailbox.wait_for(address, count=3))[-1]
    assert "Herinnering" in reminder.subject, reminder.subject
    # A campaign that does not speak it keeps the journey's language.
    assert (await tenant.journey(english_only["journey_id"]))["language"] == "en"


async def test_a_campaign_page_withdraws_no_opt_in_the_customer_left_as_shown(
        tenant, http, mailbox):
    """A standing opt-in (given through the client) to what a later campaign asks again is shown
    ticked on its page, and a box left as the page showed it changes nothing, also when the
    client recorded a decision while the page was open; only a box the customer changes is
    their new decision. The page withdrew such opt-ins: every optional box left unticked was
    written to the ledger as declined."""
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    contact_id = enrolled["contact_id"]

    async def decide(granted: bool, given_at: datetime) -> None:
        await tenant.ok("POST", f"/v1/contacts/{contact_id}/consents", {"changes": [{
            "purpose": "newsletter", "channel": "email", "granted": granted,
            "source": "call_centre", "given_at": given_at.isoformat(),
            "legal_text": {"language": "en"}}]}, 201)

    async def newsletter() -> list[tuple[bool, str]]:
        return [(e["granted"], e["source"]) for e in (await tenant.get(
            f"/v1/contacts/{contact_id}/consents")).json() if e["purpose"] == "newsletter"]

    async def as_a_browser(**change: list[str]) -> None:
        # A browser sends the boxes as they are ticked, the ones pre-filled included.
        answer = await customer.submit(page, email=address,
                                       consent=change.get("consent", customer.ticked("consent")))
        assert answer.status_code == 200, answer.text

    # Opted in yesterday by phone, the customer opens the page: the box shows it.
    await decide(True, datetime.now(UTC) - timedelta(days=1))
    await customer.open(page)
    assert customer.ticked("consent") == ["newsletter"]
    await as_a_browser(consent=["terms", "newsletter"])
    assert await newsletter() == [(True, "call_centre")]

    # Withdrawn through the client while the page (showing it ticked) was open: the box the
    # customer left ticked does not grant it again.
    await customer.open(page)
    assert sorted(customer.ticked("consent")) == ["newsletter", "terms"]
    await decide(False, datetime.now(UTC))
    await as_a_browser()
    assert await newsletter() == [(True, "call_centre"), (False, "call_centre")]

    # The page shows it as it now stands; ticked there, it is the customer's new decision.
    await customer.open(page)
    assert customer.ticked("consent") == ["terms"]
    await as_a_browser(consent=["terms", "newsletter"])
    assert await newsletter() == [(True, "call_centre"), (False, "call_centre"),
                                  (True, "contact_page")]
    # And unticked, their withdrawal.
    await customer.open(page)
    await as_a_browser(consent=["terms"])
    assert (await newsletter())[-1] == (False, "contact_page")


async def test_a_box_never_decided_and_left_unticked_is_the_customers_first_answer(
        tenant, http, mailbox):
    """As before: the page asked, the customer did not tick it: declined (as the conversion
    report counts it)."""
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    assert customer.ticked("consent") == []
    await customer.submit(page, email=address, consent=["terms"])
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert sorted((e["purpose"], e["granted"], e["source"]) for e in ledger) == [
        ("newsletter", False, "contact_page"), ("service-communication", True, "contact_page")]
