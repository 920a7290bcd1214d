"""Requiring re-consent: every contact's GDPR consent back to Pending, a journey each, and the
customer's answer recorded in the ledger."""

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import ActivityEnvironment

from activities.reconsent import Reconsent
from core.contracts import AnonymiseInactiveInput, ReconsentBatchInput, ReconsentRunInput
from core.temporal import connect
from core.vocabulary import CLIENT_ID
from db.models import Campaign, ConsentEvent, Contact, ContactPoint, Journey
from db.session import transaction
from tests.helpers import Customer, eventually, handler_descriptions
from worker import running_worker
from workflows.contact_anonymisation import AnonymiseInactiveContactsWorkflow
from workflows.reconsent import ReconsentRunWorkflow
from workflows.webhook_endpoint import EndpointDispatcher

FORM = "We keep your name and address to serve you; see our privacy notice v2."


async def reconsent_campaign(tenant) -> dict:
    await tenant.ensure_purpose("data-processing", "data_processing")
    return await tenant.create_campaign(
        name="Privacy notice v2", kind="reconsent", languages=["en"],
        consents=[{"key": "gdpr", "purpose": "data-processing", "channel": "any",
                   "mandatory": True, "texts": {"en": {"text": FORM, "version": "v2"}}}])


async def run_reconsent(tenant, campaign_id: str) -> dict:
    started = await tenant.post(f"/v1/campaigns/{campaign_id}/reconsent-run", {})
    assert started.status_code == 202, started.text

    async def finished():
        progress = (await tenant.get(f"/v1/campaigns/{campaign_id}/reconsent-run")).json()
        return progress if progress["done"] else None
    return await eventually(finished, what="re-consent run")


async def test_reconsent_run_over_1000_contacts(tenant, sessions, http, mailbox):
    states = ["accepted"] * 400 + ["rejected"] * 300 + ["pending"] * 250 + ["withdrawn"] * 50
    ids = [uuid.uuid4() for _ in states]
    async with transaction(sessions) as session:
        session.add_all([Contact(id=i, client_id=tenant.id, external_id=f"r-{n}", language="en",
                                 gdpr_consent_state=s) for n, (i, s) in enumerate(zip(ids, states))])
        await session.flush()
        session.add_all([ContactPoint(client_id=tenant.id, contact_id=i, kind="email",
                                      value=f"r{n}-{tenant.id.hex[:8]}@example.com")
                         for n, i in enumerate(ids)])
    campaign = await reconsent_campaign(tenant)
    run_began = datetime.now(UTC)
    started = await tenant.post(f"/v1/campaigns/{campaign['id']}/reconsent-run?batch_size=30", {})
    assert started.status_code == 202, started.text

    async def finished():
        progress = (await tenant.get(f"/v1/campaigns/{campaign['id']}/reconsent-run")).json()
        return progress if progress["done"] else None
    progress = await eventually(finished, timeout=120, what="re-consent run")
    assert progress == {"contacts_reset": 950, "journeys_started": 950, "skipped": 50,
                        "done": True}
    async with sessions() as session:
        counts = dict((await session.execute(
            select(Contact.gdpr_consent_state, func.count()).where(Contact.client_id == tenant.id)
            .group_by(Contact.gdpr_consent_state))).all())
        journeys = await session.scalar(select(func.count()).where(
            Journey.campaign_id == uuid.UUID(campaign["id"])))
    assert counts == {"pending": 950, "withdrawn": 50}
    assert journeys == 950
    # The reset is a change of state like any other: it says when it happened.
    reset = (await tenant.get(f"/v1/contacts/{ids[0]}/gdpr-consent")).json()
    assert reset["state"] == "pending"
    assert run_began <= datetime.fromisoformat(reset["updated_at"]) <= datetime.now(UTC)
    untouched = (await tenant.get(f"/v1/contacts/{ids[-1]}/gdpr-consent")).json()
    assert (untouched["state"], untouched["updated_at"]) == ("withdrawn", None)

    # Asking again changes nothing: a campaign's run happens once.
    again = await tenant.post(f"/v1/campaigns/{campaign['id']}/reconsent-run", {})
    assert again.json()["journeys_started"] == 950

    # One customer answers from the email.
    address = f"r0-{tenant.id.hex[:8]}@example.com"
    [invitation] = await mailbox.wait_for(address, timeout=60)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert FORM in customer.page
    await customer.submit(mailbox.link(invitation), answer="accept")
    assert "your choice is saved" in customer.page
    ledger = (await tenant.get(f"/v1/contacts/{ids[0]}/consents")).json()
    assert [(e["purpose"], e["channel"], e["granted"], e["legal_text"]["version"])
            for e in ledger] == [("data-processing", "any", True, "v2")]
    # Tied to the journey whose page it was given on, as a contact page's decisions are.
    async with sessions() as session:
        journey_id = await session.scalar(select(Journey.id).where(Journey.contact_id == ids[0]))
        tied = (await session.execute(select(ConsentEvent.journey_id, ConsentEvent.checkbox_key)
                                      .where(ConsentEvent.contact_id == ids[0]))).all()
    assert tied == [(journey_id, "gdpr")]
    # Its invitation counts in the campaign's funnel.
    funnel = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/funnel")
    assert funnel["total"]["invited"] >= 1 and funnel["total"]["opened"] >= 1
    async with sessions() as session:
        assert (await session.get(Contact, ids[0])).gdpr_consent_state == "accepted"


