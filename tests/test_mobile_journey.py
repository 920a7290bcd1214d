"""Collecting a mobile number and verifying it with a one-time code from the SMS outbox."""

import asyncio
import csv
import io
import json
import re
import uuid
from datetime import datetime

from messaging.local_outbox import read_records
from tests.helpers import Customer, eventually, unique_email
from tests.histories import save_history


def codes_sent(settings, number: str) -> list[str]:
    """The codes in the SMS the local outbox adapter wrote for this number, oldest first."""
    found = []
    for path in sorted(settings.sms_outbox_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
        sms = json.loads(path.read_text())
        if sms["to"] == number:
            found.append(re.search(r"\b(\d{6})\b", sms["text"]).group(1))
    return found


async def start(tenant, mailbox, http, number_typed: str, **campaign):
    body = {"collect": ["mobile"], "languages": ["en", "nl"], "consents": [], **campaign}
    created = await tenant.create_campaign(**body)
    address = unique_email()
    enrolled = await tenant.enrol(created["id"], {"external_id": address, "email": address,
                                                  "language": "nl"})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert 'id="mobile"' in customer.page and 'id="email"' not in customer.page
    response = await customer.submit(page, mobile=number_typed)
    assert response.status_code == 200
    return enrolled["results"][0], customer, page


async def wait_codes(settings, number, count):
    async def probe():
        codes = codes_sent(settings, number)
        return codes if len(codes) >= count else None
    return await eventually(probe, what=f"{count} code(s) to {number}")


async def test_customer_verifies_a_dutch_mobile_with_the_code(
    tenant, http, mailbox, settings, webhook_receiver
):
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_verified"])
    number = "+3161234" + str(uuid_digits())
    national = "06 1234" + number[-4:]
    enrolled, customer, page = await start(tenant, mailbox, http, national)
    assert 'id="code"' in customer.page  # the page now asks for the code
    [code] = await wait_codes(settings, number, 1)
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "verification_pending"

    await customer.submit(page + "/code", code=code)
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    [event] = await webhook_receiver.wait_for(hook, "contact.data_verified")
    mobile = event.payload["data"]["mobile"]
    assert mobile["number"] == number and mobile["verified_via"] == "sms_code"
    assert "email" not in event.payload["data"]
    # The campaign's report has the number it collected, verified; no email was entered.
    report = await tenant.get(f"/v1/campaigns/{journey['campaign_id']}/report.csv")
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["mobile"], row["mobile_state"]) == (number, "verified")
    assert (row["email"], row["email_state"]) == ("", "")


