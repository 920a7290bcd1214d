"""A contact's emails and mobiles as a client meets them over HTTP: one point per address in
any letter case, removing one, and which one a journey writes to."""

import uuid

from tests.helpers import Customer, unique_email
from tests.test_contact_import import finished, upload


def values(contact: dict) -> list[str]:
    return [p["value"] for p in contact["contact_points"]]


async def test_an_email_in_another_letter_case_is_the_same_point(tenant):
    """Mail providers treat the local part without regard to case: `Ann.Smit@` and
    `ann.smit@` are one mailbox, so one point, spelt as first given, wherever it comes from."""
    n = uuid.uuid4().hex[:8]
    first = f"Ann.Smit.{n}@Example.com"
    spelt = f"Ann.Smit.{n}@example.com"  # the domain is lower-cased, the local part kept
    created = await tenant.post("/v1/contacts", {
        "external_id": f"ann-{n}", "last_name": "Smit",
        "contact_points": [{"kind": "email", "value": first},
                           {"kind": "email", "value": first.lower()}]})
    assert created.status_code == 201, created.text
    contact = created.json()
    assert values(contact) == [spelt]

    added = await tenant.post(f"/v1/contacts/{contact['id']}/contact-points",
                              {"kind": "email", "value": first.upper()})
    assert added.status_code == 201, added.text
    assert values(added.json()) == [spelt]

    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.enrol(campaign["id"], {"external_id": f"ann-{n}", "email": first.swapcase()})

    import_file = (f"external_id,last_name,email\r\nann-{n},Smit,{first.lower()}\r\n").encode()
    job = await finished(tenant, (await upload(tenant, import_file))["id"])
    assert (job["failed"], job["unchanged"]) == (0, 1), job

    contact = (await tenant.get(f"/v1/contacts/{contact['id']}")).json()
    assert values(contact) == [spelt]
    audit = (await tenant.get(f"/v1/contacts/{contact['id']}/audit")).json()["items"]
    assert not [e for e in audit if "contact_points" in (e["detail"] or {}).get("changes", {})]


async def test_a_removed_point_is_written_to_no_more_and_kept_for_the_audit(tenant, mailbox):
    n = uuid.uuid4().hex[:8]
    kept, dropped = unique_email("kept"), unique_email("dropped")
    contact = (await tenant.post("/v1/contacts", {
        "external_id": f"rm-{n}", "last_name": "Smit",
        "contact_points": [{"kind": "email", "value": kept}]})).json()
    base = f"/v1/contacts/{contact['id']}"
    newer = (await tenant.post(f"{base}/contact-points", {"kind": "email", "value": dropped}))
    point = next(p for p in newer.json()["contact_points"] if p["value"] == dropped)

    removed = await tenant.http.delete(f"{base}/contact-points/{point['id']}",
                                       headers=tenant.auth)
    assert removed.status_code == 204, removed.text
    again = await tenant.http.delete(f"{base}/contact-points/{point['id']}", headers=tenant.auth)
    assert again.status_code == 204
    assert values((await tenant.get(base)).json()) == [kept]
    listed = (await tenant.get(base, include_removed_points="true")).json()["contact_points"]
    assert [(p["value"], p["removed_at"] is not None) for p in listed] == [
        (kept, False), (dropped, True)]
    audit = (await tenant.get(f"{base}/audit")).json()["items"]
    removals = [e["detail"]["changes"]["contact_points"] for e in audit
                if (e["detail"] or {}).get("changes", {}).get("contact_points", {}).get("new", {})
                and e["detail"]["changes"]["contact_points"]["new"].get("removed_at")]
    assert len(removals) == 1 and removals[0]["old"]["value"] == dropped
    unknown = await tenant.http.delete(f"{base}/contact-points/{uuid.uuid4()}",
                                       headers=tenant.auth)
    assert unknown.status_code == 404

    # The newer address would have had the invitation; removed, it gets nothing.
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.enrol(campaign["id"], {"external_id": f"rm-{n}"})
    await mailbox.wait_for(kept)
    assert mailbox.to(dropped) == []

    # Given again by the client, it is the contact's again, as first spelt.
    back = await tenant.post(f"{base}/contact-points", {"kind": "email",
                                                        "value": dropped.upper()})
    assert [(p["value"], p["removed_at"]) for p in back.json()["contact_points"]] == [
        (kept, None), (dropped, None)]


async def test_invitations_go_to_the_verified_address_before_a_newer_unverified_one(
    tenant, http, mailbox
):
    verified, newer = unique_email("verified"), unique_email("newer")
    first = await tenant.create_campaign(mode="verify_existing", languages=["en"], consents=[])
    enrolled = (await tenant.enrol(first["id"], {"external_id": verified,
                                                 "email": verified}))["results"][0]
    customer = Customer(http)
    page = mailbox.link((await mailbox.wait_for(verified))[0])
    await customer.open(page)
    await customer.submit(page, email=verified)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    base = f"/v1/contacts/{enrolled['contact_id']}"
    await tenant.ok("POST", f"{base}/contact-points", {"kind": "email", "value": newer}, 201)

    second = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.enrol(second["id"], {"external_id": verified})
    await mailbox.wait_for(verified, count=2)
    assert mailbox.to(newer) == []