async def test_an_address_moved_to_another_person_does_not_count(tenant, sessions, mailbox):
    """The household rule moved this contact's only address to someone else: the run neither
    writes to it nor counts the contact as reachable."""
    moved, kept = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in ("moved", "kept"))
    async with transaction(sessions) as session:
        contacts = [Contact(client_id=tenant.id, external_id=f"h-{n}", language="en",
                            gdpr_consent_state="accepted") for n in range(2)]
        session.add_all(contacts)
        await session.flush()
        session.add_all([
            ContactPoint(client_id=tenant.id, contact_id=contacts[0].id, kind="email",
                         value=moved, verification_state="released"),
            ContactPoint(client_id=tenant.id, contact_id=contacts[1].id, kind="email",
                         value=kept)])
    campaign = await reconsent_campaign(tenant)
    started = await tenant.post(f"/v1/campaigns/{campaign['id']}/reconsent-run", {})
    assert started.status_code == 202, started.text

    async def finished():
        progress = (await tenant.get(f"/v1/campaigns/{campaign['id']}/reconsent-run")).json()
        return progress if progress["done"] else None
    progress = await eventually(finished, what="re-consent run")
    assert (progress["contacts_reset"], progress["skipped"]) == (1, 1), progress
    await mailbox.wait_for(kept)
    assert mailbox.to(moved) == []


async def test_a_run_skips_addresses_that_bounced_or_complained(tenant, sessions, mailbox):
    """A run writes to no address a hard bounce refused, nor, once the client's rules make the
    re-consent invitation a service message, to one whose recipient reported our message as
    spam: a contact with another address is asked there, the others are skipped."""
    bounced, complained, spam, other = (f"{name}-{uuid.uuid4().hex[:8]}@example.com"
                                        for name in ("bounced", "complained", "spam", "other"))
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        contacts = [Contact(client_id=tenant.id, external_id=f"b-{n}-{uuid.uuid4().hex[:6]}",
                            language="en", gdpr_consent_state="accepted") for n in range(3)]
        session.add_all(contacts)
        await session.flush()
        session.add_all([
            ContactPoint(client_id=tenant.id, contact_id=contacts[0].id, kind="email",
                         value=bounced, undeliverable_since=now, undeliverable_reason="550"),
            ContactPoint(client_id=tenant.id, contact_id=contacts[1].id, kind="email",
                         value=complained, complained_since=now),
            ContactPoint(client_id=tenant.id, contact_id=contacts[2].id, kind="email",
                         value=spam, complained_since=now, verification_state="verified"),
            ContactPoint(client_id=tenant.id, contact_id=contacts[2].id, kind="email",
                         value=other)])
    await tenant.ok("PUT", "/v1/message-policies/reconsent_invitation", {"category": "service"})
    campaign = await reconsent_campaign(tenant)
    progress = await run_reconsent(tenant, campaign["id"])
    assert (progress["contacts_reset"], progress["skipped"]) == (1, 2), progress
    await mailbox.wait_for(other)
    assert [mailbox.to(a) for a in (bounced, complained, spam)] == [[], [], []]


