"""Verify-existing campaigns: the page shows what the client knows; kept unchanged on the
address the invitation reached, it is confirmed at once; a correction is verified like new
data."""

import csv
import io
import random
import re

from tests.helpers import Customer, on_the_page, unique_email


async def test_confirmed_as_known_or_corrected_and_verified(tenant, http, mailbox):
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"])
    known, old, new = unique_email("known"), unique_email("old"), unique_email("new")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": known, "email": known},
                                  {"external_id": old, "email": old})
    [kept, corrected] = enrolled["results"]

    # The details are right: one confirmation on the page is enough.
    [invitation] = await mailbox.wait_for(known)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert "Are they still right?" in customer.page and f'value="{known}"' in customer.page
    await customer.submit(page, email=known, consent=["terms"])
    assert "Thank you, your address is confirmed" in customer.page
    journey = await tenant.wait_for_stage(kept["journey_id"], "verified")
    assert [e["type"] for e in journey["history"]][-1] == "verified"
    assert len(mailbox.to(known)) == 1  # no verification mail was needed
    contact = (await tenant.get(f"/v1/contacts/{kept['contact_id']}")).json()
    [point] = contact["contact_points"]
    assert (point["value"], point["verification_state"], point["verified_via"]) == (
        known, "verified", "invitation_link")

    # The customer moved to another address: that one is verified like new data.
    [invitation] = await mailbox.wait_for(old)
    other = Customer(http)
    page = mailbox.link(invitation)
    await other.open(page)
    await other.submit(page, email=new, consent=["terms"])
    await tenant.wait_for_stage(corrected["journey_id"], "verification_pending")
    [verification] = await mailbox.wait_for(new)
    await other.open(mailbox.link(verification))
    await other.submit(mailbox.link(verification))
    await tenant.wait_for_stage(corrected["journey_id"], "verified")
    points = {p["value"]: p for p in (
        await tenant.get(f"/v1/contacts/{corrected['contact_id']}")).json()["contact_points"]}
    assert points[new]["verified_via"] == "email_link"
    assert points[old]["verification_state"] == "unverified"


async def test_the_known_address_is_shown_and_a_correction_lands_in_the_registry(
    tenant, http, mailbox
):
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "address"])
    address = unique_email("moved")
    created = await tenant.post("/v1/contacts", {
        "external_id": address, "first_name": "Mia",
        "contact_points": [{"kind": "email", "value": address}],
        "addresses": [{"type": "home", "line1": "Oudeweg 1", "postal_code": "1234 AB",
                       "city": "Utrecht", "country": "NL"}]})
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert 'value="Oudeweg 1"' in customer.page and 'value="Utrecht"' in customer.page

    # A blank street is refused inline, keeping what was typed.
    refused = await customer.submit(page, email=address, consent=["terms"], address_line1="",
                                    address_postal_code="2801 AA", address_city="Gouda",
                                    address_country="nl")
    assert refused.status_code == 422
    assert 'href="#address_line1"' in customer.page and 'value="Gouda"' in customer.page
    assert "Enter your street and house number." in customer.page
    # One too long is told so, not asked for as if it were left out.
    refused = await customer.submit(page, email=address, consent=["terms"],
                                    address_line1="Nieuweweg 2", address_postal_code="2801 AA",
                                    address_city="Gouda" * 30, address_country="nl")
    assert refused.status_code == 422
    assert "Enter a shorter town or city." in customer.page
    assert "Enter your town or city." not in customer.page
    await customer.submit(page, email=address, consent=["terms"], address_line1="Nieuweweg 2",
                          address_postal_code="2801 AA", address_city="Gouda",
                          address_country="nl")
    assert "Thank you, your details are confirmed" in customer.page  # email and address
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")

    contact = (await tenant.get(f"/v1/contacts/{contact_id}",
                                include_inactive_addresses="true")).json()
    lines = {(a["line1"], a["city"], a["country"], a["active"], a["primary"])
             for a in contact["addresses"]}
    assert lines == {("Oudeweg 1", "Utrecht", "NL", False, False),
                     ("Nieuweweg 2", "Gouda", "NL", True, True)}
    trail = (await tenant.get(f"/v1/contacts/{contact_id}/audit")).json()["items"]
    change = [e for e in trail if e["action"] == "update" and "addresses" in (
        e["detail"] or {}).get("changes", {})]
    assert change and change[0]["actor_type"] == "customer"


