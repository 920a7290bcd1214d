"""A contact's emails and mobiles as a client meets them over HTTP: one point per address in
any letter case, removing one, and which one a journey writes to."""

import uuid

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