async def test_rejecting_the_form_with_no_functionality_stops_messages(tenant, http, mailbox,
                                                                        sessions):
    from tests.test_consent_ledger import send, setup_policies
    await setup_policies(tenant)
    await tenant.http.patch("/v1/settings", json={"gdpr_consequence": "no_functionality"},
                            headers=tenant.auth)
    campaign = await reconsent_campaign(tenant)
    address = f"reject-{uuid.uuid4().hex[:8]}@example.com"
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "rj", "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    assert (await customer.submit(mailbox.link(invitation), answer="maybe")).status_code == 422
    form = customer.page
    await customer.submit(mailbox.link(invitation), answer="reject")
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "rejected")
    invoice = await send(tenant, enrolled["results"][0]["contact_id"], "invoice", "Invoice 7")
    assert invoice["status"] == "suppressed" and "rejected" in invoice["status_reason"]
    # Back to the form, the other button: the first answer stands, and the page said "your
    # choice is saved" of the one it did not save.
    customer.page = form
    await customer.submit(mailbox.link(invitation), answer="accept")
    assert "<h1>Your earlier answer stands</h1>" in customer.page
    assert "choice is saved" not in customer.page
    gdpr = await tenant.ok("GET", f"/v1/contacts/{enrolled['results'][0]['contact_id']}"
                                  "/gdpr-consent")
    assert gdpr["state"] == "rejected"


async def test_reconsent_campaign_validation(tenant):
    await tenant.ensure_purpose("newsletter", "direct_marketing")
    await tenant.ensure_purpose("data-processing", "data_processing")
    wrong_purpose = await tenant.post("/v1/campaigns", {
        "name": "x", "kind": "reconsent", "consents": [
            {"key": "n", "purpose": "newsletter", "channel": "email",
             "texts": {"en": {"text": "t", "version": "1"}}}]})
    assert wrong_purpose.status_code == 422
    assert wrong_purpose.json()["error"]["fields"][0]["field"] == "consents[0].purpose"
    form_in_data_campaign = await tenant.post("/v1/campaigns", {
        "name": "x", "consents": [{"key": "g", "purpose": "data-processing", "channel": "any",
                                   "texts": {"en": {"text": "t", "version": "1"}}}]})
    assert form_in_data_campaign.status_code == 422
    normal = await tenant.create_campaign(languages=["en"], consents=[])
    assert (await tenant.post(f"/v1/campaigns/{normal['id']}/reconsent-run", {})).status_code == 409
    assert (await tenant.get(f"/v1/campaigns/{normal['id']}/reconsent-run")).status_code == 404
    # An archived form asks nobody again: no consent state is reset.
    archived = await reconsent_campaign(tenant)
    await tenant.ok("PATCH", f"/v1/campaigns/{archived['id']}", {"status": "archived"})
    refused = await tenant.post(f"/v1/campaigns/{archived['id']}/reconsent-run", {})
    assert refused.status_code == 409 and "archived" in refused.json()["error"]["message"]