async def test_a_correction_of_address_line_2_lands_in_the_registry_and_the_report(
    tenant, http, mailbox
):
    """The page shows the known second address line beside the others; a correction of it
    alone is a correction, kept in the registry and reported in the campaign report."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "address"])
    email = unique_email("floor")
    created = await tenant.post("/v1/contacts", {
        "external_id": email, "first_name": "Ada",
        "contact_points": [{"kind": "email", "value": email}],
        "addresses": [{"type": "home", "line1": "Oudeweg 1", "line2": "2nd floor",
                       "postal_code": "1234 AB", "city": "Utrecht", "country": "NL"}]})
    assert created.status_code == 201, created.text
    enrolled = await tenant.enrol(campaign["id"], {"external_id": email})
    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert 'name="address_line2"' in customer.page and 'value="2nd floor"' in customer.page

    too_long = await customer.submit(
        page, email=email, consent=["terms"], address_line1="Oudeweg 1",
        address_line2="x" * 301, address_postal_code="1234 AB", address_city="Utrecht",
        address_country="NL")
    assert too_long.status_code == 422 and 'href="#address_line2"' in customer.page
    await customer.submit(page, email=email, consent=["terms"], address_line1="Oudeweg 1",
                          address_line2="3rd floor", address_postal_code="1234 AB",
                          address_city="Utrecht", address_country="NL")
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "verified")

    contact = (await tenant.get(f"/v1/contacts/{created.json()['id']}",
                                include_inactive_addresses="true")).json()
    assert {(a["line2"], a["active"]) for a in contact["addresses"]} == {
        ("2nd floor", False), ("3rd floor", True)}
    base = f"/v1/campaigns/{campaign['id']}"
    [row] = list(csv.DictReader(io.StringIO((await tenant.get(f"{base}/report.csv")).text)))
    assert (row["address.line1"], row["address.line2"]) == ("Oudeweg 1", "3rd floor")
    [entry] = (await tenant.get(f"{base}/report.json")).json()["rows"]
    assert entry["address"]["line2"] == "3rd floor"


async def test_the_page_asks_for_the_region_where_the_address_has_one_and_keeps_it(
    tenant, http, mailbox
):
    """A US address names its state: the page shows it beside the other parts; a corrected
    street keeps it in the registry, also when posted by a page opened before it asked for the
    region. A Dutch address has none to ask."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "address"])
    pages = {}
    for country, region in (("US", "IL"), ("NL", None)):
        email = unique_email(f"region-{country}")
        created = await tenant.post("/v1/contacts", {
            "external_id": email, "first_name": "Ada",
            "contact_points": [{"kind": "email", "value": email}],
            "addresses": [{"type": "home", "line1": "1 Main St", "postal_code": "62701",
                           "city": "Springfield", "region": region, "country": country}]})
        assert created.status_code == 201, created.text
        enrolled = await tenant.enrol(campaign["id"], {"external_id": email})
        [invitation] = await mailbox.wait_for(email)
        customer = Customer(http)
        await customer.open(mailbox.link(invitation))
        pages[country] = (customer, mailbox.link(invitation), email, created.json()["id"],
                          enrolled["results"][0]["journey_id"])
    assert 'name="address_region"' not in pages["NL"][0].page
    customer, page, email, contact_id, journey_id = pages["US"]
    assert 'name="address_region"' in customer.page and 'value="IL"' in customer.page
    assert "State, province or region" in customer.page

    await customer.submit(page, email=email, consent=["terms"], address_line1="2 Main St",
                          address_postal_code="62701", address_city="Springfield",
                          address_country="US")
    await tenant.wait_for_stage(journey_id, "verified")
    [active] = (await tenant.ok("GET", f"/v1/contacts/{contact_id}"))["addresses"]
    assert (active["line1"], active["region"]) == ("2 Main St", "IL")


