"""A campaign's own wording of its messages, as a client sets it over the API and customers
receive it: the Dutch invitation in the client's words (the link still theirs), the English one
of the same campaign the built-in text, an SMS in the client's words with the link after it;
wording the client cannot send refused with the field at fault; and the preview."""

import uuid

from db.models import Campaign
from tests.helpers import Customer, Tenant, eventually, unique_email
from tests.test_channel_plans import (
    complete,
    contact,
    enrol,
    mobile_number,
    page_path,
    sms_to,
    verify_mobile,
    wait_for_sms,
)

DUTCH = {"subject": "{client_name} vraagt: kloppen uw gegevens, {first_name}?",
         "text": "Wij willen u graag blijven bereiken <zonder omwegen>. {incentive} "
                 "Het kan tot {expires_on}."}


def field_errors(answer: dict) -> dict[str, str]:
    return {f["field"]: f["message"] for f in answer["error"]["fields"]}


async def test_dutch_customer_reads_the_campaigns_wording_english_the_default(
        tenant: Tenant, http, mailbox):
    campaign = await tenant.create_campaign(
        consents=[], incentive_text="U maakt kans op een fiets.",
        messages={"invitation": {"nl": DUTCH}})
    dutch, english = unique_email("wording-nl"), unique_email("wording-en")
    await tenant.enrol(
        campaign["id"],
        {"external_id": f"nl-{uuid.uuid4().hex[:8]}", "first_name": "Ann",
         "last_name": "de Vries", "language": "nl", "email": dutch},
        {"external_id": f"en-{uuid.uuid4().hex[:8]}", "first_name": "Bob",
         "last_name": "Smith", "language": "en", "email": english})

    [mail] = await mailbox.wait_for(dutch)
    assert mail.subject == f"{tenant.name} vraagt: kloppen uw gegevens, Ann?"
    assert ("Wij willen u graag blijven bereiken <zonder omwegen>. U maakt kans op een fiets. "
            "Het kan tot ") in mail.text
    # The client's text is text, in HTML too; the greeting, button and footer stay ours.
    assert "bereiken &lt;zonder omwegen&gt;." in mail.html and "<zonder" not in mail.html
    assert "Beste Ann de Vries," in mail.text and "Open uw persoonlijke pagina" in mail.html
    customer = Customer(http)
    assert (await customer.open(mailbox.link(mail))).status_code == 200
    assert 'name="email"' in customer.page

    [default] = await mailbox.wait_for(english)
    assert default.subject == f"{tenant.name}: please confirm your email address"
    assert "Wij willen" not in default.text


async def test_sms_carries_the_clients_text_and_the_link(tenant: Tenant, http, settings):
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], channel_plan=[{"channel": "sms"}],
        messages={"sms_invitation": {"en": {"text": "Hi {first_name}, {client_name} here: "
                                                    "is your number still right?"}}})
    number = mobile_number()
    person = await contact(tenant, mobile=number)
    await enrol(tenant, campaign["id"], person)

    sms = await wait_for_sms(settings, number)
    text, _, link = sms["text"].rpartition(" ")
    assert text == f"Hi Eva, {tenant.name} here: is your number still right?"
    assert (await Customer(http).open(page_path(link))).status_code == 200


