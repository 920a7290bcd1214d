"""Message wording, its preview and the branding that shapes it: what a client previews is
what customers are sent, and no setting changed later keeps a campaign's own wording from
being sent."""

import re

from messaging.rendering import render_sms
from messaging.sms import longest_context
from messaging.sms_encoding import measure
from messaging.wording import Wording
from tests.helpers import Customer, Tenant, unique_email
from tests.test_channel_plans import contact, enrol, mobile_number, wait_for_sms


def field_errors(answer: dict) -> dict[str, str]:
    return {f["field"]: f["message"] for f in answer["error"]["fields"]}


def preview_path(campaign: dict) -> str:
    return f"/v1/campaigns/{campaign['id']}/messages/preview"


async def test_a_campaign_with_a_channel_plan_previews_its_messages(tenant: Tenant):
    # Stored with the default reminders beside the plan, which used to be refused (a 500).
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], channel_plan=[{"channel": "sms"}])
    sms = await tenant.ok("GET", f"{preview_path(campaign)}?kind=sms_invitation")
    assert sms["channel"] == "sms" and sms["segments"] >= 1
    email = await tenant.ok("GET", f"{preview_path(campaign)}?kind=reminder")
    assert email["subject"].startswith(f"Reminder from {tenant.name}")


SMS_TEXT = ("{client_name}: please check that the number we have for you is still right. "
            "It takes a minute and helps us reach you when it matters")


async def test_the_sms_preview_counts_the_segments_the_sms_sent_takes(tenant: Tenant, settings):
    # Near a segment's end: with a sample link 37 characters short of a real one, the preview
    # said one segment where the SMS sent took two.
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], channel_plan=[{"channel": "sms"}],
        messages={"sms_invitation": {"en": {"text": SMS_TEXT}}})
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=sms_invitation")
    number = mobile_number()
    await enrol(tenant, campaign["id"], await contact(tenant, mobile=number))
    sms = await wait_for_sms(settings, number)
    assert (len(preview["text"]), preview["segments"], preview["encoding"]) == (
        len(sms["text"]), sms["segments"], measure(sms["text"]).encoding)
    assert sms["segments"] == 2


LONG_DOMAIN = "https://kontaktgegevens.klantenservice.acme-energie-nederland.example"


def longest_wording_that_fits(name: str, settings) -> str:
    """SMS wording as long as the check on save lets through on the installation's host."""
    text = "{client_name}: " + "Please check that the number we have for you is still right. " * 9
    while True:
        sample = render_sms("invitation", "en", {
            **longest_context(name, settings),
            "wording": Wording(text=text.replace("{client_name}", name))})
        if measure(sample).segments <= settings.sms_max_segments:
            return text
        text = text[:-10]


async def test_a_domain_that_would_push_the_campaigns_own_sms_over_the_limit_is_refused(
        tenant: Tenant, settings):
    text = longest_wording_that_fits(tenant.name, settings)
    campaign = await tenant.create_campaign(
        name="Mobile check", languages=["en"], consents=[], collect=["mobile"],
        channel_plan=[{"channel": "sms"}], messages={"sms_invitation": {"en": {"text": text}}})
    path = f"/v1/campaigns/{campaign['id']}/branding"

    refused = field_errors(await tenant.ok("PUT", path, {"custom_domain": LONG_DOMAIN}, 422))
    assert "'Mobile check'" in refused["custom_domain"]
    assert "sms_invitation wording in en" in refused["custom_domain"]
    assert "segments" in refused["custom_domain"]
    # The client's own domain reaches the campaign's links as well.
    refused = field_errors(await tenant.ok("PUT", "/v1/branding", {"custom_domain": LONG_DOMAIN},
                                           422))
    assert "'Mobile check'" in refused["custom_domain"]
    assert (await tenant.ok("GET", "/v1/branding"))["branding"] == {}
    assert (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}"))["spec"].get(
        "branding") in (None, {})

    # A domain no longer than the installation's leaves the SMS as long as measured on save.
    short = "https://a.example"
    assert len(short) <= len(settings.public_base_url.rstrip("/"))
    await tenant.ok("PUT", path, {"custom_domain": short})
    await tenant.ok("PUT", "/v1/branding", {"custom_domain": short})


SUBJECT_WORDING = {"subject": "{client_name}: {incentive}",
                   "text": "We would like to keep in touch."}