async def test_back_office_records_the_signed_form(tenant, sessions):
    import base64
    from datetime import UTC, datetime, timedelta
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "v1", "text": FORM})
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id="paper-1", language="en")
        session.add(contact)
    path = f"/v1/contacts/{contact.id}/gdpr-consent"
    pdf = b"%PDF-1.4 signed consent form"
    signed_on = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    body = {"state": "accepted", "purpose": "data-processing", "given_at": signed_on,
            "source": "back_office", "actor": "user:anna", "legal_text": {"language": "en"},
            "document": {"filename": "form.pdf", "content_type": "application/pdf",
                         "content_base64": base64.b64encode(pdf).decode()}}

    withdraw_first = await tenant.post(path, {**body, "state": "withdrawn", "document": None})
    assert withdraw_first.status_code == 409
    recorded = await tenant.post(path, body)
    assert recorded.status_code == 200, recorded.text
    state = recorded.json()
    assert state["state"] == "accepted" and state["updated_at"].startswith(signed_on[:19])
    [document] = state["documents"]
    download = await tenant.get(f"{path}/documents/{document['id']}")
    assert download.content == pdf and download.headers["content-type"] == "application/pdf"
    # The same decision again is that one entry with its one form; with another form, a 409.
    assert (await tenant.post(path, body)).json()["documents"] == [document]
    other = {**body["document"], "content_base64": base64.b64encode(b"%PDF-1.4 other").decode()}
    assert (await tenant.post(path, {**body, "document": other})).status_code == 409
    withdrawn = await tenant.post(path, {**body, "state": "withdrawn", "document": None,
                                         "given_at": datetime.now(UTC).isoformat()})
    assert withdrawn.json()["state"] == "withdrawn"
    ledger = (await tenant.get(f"/v1/contacts/{contact.id}/consents")).json()
    assert [(e["granted"], e["actor"]) for e in ledger] == [(True, "user:anna"),
                                                            (False, "user:anna")]
    for bad, field in [
        ({**body, "purpose": "newsletter"}, "purpose"),
        ({**body, "document": {**body["document"], "content_base64": "not base64!"}},
         "document.content_base64"),
        ({**body, "document": {**body["document"], "content_type": "text/html"}},
         "document.content_type"),
        ({**body, "document": {**body["document"], "filename": "../../etc/passwd"}},
         "document.filename"),
        ({**body, "document": {**body["document"], "filename": 'a"; x=y.pdf'}},
         "document.filename"),
        ({**body, "document": {**body["document"], "filename": "a\r\nSet-Cookie: x=1.pdf"}},
         "document.filename"),
    ]:
        response = await tenant.post(path, bad)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"][0]["field"] == field


async def test_a_late_older_answer_does_not_undo_a_newer_one(tenant, sessions):
    """Paper forms arrive late: a rejection signed before the contact accepted goes into the
    ledger as history, and neither changes the state nor anonymises the contact."""
    await tenant.http.patch("/v1/settings", json={"gdpr_consequence": "anonymise"},
                            headers=tenant.auth)
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "v1", "text": FORM})
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id=f"late-{uuid.uuid4().hex[:6]}",
                          first_name="Lou", language="en")
        session.add(contact)
    path = f"/v1/contacts/{contact.id}/gdpr-consent"
    body = {"purpose": "data-processing", "source": "back_office",
            "legal_text": {"language": "en"}}
    accepted = await tenant.post(path, {**body, "state": "accepted",
                                        "given_at": "2026-12-02T10:00:00Z"})
    assert accepted.json()["state"] == "accepted", accepted.text
    late = await tenant.post(path, {**body, "state": "rejected",
                                    "given_at": "2026-10-01T10:00:00Z"})
    assert late.status_code == 200, late.text
    assert (late.json()["state"], late.json()["updated_at"][:10], late.json()["anonymised"]) == (
        "accepted", "2026-12-02", False)
    async with sessions() as session:
        assert (await session.get(Contact, contact.id)).first_name == "Lou"
    ledger = (await tenant.get(f"/v1/contacts/{contact.id}/consents")).json()
    assert [e["granted"] for e in ledger] == [False, True]  # in the order they were given