async def test_wrong_code_five_times_locks_then_a_new_code_works(tenant, http, mailbox, settings):
    number = "+3162234" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number,
        verification={"code_resend_cooldown": "PT0S", "code_max_resends": 1})
    [code] = await wait_codes(settings, number, 1)
    wrong = "000000" if code != "000000" else "111111"
    # A typing slip is no guess: it costs none of the five tries, and is told as a slip.
    for slip in ("12345", "abc"):
        response = await customer.submit(page + "/code", code=slip)
        assert response.status_code == 422
        assert "Een code heeft 6 cijfers" in customer.page and "niet als poging" in customer.page
        assert "klopt niet" not in customer.page
    for tries_left in [4, 3, 2, 1]:
        response = await customer.submit(page + "/code", code=wrong)
        assert response.status_code == 422
        assert f"{tries_left}" in customer.page
        # Told beside the code, once: no summary of the form's fields (it had an empty one).
        assert "error-summary" not in customer.page
    # A whole SMS pasted fits the field.
    assert 'maxlength="500"' in customer.page
    await customer.submit(page + "/code", code=wrong)
    assert 'id="code-error"' in customer.page  # locked
    # Even the right code no longer works once locked.
    await customer.submit(page + "/code", code=code)
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "verification_pending"
    # Reopened, the page still offers the new code the journey will send.
    await customer.open(page)
    assert "Vraag hieronder een nieuwe code aan" in customer.page
    assert "/resend-code" in customer.page

    await customer.submit(page + "/resend-code")
    [_, fresh] = await wait_codes(settings, number, 2)
    await customer.submit(page + "/code", code=fresh)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_with_no_new_code_left_the_page_asks_for_the_number_again(
    tenant, http, mailbox, settings
):
    number = "+3162235" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number, verification={"code_max_resends": 0})
    [code] = await wait_codes(settings, number, 1)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        await customer.submit(page + "/code", code=wrong)
    # Locked, and no new code may be asked for: the page says the way on (in Dutch here) and
    # offers no button that could only answer "no more codes".
    assert "Vul hieronder opnieuw uw mobiele nummer in" in customer.page
    assert "/resend-code" not in customer.page
    # Seen again later, the page does not say "we sent a code" as if it still worked, nor
    # offers a new code the journey will not send: the number entered again is the way on.
    await customer.open(page)
    assert "kan niet meer worden gebruikt" in customer.page
    assert "Vul hieronder opnieuw uw mobiele nummer in" in customer.page
    assert "Vraag hieronder een nieuwe code aan" not in customer.page
    assert "/resend-code" not in customer.page
    response = await customer.submit(page, mobile=number)
    assert response.status_code == 200 and 'id="code"' in customer.page
    [_, fresh] = await wait_codes(settings, number, 2)
    await customer.submit(page + "/code", code=fresh)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_expired_code_and_resend_limits(tenant, http, mailbox, settings):
    number = "+3163234" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number,
        verification={"code_ttl": "PT1S", "code_resend_cooldown": "PT30S",
                      "code_max_resends": 1})
    [code] = await wait_codes(settings, number, 1)
    # The client sees the number entered and awaiting its code.
    journey = await tenant.journey(enrolled["journey_id"])
    assert (journey["pending_mobile"], journey["pending_email"]) == (number, None)
    import asyncio
    await asyncio.sleep(1.2)  # the code's validity is a campaign setting: one second here
    response = await customer.submit(page + "/code", code=code)
    assert response.status_code == 422 and 'id="code-error"' in customer.page
    await customer.submit(page + "/resend-code")
    assert "30" in customer.page or "29" in customer.page  # the cooldown is explained
    assert len(codes_sent(settings, number)) == 1


async def test_the_whole_sms_pasted_into_the_code_field_verifies(tenant, http, mailbox,
                                                                  settings):
    """The campaign's own wording puts words (and other numbers) before and after the code;
    the customer copies the whole SMS into the field, as phones without code autofill do.
    (Not the client's name: the tenant's random one may hold a six-digit number of its own.)"""
    number = "+3163237" + str(uuid_digits())
    enrolled, customer, page = await start(tenant, mailbox, http, number, messages={
        "sms_code": {"nl": {"text": "Uw code: {code}. Geldig {valid_minutes} minuten. "
                                    "Vragen? Bel 0800 1234."}}})
    await wait_codes(settings, number, 1)
    [sms] = [json.loads(p.read_text()) for p in settings.sms_outbox_dir.glob("*.json")
             if json.loads(p.read_text())["to"] == number]
    assert not sms["text"].startswith(codes_sent(settings, number)[0])
    await customer.submit(page + "/code", code=sms["text"])
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_a_long_resend_cooldown_is_told_in_minutes(tenant, http, mailbox, settings):
    """Asked for a new code at once under an hour's cooldown, the customer reads the wait in
    minutes, not "3600 seconds"."""
    number = "+3163236" + str(uuid_digits())
    _, customer, page = await start(tenant, mailbox, http, number,
                                    verification={"code_resend_cooldown": "PT1H"})
    await customer.submit(page + "/resend-code")
    assert "Wacht 60 minuten voordat u een nieuwe code aanvraagt." in customer.page
    assert "seconden" not in customer.page
    assert len(codes_sent(settings, number)) == 1


async def test_bad_mobile_numbers_get_a_field_error(tenant, http, mailbox):
    created = await tenant.create_campaign(collect=["email", "mobile"], languages=["en"],
                                           consents=[])
    address = unique_email()
    await tenant.enrol(created["id"], {"external_id": address, "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    for bad in ["12", "not a number", ""]:
        response = await customer.submit(page, email=address, mobile=bad)
        assert response.status_code == 422, bad
        assert 'id="mobile-error"' in customer.page
        # The example is one of the client's region (NL here), as its customers write it.
        assert "like 06 12345678 or +31 6 12345678" in customer.page
    # A landline is a real number: the page says what is wrong with it.
    for landline in ["020 123 4567", "+44 20 7946 0000"]:
        response = await customer.submit(page, email=address, mobile=landline)
        assert response.status_code == 422, landline
        assert "This number cannot receive text messages" in customer.page


def uuid_digits() -> str:
    import random
    return f"{random.randrange(10**4):04d}"


async def test_a_national_number_is_read_in_the_clients_region(tenant, http, mailbox, settings):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"default_region": "BE"})
    assert response.status_code == 200, response.text
    digits = str(uuid_digits())[-6:].rjust(6, "1")
    enrolled, customer, page = await start(tenant, mailbox, http, f"0470 {digits}")
    [code] = await wait_codes(settings, f"+32470{digits}", 1)
    await customer.submit(page + "/code", code=code)
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    assert journey["history"][-1]["type"] == "verified"