async def test_wording_the_client_cannot_send_is_refused_naming_the_field(tenant: Tenant):
    await tenant.ensure_purpose("service-communication")
    base = {"name": "Wording", "languages": ["en", "nl"], "consents": []}
    refused = await tenant.ok("POST", "/v1/campaigns", {**base, "messages": {
        "welcome": {"en": {"text": "Hello"}},
        "invitation": {"nl": {"subject": "Hallo {voornaam}", "text": "  "},
                       "fr": {"text": "Bonjour"}},
        "reminder": {"en": {"text": "Hello {first_name"}},
        "sms_invitation": {"en": {"subject": "SMS have none", "text": "{first_name.__class__}"}},
        "letter": {"de": {"text": "Guten Tag"}},
    }}, status=422)
    errors = field_errors(refused)
    assert set(errors) == {
        "messages.welcome", "messages.invitation.nl.subject", "messages.invitation.nl.text",
        "messages.invitation.fr", "messages.reminder.en.text",
        "messages.sms_invitation.en.subject", "messages.sms_invitation.en.text"}, errors
    assert "{voornaam}" in errors["messages.invitation.nl.subject"]
    assert "{first_name}" in errors["messages.invitation.nl.subject"]
    assert "brace" in errors["messages.reminder.en.text"]
    # Which kinds and parts there are, not pydantic's "Extra inputs are not permitted".
    assert "unknown message kind 'welcome'" in errors["messages.welcome"]
    assert "confirmation, sms_confirmation" in errors["messages.welcome"]
    assert errors["messages.sms_invitation.en.subject"] == (
        "the sms_invitation message has no subject; its parts are text")
    # German is a language we speak, but not this campaign's: judged with the campaign.
    refused = await tenant.ok("POST", "/v1/campaigns", {
        **base, "messages": {"letter": {"de": {"text": "Guten Tag"}}}}, status=422)
    assert "add it to languages" in field_errors(refused)["messages.letter.de"]

    campaign = await tenant.ok("POST", "/v1/campaigns", {**base, "messages": {
        "invitation": {"nl": DUTCH}}}, status=201)
    path = f"/v1/campaigns/{campaign['id']}"
    # Merged key by key: a new subject keeps the text; another kind joins.
    changed = await tenant.ok("PATCH", path, {"messages": {
        "invitation": {"nl": {"subject": "Nieuw"}},
        "sms_reminder": {"en": {"text": "Still there?"}}}})
    assert changed["spec"]["messages"] == {
        "invitation": {"nl": {"subject": "Nieuw", "text": DUTCH["text"]}},
        "sms_reminder": {"en": {"text": "Still there?"}}}
    # Too long for the SMS it would be, with the link after it: the segments it would take.
    too_long = await tenant.ok("PATCH", path, {"messages": {"sms_reminder": {"en": {
        "text": "Please check your details. " * 24}}}}, status=422)
    assert "needs 5 GSM-7 segments, at most 4 allowed" in field_errors(too_long)[
        "messages.sms_reminder.en.text"]
    # Dropping a language whose wording is kept is refused until the wording goes too.
    dropped = await tenant.ok("PATCH", path, {"languages": ["en"]}, status=422)
    assert set(field_errors(dropped)) == {"messages.invitation.nl"}
    assert (await tenant.ok("PATCH", path, {"languages": ["en"], "messages": {
        "invitation": None}}))["spec"]["messages"] == {"sms_reminder": {"en": {
            "text": "Still there?"}}}


async def test_preview_shows_the_wording_with_sample_data(tenant: Tenant):
    campaign = await tenant.create_campaign(consents=[], messages={
        "invitation": {"nl": DUTCH},
        "sms_invitation": {"nl": {"text": "{client_name}: kloppen uw gegevens nog?"}},
        "letter": {"nl": {"text": "Beste klant, {campaign_name} gaat van start."}}})
    path = f"/v1/campaigns/{campaign['id']}/messages/preview"

    email = await tenant.ok("GET", f"{path}?kind=invitation&language=nl")
    assert email["subject"] == f"{tenant.name} vraagt: kloppen uw gegevens, Alexandra?"
    assert "bereiken &lt;zonder omwegen&gt;." in email["html"]
    assert email["custom"] == {"subject": True, "text": True}
    # Without wording of its own, the built-in text in the campaign's default language.
    reminder = await tenant.ok("GET", f"{path}?kind=reminder")
    assert (reminder["language"], reminder["custom"]) == ("en", {"subject": False,
                                                                 "text": False})
    assert reminder["subject"].startswith(f"Reminder from {tenant.name}")
    sms = await tenant.ok("GET", f"{path}?kind=sms_invitation&language=nl")
    assert sms["text"].startswith(f"{tenant.name}: kloppen uw gegevens nog? http")
    assert (sms["segments"], sms["encoding"]) == (1, "GSM-7")
    letter = await tenant.ok("GET", f"{path}?kind=letter&language=nl")
    # The opening is the client's; how to reach the page stays ours.
    [greeting, opening, how, *_] = letter["text"].split("\n\n")
    assert (greeting, opening) == ("Beste Alexandra Vandenberghe-Janssens,",
                                   "Beste klant, Email check gaat van start.")
    assert "QR-code" in how and letter["custom"] == {"subject": False, "text": True}

    assert "language" in field_errors(
        await tenant.ok("GET", f"{path}?kind=invitation&language=de", status=422))
    assert "kind" in field_errors(await tenant.ok("GET", f"{path}?kind=welcome", status=422))


