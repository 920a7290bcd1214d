"""The contact registry over HTTP as a client uses it: uniqueness (also under concurrency),
validation, addresses, identification media, search, audit trail, tenant isolation."""

import asyncio
import base64
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from db.models import ApiKey
from db.session import transaction
from tests.helpers import eventually, mark_bounced, worker_schedules
from tests.test_lost_journeys import entered
from tests.test_contact_import import finished, upload
from worker import ensure_schedules
from workflows.contact_anonymisation import SCHEDULE_ID

RULE = "(last_name AND id_number) OR ssn"


def person(**overrides):
    n = uuid.uuid4().hex[:8]
    return {"first_name": "Ann", "last_name": f"Vries-{n}", "id_number": f"ID{n}",
            "ssn": f"SSN{n}", **overrides}


async def set_rule(tenant, **more):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"person_rule": RULE, **more})
    assert response.status_code == 200, response.text
    return response.json()


async def create(tenant, body, status=201):
    response = await tenant.post("/v1/contacts", body)
    assert response.status_code == status, response.text
    return response.json()


async def test_simultaneous_creates_of_one_person_make_one_contact(tenant):
    await set_rule(tenant)
    same = person()
    responses = await asyncio.gather(*(tenant.post("/v1/contacts", same) for _ in range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7, [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409:
            error = r.json()["error"]
            assert error["code"] == "duplicate_contact"
            assert error["existing_contact_id"] == winner["id"]
    found = (await tenant.get("/v1/contacts", q=same["last_name"])).json()
    assert [c["id"] for c in found["items"]] == [winner["id"]]

    # Either alternative of the rule identifies the person, whatever the spelling.
    by_ssn = await create(tenant, person(ssn=same["ssn"].lower()), status=409)
    assert by_ssn["error"]["existing_contact_id"] == winner["id"]
    by_name = await create(tenant, person(last_name=same["last_name"].upper(),
                                          id_number=same["id_number"]), status=409)
    assert by_name["error"]["existing_contact_id"] == winner["id"]
    # Updates are held to the same rule.
    other = await create(tenant, person())
    clash = await tenant.http.patch(f"/v1/contacts/{other['id']}", headers=tenant.auth,
                                    json={"ssn": same["ssn"]})
    assert clash.status_code == 409 and clash.json()["error"]["existing_contact_id"] == winner["id"]


async def test_a_contact_created_again_with_its_idempotency_key_is_the_first_answer(
        tenant, other_tenant):
    """A client that lost the answer to a create sends it again: it gets the contact it made,
    not a second one nor a 409 naming its own contact; sent several times at once too."""
    await set_rule(tenant)
    ann = {**person(), "external_id": f"crm-{uuid.uuid4().hex[:8]}"}
    key = f"create-{uuid.uuid4().hex[:8]}"

    async def create_with(as_, body, key=key):
        return await as_.http.post("/v1/contacts", json=body, headers={
            **as_.auth, "Idempotency-Key": key})

    first = await create_with(tenant, ann)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers, first.text
    # Changed since: the retry is answered as the first request was, not with the change.
    await tenant.ok("PATCH", f"/v1/contacts/{first.json()['id']}", {"first_name": "Anna"})
    again = await create_with(tenant, ann)
    assert again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    # The same contact spelt otherwise (a default written out) is the same request.
    assert (await create_with(tenant, {**ann, "kind": "person"})).json() == first.json()
    found = (await tenant.get("/v1/contacts", q=ann["last_name"])).json()["items"]
    assert [c["id"] for c in found] == [first.json()["id"]]

    bob = {**person(first_name="Bob"), "external_id": f"crm-{uuid.uuid4().hex[:8]}"}
    at_once = await asyncio.gather(*(create_with(tenant, bob, key=f"{key}-b") for _ in range(4)))
    assert [a.status_code for a in at_once] == [201] * 4, [a.text for a in at_once]
    assert len({a.text for a in at_once}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in at_once) == 3

    # Another contact with the key is the client's bug, not a retry to answer as the first.
    other = await create_with(tenant, person())
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["message"]
    # Keys are the client's own and the route's: another client's same key, and the key on
    # another route, are requests of their own.
    theirs = await create_with(other_tenant, ann)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    campaign = await tenant.http.post("/v1/campaigns", headers={
        **tenant.auth, "Idempotency-Key": key}, json={"name": "Same key", "consents": []})
    assert campaign.status_code == 201 and "Idempotent-Replayed" not in campaign.headers
    for bad in ("", "k" * 201):
        refused = await create_with(tenant, person(), key=bad)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["Idempotency-Key"]


async def test_an_idempotency_key_with_a_control_character_is_a_field_error(tenant):
    """A key the client built with a NUL (or another control character) in it is refused by
    name, as a key too long is, so the client sees which header to put right."""
    await set_rule(tenant)
    for bad in ("key\x00one", "key\tone", "key\x7fone"):
        refused = await tenant.http.post("/v1/contacts", json=person(), headers={
            **tenant.auth, "Idempotency-Key": bad})
        assert refused.status_code == 422, refused.text
        [field] = refused.json()["error"]["fields"]
        assert field["field"] == "Idempotency-Key" and "control character" in field["message"]
    assert (await tenant.get("/v1/contacts?limit=1")).json()["items"] == []
    # The client's own message takes the key in its body too, held to the same rule.
    message = {"contact_id": str(uuid.uuid4()), "message_type": "invoice", "subject": "Invoice",
               "text": "Please pay.", "idempotency_key": "key\tone"}
    refused = await tenant.post("/v1/messages", message)
    assert refused.status_code == 422, refused.text
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["idempotency_key"]


async def test_validation_names_each_field(tenant):
    await set_rule(tenant, default_region="DE")
    missing = await create(tenant, {"first_name": "Bo", "last_name": "Bar"}, status=422)
    assert {f["field"] for f in missing["error"]["fields"]} == {"id_number", "ssn"}
    bad = await create(tenant, person(contact_points=[
        {"kind": "email", "value": "bo@"}, {"kind": "mobile", "value": "030 1234567"}],
        date_of_birth="2999-01-01", tags=["ok", "!bad"]), status=422)
    assert {f["field"] for f in bad["error"]["fields"]} == {
        "contact_points[0].value", "contact_points[1].value", "date_of_birth", "tags[1]"}
    [tag] = [f["message"] for f in bad["error"]["fields"] if f["field"] == "tags[1]"]
    assert tag.startswith("a tag or category is 1 to 50 letters a-z")
    # Numbers without a country code are read in the client's region (DE here).
    good = await create(tenant, person(contact_points=[{"kind": "mobile", "value": "0151 23456789",
                                                        "label": "private"}]))
    assert good["contact_points"][0]["value"] == "+4915123456789"
    company = await create(tenant, {"kind": "company", "first_name": "x"}, status=422)
    assert [f["field"] for f in company["error"]["fields"]] == ["company_name"]
    malformed = await tenant.http.post("/v1/contacts", headers={**tenant.auth,
                                       "content-type": "application/json"}, content=b"{")
    assert malformed.status_code == 400


async def test_an_address_line_is_one_line(tenant):
    """A line break in a street was taken, and became a line of its own in a letter's address
    window; names refused it already."""
    contact = await create(tenant, {"last_name": "Regel"})
    for field, value in (("line1", "Main 1\nEvil"), ("city", "Gouda\r\nX"),
                         ("line2", "b\u202eis")):
        refused = await tenant.post(f"/v1/contacts/{contact['id']}/addresses", {
            "type": "home", "line1": "Main 1", "city": "Gouda", "country": "NL", field: value})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"][0]["field"] == field


async def test_a_postal_code_is_one_line_and_a_blank_one_is_none(tenant):
    """A postal code took a line break or a direction mark (the other parts of an address
    refused them), and a blank one was stored as "" where an import stores none."""
    contact = await create(tenant, {"last_name": "Postcode"})
    base = f"/v1/contacts/{contact['id']}/addresses"
    street = {"type": "home", "line1": "Main 1", "city": "Gouda", "country": "NL"}
    for value in ("1234\nAB", "1234 AB\u202e", "12\t34"):
        refused = await tenant.post(base, {**street, "postal_code": value})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"][0]["field"] == "postal_code"
    blank = await tenant.post(base, {**street, "postal_code": "  "})
    assert blank.status_code == 201 and blank.json()["postal_code"] is None, blank.text
    # So the same address from an import, without a postal code, is not a change.
    job = await finished(tenant, (await upload(tenant, (
        "external_id,last_name,address_type,address_line1,city,country\r\n"
        f"{contact['external_id']},Postcode,home,Main 1,Gouda,NL\r\n").encode()))["id"])
    assert (job["created"], job["updated"], job["unchanged"]) == (0, 0, 1), job
    # An import checks it as the API does.
    job = await finished(tenant, (await upload(tenant, (
        "external_id,last_name,address_type,address_line1,postal_code,city,country\r\n"
        'pc-1,Postcode,home,Main 1,"1234\nAB",Gouda,NL\r\n').encode()))["id"])
    assert job["failed"] == 1, job
    errors = await tenant.get(job["errors_url"])
    assert [row[:2] for row in csv.reader(io.StringIO(errors.text))][1:] == [
        ["2", "postal_code"]], errors.text


async def test_an_external_id_is_one_line(tenant, mailbox):
    """The client's own id took a line break, a control character or a direction mark, by
    the API, an import and an enrolment."""
    for value in ("crm\n1", "crm\u00071", "crm-\u202e1"):
        refused = await tenant.post("/v1/contacts", {"last_name": "Ext", "external_id": value})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"][0]["field"] == "external_id"
    job = await finished(tenant, (await upload(
        tenant, 'external_id,last_name\r\n"crm\n2",Ext\r\n'.encode()))["id"])
    assert (job["created"], job["failed"]) == (0, 1), job
    campaign = await tenant.create_campaign(languages=["en"])
    enrolled = await tenant.http.post(f"/v1/campaigns/{campaign['id']}/contacts",
                                      headers=tenant.auth, json={"contacts": [
                                          {"external_id": "crm\u202e3", "email": "e@example.com"}]})
    [item] = enrolled.json()["results"]
    assert item["status"] == "rejected" and item["errors"][0]["field"] == "external_id", item


async def test_the_one_address_of_a_mandatory_type_is_replaced_not_deactivated(tenant):
    """Deactivating a contact's one home address, where a home address is required, left the
    contact without one: creating it had to give one."""
    await tenant.http.patch("/v1/contact-settings", headers=tenant.auth, json={
        "address_types": [{"name": "home", "mandatory": True}, {"name": "billing"}]})
    contact = await create(tenant, {"last_name": "Thuis", "addresses": [
        {"type": "home", "line1": "Huis 1", "city": "Gouda", "country": "NL"}]})
    [home] = contact["addresses"]
    base = f"/v1/contacts/{contact['id']}/addresses"
    refused = await tenant.post(f"{base}/{home['id']}/deactivate", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "address_rule"
    assert refused.json()["error"]["message"] == (
        "a home address is required: add the new one, which replaces it, or activate another")
    assert (await tenant.get(f"/v1/contacts/{contact['id']}")).json()["addresses"] == [home]
    # The ways the message names: a new home replaces it, or a former one is activated.
    new = (await tenant.post(base, {"type": "home", "line1": "Huis 2", "city": "Gouda",
                                    "country": "NL"})).json()
    assert (await tenant.post(f"{base}/{home['id']}/activate", {})).status_code == 200
    after = (await tenant.get(f"/v1/contacts/{contact['id']}",
                              include_inactive_addresses="true")).json()["addresses"]
    assert {a["id"]: a["active"] for a in after} == {home["id"]: True, new["id"]: False}
    # A type that is not mandatory can be deactivated away.
    billing = (await tenant.post(base, {"type": "billing", "line1": "Post 1", "city": "Gouda",
                                        "country": "NL"})).json()
    assert (await tenant.post(f"{base}/{billing['id']}/deactivate", {})).status_code == 200


@pytest.mark.parametrize(("given", "told"), [
    # Read as seconds since 1970, these were stored as 1970-01-01 and 1970-08-18.
    (0, "not as a number"), ("0", "not as a number"), ("19800131", "not as a number"),
    ("1980", "not as a number"),
    # Refused in pydantic's words: "invalid character in year", "input is too short".
    ("31/01/1980", "written YYYY-MM-DD"), ("1980-1-31", "written YYYY-MM-DD"),
])
async def test_a_date_is_one_written_out(tenant, given, told):
    refused = await create(tenant, {"last_name": "Datum", "date_of_birth": given}, status=422)
    [error] = refused["error"]["fields"]
    assert error["field"] == "date_of_birth" and told in error["message"], error


async def test_a_name_is_one_line_without_direction_marks(tenant):
    """A line break in a name would break a letter's address block or a CSV row; a direction
    mark (U+202E) makes a name display as another. Refused by field, wherever a name comes in."""
    n = uuid.uuid4().hex[:8]
    refused = await create(tenant, {"first_name": "Ann\nSmit", "last_name": "Vries\u202eredlaV",
                                    "company_name": "Acme\u2066"}, status=422)
    fields = {f["field"]: f["message"] for f in refused["error"]["fields"]}
    assert set(fields) == {"first_name", "last_name", "company_name"}
    assert fields["last_name"].startswith("must be one line of text")
    contact = await create(tenant, {"last_name": f"Ölçek-Ñúñez {n}", "first_name": "Zoë"})
    patched = await tenant.http.patch(f"/v1/contacts/{contact['id']}", headers=tenant.auth,
                                      json={"first_name": "Zo\u200fë"})
    assert patched.status_code == 422
    assert [f["field"] for f in patched.json()["error"]["fields"]] == ["first_name"]

    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": f"tab-{n}", "last_name": "Smit\tJansen", "email": f"t{n}@example.com"}]})
    assert enrolled.status_code == 422, enrolled.text
    assert [e["field"] for e in enrolled.json()["results"][0]["errors"]] == ["last_name"]

    content = (f'external_id,first_name,last_name\r\nok-{n},Ann,Smit\r\n'
               f'nl-{n},"Ann\nMarie",Smit\r\nrtl-{n},Ann,"\u202eSmit"\r\n').encode()
    job = await finished(tenant, (await upload(tenant, content))["id"])
    assert (job["created"], job["failed"]) == (1, 2), job
    errors = list(csv.DictReader(io.StringIO((await tenant.get(job["errors_url"])).text)))
    assert [(e["line"], e["field"]) for e in errors] == [("3", "first_name"), ("5", "last_name")]


async def test_null_clears_a_field_and_restores_the_language_default(tenant):
    """A contact always has a language (its messages speak one): null restores the one a
    contact is created with, as null restores a default elsewhere. It was written as null,
    which the database refused, answered as a 409 "concurrent change; retry"."""
    contact = await create(tenant, {"first_name": "Noor", "last_name": f"Bakker {uuid.uuid4()}",
                                    "language": "nl"})
    path = f"/v1/contacts/{contact['id']}"
    cleared = await tenant.ok("PATCH", path, {"first_name": None, "language": None})
    assert (cleared["first_name"], cleared["language"]) == (None, "en")
    assert (await tenant.ok("GET", path))["language"] == "en"
    assert (await tenant.ok("PATCH", path, {"language": "de"}))["language"] == "de"
    assert (await tenant.ok("PATCH", path, {"last_name": "Bakker"}))["language"] == "de"


async def test_null_clears_tags_and_categories(tenant):
    """As it clears any other field; it was taken as "left out", answered 200, and kept them."""
    contact = await create(tenant, {"last_name": f"Visser {uuid.uuid4()}", "tags": ["vip"],
                                    "categories": ["retail"]})
    path = f"/v1/contacts/{contact['id']}"
    kept = await tenant.ok("PATCH", path, {"first_name": "Sem"})
    assert (kept["tags"], kept["categories"]) == (["vip"], ["retail"])
    cleared = await tenant.ok("PATCH", path, {"tags": None, "categories": None})
    assert (cleared["tags"], cleared["categories"]) == ([], [])
    assert (await tenant.ok("GET", path))["tags"] == []
    assert (await tenant.get("/v1/contacts", tag="vip")).json()["items"] == []
    [change] = [e for e in (await tenant.ok("GET", f"{path}/audit"))["items"]
                if e["action"] == "update" and "tags" in e["detail"]["changes"]]
    assert set(change["detail"]["changes"]) == {"tags", "categories"}


async def test_a_locale_or_upper_case_code_is_taken_as_its_language(tenant):
    """Clients and their exports send locales (`nl-BE`, `nl_BE`) and upper case (`NL`): each
    is the language nl. What is no language is a field error saying what is expected."""
    n = uuid.uuid4().hex[:8]
    languages = {}
    for given in ("NL", "nl-BE", "pt_BR"):
        contact = await create(tenant, {"last_name": f"Tag {given} {n}", "language": given})
        languages[given] = contact["language"]
    assert languages == {"NL": "nl", "nl-BE": "nl", "pt_BR": "pt"}
    path = f"/v1/contacts/{contact['id']}"
    assert (await tenant.ok("PATCH", path, {"language": "DE"}))["language"] == "de"
    for wrong in ("dutch", "xx", "x", "42"):
        refused = await tenant.ok("PATCH", path, {"language": wrong}, status=422)
        assert refused["error"]["fields"] == [{"field": "language", "message": (
            f"{wrong!r} is not a language code (ISO 639-1, e.g. en, nl, de)")}]
    campaign = await tenant.create_campaign(languages=["EN", "nl-NL"], default_language="NL")
    assert (campaign["spec"]["languages"], campaign["spec"]["default_language"]) == (
        ["en", "nl"], "nl")


async def test_addresses_one_active_per_type_one_primary_history_kept(tenant):
    await set_rule(tenant, address_types=[{"name": "home", "mandatory": True},
                                          {"name": "business"}, {"name": "billing"}])
    no_home = await create(tenant, person(addresses=[
        {"type": "business", "line1": "Kade 1", "city": "Utrecht", "country": "nl"}]), status=422)
    assert no_home["error"]["fields"] == [{"field": "addresses",
                                           "message": "a home address is required"}]
    contact = await create(tenant, person(addresses=[
        {"type": "home", "line1": "Dorpsstraat 1", "city": "Utrecht", "country": "nl"}]))
    [first_home] = contact["addresses"]
    assert first_home["primary"] and first_home["country"] == "NL"
    base = f"/v1/contacts/{contact['id']}"

    async def add(body):
        response = await tenant.post(f"{base}/addresses", body)
        assert response.status_code == 201, response.text
        return response.json()

    nowhere = await tenant.post(f"{base}/addresses", {
        "type": "home", "line1": "Nergens 1", "city": "Utopia", "country": "ZZ"})
    assert nowhere.status_code == 422 and nowhere.json()["error"]["fields"] == [
        {"field": "country", "message": "unknown country 'ZZ'; use an ISO country code such as NL"}]

    async def act(address_id, action, status=200):
        response = await tenant.post(f"{base}/addresses/{address_id}/{action}", {})
        assert response.status_code == status, response.text
        return response.json()

    async def addresses():
        response = await tenant.get(base, include_inactive_addresses="true")
        return {a["id"]: a for a in response.json()["addresses"]}

    # Moving house: the old home is deactivated and kept; the new home inherits primary.
    second_home = await add({"type": "home", "line1": "Nieuwe Weg 2", "city": "Gouda",
                             "country": "NL"})
    business = await add({"type": "business", "line1": "Kade 1", "city": "Utrecht",
                          "country": "NL"})
    now = await addresses()
    assert not now[first_home["id"]]["active"] and now[first_home["id"]]["deactivated_at"]
    assert now[second_home["id"]]["primary"] and not now[business["id"]]["primary"]
    # Deactivating the primary moves primary to the remaining active address.
    await act(business["id"], "primary")
    await act(business["id"], "deactivate")
    now = await addresses()
    assert now[second_home["id"]]["primary"]
    # Returning to a former address reactivates it; an inactive one cannot be primary.
    await act(business["id"], "primary", status=409)
    await act(business["id"], "activate")
    await act(first_home["id"], "activate")
    await add({"type": "home", "line1": "Derde 3", "city": "Delft", "country": "NL"})
    now = await addresses()
    active = [a for a in now.values() if a["active"]]
    assert sorted(a["type"] for a in active) == ["business", "home"]
    assert sum(a["primary"] for a in now.values()) == 1
    assert len(now) == 4 and not now[first_home["id"]]["active"]
    await act(first_home["id"], "activate")
    await act(first_home["id"], "primary")
    now = await addresses()
    assert [a["id"] for a in now.values() if a["primary"]] == [first_home["id"]]
    unknown = await tenant.post(f"{base}/addresses", {"type": "boat", "line1": "x", "city": "y",
                                                      "country": "NL"})
    assert unknown.status_code == 422
    assert (await tenant.get(f"{base}")).json()["addresses"] == [
        a for a in (await addresses()).values() if a["active"]]


async def test_hashed_card_lookup(tenant, other_tenant, sessions):
    card = "4111 1111 1111 1111"
    contact = await create(tenant, {"last_name": "Kaart", "identification_media": [
        {"kind": "card", "value": card}, {"kind": "loyalty_id", "value": "L-77"}]})
    assert {m["display"] for m in contact["identification_media"]} == {"•••• 1111", "L-77"}
    found = await tenant.get("/v1/contacts/lookup", kind="card", value="4111-1111-1111-1111")
    assert found.status_code == 200 and found.json()["id"] == contact["id"]
    assert (await tenant.get("/v1/contacts/lookup", kind="loyalty_id", value="L-77")).json()[
        "id"] == contact["id"]
    assert (await tenant.get("/v1/contacts/lookup", kind="card",
                             value="5555555555554444")).status_code == 404
    assert (await tenant.get("/v1/contacts/lookup", kind="card",
                             value="4111111111111112")).status_code == 422  # bad checksum
    assert (await other_tenant.get("/v1/contacts/lookup", kind="card",
                                   value=card)).status_code == 404
    taken = await create(tenant, {"last_name": "Other", "identification_media": [
        {"kind": "card", "value": card}]}, status=409)
    assert taken["error"]["existing_contact_id"] == contact["id"]
    async with transaction(sessions) as session:
        stored = (await session.execute(text(
            "SELECT lookup_sha256 || display FROM identification_media WHERE contact_id = :c"),
            {"c": contact["id"]})).scalars().all()
    assert stored and not any("4111111111111111" in s for s in stored)


async def test_an_identification_medium_is_one_line_of_text(tenant):
    """A blank loyalty id would be stored with nothing to show and found by a blank lookup; a
    direction mark would show one id as another, as in a name."""
    contact = await create(tenant, {"last_name": "Leeg"})
    media = f"/v1/contacts/{contact['id']}/identification-media"
    for value in ("   ", "L-\u202e77", "L-77\nL-78"):
        refused = await tenant.post(media, {"kind": "loyalty_id", "value": value})
        assert refused.status_code == 422, (value, refused.text)
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["value"]
    blank = await tenant.get("/v1/contacts/lookup", kind="loyalty_id", value="   ")
    assert blank.status_code == 422, blank.text
    assert [f["field"] for f in blank.json()["error"]["fields"]] == ["value"]
    added = await tenant.post(media, {"kind": "loyalty_id", "value": " L-79 "})
    assert added.status_code == 201, added.text
    assert [m["display"] for m in added.json()["identification_media"]] == ["L-79"]


async def test_search_filters_and_cursor(tenant):
    made = [await create(tenant, {"last_name": f"L{i}", "tags": ["vip"] if i % 2 else [],
                                  "categories": ["partner"] if i == 4 else []})
            for i in range(5)]
    vip = (await tenant.get("/v1/contacts", tag="VIP")).json()["items"]
    assert {c["id"] for c in vip} == {made[1]["id"], made[3]["id"]}
    partner = (await tenant.get("/v1/contacts", category="partner")).json()["items"]
    assert [c["id"] for c in partner] == [made[4]["id"]]
    seen, cursor = [], None
    while True:
        page = (await tenant.get("/v1/contacts", limit=2, **({"cursor": cursor} if cursor else {}))
                ).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(c["id"] for c in made)
    since = datetime.fromisoformat(made[2]["updated_at"]) + timedelta(microseconds=1)
    await tenant.http.patch(f"/v1/contacts/{made[0]['id']}", headers=tenant.auth,
                            json={"first_name": "Changed"})
    recent = (await tenant.get("/v1/contacts", updated_since=since.isoformat())).json()["items"]
    assert made[0]["id"] in {c["id"] for c in recent} and made[1]["id"] not in {
        c["id"] for c in recent}
    unverified = (await tenant.get("/v1/contacts", verification_state="verified")).json()
    assert unverified["items"] == []


async def test_a_contact_verified_by_its_customer_is_updated_since(tenant, http, mailbox):
    """A client syncing its CRM by `updated_since` missed the address the customer had just
    verified: the contact's points changed, the contact's `updated_at` did not."""
    enrolled, customer, link = await entered(tenant, http, mailbox)
    contact = f"/v1/contacts/{enrolled['contact_id']}"
    mark = (await tenant.get(contact)).json()["updated_at"]
    await customer.open(link)
    await customer.submit(link)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    since = datetime.fromisoformat(mark) + timedelta(microseconds=1)
    synced = (await tenant.get("/v1/contacts", updated_since=since.isoformat())).json()["items"]
    assert [c["id"] for c in synced] == [enrolled["contact_id"]]
    assert "verified" in {p["verification_state"] for p in synced[0]["contact_points"]}


async def test_a_medium_given_twice_is_one(tenant):
    """The same card in two spellings, or a loyalty id twice, in one request was a 500."""
    n = uuid.uuid4().hex[:8]
    created = await tenant.post("/v1/contacts", {
        "external_id": f"twice-{n}", "first_name": "Ann", "identification_media": [
            {"kind": "card", "value": "4111 1111 1111 1111"},
            {"kind": "card", "value": "4111111111111111"},
            {"kind": "loyalty_id", "value": f"L{n}"}, {"kind": "loyalty_id", "value": f"L{n}"}]})
    assert created.status_code == 201, created.text
    assert sorted(m["kind"] for m in created.json()["identification_media"]) == [
        "card", "loyalty_id"]


async def test_q_finds_names_literally_and_emails_and_phone_numbers(tenant):
    """`%` and `_` are searched as written (they were dropped, so `q=_` listed everyone), and
    `q` finds a contact by email and by phone number written as people write it."""
    juice = await create(tenant, {"kind": "company", "company_name": "100% Juice_Bar"})
    plain = await create(tenant, {"last_name": "Juice Bar", "contact_points": [
        {"kind": "email", "value": "Mia.Jansen@Example.com"},
        {"kind": "mobile", "value": "+31 6 1234 5678"}]})

    async def found(q: str) -> list[str]:
        response = await tenant.get("/v1/contacts", q=q)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert await found("100%") == [juice["id"]]
    assert await found("_") == [juice["id"]]
    assert await found("e_b") == [juice["id"]]
    assert await found("%") == [juice["id"]]
    assert sorted(await found("juice")) == sorted([juice["id"], plain["id"]])
    for q in ("mia.jansen@example", "JANSEN@", "06 12345678", "+31 6-1234 5678", "1234 5678",
              "0031612345678"):
        assert await found(q) == [plain["id"]], q
    assert await found("9999 0000") == []

    # A removed point finds its contact no more.
    [email, _] = plain["contact_points"]
    await tenant.http.delete(f"/v1/contacts/{plain['id']}/contact-points/{email['id']}",
                             headers=tenant.auth)
    assert await found("mia.jansen") == []


async def test_contacts_whose_email_bounced_are_found(tenant, sessions):
    """The client looks for the contacts to ask for a new address: those with an email (or
    mobile, or postal address) a hard bounce marked undeliverable, and the others."""
    name = f"Bounce{uuid.uuid4().hex[:8]}"
    bounced, fine = [await create(tenant, {"last_name": name, "contact_points": [
        {"kind": "email", "value": f"{name}-{n}@example.com".lower()}]}) for n in (1, 2)]
    await mark_bounced(sessions, bounced["id"], "email")

    async def found(**filters) -> list[str]:
        response = await tenant.get("/v1/contacts", q=name, **filters)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]
    assert await found(undeliverable="true") == [bounced["id"]]
    assert await found(undeliverable="false") == [fine["id"]]
    assert sorted(await found()) == sorted([bounced["id"], fine["id"]])
    response = await tenant.get("/v1/contacts", undeliverable="perhaps")
    assert response.status_code == 422 and "undeliverable" in response.text, response.text


async def test_audit_trail_of_reads_and_changes(tenant):
    contact = await create(tenant, {"first_name": "Aud", "last_name": "It", "tags": ["a"]})
    base = f"/v1/contacts/{contact['id']}"
    await tenant.get(base)
    await tenant.http.patch(base, headers=tenant.auth, json={"last_name": "Itt", "tags": ["b"]})
    await tenant.get("/v1/contacts", q="Itt")
    await tenant.get(f"{base}/export")
    trail = (await tenant.get(f"{base}/audit")).json()["items"]
    assert [e["action"] for e in trail] == ["create", "read", "update", "read", "export"]
    assert trail[2]["detail"]["changes"] == {
        "last_name": {"old": "It", "new": "Itt"}, "tags": {"old": ["a"], "new": ["b"]}}
    actor = trail[0]["actor_id"]
    assert {e["actor_type"] for e in trail} == {"api_key"} and {e["actor_id"] for e in trail} == {
        actor}
    by_actor = (await tenant.get("/v1/audit", actor_type="api_key", actor_id=actor)).json()
    # And the read of the trail itself, recorded after its page.
    [*listed, trail_read] = by_actor["items"]
    assert [e["id"] for e in listed] == [e["id"] for e in trail]
    assert (trail_read["action"], trail_read["detail"]) == (
        "read", {"via": "/v1/contacts/{contact_id}/audit"})
    feed = (await tenant.get(f"{base}/activity")).json()["items"]
    assert [a["type"] for a in feed] == ["data.create", "data.update"]
    assert feed[1]["detail"]["fields"] == ["last_name", "tags"]


async def test_the_activity_feed_is_read_page_by_page(tenant):
    """Cursor and limit as on the other lists: every item once, in order, across pages, also
    items of one moment (consents given at the same time, from different sources)."""
    contact = await create(tenant, {"last_name": "Feed"})
    base = f"/v1/contacts/{contact['id']}"
    for n in range(3):
        await tenant.ok("PATCH", base, {"first_name": f"Name{n}"})
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "feed", "text": "Newsletter, please."})
    given_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    changed = await tenant.post(f"{base}/consents", {"changes": [
        {"purpose": "newsletter", "channel": channel, "granted": True, "given_at": given_at,
         "source": "back_office", "legal_text": {"language": "en"}}
        for channel in ("email", "sms", "letter", "phone")]})
    assert changed.status_code == 201, changed.text

    whole = await tenant.ok("GET", f"{base}/activity?limit=1000")
    assert whole["next_cursor"] is None and len(whole["items"]) == 8, whole
    paged, cursor = [], None
    while True:
        more = {"cursor": cursor} if cursor else {}
        page = (await tenant.get(f"{base}/activity", limit=2, **more)).json()
        assert len(page["items"]) <= 2
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole["items"]
    assert [i["at"] for i in paged] == sorted(i["at"] for i in paged)

    # Tampered: no zone, a time off the calendar in UTC, a huge or negative id, a negative or
    # unknown source, a source that is no number.
    for bad in ("nonsense", "W10", *(base64.urlsafe_b64encode(raw).decode() for raw in (
            b'["2026-01-01T00:00:00", 0, "1"]', b'["0001-01-01T00:00:00+01:00", 0, "1"]',
            b'["2026-01-01T00:00:00+00:00", 0, "99999999999999"]',
            b'["2026-01-01T00:00:00+00:00", 0, "-1"]', b'["2026-01-01T00:00:00+00:00", -1, "1"]',
            b'["2026-01-01T00:00:00+00:00", 9, "1"]', b'["2026-01-01T00:00:00+00:00", true, "1"]',
            b'["2026-01-01T00:00:00+00:00", "0", "1"]'))):
        refused = await tenant.get(f"{base}/activity", cursor=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["cursor"]


async def test_kyc_changes_and_messages_are_in_the_activity_feed(tenant, sessions, mailbox):
    """A KYC profile assigned on upload and verified by the back office, and the emails that
    told the customer, are business events of the contact: in its feed, as `kyc.*` and
    `message.*`, each kind under its own `type` filter and across pages."""
    from tests import test_kyc as kyc
    await kyc.define(tenant, 2, kyc.IDENTITY + kyc.ID_OR_PASSPORT)
    contact_id, email = await kyc.new_contact(sessions, tenant)
    assert (await kyc.upload(tenant, contact_id)).status_code == 201
    await kyc.wait_for_state(tenant, contact_id, "pending_verification")
    await kyc.mail_with(mailbox, email, "your identity details are registered")
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 200
    history = await eventually(lambda: _kyc_sent(tenant, contact_id, "kyc_verified_sent"),
                               what="the verification email recorded")
    base = f"/v1/contacts/{contact_id}/activity"

    whole = (await tenant.get(base, limit=1000)).json()["items"]
    kyc_items = [i for i in whole if i["type"].startswith("kyc.")]
    assert [i["type"] for i in kyc_items] == ["kyc.assigned", "kyc.verified"]
    assert [i["detail"]["state"] for i in kyc_items] == ["pending_verification", "verified"]
    messages = [i for i in whole if i["type"].startswith("message.")]
    assert [(i["type"], i["detail"]["template"], i["detail"]["channel"], i["detail"]["kyc"])
            for i in messages] == [("message.sent", "kyc_assigned", "email", True),
                                   ("message.sent", "kyc_verified", "email", True)]
    assert {(e["type"], e["at"]) for e in history if e["type"] != "kyc_verified_sent"} >= {
        ("assigned", kyc_items[0]["at"]), ("verified", kyc_items[1]["at"])}
    assert [i["type"] for i in (await tenant.get(base, type="kyc")).json()["items"]] == [
        "kyc.assigned", "kyc.verified"]
    assert (await tenant.get(base, type="message")).json()["items"] == messages
    paged, cursor = [], None
    while True:
        page = (await tenant.get(base, limit=1, **({"cursor": cursor} if cursor else {}))).json()
        paged += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == whole


async def _kyc_sent(tenant, contact_id: str, event_type: str) -> list[dict] | None:
    history = (await tenant.get(f"/v1/kyc/contacts/{contact_id}")).json()["history"]
    return history if any(e["type"] == event_type for e in history) else None


async def test_another_clients_contact_is_not_found(tenant, other_tenant):
    contact = await create(tenant, {"last_name": "Mine"})
    base = f"/v1/contacts/{contact['id']}"
    other = other_tenant.http
    for method, path, body in [
        ("GET", base, None), ("PATCH", base, {"first_name": "x"}), ("DELETE", base, None),
        ("GET", f"{base}/export", None), ("POST", f"{base}/anonymise", None),
        ("GET", f"{base}/audit", None), ("GET", f"{base}/activity", None),
        ("POST", f"{base}/addresses", {"type": "home", "line1": "a", "city": "b",
                                       "country": "NL"}),
        ("POST", f"{base}/contact-points", {"kind": "email", "value": "a@example.com"}),
    ]:
        response = await other.request(method, path, json=body, headers=other_tenant.auth)
        assert response.status_code == 404, (method, path, response.text)
    assert (await other_tenant.get("/v1/contacts", q="Mine")).json()["items"] == []
    assert (await tenant.get(base)).json()["first_name"] is None


async def test_a_new_rule_rekeys_contacts_or_is_refused(tenant):
    twin = {"last_name": "Twin", "id_number": "X1", "ssn": "123"}
    first = await create(tenant, twin)
    second = await create(tenant, {**twin, "first_name": "Other"})  # no rule yet: allowed
    refused = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                    json={"person_rule": RULE})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "rule_conflict"
    clash = refused.json()["error"]["fields"][0]["message"]
    assert first["id"] in clash and second["id"] in clash
    assert (await tenant.get("/v1/contact-settings")).json()["person_rule"] is None
    await tenant.http.patch(f"/v1/contacts/{second['id']}", headers=tenant.auth,
                            json={"id_number": "X2", "ssn": "456"})
    await set_rule(tenant)
    # Existing contacts now carry their keys: a third twin is refused.
    again = await create(tenant, {**twin, "ssn": "123"}, status=409)
    assert again["error"]["existing_contact_id"] == first["id"]
    bad = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                json={"person_rule": "last_name AND (ssn"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "person_rule"


async def test_a_contact_from_before_a_rule_keeps_being_changed_but_for_the_rule(tenant):
    """A rule added later made every change of a contact that predates it (tags, language)
    a 422 naming the fields the rule needs, which the change did not touch."""
    old = await create(tenant, {"first_name": "Oud", "last_name": f"Voor-{uuid.uuid4().hex[:6]}"})
    await set_rule(tenant)
    base = f"/v1/contacts/{old['id']}"
    for change in ({"tags": ["vip"]}, {"language": "nl"}, {"first_name": "Oude"}, {}):
        response = await tenant.http.patch(base, headers=tenant.auth, json=change)
        assert response.status_code == 200, (change, response.text)
    after = (await tenant.get(base)).json()
    assert (after["tags"], after["language"], after["first_name"]) == (["vip"], "nl", "Oude")
    # A change of a field the rule keys by needs all of them, as a new contact does.
    refused = await tenant.http.patch(base, headers=tenant.auth, json={"id_number": "N1"})
    assert refused.status_code == 422, refused.text
    assert {f["field"] for f in refused.json()["error"]["fields"]} == {"ssn"}
    given = await tenant.http.patch(base, headers=tenant.auth,
                                    json={"id_number": "N1", "ssn": f"S{uuid.uuid4().hex[:8]}"})
    assert given.status_code == 200, given.text
    # And so does clearing one, now that it has them.
    cleared = await tenant.http.patch(base, headers=tenant.auth, json={"ssn": None, "tags": []})
    assert cleared.status_code == 422, cleared.text
    assert [f["field"] for f in cleared.json()["error"]["fields"]] == ["ssn"]
    assert (await tenant.get(base)).json()["tags"] == ["vip"]


async def test_settings_change_only_what_the_client_names(tenant):
    """PATCH keeps every setting it does not name; PUT replaces the whole document, so one
    that leaves fields out is refused rather than resetting them (retention switched off)."""
    whole = {"person_rule": None, "company_rule": "company_name", "default_region": "BE",
             "address_types": [{"name": "home", "mandatory": False},
                               {"name": "depot", "mandatory": False}],
             "anonymise_inactive_after_days": 30}
    put = await tenant.http.put("/v1/contact-settings", headers=tenant.auth, json=whole)
    assert put.status_code == 200, put.text
    assert put.json() == whole

    patched = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                      json={"person_rule": RULE})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**whole, "person_rule": RULE}
    assert (await tenant.get("/v1/contact-settings")).json() == {**whole, "person_rule": RULE}

    partial = await tenant.http.put("/v1/contact-settings", headers=tenant.auth,
                                    json={"person_rule": None})
    assert partial.status_code == 422, partial.text
    fields = partial.json()["error"]["fields"]
    assert [f["field"] for f in fields] == ["company_rule", "default_region", "address_types",
                                           "anonymise_inactive_after_days"]
    assert "use PATCH" in fields[0]["message"]
    assert (await tenant.get("/v1/contact-settings")).json() == {**whole, "person_rule": RULE}

    # null clears what may be unset; an unknown field or a setting that cannot be unset is a
    # field error, and nothing changes.
    cleared = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                      json={"anonymise_inactive_after_days": None})
    assert cleared.json() == {**whole, "person_rule": RULE, "anonymise_inactive_after_days": None}
    for body, field in (({"retention": 3}, "retention"), ({"default_region": None},
                                                          "default_region")):
        refused = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth, json=body)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == [field]
    assert (await tenant.get("/v1/contact-settings")).json()["default_region"] == "BE"