async def test_a_code_typed_when_none_was_sent_is_answered_at_once(
    tenant, http, mailbox, settings
):
    """Past the number's daily cap no code goes out; a code typed anyway is answered (expired,
    ask for a new one) instead of leaving the page waiting on the journey."""
    number = "+3163234" + str(uuid_digits())
    cap = settings.verification_messages_per_recipient_per_day
    for _ in range(cap):
        await start(tenant, mailbox, http, number)
    await wait_codes(settings, number, cap)
    enrolled, customer, page = await start(
        tenant, mailbox, http, number, verification={"code_resend_cooldown": "PT1S"})
    async def suppressed():
        journey = await tenant.journey(enrolled["journey_id"])
        return journey["history"][-1]["type"] == "code_suppressed" or None
    await eventually(suppressed, what="the code suppressed")

    # The page asks for the code as for any number; a code typed then must not hang.
    await customer.open(page)
    assert 'name="code"' in customer.page
    response = await asyncio.wait_for(customer.submit(page + "/code", code="123456"), 15)
    assert response.status_code == 422
    assert len(codes_sent(settings, number)) == cap
    # Asked for a new code, the page answers as for any number: the cap is nobody's business.
    await asyncio.sleep(1)
    await customer.submit(page + "/resend-code")
    assert "Er is een nieuwe code onderweg" in customer.page
    assert len(codes_sent(settings, number)) == cap


async def test_a_dead_code_with_no_new_one_allowed_today_is_told_as_it_is(
    tenant, http, mailbox, settings
):
    """The code out has expired and the number's daily cap keeps a new one back: the page
    says the old code is dead and no new one can be sent now, not that one is on its way."""
    number = "+3164234" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number,
        verification={"code_ttl": "PT1S", "code_resend_cooldown": "PT1S"})
    cap = settings.verification_messages_per_recipient_per_day
    for _ in range(cap - 1):
        await start(tenant, mailbox, http, number)
    await wait_codes(settings, number, cap)
    await asyncio.sleep(1.2)

    await customer.submit(page + "/resend-code")
    assert "kan niet meer worden gebruikt" in customer.page
    assert "Er kan nu geen nieuwe code naar dit nummer worden verstuurd" in customer.page
    assert "over 24 uur" in customer.page
    assert "onderweg" not in customer.page
    assert len(codes_sent(settings, number)) == cap
    assert (await tenant.journey(enrolled["journey_id"]))["history"][-1]["type"] == \
        "code_suppressed"


async def test_a_resend_the_daily_cap_refuses_leaves_the_valid_code_working(
    tenant, http, mailbox, settings, temporal_env, record_histories
):
    """"Send again" when the number has had its daily cap of codes: no new code goes out, the
    page says so (not that one is on its way), and the code out, still valid, is still the one
    that verifies the number."""
    number = "+3164334" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number, verification={"code_resend_cooldown": "PT1S"})
    [code] = await wait_codes(settings, number, 1)
    cap = settings.verification_messages_per_recipient_per_day
    for _ in range(cap - 1):
        await start(tenant, mailbox, http, number)
    await wait_codes(settings, number, cap)
    await asyncio.sleep(1.2)

    await customer.submit(page + "/resend-code")
    assert "onderweg" not in customer.page
    assert ("Er kan nu geen nieuwe code naar dit nummer worden verstuurd. De code die we hebben "
            "gestuurd is nog geldig") in customer.page
    assert "Over 24 uur kunt u opnieuw een nieuwe code aanvragen" in customer.page
    assert len(codes_sent(settings, number)) == cap
    assert (await tenant.journey(enrolled["journey_id"]))["history"][-1]["type"] == \
        "code_suppressed"
    await customer.open(page)
    assert "kan niet meer worden gebruikt" not in customer.page
    response = await customer.submit(page + "/code", code=code)
    assert response.status_code == 200, customer.page
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    await handle.result()
    if record_histories:
        await save_history(handle, "mobile_capped_resend_keeps_code")