async def test_the_confirmation_after_verification_is_in_the_clients_words(
        tenant: Tenant, http, mailbox, settings):
    """The thanks once verified, by email and (the mobile the only address verified) by SMS:
    the client's subject and text, the placeholders filled in, and a preview of it."""
    campaign = await tenant.create_campaign(
        languages=["nl"], default_language="nl", consents=[], send_confirmation=True,
        messages={"confirmation": {"nl": {
            "subject": "Dank je, {first_name}!",
            "text": "{client_name} heeft je gegevens <bevestigd>. Tot snel."}}})
    email = unique_email("thanked-worded")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": f"t-{uuid.uuid4().hex[:8]}",
                                                   "email": email, "first_name": "Eva",
                                                   "last_name": "Jansen"})
    [invitation] = await mailbox.wait_for(email)
    await complete(http, mailbox, tenant, enrolled["results"][0]["journey_id"],
                   mailbox.link(invitation), email)
    thanks = (await mailbox.wait_for(email, count=3))[-1]
    assert thanks.subject == "Dank je, Eva!"
    assert "Beste Eva Jansen," in thanks.text
    assert f"{tenant.name} heeft je gegevens <bevestigd>. Tot snel." in thanks.text
    assert "&lt;bevestigd&gt;" in thanks.html and "<bevestigd>" not in thanks.html
    preview = await tenant.ok(
        "GET", f"/v1/campaigns/{campaign['id']}/messages/preview?kind=confirmation")
    assert (preview["subject"], preview["custom"]) == ("Dank je, Alexandra!",
                                                      {"subject": True, "text": True})

    by_sms = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], send_confirmation=True,
        messages={"sms_confirmation": {"en": {"text": "Thanks {first_name}, all set!"}}})
    email, number = unique_email("thanked-sms"), mobile_number()
    await tenant.enrol(by_sms["id"], {"external_id": f"t-{uuid.uuid4().hex[:8]}",
                                       "email": email, "first_name": "Bo"})
    await verify_mobile(http, mailbox, settings, email, number)

    async def thanked():
        return [s for s in sms_to(settings, number) if "all set" in s["text"]]
    [sms] = await eventually(thanked, what="the confirmation SMS")
    assert sms["text"] == "Thanks Bo, all set!"
    preview = await tenant.ok("GET", f"/v1/campaigns/{by_sms['id']}/messages/preview"
                                     "?kind=sms_confirmation")
    assert preview["text"] == "Thanks Alexandra, all set!" and preview["segments"] == 1