async def test_a_line_break_in_the_incentive_stays_out_of_the_subject(tenant: Tenant, mailbox):
    campaign = await tenant.create_campaign(
        consents=[], incentive_text="Win a city bike!\nTerms and conditions apply.",
        messages={"invitation": {"en": SUBJECT_WORDING}})
    # A bare carriage return followed by "Name:" made the mail impossible to build, retried
    # for ever with the journey's invitation never sent.
    stuck = await tenant.create_campaign(
        consents=[], incentive_text="Win a city bike!\rNote: terms apply.",
        messages={"invitation": {"en": SUBJECT_WORDING}})
    first, second = unique_email("incentive-lf"), unique_email("incentive-cr")
    await tenant.enrol(campaign["id"], {"external_id": first, "first_name": "Ann",
                                        "last_name": "Smith", "language": "en", "email": first})
    await tenant.enrol(stuck["id"], {"external_id": second, "first_name": "Ann",
                                     "last_name": "Smith", "language": "en", "email": second})
    [mail] = await mailbox.wait_for(first)
    assert mail.subject == f"{tenant.name}: Win a city bike! Terms and conditions apply."
    assert mail.text.startswith("Hello Ann Smith,"), mail.text[:200]
    [mail] = await mailbox.wait_for(second)
    assert mail.subject == f"{tenant.name}: Win a city bike! Note: terms apply."
    assert mail.text.startswith("Hello Ann Smith,"), mail.text[:200]
    # The preview shows what is sent.
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=invitation")
    assert preview["subject"] == f"{tenant.name}: Win a city bike! Terms and conditions apply."
    assert preview["text"].startswith("Hello Alexandra"), preview["text"][:200]


async def test_the_preview_takes_a_locale_or_upper_case_as_its_language(tenant: Tenant):
    campaign = await tenant.create_campaign(consents=[], languages=["en", "nl"])
    for given in ("NL", "nl-BE", "nl_BE"):
        preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=invitation"
                                         f"&language={given}")
        assert preview["language"] == "nl", given
    assert "language" in field_errors(await tenant.ok(
        "GET", f"{preview_path(campaign)}?kind=invitation&language=DE-de", status=422))


def paragraphs(text: str) -> list[list[str]]:
    """A mail's plain-text body (before the footer) as its paragraphs, each a list of lines;
    exactly one blank line parts two paragraphs."""
    body = text.split("\n--\n")[0].strip("\n")
    assert "\n\n\n" not in body, repr(body)
    found = [p.splitlines() for p in body.split("\n\n")]
    # Each paragraph is one sentence, or a label with its link ("Pay now:", the page): two
    # sentences on consecutive lines are paragraphs run together.
    assert all(len(p) == 1 or (len(p) == 2 and p[1].startswith("http")) for p in found), found
    return found


async def test_plain_text_invitations_and_reminders_part_paragraphs_by_one_blank_line(
    tenant: Tenant, mailbox
):
    """trim_blocks ate the newline after each paragraph that ended in a block tag: two blank
    lines after the greeting, and the next paragraph glued to the text ("…an open payment.
    Open payment: INV-1, …"), in every invitation's and reminder's text part."""
    plain = await tenant.create_campaign(consents=[], incentive_text="Win a city bike!")
    worded = await tenant.create_campaign(consents=[], messages={
        "invitation": {"en": {"text": "Please check your details, {first_name}."}},
        "reminder": {"en": {"text": "Still waiting for you, {first_name}."}}})
    dunning = await tenant.create_campaign(consents=[], payments=True)
    for campaign, kind, language, count in [
            (plain, "invitation", "en", 5), (plain, "invitation", "nl", 5),
            (plain, "reminder", "en", 5), (plain, "reminder", "nl", 5),
            (worded, "invitation", "en", 4), (worded, "reminder", "en", 4),
            (dunning, "invitation", "en", 7), (dunning, "reminder", "nl", 7),
            (plain, "confirmation", "en", 2)]:
        preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind={kind}"
                                         f"&language={language}")
        found = paragraphs(preview["text"])
        assert len(found) == count, (campaign["name"], kind, language, found)

    # The mail sent, as the customer's mail client shows its text part.
    address = unique_email("dunning-text")
    await tenant.enrol(dunning["id"], {
        "external_id": address, "email": address, "first_name": "Ann", "last_name": "Smith",
        "claim": {"reference": "INV-1", "payment_url": "https://pay.example.com/1",
                  "amount": "125.50", "currency": "EUR"}})
    [invitation] = await mailbox.wait_for(address)
    found = paragraphs(invitation.text)
    assert found[:3] == [["Hello Ann Smith,"], [f"{tenant.name} reminds you of an open payment."],
                         ["Open payment: INV-1, €125.50."]], found
    assert found[3] == ["Pay now:", "https://pay.example.com/1"] and len(found) == 7, found


async def test_the_verification_mail_previews_the_link_it_sends(tenant: Tenant):
    """The real mail links the confirmation page (/v/…); the preview showed a contact page."""
    campaign = await tenant.create_campaign(consents=[])
    for kind in ("verification", "verification_reminder"):
        preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind={kind}")
        assert "/v/sample" in preview["text"] and "/c/" not in preview["text"], preview["text"]
        assert "/v/sample" in preview["html"]
    invitation = await tenant.ok("GET", f"{preview_path(campaign)}?kind=invitation")
    assert "/c/sample" in invitation["text"]


