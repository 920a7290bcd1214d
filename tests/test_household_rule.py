"""An opt-in on an email address belongs to exactly one person of a client."""

from tests.helpers import Customer, eventually, unique_email
from tests.test_consent_ledger import link_to, send, setup_policies


async def claim(tenant, http, mailbox, address: str, external_id: str,
                consent: list[str], invited_at: str | None = None) -> tuple[dict, Customer]:
    """A person of the client, invited at another address unless told, enters `address` on
    their page and presses Confirm."""
    campaign = await tenant.create_campaign(languages=["en"])
    invite_to = invited_at or unique_email("invite")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": external_id, "email": invite_to})
    [invitation] = await mailbox.wait_for(invite_to)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), email=address, consent=consent)
    journey_id = enrolled["results"][0]["journey_id"]
    await tenant.wait_for_stage(journey_id, "verification_pending")
    verification = mailbox.to(address)[-1]
    await customer.open(mailbox.link(verification))
    await customer.submit(mailbox.link(verification))
    return enrolled["results"][0], customer


async def refused(tenant, enrolled: dict, customer) -> None:
    """The customer's confirmation was refused by the reject rule, and recorded so."""
    assert "already confirmed for another customer" in customer.page
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "verification_pending"
    assert journey["history"][-1]["type"] == "confirmation_refused"


async def test_reject_rule_keeps_the_address_with_its_first_owner(tenant, http, mailbox):
    await setup_policies(tenant)
    shared = unique_email("family")
    first, _ = await claim(tenant, http, mailbox, shared, "parent", ["terms", "newsletter"])
    await tenant.wait_for_stage(first["journey_id"], "verified")

    second, customer = await claim(tenant, http, mailbox, shared, "child", ["terms"])
    await refused(tenant, second, customer)
    prefs = (await tenant.get(f"/v1/contacts/{first['contact_id']}/preferences")).json()
    assert {(p["purpose"], p["granted"]) for p in prefs} >= {("newsletter", True)}

    # The client moves to the move rule; the same confirmation now goes through, and its
    # history and the funnel count it as verified.
    moved = await tenant.http.patch("/v1/settings", json={"household_rule": "move"},
                                    headers=tenant.auth)
    assert moved.status_code == 200, moved.text
    verification = mailbox.link(mailbox.to(shared)[-1])
    await customer.open(verification)
    await customer.submit(verification)
    journey = await tenant.wait_for_stage(second["journey_id"], "verified")
    assert [e["type"] for e in journey["history"]][-2:] == ["confirmation_refused", "verified"]
    funnel = (await tenant.get(f"/v1/campaigns/{journey['campaign_id']}/funnel")).json()
    assert funnel["total"]["verified"] == 1, funnel


async def test_the_rule_holds_for_the_address_in_another_letter_case(tenant, http, mailbox):
    """One mailbox in any letter case: confirmed as `Family-…` by one person and as
    `family-…` by another, both held it verified, the first keeping its opt-ins there."""
    await setup_policies(tenant)
    shared = unique_email("family")
    first, _ = await claim(tenant, http, mailbox, shared.capitalize(), "parent",
                           ["terms", "newsletter"])
    await tenant.wait_for_stage(first["journey_id"], "verified")

    second, customer = await claim(tenant, http, mailbox, shared, "child", ["terms"])
    await refused(tenant, second, customer)
    child = (await tenant.get(f"/v1/contacts/{second['contact_id']}")).json()
    assert not [p for p in child["contact_points"] if p["value"].lower() == shared]

    # Under the move rule the same confirmation takes the mailbox from its first owner.
    await tenant.ok("PATCH", "/v1/settings", {"household_rule": "move"})
    verification = mailbox.link(mailbox.to(shared)[-1])
    await customer.open(verification)
    await customer.submit(verification)
    await tenant.wait_for_stage(second["journey_id"], "verified")
    parent = (await tenant.get(f"/v1/contacts/{first['contact_id']}")).json()
    assert [p["verification_state"] for p in parent["contact_points"]
            if p["value"] == shared.capitalize()] == ["released"], parent["contact_points"]
    ledger = (await tenant.get(f"/v1/contacts/{first['contact_id']}/consents")).json()
    assert ("newsletter", False) in {(e["purpose"], e["granted"]) for e in ledger
                                     if e["source"] == "system"}