async def test_each_settings_change_is_kept_with_who_made_it(tenant, other_tenant, sessions):
    """Switching retention on or off is a GDPR decision: the client reads back who switched it,
    when, and what it was before. A refused or empty change leaves no trace."""
    async with sessions() as session:
        key_id = str(await session.scalar(select(ApiKey.id).where(ApiKey.client_id == tenant.id)))
    before = datetime.now(UTC)
    await tenant.ok("PATCH", "/v1/contact-settings", {"anonymise_inactive_after_days": 730,
                                                      "default_region": "BE"})
    await tenant.ok("PUT", "/v1/contact-settings", {
        **(await tenant.ok("GET", "/v1/contact-settings")), "anonymise_inactive_after_days": None})
    await tenant.ok("PATCH", "/v1/contact-settings", {"default_region": "BE"})
    await tenant.ok("PATCH", "/v1/contact-settings", {"default_region": "XX"}, status=422)

    changes = (await tenant.ok("GET", "/v1/contact-settings/changes"))["items"]
    assert [c["changes"] for c in changes] == [
        {"anonymise_inactive_after_days": {"old": None, "new": 730},
         "default_region": {"old": "NL", "new": "BE"}},
        {"anonymise_inactive_after_days": {"old": 730, "new": None}}]
    assert {c["actor"]["type"] for c in changes} == {"api_key"}
    assert {c["actor"]["id"] for c in changes} == {key_id}
    assert before <= datetime.fromisoformat(changes[0]["at"]) <= datetime.fromisoformat(
        changes[1]["at"])
    page = await tenant.ok("GET", "/v1/contact-settings/changes?limit=1")
    assert page["items"] == changes[:1]
    rest = await tenant.ok("GET", f"/v1/contact-settings/changes?cursor={page['next_cursor']}")
    assert rest == {"items": changes[1:], "next_cursor": None}
    assert (await other_tenant.ok("GET", "/v1/contact-settings/changes"))["items"] == []


