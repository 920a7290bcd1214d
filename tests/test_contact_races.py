"""Races of contact writers: enrolments and creates under a uniqueness rule, a rule change,
erasures, client messages and enrichment links meeting each other on one contact.

Each race is made deterministic: a session of the test holds the row a request needs next
(as a concurrent request would), the other request is sent while it waits, then the test's
session lets go."""

import asyncio
import uuid
from collections.abc import Awaitable

import httpx
from sqlalchemy import func, select, text

from api import enrolment
from api.schemas import ContactIn
from contacts.registry import Registry
from contacts.schemas import ContactSettingsIn
from core.vocabulary import ContactKind
from db.models import Contact, ContactIdentityKey, Journey
from tests.helpers import unique_email


async def lock_waiters(sessions) -> int:
    """Backends of this run's database waiting for a lock (a row's or an advisory one)."""
    async with sessions() as probe:
        return await probe.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"))


async def settled(sessions, call: Awaitable[httpx.Response], waiters: int) -> asyncio.Task:
    """Sends the call and returns once it has answered or `waiters` backends wait for a lock
    (it among them)."""
    task = asyncio.ensure_future(call)
    for _ in range(200):
        if task.done() or await lock_waiters(sessions) >= waiters:
            break
        await asyncio.sleep(0.05)
    return task


async def create(tenant, external_id: str, email: str) -> str:
    r = await tenant.post("/v1/contacts", {"external_id": external_id, "first_name": "Ann",
                                           "contact_points": [{"kind": "email", "value": email}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def journeys_of(sessions, contact_id: str) -> list[Journey]:
    async with sessions() as s:
        return list(await s.scalars(select(Journey).where(
            Journey.contact_id == uuid.UUID(contact_id))))


# --- B1: a uniqueness rule under concurrent enrolments ---------------------------------------


async def test_an_enrolment_whose_identity_key_a_concurrent_create_took_is_that_contact(
        tenant, sessions, settings):
    """The other request's key is inserted first and commits while the enrolment's insert of
    the same key waits: the item is that contact, refused as if it came after it, and leaves no
    keyless duplicate behind."""
    r = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                json={"person_rule": "email"})
    assert r.status_code == 200, r.text
    campaign = await tenant.create_campaign()
    email = unique_email("key-race")
    reg = Registry(client_id=tenant.id, settings=ContactSettingsIn(person_rule="email"),
                   secret_key=settings.secret_key.get_secret_value())
    keys = reg.identity_keys(ContactKind.person, enrolment._rule_values(
        ContactIn(external_id="other", email=email)))
    assert keys
    async with sessions() as other, other.begin():
        first = Contact(id=uuid.uuid4(), client_id=tenant.id, external_id="first", last_name="A")
        other.add(first)
        await other.flush()
        other.add_all([ContactIdentityKey(client_id=tenant.id, key=k, contact_id=first.id)
                       for k in keys])
        await other.flush()
        enrolling = await settled(sessions, tenant.post(
            f"/v1/campaigns/{campaign['id']}/contacts",
            {"contacts": [{"external_id": "second", "email": email}]}), 1)
        assert not enrolling.done(), "the enrolment did not wait for the other's key"
    answer = await enrolling
    assert answer.status_code == 422, answer.text
    [result] = answer.json()["results"]
    assert result["status"] == "rejected", result
    assert result["contact_id"] == str(first.id)
    assert f"same contact as {first.id}" in result["errors"][0]["message"]
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Contact).where(
            Contact.client_id == tenant.id, Contact.external_id == "second")) == 0


async def test_two_enrolments_of_one_person_at_once_under_a_rule_make_one_contact(
        tenant, sessions):
    r = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                json={"person_rule": "email"})
    assert r.status_code == 200, r.text
    campaign = await tenant.create_campaign()
    for attempt in range(3):
        email = unique_email(f"dup{attempt}")
        answers = await asyncio.gather(*[tenant.post(
            f"/v1/campaigns/{campaign['id']}/contacts",
            {"contacts": [{"external_id": f"enr-{attempt}-{i}", "email": email}]})
            for i in range(2)])
        results = [a.json()["results"][0] for a in answers]
        assert sorted(r["status"] for r in results) == ["accepted", "rejected"], results
        [kept] = [r for r in results if r["status"] == "accepted"]
        [refused] = [r for r in results if r["status"] == "rejected"]
        assert refused["contact_id"] == kept["contact_id"], results
        async with sessions() as s:
            found = await s.scalar(select(func.count()).select_from(Contact).where(
                Contact.client_id == tenant.id, Contact.external_id.like(f"enr-{attempt}-%")))
        assert found == 1