async def test_the_right_code_for_a_number_kept_by_another_customer_says_so(
        tenant, http, mailbox, settings):
    """Under the reject rule a verified number stays with its first owner: the second
    customer's right code is answered honestly, not with the same page again."""
    assert (await tenant.http.patch("/v1/settings", json={"household_rule": "reject"},
                                    headers=tenant.auth)).status_code == 200
    number = "+3163234" + str(uuid_digits())
    owner, customer, page = await start(tenant, mailbox, http, number)
    [code] = await wait_codes(settings, number, 1)
    await customer.submit(page + "/code", code=code)
    await tenant.wait_for_stage(owner["journey_id"], "verified")

    second, customer, page = await start(tenant, mailbox, http, number)
    [_, code] = await wait_codes(settings, number, 2)
    response = await customer.submit(page + "/code", code=code)
    assert response.status_code == 409
    assert "al bevestigd voor een andere klant" in customer.page  # the page speaks Dutch
    assert (await tenant.journey(second["journey_id"]))["stage"] == "verification_pending"


async def test_the_same_number_again_keeps_the_code_out(
    tenant, http, mailbox, settings, webhook_receiver, temporal_env, record_histories
):
    """Posting the number again (the back button, an impatient second try) sends no new code:
    that would get round the cooldown and cap of "send again". The same data again is no new
    submission at all; a changed consent still is, and keeps the code too."""
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_collected", "consent.changed"])
    number = "+3164234" + str(uuid_digits())
    created = await tenant.create_campaign(collect=["mobile"], languages=["en"],
                                           verification={"code_max_resends": 1})
    address = unique_email()
    [enrolled] = (await tenant.enrol(created["id"], {"external_id": address,
                                                     "email": address}))["results"]
    customer = Customer(http)
    page = mailbox.link((await mailbox.wait_for(address))[0])
    await customer.open(page)
    await customer.submit(page, mobile=number, consent=["terms"])
    [code] = await wait_codes(settings, number, 1)
    await webhook_receiver.wait_for(hook, "contact.data_collected")
    [_, _] = await webhook_receiver.wait_for(hook, "consent.changed", count=2)

    # The same again, the number as the customer first typed it.
    response = await customer.submit(page, mobile=number, consent=["terms"])
    assert response.status_code == 200
    assert "We already sent a code to this number, so no new code was sent" in customer.page
    assert 'id="code"' in customer.page
    # Another consent decision is a new submission, for the same number written nationally.
    response = await customer.submit(page, mobile="06 4234" + number[-4:],
                                     consent=["terms", "newsletter"])
    assert response.status_code == 200
    assert "We already sent a code to this number, so no new code was sent" in customer.page
    # Endpoints get their events in order: the unchanged post raised none before these.
    await webhook_receiver.wait_for(hook, "consent.changed", count=4)
    collected = webhook_receiver.events(hook, "contact.data_collected")
    assert len(collected) == 2 and len(webhook_receiver.events(hook, "consent.changed")) == 4
    assert [c["granted"] for c in collected[1].payload["data"]["consents"]] == [True, True]

    # "Send again" is still held to its cooldown.
    await customer.submit(page + "/resend-code")
    assert "Please wait" in customer.page
    assert codes_sent(settings, number) == [code]
    await customer.submit(page + "/code", code=code)
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
    await handle.result()
    assert codes_sent(settings, number) == [code]
    if record_histories:
        await save_history(handle, "mobile_code_kept_on_resubmission")


async def email_and_mobile(tenant, mailbox, http) -> tuple[dict, Customer, str, str]:
    """A customer on the page of a campaign collecting email and mobile: (enrolment, the
    customer, the page's link, the address invited)."""
    created = await tenant.create_campaign(collect=["email", "mobile"], languages=["en"],
                                           consents=[])
    address = unique_email()
    [enrolled] = (await tenant.enrol(created["id"], {"external_id": address,
                                                     "email": address}))["results"]
    customer = Customer(http)
    page = mailbox.link((await mailbox.wait_for(address))[0])
    await customer.open(page)
    return enrolled, customer, page, address