async def test_a_changed_incentive_reaches_the_next_reminder(tenant: Tenant, mailbox):
    """README: the incentive_text is read when a message is sent, for running journeys too.
    A running journey's next message is a reminder, which did not print it at all."""
    campaign = await tenant.create_campaign(
        consents=[], incentive_text="Win a city bike!",
        reminders={"interval": "PT3S", "max_count": 1})
    address = unique_email("incentive-reminder")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address,
                                        "language": "en"})
    [invitation] = await mailbox.wait_for(address)
    assert "Win a city bike!" in invitation.text
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}",
                    {"incentive_text": "Win a tandem & a helmet!"})
    [_, reminder] = await mailbox.wait_for(address, count=2)
    assert reminder.subject.startswith(f"Reminder from {tenant.name}")
    assert "\n\nWin a tandem & a helmet!\n\nOpen your personal page:" in reminder.text
    assert "<p><strong>Win a tandem &amp; a helmet!</strong></p>" in reminder.html
    assert "city bike" not in reminder.text
    # The preview shows it where it is sent, in the customer's language.
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=reminder&language=nl")
    assert "Win a tandem & a helmet!" in preview["text"]
    assert "<strong>Win a tandem &amp; a helmet!</strong>" in preview["html"]


async def test_an_sms_carries_the_incentive_only_in_the_campaigns_own_measured_words(
    tenant: Tenant
):
    """The built-in SMS leave the incentive out (up to 500 characters no length check counts);
    the campaign's own SMS wording may name it, and is measured with it on every change."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], incentive_text="Win a city bike!",
        channel_plan=[{"channel": "sms"}])
    for kind in ("sms_invitation", "sms_reminder"):
        preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind={kind}")
        assert "city bike" not in preview["text"] and preview["segments"] == 1, preview
    path = f"/v1/campaigns/{campaign['id']}"
    await tenant.ok("PATCH", path, {"messages": {"sms_reminder": {"en": {
        "text": "{client_name}: {incentive} Check your number:"}}}})
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=sms_reminder")
    assert preview["text"].startswith(f"{tenant.name}: Win a city bike! Check your number: ")
    # An incentive that would push the campaign's own SMS over its segments is refused (curly
    # quotes: a segment holds 67 characters, not 153).
    long = "\u201cWin a city bike!\u201d " * 26
    refused = field_errors(await tenant.ok("PATCH", path, {"incentive_text": long}, status=422))
    assert "too long for an SMS" in refused["messages.sms_reminder.en.text"]
    assert (await tenant.ok("GET", path))["spec"]["incentive_text"] == "Win a city bike!"


def valid_until(text: str) -> str:
    """The day a verification mail's link lasts (its time is the moment it was made)."""
    return re.search(r"The link is valid until (\w+ \d+, \d{4})", text).group(1)


async def test_the_verification_preview_dates_the_link_as_the_mail_sent_does(
    tenant: Tenant, http, mailbox
):
    """A link lasts the shorter of verification_link_ttl and the journey's expires_after: with
    a 1-day campaign the mail said the next day, the preview a week on."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="P1D", verification_link_ttl="P7D",
        messages={"verification": {"en": {"subject": "Confirm by {expires_on}",
                                          "text": "Please confirm by {expires_on}."}}})
    invited, typed = unique_email("ttl-invited"), unique_email("ttl-typed")
    await tenant.enrol(campaign["id"], {"external_id": invited, "email": invited})
    customer = Customer(http)
    page = mailbox.link((await mailbox.wait_for(invited))[0])
    await customer.open(page)
    await customer.submit(page, email=typed)
    [sent] = await mailbox.wait_for(typed)
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=verification")
    assert preview["subject"] == sent.subject
    assert valid_until(preview["text"]) == valid_until(sent.text)
    reminder = await tenant.ok("GET", f"{preview_path(campaign)}?kind=verification_reminder")
    assert valid_until(reminder["text"]) == valid_until(sent.text), reminder["text"]
    # A 30-day campaign: the link lasts its own week.
    longer = await tenant.create_campaign(languages=["en"], consents=[], expires_after="P30D",
                                          verification_link_ttl="P7D")
    week = await tenant.ok("GET", f"{preview_path(longer)}?kind=verification")
    assert valid_until(week["text"]) != valid_until(sent.text)


async def test_german_mails_say_until_which_day_a_link_lasts(tenant: Tenant):
    """German writes the day a link lasts until as "bis zum 15. Dezember 2026": the mails said
    "bis 15. Dezember 2026"."""
    campaign = await tenant.create_campaign(languages=["de"], default_language="de", consents=[])
    day = r"\d{1,2}\. \w+ \d{4}"
    invitation = await tenant.ok("GET", f"{preview_path(campaign)}?kind=invitation")
    assert re.search(rf"Dieser Link ist persönlich und bis zum {day} gültig\.",
                     invitation["text"]), invitation["text"]
    verification = await tenant.ok("GET", f"{preview_path(campaign)}?kind=verification")
    assert re.search(rf"Der Link ist bis zum {day}, \d\d:\d\d UTC gültig\.",
                     verification["text"]), verification["text"]