async def test_the_profile_meter_counts_what_the_customer_confirmed_not_what_is_known(
    tenant, http, mailbox
):
    """The known email and address are shown to be confirmed: until the customer has, they
    are in question and do not fill the meter (the name, not asked about, does)."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "address"])
    email, corrected = unique_email("meter"), unique_email("meter-new")
    created = await tenant.post("/v1/contacts", {
        "external_id": email, "first_name": "Ada",
        "contact_points": [{"kind": "email", "value": email}],
        "addresses": [{"type": "home", "line1": "Oudeweg 1", "city": "Utrecht",
                       "country": "NL"}]})
    assert created.status_code == 201, created.text
    await tenant.enrol(campaign["id"], {"external_id": email})
    [invitation] = await mailbox.wait_for(email)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    assert "Your profile is 25% complete" in customer.page
    # Confirmed the address, corrected the email (its link awaited): both count.
    await customer.submit(page, email=corrected, consent=["terms"], address_line1="Oudeweg 1",
                          address_city="Utrecht", address_country="NL")
    assert "Check your inbox" in customer.page
    assert "Your profile is 75% complete" in customer.page


async def test_the_known_address_in_other_letter_case_is_kept_not_corrected(
    tenant, http, mailbox
):
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"])
    known = unique_email("case")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, known)
    # The registry tells contacts apart by email regardless of case: the same address.
    local, _, domain = known.partition("@")
    await customer.submit(page, email=f"{local.capitalize()}@{domain.upper()}", consent=["terms"])
    assert "Thank you, your address is confirmed" in customer.page
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    assert len(mailbox.to(known)) == 1  # no verification mail
    [point] = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).json()[
        "contact_points"]
    assert (point["value"], point["verification_state"], point["verified_via"]) == (
        known, "verified", "invitation_link")


async def test_the_email_confirmed_at_once_is_told_while_the_new_number_awaits_its_code(
    tenant, http, mailbox
):
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "mobile"], consents=[])
    known = unique_email("kept")
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, known)
    await customer.submit(page, email=known, mobile=f"06 1234 {random.randrange(10**4):04d}")
    assert 'id="code"' in customer.page
    assert "Your email address is confirmed." in customer.page
    assert "Your mobile number is confirmed." not in customer.page


async def test_a_page_opened_through_another_link_proves_no_address(tenant, http, mailbox):
    """The invitation went to a wrong address in the client's records (a stranger's, who
    ignores it); the real customer opens the page from the client's printed link and keeps the
    address shown: that proves nothing about that mailbox, which is verified like new data."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"], consents=[])
    stranger = unique_email("stranger")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": stranger,
                                                     "email": stranger}))["results"]
    await mailbox.wait_for(stranger)
    printed = await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/enrichment-link",
                               format="json")
    assert printed.json()["journey_id"] == enrolled["journey_id"]
    page = printed.json()["url"].removeprefix("http://testserver")
    customer = Customer(http)
    await customer.open(page)
    await customer.submit(page, email=stranger)
    await tenant.wait_for_stage(enrolled["journey_id"], "verification_pending")
    [point] = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}")).json()[
        "contact_points"]
    assert point["verification_state"] != "verified"
    # The verification goes to that mailbox, as for a correction.
    assert len(await mailbox.wait_for(stranger, count=2)) == 2


