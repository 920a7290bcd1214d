"""Erasure that sticks: after anonymisation or termination only a keyed digest of the email or
phone stays, and neither the client's import nor its API can bring the person back into
marketing. Only the customer's own opt-in can."""

import random
from datetime import UTC, datetime, timedelta

from tests.helpers import Customer
from tests.test_consent_ledger import send, setup_policies, verified_contact


def grant(source: str = "back_office", **extra) -> dict:
    return {"purpose": "newsletter", "channel": "email", "granted": True, "source": source,
            "given_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "legal_text": {"language": "en"}, **extra}


async def test_anonymised_address_stays_out_of_marketing_until_the_customer_opts_in(
    tenant, other_tenant, http, mailbox
):
    await setup_policies(tenant)
    first_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    mobile = f"+3162{random.randint(1000000, 9999999)}"
    added = await tenant.post(f"/v1/contacts/{first_id}/contact-points",
                              {"kind": "mobile", "value": mobile})
    assert added.status_code < 300, added.text
    assert (await send(tenant, first_id, "newsletter", "Before"))["status"] == "sent"
    assert (await tenant.post(f"/v1/contacts/{first_id}/anonymise", {})).status_code == 200

    # The list shows what and why, never the value.
    listed = await tenant.get("/v1/suppressions")
    assert listed.status_code == 200, listed.text
    assert sorted((s["kind"], s["reason"]) for s in listed.json()["items"]) == [
        ("email", "anonymised"), ("phone", "anonymised")]
    assert address not in listed.text and mobile not in listed.text
    # Someone who knows the address can ask (any case; a phone in national format).
    national = "0" + mobile.removeprefix("+31")
    check = (await tenant.post("/v1/suppressions/check",
                               {"email": address.upper(), "phone": national})).json()
    assert check["email"]["reason"] == check["phone"]["reason"] == "anonymised"
    other = await other_tenant.post("/v1/suppressions/check", {"email": address})
    assert other.status_code == 200 and other.json() == {"email": None, "phone": None}
    for bad, field in [({}, "email"), ({"email": "nope"}, "email"),
                       ({"phone": "12"}, "phone")]:
        refused = await tenant.post("/v1/suppressions/check", bad)
        assert refused.status_code == 422, refused.text
        assert field in [f["field"] for f in refused.json()["error"]["fields"]]

    # The client brings the person back: the record may exist, marked suppressed...
    again = await tenant.post("/v1/contacts", {
        "external_id": f"again-{address}", "last_name": "Again",
        "contact_points": [{"kind": "email", "value": address}]})
    assert again.status_code == 201, again.text
    back = again.json()
    [point] = back["contact_points"]
    assert point["suppressed"]["reason"] == "anonymised"
    # ...but the client's word cannot grant marketing again, by API or by import.
    path = f"/v1/contacts/{back['id']}/consents"
    refused = await tenant.post(path, {"changes": [grant()]})
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["error"]["fields"]
    assert problem["field"] == "changes[0].granted" and "anonymised" in problem["message"]
    assert address not in refused.text
    imported = (await tenant.post("/v1/consents/import", {"items": [
        grant("import", external_id=back["external_id"]),
        grant("import", external_id=back["external_id"], granted=False)]})).json()
    assert [r["status"] for r in imported["results"]] == ["rejected", "accepted"]
    assert imported["results"][0]["errors"][0]["field"] == "granted"

    # The customer walks a journey, ticks the newsletter and confirms: that lifts it.
    campaign = await tenant.create_campaign(languages=["en"])
    enrolled = await tenant.enrol(campaign["id"],
                                  {"external_id": back["external_id"], "email": address})
    # Invitation and verification of the first journey, the newsletter, now this invitation.
    invitation = (await mailbox.wait_for(address, count=4))[-1]
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, email=address, consent=["terms", "newsletter"])
    verification = (await mailbox.wait_for(address, count=5))[-1]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")
    assert (await send(tenant, back["id"], "newsletter", "Welcome back"))["status"] == "sent"


async def test_erasing_one_record_spares_the_address_another_record_holds(
    tenant, http, mailbox
):
    """Two records of the client share one address (a household, a second record). Erasing
    one erases nothing of the other: the address stays theirs, with their consents. Once the
    last record holding it is erased, the address is suppressed for good."""
    await setup_policies(tenant)
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "bo", "text": "Newsletter, please."})
    kept_id, address = await verified_contact(tenant, http, mailbox, ["terms"])
    now = datetime.now(UTC).isoformat()
    assert (await tenant.post(f"/v1/contacts/{kept_id}/consents",
                              {"changes": [grant(given_at=now)]})).status_code == 201
    gone = await tenant.post("/v1/contacts", {
        "external_id": f"gone-{address}", "last_name": "Gone",
        "contact_points": [{"kind": "email", "value": address.upper()}]})
    assert gone.status_code == 201, gone.text

    # The other person asks to be forgotten.
    deleted = await tenant.http.delete(f"/v1/contacts/{gone.json()['id']}", headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text
    check = (await tenant.post("/v1/suppressions/check", {"email": address})).json()
    assert check["email"] is None
    contact = (await tenant.get(f"/v1/contacts/{kept_id}")).json()
    assert [p["suppressed"] for p in contact["contact_points"]] == [None]
    assert (await send(tenant, kept_id, "newsletter", "Still here?"))["status"] == "sent"
    again = await tenant.post(f"/v1/contacts/{kept_id}/consents", {"changes": [grant()]})
    assert again.status_code == 201, again.text

    # The last record holding the address is erased: now it is suppressed, and a record the
    # client brings back with it cannot be granted marketing by the client's word.
    deleted = await tenant.http.delete(f"/v1/contacts/{kept_id}", headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text
    check = (await tenant.post("/v1/suppressions/check", {"email": address})).json()
    assert check["email"]["reason"] == "terminated"
    back = await tenant.post("/v1/contacts", {
        "external_id": f"back-{address}", "last_name": "Back",
        "contact_points": [{"kind": "email", "value": address}]})
    assert back.status_code == 201, back.text
    assert back.json()["contact_points"][0]["suppressed"]["reason"] == "terminated"
    refused = await tenant.post(f"/v1/contacts/{back.json()['id']}/consents",
                                {"changes": [grant()]})
    assert refused.status_code == 422 and "terminated" in refused.text, refused.text
    message = await send(tenant, back.json()["id"], "newsletter", "Back?")
    assert message["status"] == "suppressed", message
    invoice = await send(tenant, back.json()["id"], "invoice", "Invoice 7")
    assert invoice["status"] == "sent"


async def test_a_check_names_a_field_it_does_not_know(tenant):
    """A mobile number sent as `mobile` was ignored and the address alone answered, so the
    client took the number for not suppressed."""
    check = await tenant.post("/v1/suppressions/check",
                              {"email": "someone@example.com", "mobile": "+31612345678"})
    assert check.status_code == 422, check.text
    assert [f["field"] for f in check.json()["error"]["fields"]] == ["mobile"]
