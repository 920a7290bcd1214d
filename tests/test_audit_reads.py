"""GDPR's "who saw it" as a client's DPO reads it: reading the audit trail is itself a read of
the contacts on it, and a write that answers with personal data records the read as the
matching GET does."""

from tests.helpers import Customer, unique_email
from tests.test_kyc import IDENTITY, define, new_contact
from tests.test_payment_journey import claim

TRAIL = "/v1/contacts/{contact_id}/audit"
BY_ACTOR = "/v1/audit"


async def walk(tenant, path: str, **params) -> tuple[list[dict], int]:
    """Every page of a trail, one entry a page; the entries and the pages read."""
    items, cursor, pages = [], None, 0
    while True:
        page = (await tenant.get(path, **params, **({"cursor": cursor} if cursor else {})))
        assert page.status_code == 200, page.text
        pages += 1
        items += page.json()["items"]
        if (cursor := page.json()["next_cursor"]) is None:
            return items, pages
        assert pages < 100, "the walk does not end"


def vias(entries: list[dict]) -> list[str]:
    return [e["detail"]["via"] for e in entries
            if e["action"] == "read" and "via" in (e["detail"] or {})]


async def test_reading_the_audit_trail_is_audited(tenant):
    """The trail shows old and new values: each read of a page of it is recorded as a read of
    the contact, after the page, so a page never lists its own read and a walk page by page
    ends, however small the pages; the next walk lists the earlier one's reads."""
    created = await tenant.post("/v1/contacts", {"first_name": "Au", "last_name": "Dit"})
    contact_id = created.json()["id"]
    await tenant.ok("PATCH", f"/v1/contacts/{contact_id}", {"last_name": "Secretname"})
    path = TRAIL.format(contact_id=contact_id)

    first, pages = await walk(tenant, path, limit=1)
    assert [e["action"] for e in first] == ["create", "update"] and pages == 2
    assert first[1]["detail"]["changes"]["last_name"]["new"] == "Secretname"
    again = (await tenant.get(path, limit=1000)).json()
    assert again["items"][:2] == first and again["next_cursor"] is None
    # One read per page of the first walk, naming the route; this read is not on its page.
    assert vias(again["items"]) == [TRAIL] * 2
    assert {e["contact_id"] for e in again["items"]} == {contact_id}
    assert len((await tenant.get(path, limit=1000)).json()["items"]) == 5

    # What one key read or changed lists entries of contacts: a read of each of them.
    actor = first[0]["actor_id"]
    other = (await tenant.post("/v1/contacts", {"first_name": "Second"})).json()["id"]
    listed, _ = await walk(tenant, BY_ACTOR, actor_type="api_key", actor_id=actor, limit=1)
    assert {e["contact_id"] for e in listed} >= {contact_id, other}
    trail = (await tenant.get(path, limit=1000)).json()["items"]
    assert vias(trail)[-1] == BY_ACTOR
    assert vias((await tenant.get(TRAIL.format(contact_id=other))).json()["items"]) == [
        BY_ACTOR]
    # A cursor that is no entry id of this database is a field error.
    bad = await tenant.get(path, cursor="99999999999.1")
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"
    assert (await tenant.get(path, cursor="x")).status_code == 422


async def test_writes_that_answer_with_personal_data_record_the_read(tenant, http, mailbox,
                                                                     sessions):
    """A journey's cancel and payment-completed answer with what the customer typed and its
    history, KYC's assign, verify and refute with the profile's documents and history: each
    is in the contact's trail as a read naming the route, as the GET of the same is."""
    campaign = await tenant.create_campaign(payments=True)
    address, typed = unique_email("audited"), unique_email("typed")
    [r] = (await tenant.enrol(campaign["id"], {"external_id": "au-1", "email": address,
                                               "claim": claim(1)}))["results"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, email=typed, consent=["terms"])
    await tenant.wait_for_stage(r["journey_id"], "verification_pending")
    journey = f"/v1/journeys/{r['journey_id']}"
    paid = await tenant.post(f"{journey}/payment-completed", {})
    assert paid.status_code == 200 and typed in paid.text
    cancelled = await tenant.post(f"{journey}/cancel", {})
    assert cancelled.status_code in (200, 202) and typed in cancelled.text
    trail = (await tenant.get(TRAIL.format(contact_id=r["contact_id"]), limit=1000)).json()
    # (Waiting for the stage read the journey: GET /v1/journeys/{journey_id}.)
    assert [v for v in vias(trail["items"]) if v != "/v1/journeys/{journey_id}"] == [
        "/v1/journeys/{journey_id}/payment-completed", "/v1/journeys/{journey_id}/cancel"]

    await define(tenant, 1, IDENTITY)
    verified, _ = await new_contact(sessions, tenant)
    refuted, _ = await new_contact(sessions, tenant)
    kyc = "/v1/kyc/contacts/{contact_id}/"
    for contact_id, change, body in ((verified, "assign", {}), (verified, "verify", {}),
                                     (refuted, "assign", {}),
                                     (refuted, "refute", {"reason": "Unreadable."})):
        answer = await tenant.post(kyc.format(contact_id=contact_id) + change, body)
        assert answer.status_code == 200, (change, answer.text)
        assert answer.json()["history"] is not None
    for contact_id, changes in ((verified, ["assign", "verify"]),
                                (refuted, ["assign", "refute"])):
        trail = (await tenant.get(TRAIL.format(contact_id=contact_id), limit=1000)).json()
        assert vias(trail["items"]) == [f"/v1/kyc/contacts/{{contact_id}}/{c}" for c in changes]