async def test_a_settings_change_is_announced_by_webhook(tenant, webhook_receiver):
    """A client's systems hear of a change of its contact settings (who switched retention on,
    when, from what) as they hear of a campaign's; a change that changes nothing is not told."""
    hook = await tenant.subscribe(webhook_receiver, ["contact_settings.updated"])
    await tenant.ok("PATCH", "/v1/contact-settings", {"anonymise_inactive_after_days": 365,
                                                      "default_region": "BE"})
    await tenant.ok("PATCH", "/v1/contact-settings", {"default_region": "BE"})
    await tenant.ok("PUT", "/v1/contact-settings", await tenant.ok("GET", "/v1/contact-settings"))
    await tenant.ok("PATCH", "/v1/contact-settings", {"default_region": "FR"})

    events = sorted(await webhook_receiver.wait_for(hook, "contact_settings.updated", count=2),
                    key=lambda d: int(d.headers["webhook-sequence"]))
    # Numbered without a gap: nothing was raised for the changes that changed nothing.
    assert [e.headers["webhook-sequence"] for e in events] == ["1", "2"]
    assert hook not in webhook_receiver.bad_signatures
    changes = (await tenant.ok("GET", "/v1/contact-settings/changes"))["items"]
    assert [e.payload["data"] for e in events] == changes
    assert [c["changes"] for c in changes] == [
        {"anonymise_inactive_after_days": {"old": None, "new": 365},
         "default_region": {"old": "NL", "new": "BE"}},
        {"default_region": {"old": "BE", "new": "FR"}}]
    assert changes[0]["actor"]["type"] == "api_key"