async def test_move_rule_gives_the_address_and_lapses_the_old_opt_ins(
    tenant, http, mailbox, webhook_receiver
):
    await setup_policies(tenant)
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    assert (await tenant.http.patch("/v1/settings", json={"household_rule": "move"},
                                    headers=tenant.auth)).json()["household_rule"] == "move"
    shared = unique_email("family")
    first, _ = await claim(tenant, http, mailbox, shared, "old-owner", ["terms", "newsletter"])
    await tenant.wait_for_stage(first["journey_id"], "verified")

    second, customer = await claim(tenant, http, mailbox, shared, "new-owner", ["terms"])
    assert "address is confirmed" in customer.page
    await tenant.wait_for_stage(second["journey_id"], "verified")

    ledger = (await tenant.get(f"/v1/contacts/{first['contact_id']}/consents")).json()
    lapsed = [e for e in ledger if e["source"] == "system"]
    assert {(e["purpose"], e["granted"]) for e in lapsed} == {
        ("newsletter", False), ("service-communication", False)}
    assert all(second["contact_id"] in e["actor"] for e in lapsed)
    async def lapse_events():
        found = [c for c in webhook_receiver.events(hook, "consent.changed")
                 if c.payload["data"]["consent"]["source"] == "system"]
        return found if len(found) == 2 else None
    changes = await eventually(lapse_events, what="lapsed opt-ins announced")
    assert {c.payload["data"]["contact"]["id"] for c in changes} == {first["contact_id"]}

    # Marketing to the old owner now finds no address of theirs.
    message = await send(tenant, first["contact_id"], "newsletter", "Hi")
    assert message["status"] == "suppressed"
    # Their invoice goes to the address they still have, not to the one that moved.
    invoice = await send(tenant, first["contact_id"], "invoice", "Invoice 7")
    assert invoice["status"] == "sent", invoice
    assert not [m for m in mailbox.to(shared) if m.subject == "Invoice 7"]


async def test_the_preference_centre_asks_only_about_channels_that_reach_the_contact(
    tenant, http, mailbox
):
    """An opt-in for a channel the contact cannot be reached on proves no consent: someone
    without a mobile number is not asked about SMS; and once their only address moved to
    another person, the preference link mailed there no longer opens their preferences."""
    await setup_policies(tenant)
    await tenant.ok("PATCH", "/v1/settings", {"household_rule": "move"})
    shared = unique_email("family")
    first, _ = await claim(tenant, http, mailbox, shared, "old-owner", ["terms"],
                           invited_at=shared)
    await tenant.wait_for_stage(first["journey_id"], "verified")
    preferences = link_to(mailbox.to(shared)[0], "/p/")

    async def newsletter_choices() -> list[tuple[str, bool]]:
        return [(p["channel"], p["granted"]) for p in (await tenant.get(
            f"/v1/contacts/{first['contact_id']}/preferences")).json()
            if p["purpose"] == "newsletter"]
    declined = await newsletter_choices()  # on the journey's page
    customer = Customer(http)
    await customer.open(preferences)
    assert 'value="newsletter:email"' in customer.page
    assert 'value="newsletter:sms"' not in customer.page
    # A form from elsewhere (or an old page) that ticks SMS anyway saves nothing.
    refused = await customer.submit(preferences, granted=["newsletter:email", "newsletter:sms"])
    assert refused.status_code == 422 and "no mobile number" in customer.page
    assert "preferences are saved" not in customer.page
    assert await newsletter_choices() == declined
    # The boxes show what the customer ticked, not the saved choices: only SMS to untick.
    assert all(f'value="newsletter:{c}" checked' in customer.page for c in ("email", "sms"))

    await customer.open(preferences)  # still open in a tab while the address moves
    second, _ = await claim(tenant, http, mailbox, shared, "new-owner", ["terms"])
    await tenant.wait_for_stage(second["journey_id"], "verified")
    lapsed = await newsletter_choices()
    # The mailbox is another person's now: the old owner's link there acts for no one.
    refused = await customer.submit(preferences, granted=["newsletter:email"])
    assert refused.status_code == 404
    assert await newsletter_choices() == lapsed
    assert (await customer.open(preferences)).status_code == 404
    assert "newsletter" not in customer.page

async def test_settings_validation(tenant):
    bad = await tenant.http.patch("/v1/settings", json={"household_rule": "share"},
                                  headers=tenant.auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "household_rule"
    # Null was taken as "left out", silently: each setting always has a value.
    for field in ("household_rule", "gdpr_consequence", "unverified_retention_days"):
        cleared = await tenant.http.patch("/v1/settings", json={field: None},
                                          headers=tenant.auth)
        assert cleared.status_code == 422, cleared.text
        assert cleared.json()["error"]["fields"] == [{"field": field, "message": (
            f"{field} always has a value: give one, or leave it out to keep it")}]