async def test_a_number_confirmed_by_code_stays_confirmed_when_the_email_is_corrected(
    tenant, http, mailbox, settings
):
    """Email and mobile: after the right code the page shows the number (no need to type it
    again), and correcting the email with it sends no second code."""
    enrolled, customer, page, address = await email_and_mobile(tenant, mailbox, http)
    typo, right = unique_email("typo"), unique_email("right")
    number = "+3165234" + str(uuid_digits())
    await customer.submit(page, email=typo, mobile=number)
    [code] = await wait_codes(settings, number, 1)
    await customer.submit(page + "/code", code=code)
    assert 'id="code"' not in customer.page and "Check your inbox" in customer.page
    assert "Your mobile number is confirmed." in customer.page
    await customer.open(page)
    assert "Your mobile number is confirmed." in customer.page
    shown = re.search(r'name="mobile"[^>]*value="([^"]*)"', customer.page).group(1)
    assert shown.replace(" ", "") == "06" + number[4:]

    await customer.submit(page, email=right, mobile=shown)
    assert 'id="code"' not in customer.page and right in customer.page
    [verification] = await mailbox.wait_for(right)
    assert codes_sent(settings, number) == [code]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    points = {p["value"]: p for p in (
        await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).json()["contact_points"]}
    assert (points[number]["verification_state"], points[number]["verified_via"]) == (
        "verified", "sms_code")
    assert points[right]["verification_state"] == "verified"


async def test_a_number_confirmed_by_code_is_not_confirmed_again_by_a_later_submission(
    tenant, http, mailbox, settings, webhook_receiver
):
    """The email corrected after the right code: the number carried over stays verified as it
    was (its time, one `mobile_verified` in the history), and so the client is told."""
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_verified"])
    enrolled, customer, page, address = await email_and_mobile(tenant, mailbox, http)
    typo, right = unique_email("typo"), unique_email("right")
    number = "+3165634" + str(uuid_digits())

    async def number_verified_at() -> str:
        contact = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).json()
        [point] = [p for p in contact["contact_points"] if p["value"] == number]
        assert point["verification_state"] == "verified", point
        return point["verified_at"]

    await customer.submit(page, email=typo, mobile=number)
    [code] = await wait_codes(settings, number, 1)
    await customer.submit(page + "/code", code=code)
    confirmed_at = await number_verified_at()

    await customer.submit(page, email=right, mobile=number)
    [verification] = await mailbox.wait_for(right)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    journey = await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    assert [e["type"] for e in journey["history"]].count("mobile_verified") == 1, \
        journey["history"]
    assert await number_verified_at() == confirmed_at
    [verified] = await webhook_receiver.wait_for(hook, "contact.data_verified")
    mobile = verified.payload["data"]["mobile"]
    assert datetime.fromisoformat(mobile["verified_at"]) == datetime.fromisoformat(confirmed_at)