async def test_settings_changed_at_the_same_moment_each_keep_their_field(tenant):
    """Two people change different settings at once (one sets retention, another the region):
    each change is merged into what the other stored, so none undoes the other, and each is
    in the changes log. First on a client that never stored its settings, then on one that has."""
    rounds = [
        {"person_rule": "ssn", "company_rule": "company_name", "default_region": "BE",
         "address_types": [{"name": "home", "mandatory": False}, {"name": "office",
                                                                  "mandatory": False}],
         "anonymise_inactive_after_days": 365},
        {"person_rule": RULE, "company_rule": "company_name OR external_id",
         "default_region": "DE", "address_types": [{"name": "home", "mandatory": False}],
         "anonymise_inactive_after_days": 730},
    ]
    for values in rounds:
        answers = await asyncio.gather(*(
            tenant.http.patch("/v1/contact-settings", headers=tenant.auth, json={field: value})
            for field, value in values.items()))
        assert [a.status_code for a in answers] == [200] * len(values), [a.text for a in answers]
        assert await tenant.ok("GET", "/v1/contact-settings") == values
    changes = (await tenant.ok("GET", "/v1/contact-settings/changes"))["items"]
    assert sorted((field, repr(change["new"])) for c in changes
                  for field, change in c["changes"].items()) == sorted(
        (field, repr(value)) for values in rounds for field, value in values.items())
    # Each change's `old` is what the one before it stored: none was judged on a stale read.
    for field in rounds[0]:
        assert [c["changes"][field]["new"] for c in changes if field in c["changes"]] == [
            values[field] for values in rounds]


