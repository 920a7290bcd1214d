"""A KYC SMS too long for us to send is our text's fault, never the customer's number's: the
operator's reason is shortened to fit, and what cannot fit even so is skipped, with the reason in
the profile's history, the number left deliverable."""

from datetime import UTC, datetime

from messaging.local_outbox import read_records
from messaging.sms_encoding import measure
from tests.helpers import eventually
from tests.test_kyc import define, new_contact, profile

# 140 characters with one typographic apostrophe (as pasted from a word processor): UCS-2.
REASON = ("We couldn’t read the photo of your ID card: the corners are cut off and the "
          "text is blurred. Please upload a new, sharp photo of both sides.")
LINK = "https://journeys.example.com/k/Xy3_kP9-qLm2Rt7Vw8Zb4Nc6Hd1Jf5GsXy3_kP9-qLm2Rt7"


def context(reason: str) -> dict:
    return {"client_name": "Acme Energie Nederland", "first_name": "Eva", "last_name": "Janssen",
            "profile_name": "Level 1", "state": "refuted", "reason": reason,
            "expires_at": None, "link": LINK,
            "link_expires_at": datetime(2026, 12, 24, tzinfo=UTC), "brand": None}


def test_a_reason_too_long_for_the_sms_is_cut_at_a_word_to_fit():
    from activities.kyc import fitting_sms
    text = fitting_sms("kyc_refuted", "en", context(REASON), 4)
    assert measure(text).segments <= 4, measure(text)
    assert LINK in text
    shortened = text.split("Reason: ", 1)[1].split("...", 1)[0]
    assert REASON.startswith(shortened) and len(shortened) > 40, text
    assert REASON[len(shortened)] == " ", "cut in the middle of a word"
    # What fits is left as it is.
    assert "No ID card yet." in fitting_sms("kyc_refuted", "en", context("No ID card yet."), 4)
    assert fitting_sms("kyc_refuted", "en", context(REASON), 10).count(REASON) == 1


async def mobile_point(tenant, contact_id: str) -> dict:
    record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
    return next(p for p in record["contact_points"] if p["kind"] == "mobile")


async def test_a_long_refute_reason_is_shortened_and_the_mobile_stays_deliverable(
        tenant, sessions, settings):
    await define(tenant, 1, [{"field": "last_name"}, {"field": "mobile"}])
    contact_id, mobile = await new_contact(sessions, tenant, mobile=True)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": REASON})
    assert refuted.status_code == 200, refuted.text

    async def outcome() -> list | None:
        history = (await profile(tenant, contact_id))["history"]
        return [e for e in history if e["type"].startswith("kyc_refuted_")] or None
    events = await eventually(outcome, what="the refute SMS's outcome")
    assert [e["type"] for e in events] == ["kyc_refuted_sent"], events
    [sms] = [r for r in read_records(settings.sms_outbox_dir)
             if r["to"] == mobile and "We couldn’t read the photo" in r["text"]]
    assert sms["segments"] <= settings.sms_max_segments and "..." in sms["text"], sms
    assert (await mobile_point(tenant, contact_id)).get("undeliverable") is None


async def test_a_kyc_sms_that_cannot_fit_is_skipped_without_blaming_the_number(
        tenant, sessions, settings):
    # A definition name of 200 characters outside GSM-7 (an emoji takes two UCS-2 units): the
    # assignment SMS cannot fit, and it has no reason to shorten.
    name = ("Identitätsprüfung 🔒🔒🔒 " * 10)[:200]
    created = await tenant.post("/v1/kyc/definitions", {
        "name": name, "level": 1, "rules": {"person": [{"field": "last_name"},
                                                       {"field": "mobile"}]}})
    assert created.status_code == 201, created.text
    contact_id, mobile = await new_contact(sessions, tenant, mobile=True)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200

    async def outcome() -> list | None:
        history = (await profile(tenant, contact_id))["history"]
        return [e for e in history if e["type"].startswith("kyc_assigned_")] or None
    [event] = await eventually(outcome, what="the assignment SMS's outcome")
    assert event["type"] == "kyc_assigned_skipped", event
    assert "segments" in event["detail"]["reason"] and event["detail"]["channel"] == "sms"
    assert (await mobile_point(tenant, contact_id)).get("undeliverable") is None
    assert [r for r in read_records(settings.sms_outbox_dir) if r["to"] == mobile] == []
    # The profile goes on, and a later message that fits reaches the number.
    await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "No ID card yet."})

    async def texted() -> list | None:
        return [r for r in read_records(settings.sms_outbox_dir)
                if r["to"] == mobile and "No ID card yet." in r["text"]] or None
    await eventually(texted, what="the refute SMS")