# --- B2: a rule change racing with creates ----------------------------------------------------


async def test_a_contact_created_while_the_rule_changes_is_keyed_under_the_new_rule(
        tenant, sessions):
    """The create has read the old rule (none) and waits to write its contact while the rule
    changes: the change waits for it, and re-keys it with the others."""
    email = unique_email("rekey")
    async with sessions() as other, other.begin():
        # Holds the external id the create writes next, as a concurrent create would.
        other.add(Contact(client_id=tenant.id, external_id="rk-1", last_name="Held"))
        await other.flush()
        creating = await settled(sessions, tenant.post("/v1/contacts", {
            "external_id": "rk-1", "first_name": "Ann",
            "contact_points": [{"kind": "email", "value": email}]}), 1)
        assert not creating.done()
        changing = await settled(sessions, tenant.http.patch(
            "/v1/contact-settings", headers=tenant.auth, json={"person_rule": "email"}), 2)
        await other.rollback()
    created, changed = await creating, await changing
    assert created.status_code == 201, created.text
    assert changed.status_code == 200, changed.text
    async with sessions() as s:
        keyed = await s.scalar(select(func.count()).select_from(ContactIdentityKey).where(
            ContactIdentityKey.contact_id == uuid.UUID(created.json()["id"])))
    assert keyed == 1
    again = await tenant.post("/v1/contacts", {
        "external_id": "rk-2", "first_name": "Bob",
        "contact_points": [{"kind": "email", "value": email}]})
    assert again.status_code == 409, again.text
    assert created.json()["id"] in again.text


# --- B4: anonymisation racing with an enrolment -----------------------------------------------


async def test_an_enrolment_meeting_an_anonymisation_under_way_answers_as_after_it(
        tenant, sessions):
    """The anonymisation has locked the contact and waits (on the contact's email, which the
    test holds) when the enrolment comes: the enrolment waits for it and then answers as after
    it, rather than opening a journey for nobody: the anonymised contact no longer has the
    external id, so the item is a new contact, as a person who comes back is."""
    campaign = await tenant.create_campaign()
    email = unique_email("anon")
    contact_id = await create(tenant, "a1", email)
    async with sessions() as other, other.begin():
        await other.execute(text("SELECT 1 FROM contact_points WHERE contact_id = :c FOR UPDATE"),
                            {"c": contact_id})
        anonymising = await settled(
            sessions, tenant.post(f"/v1/contacts/{contact_id}/anonymise", {}), 1)
        assert not anonymising.done()
        enrolling = await settled(sessions, tenant.post(
            f"/v1/campaigns/{campaign['id']}/contacts",
            {"contacts": [{"external_id": "a1", "email": email}]}), 2)
    anonymised, enrolled = await anonymising, await enrolling
    assert anonymised.status_code == 200, anonymised.text
    assert enrolled.status_code == 202, enrolled.text
    [result] = enrolled.json()["results"]
    assert result["status"] == "accepted" and result["contact_id"] != contact_id, result
    assert await journeys_of(sessions, contact_id) == []


async def test_an_anonymisation_meeting_an_enrolment_under_way_is_blocked_by_its_journey(
        tenant, sessions):
    """The enrolment has read the contact and waits to write its journey (on the campaign,
    which the test holds) when the anonymisation comes: the anonymisation waits for it and is
    then blocked by the open journey."""
    campaign = await tenant.create_campaign()
    email = unique_email("enrol")
    contact_id = await create(tenant, "a2", email)
    async with sessions() as other, other.begin():
        await other.execute(text("SELECT 1 FROM campaigns WHERE id = :c FOR UPDATE"),
                            {"c": campaign["id"]})
        enrolling = await settled(sessions, tenant.post(
            f"/v1/campaigns/{campaign['id']}/contacts",
            {"contacts": [{"external_id": "a2", "email": email}]}), 1)
        assert not enrolling.done()
        anonymising = await settled(
            sessions, tenant.post(f"/v1/contacts/{contact_id}/anonymise", {}), 2)
    enrolled, anonymised = await enrolling, await anonymising
    assert enrolled.status_code == 202, enrolled.text
    assert enrolled.json()["results"][0]["status"] == "accepted"
    assert anonymised.status_code == 409, anonymised.text
    assert anonymised.json()["error"]["code"] == "anonymisation_blocked"
    async with sessions() as s:
        contact = await s.get(Contact, uuid.UUID(contact_id))
    assert contact.anonymised_at is None