async def test_the_email_confirmed_first_sends_the_customer_back_for_the_code(
    tenant, http, mailbox, settings
):
    enrolled, customer, page, address = await email_and_mobile(tenant, mailbox, http)
    number = "+3165434" + str(uuid_digits())
    await customer.submit(page, email=address, mobile=number)
    [code] = await wait_codes(settings, number, 1)
    verification = mailbox.link((await mailbox.wait_for(address, count=2))[-1])
    await customer.open(verification)
    await customer.submit(verification)
    assert "Your email address is confirmed" in customer.page
    assert "enter the code we sent to your mobile number" in customer.page
    assert "nothing more to do" not in customer.page
    await customer.open(page)
    await customer.submit(page + "/code", code=code)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_the_page_says_when_the_code_out_is_dead_or_still_the_one_to_type(
    tenant, http, mailbox, settings
):
    number = "+3165334" + str(uuid_digits())
    enrolled, customer, page = await start(
        tenant, mailbox, http, number, languages=["en"],
        verification={"code_ttl": "PT2S", "code_resend_cooldown": "PT0S",
                      "code_max_resends": 1})
    [_] = await wait_codes(settings, number, 1)
    await asyncio.sleep(2.2)
    # Expired: not "we sent a code", and the way to a new one.
    await customer.open(page)
    assert "can no longer be used" in customer.page and "We sent a 6-digit" not in customer.page
    assert "Ask for a new code below." in customer.page and "/resend-code" in customer.page
    # The number again keeps the dead code (a new one is the button's): not "enter that code".
    await customer.submit(page, mobile=number)
    assert "Entering the number again sends no new code" in customer.page
    assert "Enter that code" not in customer.page
    assert len(codes_sent(settings, number)) == 1

    await customer.submit(page + "/resend-code")
    [_, fresh] = await wait_codes(settings, number, 2)
    assert "A new code is on its way." in customer.page and "We sent a 6-digit" in customer.page
    # At the cap with a code still valid: that code is the one to type, not the number again.
    await customer.submit(page + "/resend-code")
    assert "The code we sent is still valid" in customer.page
    assert "Enter your mobile number again" not in customer.page
    await customer.submit(page + "/code", code=fresh)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_values_verified_in_another_campaign_end_the_journey_awaiting_them_at_once(
    tenant, http, mailbox, settings, temporal_env, record_histories, webhook_receiver
):
    """Campaign B asked the contact to confirm an address and a number; he confirmed both in
    campaign A meanwhile. B, with no reminder due (a day away), takes both as verified at once:
    no reminder, no expiry, its own `contact.data_verified` saying when and how they were."""
    hook = await tenant.subscribe(webhook_receiver, ["contact.data_verified", "journey.expired"])
    invited_at, typed = unique_email("both"), unique_email("typed")
    number = "+3161434" + str(uuid_digits())
    contact = {"external_id": invited_at, "email": invited_at, "language": "en"}
    body = {"collect": ["email", "mobile"], "languages": ["en"], "consents": []}
    later = await tenant.create_campaign(**body, reminders={"interval": "P1D", "max_count": 1})
    [b] = (await tenant.enrol(later["id"], contact))["results"]
    [invitation] = await mailbox.wait_for(invited_at)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    response = await customer.submit(mailbox.link(invitation), email=typed, mobile=number)
    assert response.status_code == 200, customer.page
    assert (await tenant.journey(b["journey_id"]))["stage"] == "verification_pending"
    await mailbox.wait_for(typed)

    first = await tenant.create_campaign(**body)
    [a] = (await tenant.enrol(first["id"], contact))["results"]
    [_, invitation] = await mailbox.wait_for(invited_at, 2)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, email=typed, mobile=number)
    [*_, code] = await wait_codes(settings, number, 2)
    await customer.submit(page + "/code", code=code)
    # The number alone: B takes it, and still awaits the address.
    await eventually(lambda: _history_has(tenant, b["journey_id"], "mobile_verified"),
                     what="B's mobile_verified")
    assert (await tenant.journey(b["journey_id"]))["stage"] == "verification_pending"
    [_, verification] = await mailbox.wait_for(typed, 2)
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(a["journey_id"], "verified")

    journey = await tenant.wait_for_stage(b["journey_id"], "verified", timeout=10)
    history = [(e["type"], e["detail"]) for e in journey["history"]]
    assert [t for t, _ in history] == ["invitation_sent", "opened", "data_entered",
                                       "verification_sent", "code_sent", "mobile_verified",
                                       "verified"], history
    assert all(set(detail) == {"verified_before"} for _, detail in history[-2:]), history
    assert [m.subject.startswith("Reminder") for m in mailbox.to(typed)] == [False, False]
    assert len(codes_sent(settings, number)) == 2
    events = await webhook_receiver.wait_for(hook, "contact.data_verified", 2)
    by_journey = {e.payload["data"]["journey_id"]: e.payload["data"] for e in events}
    assert set(by_journey) == {a["journey_id"], b["journey_id"]}
    for kind in ("email", "mobile"):
        assert by_journey[b["journey_id"]][kind] == by_journey[a["journey_id"]][kind], kind
    report = await tenant.get(f"/v1/campaigns/{later['id']}/report.csv")
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["email"], row["email_state"]) == (typed, "verified")
    assert (row["mobile"], row["mobile_state"]) == (number, "verified")
    await asyncio.sleep(1)
    assert len(webhook_receiver.events(hook, "contact.data_verified")) == 2
    assert webhook_receiver.events(hook, "journey.expired") == []
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(journey["workflow_id"]),
                           "journey_values_verified_elsewhere_signalled")


async def _history_has(tenant, journey_id: str, event: str) -> bool | None:
    journey = await tenant.journey(journey_id)
    return any(e["type"] == event for e in journey["history"]) or None