async def test_a_company_rule_conflict_names_the_company_rule(tenant):
    twin = {"kind": "company", "company_name": f"Twin {uuid.uuid4().hex[:6]} BV"}
    first = await create(tenant, twin)
    second = await create(tenant, twin)  # no rule yet: allowed
    refused = await tenant.ok("PATCH", "/v1/contact-settings",
                              {"company_rule": "company_name"}, status=409)
    assert refused["error"]["code"] == "rule_conflict"
    [field] = refused["error"]["fields"]
    assert field["field"] == "company_rule"
    assert first["id"] in field["message"] and second["id"] in field["message"]


async def test_the_anonymisation_schedule_is_created_once(temporal_env, settings):
    async with worker_schedules(temporal_env.client, settings):
        await ensure_schedules(temporal_env.client, settings)
        handle = temporal_env.client.get_schedule_handle(SCHEDULE_ID)
        description = await handle.describe()
        assert description.schedule.spec.intervals[0].every == settings.anonymise_inactive_every


async def test_enrolment_holds_new_contacts_to_the_rule_and_audits_them(tenant, mailbox):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"person_rule": "last_name AND email"})
    assert response.status_code == 200, response.text
    n = uuid.uuid4().hex[:8]
    known = await create(tenant, {"external_id": f"a-{n}", "last_name": f"Jansen-{n}",
                                  "contact_points": [{"kind": "email", "value": f"a{n}@example.com"}]})
    campaign = await tenant.create_campaign()
    response = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [
        {"external_id": f"b-{n}", "last_name": f"JANSEN-{n}", "email": f"a{n}@example.com"},
        {"external_id": f"c-{n}", "email": f"c{n}@example.com"},
        {"external_id": f"d-{n}", "last_name": "Dekker", "email": f"d{n}@example.com"},
        {"external_id": f"e-{n}", "last_name": "dekker", "email": f"d{n}@example.com"},
        {"external_id": f"a-{n}", "first_name": "Anna"},
    ]})
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "rejected", "rejected", "accepted", "rejected", "accepted"]
    assert results[0]["contact_id"] == known["id"]
    assert results[0]["errors"][0]["message"].startswith(f"same contact as {known['id']}")
    assert results[1]["errors"][0]["field"] == "last_name"
    assert results[3]["errors"][0]["message"] == "same contact as item 2 under the uniqueness rule"

    # The enrolled contact is keyed like any other: the registry recognises it.
    again = await create(tenant, {"last_name": "DEKKER", "contact_points": [
        {"kind": "email", "value": f"d{n}@example.com"}]}, status=409)
    assert again["error"]["existing_contact_id"] == results[2]["contact_id"]
    # Both the creation and the change by enrolment are in the audit trail, by the API key.
    created = (await tenant.get(f"/v1/contacts/{results[2]['contact_id']}/audit")).json()["items"]
    assert [(e["action"], e["actor_type"]) for e in created][:1] == [("create", "api_key")]
    changed = (await tenant.get(f"/v1/contacts/{known['id']}/audit")).json()["items"]
    assert [e["action"] for e in changed][:2] == ["create", "update"]
    assert changed[1]["detail"]["changes"] == {"first_name": {"old": None, "new": "Anna"}}