async def test_anonymise_consequence_applies_on_rejection(tenant, http, mailbox, sessions,
                                                          temporal_env, settings):
    await tenant.http.patch("/v1/settings", json={"gdpr_consequence": "anonymise"},
                            headers=tenant.auth)
    campaign = await reconsent_campaign(tenant)
    address = f"anon-{uuid.uuid4().hex[:8]}@example.com"
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "an-1", "first_name": "Zoë",
                                                   "email": address})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), answer="reject")
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "rejected")
    async with sessions() as session:
        contact = await session.get(Contact, uuid.UUID(enrolled["results"][0]["contact_id"]))
        assert contact.anonymised_at is not None and contact.first_name is None

    # Recorded by the back office while another journey is open: blocked, with the reason.
    other = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT6S")
    address = f"anon-{uuid.uuid4().hex[:8]}@example.com"
    running = (await tenant.enrol(other["id"], {"external_id": "an-2", "email": address})
               )["results"][0]
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "v2", "text": FORM})
    from datetime import UTC, datetime
    answer = await tenant.post(f"/v1/contacts/{running['contact_id']}/gdpr-consent", {
        "state": "rejected", "purpose": "data-processing", "source": "call_centre",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "rejected" and body["anonymised"] is False
    assert body["anonymisation_blocked"] and running["journey_id"] in " ".join(
        body["anonymisation_blocked"]), body
    # Read later, the state says the same as the answer did, as after a page rejection.
    path = f"/v1/contacts/{running['contact_id']}"
    state = await tenant.ok("GET", f"{path}/gdpr-consent")
    assert state["anonymisation_blocked"] == body["anonymisation_blocked"]
    assert "data.anonymisation_blocked" in [a["type"] for a in (await tenant.ok(
        "GET", f"{path}/activity"))["items"]]

    # Once the journey has ended, the daily anonymisation run applies the policy.
    await tenant.wait_for_stage(running["journey_id"], "expired", timeout=30)
    run = await temporal_env.client.execute_workflow(
        AnonymiseInactiveContactsWorkflow.run, AnonymiseInactiveInput(batch_size=2),
        id=f"anonymise-inactive-test-{uuid.uuid4()}", task_queue=settings.temporal_task_queue)
    assert run.after_rejection >= 1
    state = await tenant.ok("GET", f"{path}/gdpr-consent")
    assert (state["anonymised"], state["anonymisation_blocked"]) == (True, None)
    # Nothing is left to consent about: a later answer is refused, not recorded as kept.
    late = await tenant.post(f"{path}/gdpr-consent", {
        "state": "accepted", "purpose": "data-processing", "source": "call_centre",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}})
    assert late.status_code == 409, late.text


async def test_a_blocked_anonymisation_after_a_page_rejection_shows_in_the_gdpr_state(
    tenant, http, mailbox
):
    """The customer rejects on the page while another journey of theirs is open: the contact
    stays, and the client reads why from the GDPR state until a newer answer replaces it."""
    await tenant.http.patch("/v1/settings", json={"gdpr_consequence": "anonymise"},
                            headers=tenant.auth)
    campaign = await reconsent_campaign(tenant)
    other = await tenant.create_campaign(languages=["en"], consents=[])
    address = f"anon-{uuid.uuid4().hex[:8]}@example.com"
    person = {"external_id": f"an-{uuid.uuid4().hex[:6]}", "email": address}
    enrolled = (await tenant.enrol(campaign["id"], person))["results"][0]
    [invitation] = await mailbox.wait_for(address)
    running = (await tenant.enrol(other["id"], person))["results"][0]
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), answer="reject")
    await tenant.wait_for_stage(enrolled["journey_id"], "rejected")

    path = f"/v1/contacts/{enrolled['contact_id']}/gdpr-consent"
    state = await tenant.ok("GET", path)
    assert (state["state"], state["anonymised"]) == ("rejected", False)
    assert state["anonymisation_blocked"] and running["journey_id"] in " ".join(
        state["anonymisation_blocked"]), state

    # A newer answer is the state now; the old block no longer explains it.
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "v2", "text": FORM})
    accepted = await tenant.post(path, {
        "state": "accepted", "purpose": "data-processing", "source": "call_centre",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}})
    assert accepted.status_code == 200, accepted.text
    assert (await tenant.ok("GET", path))["anonymisation_blocked"] is None


async def unasked_contact(tenant, sessions) -> uuid.UUID:
    """A contact with an email and no journey in any re-consent campaign."""
    contact_id = uuid.uuid4()
    async with transaction(sessions) as session:
        session.add(Contact(id=contact_id, client_id=tenant.id, external_id=f"u-{contact_id}",
                            language="en", gdpr_consent_state="accepted"))
        await session.flush()
        session.add(ContactPoint(client_id=tenant.id, contact_id=contact_id, kind="email",
                                 value=f"{contact_id}@example.com"))
    return contact_id