async def removed_after_invitation(tenant, mailbox, campaign: dict, **extra) -> tuple[dict, str,
                                                                                   str]:
    """A contact invited at a wrong address (a stranger's), which the client then removed and
    replaced: (the contact, the stranger's address, the invitation)."""
    wrong, right = unique_email("stranger"), unique_email("right")
    created = await tenant.post("/v1/contacts", {
        "external_id": wrong, "first_name": "Mia", "last_name": "Jansen",
        "contact_points": [{"kind": "email", "value": wrong}], **extra})
    assert created.status_code == 201, created.text
    contact = created.json()
    await tenant.enrol(campaign["id"], {"external_id": wrong})
    [invitation] = await mailbox.wait_for(wrong)
    [point] = [p for p in contact["contact_points"] if p["kind"] == "email"]
    removed = await tenant.http.delete(
        f"/v1/contacts/{contact['id']}/contact-points/{point['id']}", headers=tenant.auth)
    assert removed.status_code == 204, removed.text
    await tenant.ok("POST", f"/v1/contacts/{contact['id']}/contact-points",
                    {"kind": "email", "value": right}, 201)
    return contact, wrong, invitation


async def test_links_to_an_address_the_client_removed_no_longer_act_for_the_contact(
        tenant, http, mailbox):
    """The stranger's invitation showed the contact's new address and street, and keeping
    their own address verified it again, sending the contact's mail back to them."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            consents=[], collect=["email", "address"])
    contact, wrong, invitation = await removed_after_invitation(
        tenant, mailbox, campaign, addresses=[{
            "type": "home", "line1": "Geheimweg 7", "postal_code": "1234 AB",
            "city": "Utrecht", "country": "NL"}])
    stranger = Customer(http)
    opened = await stranger.open(mailbox.link(invitation))
    assert opened.status_code == 404
    assert "Geheimweg" not in stranger.page and "Jansen" not in stranger.page
    points = (await tenant.get(f"/v1/contacts/{contact['id']}",
                               include_removed_points="true")).json()["contact_points"]
    assert [p["verification_state"] for p in points if p["value"] == wrong] == ["unverified"]


async def test_a_preference_link_to_an_address_the_client_removed_changes_nothing(
        tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["en"])
    contact, wrong, invitation = await removed_after_invitation(tenant, mailbox, campaign)
    [preferences] = re.findall(r"http://testserver(/p/[A-Za-z0-9_\-]+)", invitation.text)
    stranger = Customer(http)
    assert (await stranger.open(preferences)).status_code == 404
    assert "Mia" not in stranger.page
    granted = [p for p in (await tenant.get(f"/v1/contacts/{contact['id']}/preferences")
                           ).json() if p["granted"]]
    assert granted == []


async def test_a_contact_the_client_knows_no_email_or_mobile_of_is_asked_for_them(
        tenant, http, mailbox):
    """Reached by letter, a contact with neither email nor mobile on file finds empty fields:
    the page asks for them as a collecting page does, not whether they are "still right"."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "mobile"], consents=[],
                                            channel_plan=[{"channel": "letter"}])
    created = await tenant.post("/v1/contacts", {
        "external_id": unique_email("letter-only"), "first_name": "Ada",
        "addresses": [{"type": "home", "primary": True, "line1": "Oudeweg 1",
                       "postal_code": "1234 AB", "city": "Utrecht", "country": "NL"}]})
    assert created.status_code == 201, created.text
    contact = created.json()
    await tenant.enrol(campaign["id"], {"external_id": contact["external_id"]})
    printed = await tenant.get(f"/v1/contacts/{contact['id']}/enrichment-link",
                               format="json", campaign_id=campaign["id"])
    page = printed.json()["url"].removeprefix("http://testserver")
    customer = Customer(http)
    await customer.open(page)
    assert 'id="email"' in customer.page and 'id="mobile"' in customer.page
    assert "Are they still right?" not in customer.page
    assert "Confirm these details" not in customer.page
    assert "asks you to confirm how to reach you" in customer.page
    # A contact with a known mobile is asked about it, beside the email it lacks.
    known = await tenant.post("/v1/contacts", {
        "external_id": unique_email("mobile-only"), "first_name": "Bo",
        "contact_points": [{"kind": "mobile", "value": f"+31612{random.randrange(10**6):06d}"}],
        "addresses": [{"type": "home", "primary": True, "line1": "Oudeweg 2",
                       "postal_code": "1234 AB", "city": "Utrecht", "country": "NL"}]})
    assert known.status_code == 201, known.text
    await tenant.enrol(campaign["id"], {"external_id": known.json()["external_id"]})
    printed = await tenant.get(f"/v1/contacts/{known.json()['id']}/enrichment-link",
                               format="json", campaign_id=campaign["id"])
    await customer.open(printed.json()["url"].removeprefix("http://testserver"))
    assert "Are they still right?" in customer.page and "Confirm these details" in customer.page