async def test_a_rule_over_registry_fields_sends_new_contacts_to_the_registry_first(tenant):
    """An enrolment item carries names and an email; a rule that needs an SSN says where a new
    contact goes first, and the contact created there is then enrolled by its external id."""
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"person_rule": "(last_name AND id_number) OR ssn"})
    assert response.status_code == 200, response.text
    n = uuid.uuid4().hex[:8]
    campaign = await tenant.create_campaign()
    item = {"external_id": f"s-{n}", "last_name": "Smit", "email": f"s{n}@example.com"}
    refused = await tenant.post(f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [item]})
    assert refused.status_code == 422, refused.text
    errors = {e["field"]: e["message"] for e in refused.json()["results"][0]["errors"]}
    assert set(errors) == {"id_number", "ssn"}
    assert all("create the contact with POST /v1/contacts" in m for m in errors.values())

    await create(tenant, {"external_id": f"s-{n}", "last_name": "Smit", "id_number": f"X{n}",
                          "ssn": f"9{n}"})
    enrolled = await tenant.enrol(campaign["id"], item)
    assert [r["status"] for r in enrolled["results"]] == ["accepted"]


async def test_the_consent_filter_reads_the_newest_decision_per_channel(tenant):
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "1", "text": "Newsletter, please."})
    n = uuid.uuid4().hex[:8]
    eve = await create(tenant, {"external_id": f"eve-{n}", "first_name": f"Eve{n}"})

    def decision(channel: str, granted: bool, day: int) -> dict:
        return {"purpose": "newsletter", "channel": channel, "granted": granted,
                "given_at": f"2026-01-0{day}T10:00:00Z", "source": "back_office",
                "legal_text": {"language": "en"}}
    await tenant.ok("POST", f"/v1/contacts/{eve['id']}/consents", {"changes": [
        decision("email", True, 1), decision("sms", True, 2), decision("sms", False, 3)]},
        status=201)

    async def listed(**query) -> bool:
        found = (await tenant.get("/v1/contacts", q=f"Eve{n}", consent_purpose="newsletter",
                                  **query)).json()["items"]
        return [c["id"] for c in found] == [eve["id"]]
    # The later "no" to SMS leaves the "yes" to email standing.
    assert await listed()
    assert await listed(consent_channel="email")
    assert not await listed(consent_channel="sms")
    assert await listed(consent_channel="sms", consent_granted="false")
    assert not await listed(consent_channel="email", consent_granted="false")
    for query, field in [({"consent_channel": "fax", "consent_purpose": "newsletter"},
                          "consent_channel"),
                         ({"consent_channel": "email"}, "consent_channel"),
                         # A purpose the client does not have matches nobody: most likely a typo.
                         ({"consent_purpose": "newsleter"}, "consent_purpose")]:
        response = await tenant.get("/v1/contacts", **query)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"][0]["field"] == field