async def test_a_contact_who_answered_this_form_keeps_the_answer(tenant, sessions, http,
                                                                 mailbox):
    campaign = await reconsent_campaign(tenant)
    address = f"answered-{uuid.uuid4().hex[:8]}@example.com"
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
                  )["results"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    await customer.submit(mailbox.link(invitation), answer="accept")
    await tenant.wait_for_stage(enrolled["journey_id"], "accepted")
    # Another, asked by this campaign, answers on paper to the back office.
    paper = f"paper-{uuid.uuid4().hex[:8]}@example.com"
    [on_paper] = (await tenant.enrol(campaign["id"], {"external_id": paper, "email": paper})
                  )["results"]
    await mailbox.wait_for(paper)
    recorded = await tenant.post(f"/v1/contacts/{on_paper['contact_id']}/gdpr-consent", {
        "state": "rejected", "purpose": "data-processing", "source": "back_office",
        "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}})
    assert recorded.status_code == 200, recorded.text
    other = await unasked_contact(tenant, sessions)

    progress = await run_reconsent(tenant, campaign["id"])
    # The rest of the registry is reset; whoever answered this form is not.
    states = [(await tenant.get(f"/v1/contacts/{c}/gdpr-consent")).json()["state"]
              for c in (enrolled["contact_id"], on_paper["contact_id"], other)]
    assert states == ["accepted", "rejected", "pending"]
    async with sessions() as session:
        asked = await session.scalar(select(func.count()).where(
            Journey.contact_id == uuid.UUID(enrolled["contact_id"])))
    assert (progress["contacts_reset"], asked) == (1, 1)


async def test_a_run_an_operator_terminated_can_be_started_again(tenant, sessions, mailbox,
                                                                 temporal_env):
    campaign = await reconsent_campaign(tenant)
    contact = await unasked_contact(tenant, sessions)
    # Terminated before it reached anyone: started where no worker polls, as if stuck.
    stuck = await temporal_env.client.start_workflow(
        ReconsentRunWorkflow.run, ReconsentRunInput(campaign["id"], 200),
        id=f"reconsent/{campaign['id']}", task_queue=f"nobody-{uuid.uuid4()}")
    await stuck.terminate(reason="operator")
    # A client polling for `done` learns that it never will be.
    assert (await tenant.get(f"/v1/campaigns/{campaign['id']}/reconsent-run")).json() == {
        "contacts_reset": 0, "journeys_started": 0, "skipped": 0, "done": False,
        "stopped": "terminated"}

    progress = await run_reconsent(tenant, campaign["id"])
    assert progress["done"] and progress["journeys_started"] >= 1 and "stopped" not in progress
    await mailbox.wait_for(f"{contact}@example.com")
    # Operators find the run by its client and campaign, as its journeys (the list is
    # eventually consistent).
    async def listed() -> list:
        return [w async for w in temporal_env.client.list_workflows(
            f"CampaignId = '{campaign['id']}' AND WorkflowType = 'ReconsentRun'")]
    runs = await eventually(listed, what="the run in Temporal's list")
    assert {r.typed_search_attributes.get(CLIENT_ID) for r in runs} == {str(tenant.id)}
    # Its summary names the campaign, and its progress query says what it tells.
    run = temporal_env.client.get_workflow_handle(f"reconsent/{campaign['id']}")
    assert await (await run.describe()).static_summary() == (
        f"Re-consent run of campaign {campaign['id']}")
    assert "contacts reset" in (await handler_descriptions(run))["state"]


async def test_a_run_an_operator_cancelled_reads_cancelled(tenant, sessions, settings,
                                                          temporal_env):
    """Cancelled in the Temporal UI, a run read `stopped: "canceled"`, Temporal's spelling,
    where the API says `cancelled` everywhere else."""
    campaign = await reconsent_campaign(tenant)
    await unasked_contact(tenant, sessions)
    queue = f"nobody-{uuid.uuid4()}"
    stuck = await temporal_env.client.start_workflow(
        ReconsentRunWorkflow.run, ReconsentRunInput(campaign["id"], 200),
        id=f"reconsent/{campaign['id']}", task_queue=queue)
    await stuck.cancel()
    async with running_worker(temporal_env.client,
                              settings.model_copy(update={"temporal_task_queue": queue})):
        with pytest.raises(WorkflowFailureError):
            await stuck.result()
    assert (await tenant.get(f"/v1/campaigns/{campaign['id']}/reconsent-run")).json() == {
        "contacts_reset": 0, "journeys_started": 0, "skipped": 0, "done": False,
        "stopped": "cancelled"}


async def test_a_reconsent_campaign_needs_its_form_and_asks_for_no_data(tenant):
    await tenant.ensure_purpose("data-processing", "data_processing")
    for change, field in [({}, "consents"), ({"consents": []}, "consents"),
                          ({"payments": True}, "payments"),
                          ({"mode": "verify_existing"}, "mode"),
                          ({"collect": ["email"]}, "collect")]:
        body = {"name": "x", "kind": "reconsent", **change}
        if field != "consents":
            body["consents"] = [{"key": "gdpr", "purpose": "data-processing", "channel": "any",
                                 "texts": {"en": {"text": FORM, "version": "v2"}}}]
        refused = await tenant.post("/v1/campaigns", body)
        assert refused.status_code == 422, (change, refused.text)
        assert [f["field"] for f in refused.json()["error"]["fields"]] == [field], refused.text


async def test_a_reconsent_campaign_stored_without_its_form_runs_nothing_and_no_page_fails(
        tenant, sessions, http, mailbox):
    """Stored before a form was required: its run would reset everyone to pending with nothing
    to answer, and its page had nothing to show."""
    campaign = await reconsent_campaign(tenant)
    address = f"noform-{uuid.uuid4().hex[:8]}@example.com"
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "nf", "email": address})
    contact_id = uuid.UUID(enrolled["results"][0]["contact_id"])
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))  # the form, open in the customer's browser
    async with transaction(sessions) as session:
        stored = await session.get(Campaign, uuid.UUID(campaign["id"]))
        stored.spec = {**stored.spec, "consents": []}
        (await session.get(Contact, contact_id)).gdpr_consent_state = "accepted"

    run = await tenant.post(f"/v1/campaigns/{campaign['id']}/reconsent-run", {})
    assert run.status_code == 409 and "no consent form" in run.json()["error"]["message"]
    async with sessions() as session:
        assert (await session.get(Contact, contact_id)).gdpr_consent_state == "accepted"
    answered = await customer.submit(mailbox.link(invitation), answer="accept")
    assert answered.status_code == 200 and "can no longer be completed" in customer.page
    opened = await customer.open(mailbox.link(invitation))
    assert opened.status_code == 200 and "can no longer be completed" in customer.page