async def test_a_kept_address_the_household_rule_keeps_with_another_is_told_on_the_page(
        tenant, http, mailbox):
    """Two contacts of the client share a mailbox, one of them verified it; under the reject
    rule the other, invited there, keeps it on the page: the page says it was not confirmed
    and why, instead of showing the same form again as if nothing was pressed."""
    await tenant.ok("PATCH", "/v1/settings", {"household_rule": "reject"})
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            consents=[])
    shared = unique_email("household")
    first, owner, page = await on_the_page(tenant, http, mailbox, campaign, shared)
    await owner.submit(page, email=shared)
    await tenant.wait_for_stage(first["journey_id"], "verified")
    created = await tenant.post("/v1/contacts", {
        "external_id": f"partner-{shared}", "first_name": "Bo",
        "contact_points": [{"kind": "email", "value": shared}]})
    assert created.status_code == 201, created.text
    [second] = (await tenant.enrol(campaign["id"], {"external_id": f"partner-{shared}"})
                )["results"]
    invitation = (await mailbox.wait_for(shared, count=2))[-1]
    partner = Customer(http)
    page = mailbox.link(invitation)
    await partner.open(page)
    response = await partner.submit(page, email=shared)
    assert response.status_code == 409
    assert "This address was not confirmed: it is already confirmed for another customer" \
        in partner.page
    assert 'id="email-error"' in partner.page and 'href="#email"' in partner.page
    journey = await tenant.journey(second["journey_id"])
    assert journey["stage"] != "verified"
    assert journey["history"][-1]["type"] == "confirmation_refused"


async def test_a_customer_moving_abroad_does_not_take_the_old_state_along(tenant, http, mailbox):
    """The page shows the known US address with its state filled in; the customer moved to
    the Netherlands and corrects street, town and country, leaving the state field as it was:
    the new address has no state. Typed anew beside another country, a region is kept."""
    campaign = await tenant.create_campaign(mode="verify_existing", languages=["en"],
                                            collect=["email", "address"], consents=[])
    moved = {"address_line1": "Oudeweg 1", "address_postal_code": "1234 AB",
             "address_city": "Utrecht"}
    for region, country, kept in (("IL", "NL", None), ("ON", "CA", "ON")):
        email = unique_email("abroad")
        created = await tenant.post("/v1/contacts", {
            "external_id": email, "first_name": "Ada",
            "contact_points": [{"kind": "email", "value": email}],
            "addresses": [{"type": "home", "line1": "1 Main St", "postal_code": "62701",
                           "city": "Springfield", "region": "IL", "country": "US"}]})
        assert created.status_code == 201, created.text
        enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, email)
        assert 'value="IL"' in customer.page
        await customer.submit(page, email=email, **moved, address_region=region,
                              address_country=country.lower())
        await tenant.wait_for_stage(enrolled["journey_id"], "verified")
        [active] = (await tenant.ok("GET", f"/v1/contacts/{created.json()['id']}"))["addresses"]
        assert (active["city"], active["country"], active["region"]) == ("Utrecht", country, kept)