async def test_another_contacts_withdrawal_on_every_channel_hides_no_one(tenant, other_tenant):
    """A withdrawal on `any` rules only its own contact's consents, whoever else gave one:
    another client's contact withdrawing later does not take this one out of the search."""
    n = uuid.uuid4().hex[:8]
    ids = []
    for who, owner, channel, granted, day in [("Eve", tenant, "email", True, 1),
                                               ("Zoe", other_tenant, "any", False, 2),
                                               ("Amy", tenant, "any", False, 3)]:
        await owner.ensure_purpose("newsletter")
        await owner.post("/v1/purposes/newsletter/legal-texts",
                         {"language": "en", "version": "1", "text": "Newsletter, please."})
        contact = await create(owner, {"external_id": f"{who}-{n}", "last_name": f"{who}{n}"})
        ids.append(contact["id"])
        await owner.ok("POST", f"/v1/contacts/{contact['id']}/consents", {"changes": [{
            "purpose": "newsletter", "channel": channel, "granted": granted,
            "given_at": f"2026-01-0{day}T10:00:00Z", "source": "back_office",
            "legal_text": {"language": "en"}}]}, status=201)
    eve, _, amy = ids

    async def found(granted: str) -> list[str]:
        return [c["id"] for c in (await tenant.get(
            "/v1/contacts", q=n, consent_purpose="newsletter", consent_channel="email",
            consent_granted=granted)).json()["items"]]
    assert await found("true") == [eve]
    assert await found("false") == [amy]


async def test_a_contact_enrolled_by_email_alone_takes_later_knowledge(tenant, mailbox):
    campaign = await tenant.create_campaign(languages=["en", "nl"])
    email = f"only-{uuid.uuid4().hex[:8]}@example.com"
    first = await tenant.enrol(campaign["id"], {"external_id": email, "email": email})
    again = await tenant.enrol(campaign["id"], {"external_id": email, "language": "nl"})
    assert again["results"][0]["status"] == "already_enrolled", again
    contact_id = first["results"][0]["contact_id"]
    assert (await tenant.get(f"/v1/contacts/{contact_id}")).json()["language"] == "nl"
    patched = await tenant.http.patch(f"/v1/contacts/{contact_id}", headers=tenant.auth,
                                      json={"tags": ["vip"]})
    assert patched.status_code == 200, patched.text