async def form_campaign(tenant, version: str, text: str, **fields) -> dict:
    await tenant.ensure_purpose("data-processing", "data_processing")
    return await tenant.create_campaign(
        name=f"Privacy notice {version}", kind="reconsent", languages=["en"], **fields,
        consents=[{"key": "gdpr", "purpose": "data-processing", "channel": "any",
                   "mandatory": True, "texts": {"en": {"text": text, "version": version}}}])


async def contact_with_email(sessions, tenant, state: str = "accepted") -> tuple[uuid.UUID, str]:
    contact_id = uuid.uuid4()
    address = f"rc-{uuid.uuid4().hex[:8]}@example.com"
    async with transaction(sessions) as session:
        session.add(Contact(id=contact_id, client_id=tenant.id, external_id=address,
                            language="en", gdpr_consent_state=state))
        await session.flush()
        session.add(ContactPoint(client_id=tenant.id, contact_id=contact_id, kind="email",
                                 value=address))
    return contact_id, address


async def test_a_newer_reconsent_ends_the_requests_of_the_form_it_replaces(
        tenant, sessions, http, mailbox, webhook_receiver, temporal_env):
    """The client's form changes twice: re-consent to v1 runs, then, while its requests are
    still open, re-consent to v2. An answer to the v1 page must not become the consent state
    (it was `accepted`, consent to an outdated form): v1's request ends as superseded."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    contact_id, address = await contact_with_email(sessions, tenant)
    v1 = await form_campaign(tenant, "v1", "We keep your name. Version one.")
    await run_reconsent(tenant, v1["id"])
    [first] = await mailbox.wait_for(address)
    old_page = Customer(http)
    await old_page.open(mailbox.link(first))
    assert "Version one." in old_page.page
    [old] = (await tenant.get(f"/v1/campaigns/{v1['id']}/journeys")).json()["items"]

    v2 = await form_campaign(tenant, "v2", "We keep your name and share it. Version two.")
    await run_reconsent(tenant, v2["id"])
    second = (await mailbox.wait_for(address, 2))[1]
    [cancelled] = await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert (cancelled.payload["data"]["journey_id"], cancelled.payload["data"]["detail"]) == (
        old["id"], {"by": "client", "reason": "superseded_by_reconsent"})
    ended = await tenant.journey(old["id"])
    assert ended["stage"] == "cancelled"
    assert ended["history"][-1]["detail"] == {"by": "client",
                                              "reason": "superseded_by_reconsent"}
    # Its workflow is cancelled after, as a withdrawn journey's is, and records nothing more.
    handle = temporal_env.client.get_workflow_handle(old["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert len(webhook_receiver.events(hook, "journey.cancelled")) == 1
    assert len((await tenant.journey(old["id"]))["history"]) == len(ended["history"])

    # The customer answers the old page still open in the browser.
    answered = await old_page.submit(mailbox.link(first), answer="accept")
    assert "A newer request was sent" in answered.text, answered.text
    assert "Please answer that one" in answered.text
    state = (await tenant.get(f"/v1/contacts/{contact_id}/gdpr-consent")).json()
    assert state["state"] == "pending"
    async with sessions() as session:
        assert not await session.scalar(select(func.count()).where(
            ConsentEvent.contact_id == contact_id))
    reopened = await Customer(http).open(mailbox.link(first))
    assert "A newer request was sent" in reopened.text

    # The newer request is the one that counts.
    customer = Customer(http)
    await customer.open(mailbox.link(second))
    assert "Version two." in customer.page
    await customer.submit(mailbox.link(second), answer="accept")
    state = (await tenant.get(f"/v1/contacts/{contact_id}/gdpr-consent")).json()
    assert state["state"] == "accepted"


async def test_an_expired_reconsent_page_speaks_of_no_details_entered(tenant, sessions, http,
                                                                     mailbox):
    campaign = await form_campaign(tenant, "v3", FORM, expires_after="PT3S")
    contact_id, address = await contact_with_email(sessions, tenant)
    await run_reconsent(tenant, campaign["id"])
    [invitation] = await mailbox.wait_for(address)
    [journey] = (await tenant.get(f"/v1/campaigns/{campaign['id']}/journeys")).json()["items"]
    await tenant.wait_for_stage(journey["id"], "expired")
    page = await Customer(http).open(mailbox.link(invitation))
    assert page.status_code == 410
    assert "This request has ended" in page.text
    assert "Details you entered" not in page.text
    assert "The time to answer it has passed" in page.text


async def test_a_retried_batch_cancels_the_replaced_requests_an_earlier_try_left_running(
        tenant, sessions, settings, mailbox, webhook_receiver, temporal_env):
    """A batch that committed, then lost Temporal before it cancelled the workflows of the
    requests it replaced, is retried: the database had ended those requests, so the retry found
    none to cancel and their workflows ran on (to their next reminder, in the Temporal UI)."""
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled"])
    _, address = await contact_with_email(sessions, tenant)
    v1 = await form_campaign(tenant, "v1", "We keep your name. Version one.")
    await run_reconsent(tenant, v1["id"])
    await mailbox.wait_for(address)
    [old] = (await tenant.get(f"/v1/campaigns/{v1['id']}/journeys")).json()["items"]
    v2 = await form_campaign(tenant, "v2", "We keep your name and share it. Version two.")
    batch = ReconsentBatchInput(v2["id"], None, 200)
    waker = EndpointDispatcher(temporal_env.client, settings)
    cut_off = await connect(settings.model_copy(update={"temporal_address": "127.0.0.1:1"}),
                            lazy=True)
    env = ActivityEnvironment()
    with pytest.raises(RuntimeError, match="connect"):
        await env.run(Reconsent(sessions, settings, cut_off, waker).reconsent_batch, batch)
    assert (await tenant.journey(old["id"]))["stage"] == "cancelled"

    env.info = dataclasses.replace(env.info, attempt=2)
    retried = await env.run(Reconsent(sessions, settings, temporal_env.client, waker)
                            .reconsent_batch, batch)
    assert retried.journeys_started == 1
    assert len(await mailbox.wait_for(address, 2)) == 2
    handle = temporal_env.client.get_workflow_handle(old["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 10)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert len(webhook_receiver.events(hook, "journey.cancelled")) == 1
    assert (await tenant.journey(old["id"]))["history"][-1]["detail"] == {
        "by": "client", "reason": "superseded_by_reconsent"}
