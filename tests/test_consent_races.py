"""One contact's consent decisions arriving at once (a back office and the customer's page,
retries, an erasure meanwhile) are decided one after the other: the newest answer stands,
a retry is one entry, and nothing recorded after an erasure names the person."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from db.models import WebhookEvent
from tests.helpers import Customer, eventually, unique_email
from tests.test_reconsent import reconsent_campaign

KEEP_DATA = {"purpose": "keep-data", "source": "back_office",
             "legal_text": {"language": "en", "version": "1"}}


async def contact_with_forms(tenant, name: str = "Ann") -> str:
    await tenant.ensure_purpose("keep-data", "data_processing")
    await tenant.ensure_purpose("newsletter")
    for purpose, version, words in (("keep-data", "1", "Keep my data"),
                                   ("newsletter", "9", "Send me news")):
        await tenant.post(f"/v1/purposes/{purpose}/legal-texts",
                          {"language": "en", "version": version, "text": words})
    created = await tenant.post("/v1/contacts", {
        "external_id": f"ext-{name}-{uuid.uuid4().hex[:6]}", "first_name": name,
        "contact_points": [{"kind": "email", "value": unique_email("race")}]})
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def test_an_older_answer_sent_with_a_newer_one_does_not_win_nor_anonymise(tenant):
    """A back office posting an old paper rejection while the customer's acceptance is posted
    anonymised the contact whose acceptance had been recorded (or deadlocked one of them into
    a 503). Now they end as one after the other would: the acceptance first, and the rejection
    is history; or the rejection first, which anonymises, and the acceptance finds the contact
    anonymised."""
    await tenant.ok("PATCH", "/v1/settings", {"gdpr_consequence": "anonymise"})
    for _ in range(3):
        contact = await contact_with_forms(tenant)
        now = datetime.now(UTC)
        newer = {**KEEP_DATA, "state": "accepted", "given_at": now.isoformat()}
        older = {**newer, "state": "rejected", "given_at": (now - timedelta(days=1)).isoformat()}
        accepted, rejected = await asyncio.gather(
            tenant.post(f"/v1/contacts/{contact}/gdpr-consent", newer),
            tenant.post(f"/v1/contacts/{contact}/gdpr-consent", older))
        assert rejected.status_code == 200, rejected.text
        state = (await tenant.get(f"/v1/contacts/{contact}/gdpr-consent")).json()
        if accepted.status_code == 200:
            assert (state["state"], state["anonymised"]) == ("accepted", False), state
            assert datetime.fromisoformat(state["updated_at"]) == now
        else:
            assert accepted.json()["error"]["code"] == "contact_anonymised", accepted.text
            assert (state["state"], state["anonymised"]) == ("rejected", True), state


async def test_a_decision_retried_at_once_is_one_entry_and_one_event(tenant, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    contact = await contact_with_forms(tenant)
    body = {"changes": [{"purpose": "newsletter", "channel": "email", "granted": True,
                         "source": "api", "given_at": datetime.now(UTC).isoformat(),
                         "legal_text": {"language": "en", "version": "9"}}]}
    answers = await asyncio.gather(*(tenant.post(f"/v1/contacts/{contact}/consents", body)
                                     for _ in range(4)))
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()[0]["id"] for a in answers}) == 1
    assert len((await tenant.get(f"/v1/contacts/{contact}/consents")).json()) == 1
    [event] = await webhook_receiver.wait_for(hook, "consent.changed")
    await asyncio.sleep(1)  # a second one would be on its way by now
    assert webhook_receiver.events(hook, "consent.changed") == [event]


async def test_a_newer_withdrawal_sent_with_an_older_grant_is_the_current_one(
        tenant, webhook_receiver):
    """The older grant was announced `current: true` after the withdrawal: a receiver applying
    current events in order went on mailing someone who had withdrawn."""
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    for round in range(3):
        contact = await contact_with_forms(tenant)
        now = datetime.now(UTC)

        def change(granted: bool, at: datetime):
            return tenant.post(f"/v1/contacts/{contact}/consents", {"changes": [{
                "purpose": "newsletter", "channel": "email", "granted": granted,
                "source": "api", "given_at": at.isoformat(),
                "legal_text": {"language": "en", "version": "9"}}]})
        await asyncio.gather(change(False, now), change(True, now - timedelta(seconds=1)))
        events = [d for d in await webhook_receiver.wait_for(hook, "consent.changed",
                                                             count=2 * (round + 1))
                  if d.payload["data"]["contact"]["id"] == contact]
        applied = None
        for delivery in sorted(events, key=lambda d: int(d.headers["webhook-sequence"])):
            if delivery.payload["data"]["current"]:
                applied = delivery.payload["data"]["consent"]["granted"]
        assert applied is False


async def test_an_answer_recorded_while_the_contact_is_anonymised_names_no_one(
        tenant, sessions):
    for _ in range(3):
        name = f"Zelda{uuid.uuid4().hex[:6]}"
        contact = await contact_with_forms(tenant, name)
        answer, erased = await asyncio.gather(
            tenant.post(f"/v1/contacts/{contact}/gdpr-consent", {
                **KEEP_DATA, "state": "accepted", "given_at": datetime.now(UTC).isoformat()}),
            tenant.post(f"/v1/contacts/{contact}/anonymise", {}))
        assert erased.status_code == 200, erased.text
        assert answer.status_code in (200, 409), answer.text
        async with sessions() as session:
            payloads = [str(p) for p in await session.scalars(select(WebhookEvent.payload).where(
                WebhookEvent.client_id == tenant.id))]
        assert not [p for p in payloads if name in p]


async def test_the_pages_older_answer_does_not_undo_the_clients_newer_one(
        tenant, http, mailbox, sessions):
    """The customer rejected on the re-consent page just before the call centre recorded their
    acceptance; the page's answer, recorded by the journey after that, anonymised them."""
    await tenant.ok("PATCH", "/v1/settings", {"gdpr_consequence": "anonymise"})
    campaign = await reconsent_campaign(tenant)
    address = unique_email("page")
    [enrolled] = (await tenant.enrol(campaign["id"], {
        "external_id": address, "first_name": "Zoe", "email": address}))["results"]
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    link = mailbox.link(invitation)
    await customer.open(link)
    form = {**customer.hidden_fields(), "csrf_token": customer.csrf(), "answer": "reject"}
    async with sessions() as worker, worker.begin():
        # The journey's recording of the page's answer waits here, as a busy worker would.
        await worker.execute(text("SELECT 1 FROM journeys WHERE id = :j FOR UPDATE"),
                             {"j": enrolled["journey_id"]})
        page = asyncio.create_task(http.post(link, data=form))

        async def recording_waits() -> bool:
            async with sessions() as probe:
                return bool(await probe.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")))
        await eventually(recording_waits, what="the page's answer to wait for the journey")
        office = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/gdpr-consent", {
            "state": "accepted", "purpose": "data-processing", "source": "call_centre",
            "given_at": datetime.now(UTC).isoformat(), "legal_text": {"language": "en"}})
        assert office.status_code == 200, office.text
    assert (await page).status_code < 500
    await tenant.wait_for_stage(enrolled["journey_id"], "rejected")
    state = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/gdpr-consent")).json()
    assert (state["state"], state["anonymised"]) == ("accepted", False), state
    # The page's rejection is in the ledger, as history.
    ledger = sorted((await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json(),
                    key=lambda e: e["given_at"])
    assert [(e["source"], e["granted"]) for e in ledger] == [
        ("contact_page", False), ("call_centre", True)]