async def test_confirmation_wording_needs_the_confirmation_sent(tenant: Tenant, sessions):
    """Wording of a thanks the campaign never sends would be read by nobody, while the client
    believes customers get it: refused, naming the wording, unless `send_confirmation` is on in
    the campaign as created or as merged, so one patch may switch it on and word it."""
    thanks = {"en": {"subject": "Thank you, {first_name}", "text": "All set."}}
    refused = await tenant.post("/v1/campaigns", {
        "name": "Silent thanks", "consents": [],
        "messages": {"confirmation": thanks, "sms_confirmation": {"en": {"text": "All set."}}}})
    assert refused.status_code == 422, refused.text
    errors = field_errors(refused.json())
    assert set(errors) == {"messages.confirmation", "messages.sms_confirmation"}, errors
    assert "send_confirmation" in errors["messages.confirmation"]

    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    path = f"/v1/campaigns/{campaign['id']}"
    answer = await tenant.ok("PATCH", path, {"messages": {"confirmation": thanks}}, status=422)
    assert set(field_errors(answer)) == {"messages.confirmation"}
    both = await tenant.ok("PATCH", path, {"send_confirmation": True,
                                           "messages": {"confirmation": thanks}})
    assert both["spec"]["messages"]["confirmation"] == thanks
    # Switching it off again takes the wording out in the same patch.
    answer = await tenant.ok("PATCH", path, {"send_confirmation": False}, status=422)
    assert set(field_errors(answer)) == {"messages.confirmation"}
    off = await tenant.ok("PATCH", path, {"send_confirmation": False,
                                          "messages": {"confirmation": None}})
    assert off["spec"]["send_confirmation"] is False and not off["spec"]["messages"]

    # A campaign stored so before this was refused keeps it through changes of other settings.
    async with sessions() as session, session.begin():
        stored = await session.get(Campaign, uuid.UUID(campaign["id"]))
        stored.spec = {**stored.spec, "messages": {"confirmation": thanks}}
    renamed = await tenant.ok("PATCH", path, {"name": "Renamed"})
    assert renamed["spec"]["messages"]["confirmation"] == thanks


async def test_the_mail_and_code_that_verify_what_was_entered_are_in_the_clients_words(
        tenant: Tenant, http, mailbox, settings):
    """A Dutch customer enters an address and a number: the mail asking to confirm the
    address has the client's subject and opening (escaped, the link still ours), the SMS the
    client's text with the code, which verifies the number; an English customer of the same
    campaign gets the built-in mail."""
    from tests.test_mobile_journey import wait_codes

    campaign = await tenant.create_campaign(
        collect=["email", "mobile"], consents=[], messages={
            "verification": {"nl": {
                "subject": "{client_name}: is dit uw adres?",
                "text": "Bevestig <dit adres> voor {campaign_name}, uiterlijk {expires_on}."}},
            "sms_code": {"nl": {"text": "{code} is uw code voor {client_name}; "
                                        "{valid_minutes} minuten geldig."}}})
    invited, typed, english = (unique_email(n) for n in ("worded-inv", "worded-typed",
                                                         "worded-en"))
    number = mobile_number()
    [dutch, _] = (await tenant.enrol(
        campaign["id"], {"external_id": f"nl-{uuid.uuid4().hex[:8]}", "first_name": "Ann",
                         "language": "nl", "email": invited},
        {"external_id": f"en-{uuid.uuid4().hex[:8]}", "language": "en", "email": english},
    ))["results"]
    customer = Customer(http)
    page = mailbox.link((await mailbox.wait_for(invited))[0])
    await customer.open(page)
    assert (await customer.submit(page, email=typed, mobile=number)).status_code == 200

    [verification] = await mailbox.wait_for(typed)
    assert verification.subject == f"{tenant.name}: is dit uw adres?"
    assert "Goedendag," in verification.text
    assert "Bevestig <dit adres> voor Email check, uiterlijk " in verification.text
    assert "&lt;dit adres&gt;" in verification.html and "<dit adres>" not in verification.html
    [code] = await wait_codes(settings, number, 1)
    [sms] = sms_to(settings, number)
    assert sms["text"] == f"{code} is uw code voor {tenant.name}; 10 minuten geldig."
    await customer.submit(page + "/code", code=code)
    assert "Uw mobiele nummer is bevestigd." in customer.page, customer.page
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(dutch["journey_id"], "verified")

    # Without wording in English: the built-in mail and SMS.
    page = mailbox.link((await mailbox.wait_for(english))[0])
    await customer.open(page)
    english_typed, english_number = unique_email("worded-en-typed"), mobile_number()
    await customer.submit(page, email=english_typed, mobile=english_number)
    [default] = await mailbox.wait_for(english_typed)
    assert default.subject == f"Confirm your email address for {tenant.name}"
    assert "Please confirm that this is your email address" in default.text
    [code] = await wait_codes(settings, english_number, 1)
    assert sms_to(settings, english_number)[0]["text"] == (
        f"{code} is your {tenant.name} verification code. It is valid for 10 minutes.")

    path = f"/v1/campaigns/{campaign['id']}/messages/preview"
    preview = await tenant.ok("GET", f"{path}?kind=verification&language=nl")
    assert preview["subject"] == f"{tenant.name}: is dit uw adres?"
    assert preview["custom"] == {"subject": True, "text": True}
    preview = await tenant.ok("GET", f"{path}?kind=sms_code&language=nl")
    assert preview["text"] == f"123456 is uw code voor {tenant.name}; 10 minuten geldig."
    assert (preview["segments"], preview["custom"]) == (1, {"text": True})
    preview = await tenant.ok("GET", f"{path}?kind=verification_reminder")
    assert preview["subject"] == f"Reminder: confirm your email address for {tenant.name}"
    # A data-collection campaign sends no re-consent invitation: nothing to preview.
    assert "reconsent_invitation" in field_errors(await tenant.ok(
        "GET", f"{path}?kind=reconsent_invitation", status=422))["kind"]