async def test_an_enrolment_giving_a_removed_address_again_brings_it_back(tenant, mailbox):
    address = unique_email("back")
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                    "email": address}))["results"][0]
    await mailbox.wait_for(address)
    base = f"/v1/contacts/{enrolled['contact_id']}"
    [point] = (await tenant.get(base)).json()["contact_points"]
    await tenant.http.delete(f"{base}/contact-points/{point['id']}", headers=tenant.auth)

    other = await tenant.create_campaign(languages=["en"], consents=[])
    refused = await tenant.post(f"/v1/campaigns/{other['id']}/contacts",
                                {"contacts": [{"external_id": address}]})
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["results"][0]["errors"]] == ["email"]
    await tenant.enrol(other["id"], {"external_id": address, "email": address.upper()})
    await mailbox.wait_for(address, count=2)
    [back] = (await tenant.get(base)).json()["contact_points"]
    assert (back["id"], back["value"], back["removed_at"]) == (point["id"], address, None)


async def test_the_uniqueness_rule_follows_the_points_in_use(tenant):
    """Under a rule on the email, a contact is keyed by its first email in use: an address the
    client removed no longer makes the contact (another contact may have it), the next one
    does, and the last one the rule needs cannot be removed."""
    rule = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                   json={"person_rule": "email"})
    assert rule.status_code == 200, rule.text
    wrong, own = unique_email("wrong"), unique_email("own")
    ann = (await tenant.post("/v1/contacts", {"last_name": "Smit", "contact_points": [
        {"kind": "email", "value": wrong}, {"kind": "email", "value": own}]})).json()
    base = f"/v1/contacts/{ann['id']}"
    point = next(p for p in ann["contact_points"] if p["value"] == wrong)
    removed = await tenant.http.delete(f"{base}/contact-points/{point['id']}",
                                       headers=tenant.auth)
    assert removed.status_code == 204, removed.text

    # The wrong address was someone else's all along: they can be registered with it now.
    bob = await tenant.post("/v1/contacts", {"last_name": "Jansen", "contact_points": [
        {"kind": "email", "value": wrong}]})
    assert bob.status_code == 201, bob.text
    # And Ann is now known by her own: a second Ann with it is Ann.
    twin = await tenant.post("/v1/contacts", {"last_name": "Smit", "contact_points": [
        {"kind": "email", "value": own}]})
    assert twin.status_code == 409, twin.text
    assert twin.json()["error"]["existing_contact_id"] == ann["id"]

    last = next(p for p in ann["contact_points"] if p["value"] == own)
    refused = await tenant.http.delete(f"{base}/contact-points/{last['id']}",
                                       headers=tenant.auth)
    assert refused.status_code == 422, refused.text
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["email"]
    assert values((await tenant.get(base)).json()) == [own]


async def test_an_address_given_to_a_contact_that_another_is_keyed_by_is_refused(tenant):
    """A contact without an email (registered before the rule named it) given another
    contact's address would be that contact twice: refused on the API, by line in an import
    (the file's other rows land) and by item in an enrolment, and nothing of it is written."""
    n = uuid.uuid4().hex[:8]
    ann = (await tenant.post("/v1/contacts", {
        "external_id": f"ann-{n}", "last_name": "Smit",
        "contact_points": [{"kind": "mobile", "value": "+31612345678"}]})).json()
    rule = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                   json={"person_rule": "email"})
    assert rule.status_code == 200, rule.text
    taken = unique_email("taken")
    bob = (await tenant.post("/v1/contacts", {"last_name": "Jansen", "contact_points": [
        {"kind": "email", "value": taken}]})).json()

    added = await tenant.post(f"/v1/contacts/{ann['id']}/contact-points",
                              {"kind": "email", "value": taken})
    assert added.status_code == 409, added.text
    assert added.json()["error"]["existing_contact_id"] == bob["id"]

    other = unique_email("other")
    import_file = (f"external_id,last_name,email\r\nann-{n},Smits,{taken}\r\n"
                   f"new-{n},Visser,{other}\r\n").encode()
    job = await finished(tenant, (await upload(tenant, import_file))["id"])
    assert (job["created"], job["failed"]) == (1, 1), job
    errors = (await tenant.get(job["errors_url"])).text.splitlines()
    # Matched by its external_id and, by the address, by the rule: two contacts.
    assert errors[1] == "2,row,matches more than one existing contact", errors

    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": f"ann-{n}", "email": taken}]})
    assert enrolled.status_code == 422, enrolled.text
    result = enrolled.json()["results"][0]
    assert result["status"] == "rejected", result
    assert [e["field"] for e in result["errors"]] == ["email"]
    assert bob["id"] in result["errors"][0]["message"]

    contact = (await tenant.get(f"/v1/contacts/{ann['id']}",
                                include_removed_points="true")).json()
    assert values(contact) == ["+31612345678"]
    assert contact["last_name"] == "Smit"  # the refused line's other change is not written