async def test_the_page_tells_the_code_locked_by_the_tries_the_journey_allows(
        tenant, http, mailbox, settings):
    """The client lowers the campaign's wrong tries mid-journey: the running journey keeps the
    tries it started with, and its page says so, not that its code is locked."""
    number = "+3164334" + str(uuid_digits())
    enrolled, customer, page = await start(tenant, mailbox, http, number, languages=["en"],
                                           verification={"code_max_wrong_tries": 3})
    [code] = await wait_codes(settings, number, 1)
    await customer.submit(page + "/code", code="000000" if code != "000000" else "111111")
    assert "2" in customer.page  # tries left
    campaign_id = (await tenant.journey(enrolled["journey_id"]))["campaign_id"]
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}",
                    {"verification": {"code_max_wrong_tries": 1}})

    await customer.open(page)
    assert "We sent a 6-digit" in customer.page and "can no longer be used" not in customer.page
    await customer.submit(page + "/code", code=code)  # as the journey agrees
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")


async def test_a_code_sent_again_after_a_lost_answer_is_the_code_the_phone_got(
        tenant, settings, temporal_env, mailbox):
    """The SMS provider takes the code and sends it, but its answer comes after
    SMS_TIMEOUT_SECONDS: the send is retried with the same Idempotency-Key, which a provider
    that honours it answers as the first, sending nothing. The retry carried a new code, so the
    code on the customer's phone was refused."""
    import uuid

    from fastapi import FastAPI, Request, Response
    from pydantic import SecretStr

    from tests.helpers import AppServer, own_api
    from worker import running_worker

    requests: list[tuple[str, str]] = []
    handset: list[str] = []
    seen: dict[str, dict] = {}
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        body, key = await request.json(), request.headers["idempotency-key"]
        code = re.search(r"\b(\d{6})\b", body["text"]).group(1)
        requests.append((key, code))
        if key not in seen:
            seen[key] = {"id": f"p-{len(seen) + 1}"}
            handset.append(code)
            await asyncio.sleep(1.5)  # taken and sent; the answer is late
        return Response(json.dumps(seen[key]), 201, media_type="application/json")

    provider = AppServer(app=app)
    await provider.start()
    own = settings.model_copy(update={
        "temporal_task_queue": f"code-retry-{uuid.uuid4().hex[:6]}", "sms_adapter": "http",
        "sms_http_url": f"http://127.0.0.1:{provider.port}/sms",
        "sms_http_token": SecretStr("provider-token"), "sms_timeout_seconds": 0.5})
    try:
        async with own_api(own, tenant) as client, running_worker(temporal_env.client, own):
            created = await client.create_campaign(collect=["mobile"], languages=["en"],
                                                   consents=[])
            address = unique_email()
            enrolled = await client.enrol(created["id"], {"external_id": address,
                                                          "email": address})
            [invitation] = await mailbox.wait_for(address)
            customer = Customer(client.http)
            page = mailbox.link(invitation)
            await customer.open(page)
            await customer.submit(page, mobile="+3165334" + uuid_digits())
            assert 'id="code"' in customer.page
            # The page answered once the retry was taken: both requests are in.
            [(first_key, first), (again_key, again)] = requests
            assert first_key == again_key and again == first, requests
            [code] = handset
            await customer.submit(page + "/code", code=code)
            await client.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")
    finally:
        await provider.stop()


async def test_the_sms_sender_a_client_sets_is_trimmed_and_never_blank(
    tenant, http, mailbox, settings
):
    """Blanks, dots or dashes alone were taken as the sender id every SMS showed; blanks
    around one showed on the phone."""
    for blank in ("   ", " - "):
        refused = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                        json={"sms_sender": blank})
        assert refused.status_code == 422, blank
        assert refused.json()["error"]["fields"] == [
            {"field": "sms_sender", "message": "needs a letter or digit"}]
    saved = await tenant.ok("PUT", "/v1/branding", {"sms_sender": " Acme B.V. "})
    assert saved["branding"]["sms_sender"] == "Acme B.V."

    number = f"+3161{uuid.uuid4().int % 10**7:07d}"
    await start(tenant, mailbox, http, number)
    await wait_codes(settings, number, 1)
    [sms] = [r for r in read_records(settings.sms_outbox_dir) if r["to"] == number]
    assert sms["sender"] == "Acme B.V."