async def test_a_reconsent_campaign_asks_in_the_clients_words(tenant: Tenant, mailbox,
                                                               sessions):
    await tenant.ensure_purpose("data-processing", "data_processing")
    form = {"key": "gdpr", "purpose": "data-processing", "channel": "any", "mandatory": True,
            "texts": {"en": {"text": "We keep your name to serve you.", "version": "v-words"}}}
    campaign = await tenant.create_campaign(
        name="Privacy notice", kind="reconsent", languages=["en"], consents=[form],
        messages={"reconsent_invitation": {"en": {
            "subject": "{first_name}, our privacy notice changed",
            "text": "{client_name} keeps less of your data <from now on>. Agree by "
                    "{expires_on}?"}}})
    address = unique_email("reconsent-worded")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address,
                                        "first_name": "Lou"})
    [invitation] = await mailbox.wait_for(address)
    assert invitation.subject == "Lou, our privacy notice changed"
    assert f"{tenant.name} keeps less of your data <from now on>. Agree by " in invitation.text
    assert "&lt;from now on&gt;" in invitation.html and "Review the terms" in invitation.html
    assert mailbox.link(invitation)
    preview = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/messages/preview"
                                     "?kind=reconsent_reminder")
    assert (preview["subject"], preview["custom"]) == (
        f"Reminder from {tenant.name}: please review how we keep your data",
        {"subject": False, "text": False})

    # Changed like any campaign's (a re-consent campaign's settings are given back without
    # the data it may not ask for).
    changed = await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"messages": {
        "reconsent_reminder": {"en": {"subject": "Still there, {first_name}?"}}}})
    assert set(changed["spec"]["messages"]) == {"reconsent_invitation", "reconsent_reminder"}
    # Wording of messages a re-consent campaign never sends is refused, naming what it sends.
    refused = await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"messages": {
        "invitation": {"en": {"text": "Hello"}}}}, status=422)
    assert field_errors(refused) == {"messages.invitation": (
        "a reconsent campaign sends no invitation message; its kinds are reconsent_invitation, "
        "reconsent_reminder")}

    # One stored so before this was refused keeps it through changes of other settings.
    async with sessions() as session, session.begin():
        stored = await session.get(Campaign, uuid.UUID(campaign["id"]))
        stored.spec = {**stored.spec, "messages": {
            **stored.spec["messages"], "invitation": {"en": {"text": "Hello"}}}}
    renamed = await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"name": "Renamed"})
    assert renamed["spec"]["messages"]["invitation"] == {"en": {"text": "Hello"}}
    again = await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"messages": {
        "invitation": {"en": {"text": "Hello again"}}}}, status=422)
    assert set(field_errors(again)) == {"messages.invitation"}