# --- B5: a DELETE of the contact racing with calls that write rows pointing at it ------------


async def deleted_while(tenant, sessions, contact_id: str, call: Awaitable[httpx.Response]
                        ) -> httpx.Response:
    """Sends the call while the DELETE of the contact is under way (locked the contact and
    waits on its email, which the test holds); returns the call's answer once both are done,
    the DELETE done."""
    async with sessions() as other, other.begin():
        await other.execute(text("SELECT 1 FROM contact_points WHERE contact_id = :c FOR UPDATE"),
                            {"c": contact_id})
        deleting = await settled(sessions, tenant.http.delete(
            f"/v1/contacts/{contact_id}", headers=tenant.auth), 1)
        assert not deleting.done()
        calling = await settled(sessions, call, 2)
    deleted, answer = await deleting, await calling
    assert deleted.status_code == 204, deleted.text
    return answer


async def test_an_enrolment_meeting_a_delete_under_way_finds_the_contact_gone(tenant, sessions):
    campaign = await tenant.create_campaign()
    email = unique_email("del")
    contact_id = await create(tenant, "d1", email)
    answer = await deleted_while(tenant, sessions, contact_id, tenant.post(
        f"/v1/campaigns/{campaign['id']}/contacts", {"contacts": [{"external_id": "d1"}]}))
    assert answer.status_code == 422, answer.text
    [result] = answer.json()["results"]
    assert result["status"] == "rejected" and result["contact_id"] is None, result
    assert "no contact with this external_id" in result["errors"][0]["message"]
    assert await journeys_of(sessions, contact_id) == []


async def test_a_message_meeting_a_delete_under_way_is_a_404(tenant, sessions):
    r = await tenant.http.put("/v1/message-policies/invoice", headers=tenant.auth,
                              json={"category": "service"})
    assert r.status_code in (200, 201), r.text
    contact_id = await create(tenant, "d2", unique_email("msg"))
    answer = await deleted_while(tenant, sessions, contact_id, tenant.post("/v1/messages", {
        "contact_id": contact_id, "message_type": "invoice", "subject": "S", "text": "T"}))
    assert answer.status_code == 404, answer.text


async def test_an_enrichment_link_meeting_a_delete_under_way_is_a_404(tenant, sessions):
    campaign = await tenant.create_campaign()
    contact_id = await create(tenant, "d3", unique_email("link"))
    answer = await deleted_while(tenant, sessions, contact_id, tenant.get(
        f"/v1/contacts/{contact_id}/enrichment-link", campaign_id=campaign["id"]))
    assert answer.status_code == 404, answer.text
    assert await journeys_of(sessions, contact_id) == []


# --- B8: enrichment links asked at once for two campaigns -------------------------------------


async def test_enrichment_links_asked_at_once_in_two_campaigns_open_one_journey(
        tenant, sessions):
    """The first link waits to write its journey (on its campaign, which the test holds) when
    the second is asked in another campaign: the second waits for it and opens its journey."""
    first, second = await tenant.create_campaign(), await tenant.create_campaign()
    contact_id = await create(tenant, "e1", unique_email("links"))
    async with sessions() as other, other.begin():
        await other.execute(text("SELECT 1 FROM campaigns WHERE id = :c FOR UPDATE"),
                            {"c": first["id"]})
        linking = await settled(sessions, tenant.get(
            f"/v1/contacts/{contact_id}/enrichment-link", campaign_id=first["id"]), 1)
        assert not linking.done()
        again = await settled(sessions, tenant.get(
            f"/v1/contacts/{contact_id}/enrichment-link", campaign_id=second["id"]), 2)
    answers = [await linking, await again]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    journeys = await journeys_of(sessions, contact_id)
    assert len(journeys) == 1, [(j.campaign_id, j.stage) for j in journeys]
    assert {a.json()["journey_id"] for a in answers} == {str(journeys[0].id)}
    assert {a.json()["campaign_id"] for a in answers} == {first["id"]}