async def test_verification_wording_the_client_cannot_send_is_refused(tenant: Tenant):
    await tenant.ensure_purpose("service-communication")
    base = {"name": "Wording", "languages": ["en", "nl"], "consents": [],
            "collect": ["email", "mobile"]}
    refused = await tenant.ok("POST", "/v1/campaigns", {**base, "messages": {
        "sms_code": {"en": {"text": "Your code is on its way"}, "nl": {"subject": "Code"}},
        # The typed address may be a stranger's: its mail names nobody.
        "verification": {"en": {"text": "Hello {first_name}, confirm please"}},
        "verification_reminder": {"nl": {"link": "https://elsewhere.example"}},
        "reconsent_invitation": {"en": {"text": "Agree?"}},
    }}, status=422)
    errors = field_errors(refused)
    assert set(errors) == {
        "messages.sms_code.en.text", "messages.sms_code.nl.subject",
        "messages.verification.en.text", "messages.verification_reminder.nl.link"}, errors
    assert "must hold {code}" in errors["messages.sms_code.en.text"]
    assert errors["messages.sms_code.nl.subject"] == (
        "the sms_code message has no subject; its parts are text")
    assert errors["messages.verification.en.text"] == (
        "unknown placeholder {first_name}; the verification message has only "
        "{client_name}, {campaign_name}, {expires_on}")
    assert "its parts are subject, text" in errors["messages.verification_reminder.nl.link"]
    # Judged with the campaign: this one sends no re-consent invitation.
    refused = await tenant.ok("POST", "/v1/campaigns", {**base, "messages": {
        "reconsent_invitation": {"en": {"text": "Agree?"}}}}, status=422)
    assert "sends no reconsent_invitation" in field_errors(refused)[
        "messages.reconsent_invitation"]
    too_long = await tenant.ok("POST", "/v1/campaigns", {**base, "messages": {"sms_code": {
        "en": {"text": "{code} " + "is the code you type on the page. " * 20}}}}, status=422)
    assert "at most 4 allowed" in field_errors(too_long)["messages.sms_code.en.text"]


async def test_code_sms_wording_is_measured_with_the_campaigns_code_validity(tenant: Tenant):
    """The code SMS says how many minutes its code is valid: up to 1440 (P1D), not the 10 of
    the default. Wording that fits only with fewer digits would go out in more segments."""
    def wording(padding: int) -> dict:
        return {"messages": {"sms_code": {"en": {
            "text": "Your code {code} is valid {valid_minutes} minutes." + "." * padding}}}}

    async def fits(campaign: dict, padding: int) -> bool:
        response = await tenant.http.patch(f"/v1/campaigns/{campaign['id']}",
                                           headers=tenant.auth, json=wording(padding))
        if response.status_code == 422:
            assert set(field_errors(response.json())) == {"messages.sms_code.en.text"}
        return response.status_code == 200

    minute, day = [await tenant.create_campaign(
        collect=["mobile"], consents=[], languages=["en"], verification={"code_ttl": ttl})
        for ttl in ("PT1M", "P1D")]
    # The longest wording the one-minute campaign takes: its code SMS fills every segment.
    fitting, too_long = 0, 1000
    assert await fits(minute, fitting) and not await fits(minute, too_long)
    while too_long - fitting > 1:
        middle = (fitting + too_long) // 2
        fitting, too_long = (middle, too_long) if await fits(minute, middle) else (
            fitting, middle)
    assert await fits(minute, fitting)
    preview = await tenant.ok("GET", f"/v1/campaigns/{minute['id']}/messages/preview"
                                     "?kind=sms_code")
    assert preview["text"].startswith("Your code 123456 is valid 1 minutes."), preview
    # With "1440" where "1" was, the same wording would not fit the other campaign's SMS.
    assert not await fits(day, fitting)
    assert await fits(day, fitting - 3)
