"""GDPR duties walked over HTTP: export of everything, anonymisation (refused while a journey is
open; afterwards no personal value is left in any table), termination, and the scheduled batch
anonymisation of inactive contacts."""

import asyncio
import base64
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from api.routes.contacts import ContactExport
from contacts import gdpr
from contacts.audit import Actor
from core.contracts import AnonymiseInactiveInput
from core.vocabulary import ActorType, TokenPurpose
from db.kyc_models import KycDocument
from db.models import Contact, Journey
from db.session import transaction
from messaging import links
from messaging.local_outbox import read_records
from tests.helpers import Customer, eventually, unique_email
from tests.test_channel_plans import (
    contact as person_with,
    enrol,
    mobile_number,
    wait_for_letter,
    wait_for_sms,
)
from tests.histories import save_history
from tests.test_campaign_launch import finished_launch, launch, light_campaign
from tests.test_payment_journey import claim as payment_claim
from tests.test_kyc import (
    ID_OR_PASSPORT as KYC_ID_OR_PASSPORT,
    IDENTITY as KYC_IDENTITY,
    define as kyc_define,
    new_contact as kyc_contact,
    refuted_upload_link,
    upload as kyc_upload,
)
from workflows.contact_anonymisation import AnonymiseInactiveContactsWorkflow
from workflows.starts import workflow_id


def luhn_card() -> str:
    digits = [4] + [random.randint(0, 9) for _ in range(14)]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


async def text_columns(session) -> list[tuple[str, str]]:
    rows = await session.execute(text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'alembic_version' AND data_type IN "
        "('text', 'character varying', 'json', 'jsonb', 'bytea')"))
    return [(t, c) for t, c in rows]


async def places_holding(sessions, value: str) -> list[str]:
    """Every table.column of the whole database in which the value still appears."""
    found = []
    async with transaction(sessions) as session:
        for table, column in await text_columns(session):
            cast = f"convert_from(\"{column}\", 'UTF8')" if column == "content" else \
                f"\"{column}\"::text"
            hit = await session.scalar(text(
                f'SELECT count(*) FROM "{table}" WHERE position(lower(:v) in lower({cast})) > 0'),
                {"v": value})
            if hit:
                found.append(f"{table}.{column}")
    return found


async def test_export_then_anonymise_leaves_no_personal_data(
    tenant, http, mailbox, webhook_receiver, sessions
):
    await tenant.subscribe(webhook_receiver)
    n = uuid.uuid4().hex[:10]
    known, entered = unique_email(f"known{n}"), unique_email(f"entered{n}")
    mobile = f"+3161{random.randint(1000000, 9999999)}"
    card = luhn_card()
    personal = {
        "external_id": f"crm-{n}", "first_name": f"Zoltar{n}", "last_name": f"Quibble{n}",
        "date_of_birth": "1980-02-29", "id_number": f"IDN{n}", "passport_number": f"PP{n}",
        "ssn": f"SSN{n}", "contact_points": [{"kind": "email", "value": known},
                                             {"kind": "mobile", "value": mobile}],
        "addresses": [{"type": "home", "line1": f"Geheimstraat {n}", "city": "Utrecht",
                       "country": "NL"}],
        "identification_media": [{"kind": "card", "value": card},
                                 {"kind": "loyalty_id", "value": f"LOY{n}"}],
        "tags": [f"t{n}"],
    }
    created = await tenant.post("/v1/contacts", personal)
    assert created.status_code == 201, created.text
    contact = created.json()
    base = f"/v1/contacts/{contact['id']}"
    await tenant.post(f"{base}/addresses", {"type": "home", "line1": f"Oudeweg {n}",
                                            "city": "Gouda", "country": "NL"})
    campaign = await tenant.create_campaign()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": f"crm-{n}", "email": known})
    journey_id = enrolled["results"][0]["journey_id"]
    assert enrolled["results"][0]["contact_id"] == contact["id"]

    # The customer answers: a new email, consents, from an IP address.
    [invitation] = await mailbox.wait_for(known)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    await customer.submit(page, email=entered, consent=["terms", "newsletter"])
    await tenant.wait_for_stage(journey_id, "verification_pending")

    # While the journey is open, anonymisation is refused with the reason.
    refused = await tenant.post(f"{base}/anonymise", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "anonymisation_blocked"
    assert journey_id in refused.json()["error"]["fields"][0]["message"]
    assert (await tenant.get(base)).json()["first_name"] == f"Zoltar{n}"

    [verification] = await mailbox.wait_for(entered)
    link = mailbox.link(verification)
    await customer.open(link)
    await customer.submit(link)
    await tenant.wait_for_stage(journey_id, "verified")

    # The client writes to the contact through us; the text names the contact.
    response = await tenant.http.put("/v1/message-policies/invoice", headers=tenant.auth,
                                     json={"category": "financial"})
    assert response.status_code == 200, response.text
    sent = await tenant.post("/v1/messages", {
        "contact_id": contact["id"], "message_type": "invoice", "subject": f"Invoice Zoltar{n}",
        "text": f"Dear Zoltar{n} Quibble{n}, your invoice."})
    assert sent.status_code == 202, sent.text
    await mailbox.wait_for(entered, count=2)

    export = (await tenant.get(f"{base}/export")).json()
    # Documented in the OpenAPI schema, section by section, and read by that schema.
    openapi = (await tenant.get("/openapi.json")).json()
    assert openapi["paths"]["/v1/contacts/{contact_id}/export"]["get"]["responses"]["200"][
        "content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ContactExport"}
    assert set(export) == set(ContactExport.model_fields)
    ContactExport.model_validate(export)
    c = export["contact"]
    assert c["first_name"] == f"Zoltar{n}" and c["ssn"] == f"SSN{n}"
    assert c["engagement_state"] == "engaged"
    assert {a["line1"] for a in c["addresses"]} == {f"Geheimstraat {n}", f"Oudeweg {n}"}
    assert {p["value"]: p["verification_state"] for p in c["contact_points"]} == {
        known: "unverified", mobile: "unverified", entered: "verified"}
    assert {m["display"] for m in c["identification_media"]} == {f"•••• {card[-4:]}", f"LOY{n}"}
    assert c["tags"] == [f"t{n}"]
    [journey] = export["journeys"]
    assert journey["id"] == journey_id and journey["stage"] == "verified"
    assert [e["type"] for e in journey["events"]][-1] == "verified"
    assert {x["key"] for x in export["consents"]} == {"terms", "newsletter"}
    assert all(x["legal_text"]["text"] and x["ip"] == "203.0.113.7" for x in export["consents"])
    assert {m["template"] for m in export["messages"]} >= {"invitation", "verification"}
    assert [m["message_type"] for m in export["client_messages"]] == ["invoice"]
    actions = [a["action"] for a in export["audit"]]
    assert actions[0] == "create" and "update" in actions
    by_customer = {(a["action"], a["actor_id"]) for a in export["audit"]
                   if a["actor_type"] == "customer"}
    assert by_customer == {("read", f"journey:{journey_id}"), ("update", f"journey:{journey_id}")}
    feed = (await tenant.get(f"{base}/activity")).json()["items"]
    kinds = [a["type"] for a in feed]
    assert kinds[0] == "data.create" and kinds.index("journey.invitation_sent") < kinds.index(
        "journey.verified")
    assert {"message.sent", "consent.granted", "data.update"} <= set(kinds)
    for purpose, granted, expected in [("newsletter", "true", [contact["id"]]),
                                       ("newsletter", "false", [])]:
        listed = (await tenant.get("/v1/contacts", consent_purpose=purpose,
                                   consent_granted=granted)).json()["items"]
        assert [x["id"] for x in listed] == expected, (purpose, granted)
    verified = (await tenant.get("/v1/contacts", verification_state="verified")).json()["items"]
    assert [x["id"] for x in verified] == [contact["id"]]
    consents_only = (await tenant.get(f"{base}/activity", type="consent")).json()["items"]
    assert {a["type"] for a in consents_only} == {"consent.granted"}
    assert card not in str(export)

    done = await tenant.post(f"{base}/anonymise", {})
    assert done.status_code == 200, done.text
    after = done.json()
    assert after["anonymised_at"] and after["first_name"] is None
    assert after["contact_points"] == [] and after["addresses"] == []

    for value in (f"Zoltar{n}", f"Quibble{n}", f"crm-{n}", f"IDN{n}", f"PP{n}", f"SSN{n}",
                  known, entered, mobile, card, f"Geheimstraat {n}", f"Oudeweg {n}", f"LOY{n}",
                  f"t{n}"):
        assert await places_holding(sessions, value) == [], value
    async with transaction(sessions) as session:
        ips = await session.scalar(text(
            "SELECT count(*) FROM consent_events WHERE contact_id = :c AND ip IS NOT NULL"),
            {"c": contact["id"]})
        assert ips == 0
    # Events not delivered yet go out as what they were, with nothing of the person.
    async with transaction(sessions) as session:
        stored = (await session.execute(text(
            "SELECT type, payload FROM webhook_events WHERE client_id = :c AND "
            "CAST(payload AS TEXT) LIKE :id"), {"c": tenant.id, "id": f"%{contact['id']}%"})).all()
    assert {t for t, _ in stored} >= {"contact.data_verified", "consent.changed"}
    assert all(p["type"] == t and p["timestamp"] for t, p in stored), stored
    assert all(p["data"] == {"anonymised": True, "contact_id": contact["id"]}
               for t, p in stored if t != "consent.changed"), stored
    # A consent decision keeps its shape, so that a receiver can still apply it.
    assert all(p["data"]["anonymised"] and p["data"]["consent"]["ip"] is None and p["data"][
        "contact"] == {"id": contact["id"], "external_id": f"anonymised-{contact['id']}",
                       "first_name": None, "last_name": None}
        for t, p in stored if t == "consent.changed"), stored
    # Non-personal records stay: the journey, its stages, the consent decisions.
    kept = (await tenant.journey(journey_id))
    assert kept["stage"] == "verified"
    async with transaction(sessions) as session:
        # Erased, not the JSON text 'null': the reports' "entered data" filter skips it.
        assert await session.scalar(text("SELECT collected IS NULL FROM journeys WHERE id = :j"),
                                    {"j": journey_id})
    report = f"/v1/campaigns/{campaign['id']}/report"
    assert (await tenant.get(f"{report}.json")).json()["rows"] == []
    assert (await tenant.get(f"{report}.csv")).text.startswith("journey_id,")
    # The journey's personal links die with the rest: the page and the verification link.
    for path in (page, link):
        assert (await http.get(path)).status_code == 404, path
    # An anonymised contact cannot be changed; the audit keeps who did what, without values.
    patch = await tenant.http.patch(base, headers=tenant.auth, json={"first_name": "Back"})
    assert patch.status_code == 409
    trail = (await tenant.get(f"{base}/audit")).json()["items"]
    # Reads go on being recorded (the journey above); no change came after the anonymisation.
    assert [e["action"] for e in trail if e["action"] != "read"][-1] == "anonymise"
    # Nor filled again, and asked, by enrolling its key with new data.
    other = await tenant.create_campaign()
    [refused] = (await tenant.post(f"/v1/campaigns/{other['id']}/contacts", {"contacts": [{
        "external_id": after["external_id"], "first_name": "Back",
        "email": unique_email("back")}]})).json()["results"]
    assert refused["status"] == "rejected" and refused["errors"][0]["field"] == "external_id"
    again = (await tenant.get(base)).json()
    assert again["first_name"] is None and again["contact_points"] == []


async def test_anonymising_clears_the_outbox_of_letters_and_sms(
        tenant, http, mailbox, settings, sessions):
    """The local outboxes keep what each letter and SMS said and to whom; once the contact is
    anonymised, neither /dev/outbox, their files nor the message rows name the person."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT6S",
        channel_plan=[{"channel": "email"}, {"channel": "letter"},
                      {"channel": "sms", "after": "PT1S"}])
    n = uuid.uuid4().hex[:8]
    refused = f"gone-{n}@hard-bounce.example.com"
    number, street = mobile_number(), f"Geheimstraat {n}"
    eva = await person_with(tenant, email=refused, mobile=number, address={
        "type": "home", "line1": street, "postal_code": "1015 CJ", "city": "Amsterdam",
        "country": "NL"})
    [result] = await enrol(tenant, campaign["id"], eva)
    # The email is refused (its bounce quotes the address), then a letter and an SMS go.
    letter = await wait_for_letter(settings, eva["last_name"])
    text = await wait_for_sms(settings, number)
    pdf = settings.letter_outbox_dir / f"{letter['id']}.pdf"
    assert pdf.is_file() and text["to"] == number
    await tenant.wait_for_stage(result["journey_id"], "expired", timeout=30)
    personal = (eva["last_name"], street, number, refused)
    outbox = (await http.get("/dev/outbox")).text
    assert all(value in outbox for value in personal[:3])

    done = await tenant.post(f"/v1/contacts/{eva['id']}/anonymise", {})
    assert done.status_code == 200, done.text
    outbox = (await http.get("/dev/outbox")).text
    assert [value for value in personal if value in outbox] == []
    assert (await http.get(f"/dev/outbox/letters/{letter['id']}.pdf")).status_code == 404
    assert not pdf.exists()
    # The outboxes' records (its letter's PDF is gone, above; other contacts' are binary).
    files = [p.read_text() for d in (settings.sms_outbox_dir, settings.letter_outbox_dir)
             for p in d.glob("*.json")]
    assert [(v, f) for v in personal for f in files if v in f] == []
    for value in personal:
        assert await places_holding(sessions, value) == [], value
    # What went out when is still there.
    kept = {r["id"]: r for d in (settings.sms_outbox_dir, settings.letter_outbox_dir)
            for r in read_records(d)}
    assert (kept[text["id"]]["to"], kept[text["id"]]["sent_at"]) == ("anonymised",
                                                                    text["sent_at"])
    assert (kept[letter["id"]]["address_lines"], kept[letter["id"]]["sent_at"]) == (
        [], letter["sent_at"])


@asynccontextmanager
async def commits_refused(sessions, contact_id: str) -> AsyncIterator[None]:
    """Meanwhile a transaction that changed the contact fails at its COMMIT, after all it did,
    as a serialisation failure does (a deferred constraint trigger)."""
    async with transaction(sessions) as session:
        await session.execute(text(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$"))
        await session.execute(text(
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER UPDATE ON contacts DEFERRABLE "
            f"INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = '{uuid.UUID(contact_id)}') "
            "EXECUTE FUNCTION refuse_commit()"))
    try:
        yield
    finally:
        async with transaction(sessions) as session:
            await session.execute(text("DROP TRIGGER refuse_commit ON contacts"))
            await session.execute(text("DROP FUNCTION refuse_commit()"))


async def test_outboxes_are_scrubbed_once_the_anonymisation_is_committed(
        tenant, http, settings, sessions):
    """An anonymisation whose commit fails (503, retry) leaves the contact as it was, and so its
    SMS in the outbox; the retry scrubs it. A crash between the commit and the scrub leaves an
    anonymised contact with its SMS unscrubbed: anonymising again finishes the scrub."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT3S",
                                            channel_plan=[{"channel": "sms"}])
    number = mobile_number()
    eva = await person_with(tenant, mobile=number)
    [result] = await enrol(tenant, campaign["id"], eva)
    sent = await wait_for_sms(settings, number)
    await tenant.wait_for_stage(result["journey_id"], "expired", timeout=30)
    record = settings.sms_outbox_dir / f"{sent['id']}.json"
    as_sent = record.read_bytes()
    anonymise = f"/v1/contacts/{eva['id']}/anonymise"

    async with commits_refused(sessions, eva["id"]):
        failed = await tenant.post(anonymise, {})
    assert failed.status_code == 503, failed.text
    assert (await tenant.get(f"/v1/contacts/{eva['id']}")).json()["anonymised_at"] is None
    assert record.read_bytes() == as_sent

    async def scrubbed() -> bool:
        [kept] = [r for r in read_records(settings.sms_outbox_dir) if r["id"] == sent["id"]]
        assert kept["sent_at"] == sent["sent_at"]
        return (kept["to"], kept["text"]) == ("anonymised", "") and number not in (
            await http.get("/dev/outbox")).text

    assert (await tenant.post(anonymise, {})).status_code == 200
    assert await scrubbed()
    record.write_bytes(as_sent)  # what a crash between the commit and the scrub leaves
    assert not await scrubbed()
    again = await tenant.post(anonymise, {})
    assert again.status_code == 200, again.text
    assert await scrubbed()


async def test_document_files_go_once_the_anonymisation_is_committed(tenant, sessions, settings):
    """An anonymisation whose commit fails (503, retry) leaves the contact as it was, its KYC
    document included, file and all. A crash between the commit and the files' deletion leaves
    a file behind: anonymising again deletes it."""
    contact_id, _ = await kyc_contact(sessions, tenant)
    uploaded = await kyc_upload(tenant, contact_id)
    assert uploaded.status_code == 201, uploaded.text
    file = f"/v1/kyc/documents/{uploaded.json()['id']}/file"
    async with sessions() as session:
        document = await session.get_one(KycDocument, uuid.UUID(uploaded.json()["id"]))
    stored = settings.kyc_storage_dir / document.storage_key
    as_uploaded, written = stored.read_bytes(), stored.stat()
    anonymise = f"/v1/contacts/{contact_id}/anonymise"

    async with commits_refused(sessions, contact_id):
        failed = await tenant.post(anonymise, {})
    assert failed.status_code == 503, failed.text
    assert (await tenant.get(f"/v1/contacts/{contact_id}")).json()["anonymised_at"] is None
    kept = await tenant.get(file)
    assert (kept.status_code, kept.content) == (200, as_uploaded)

    assert (await tenant.post(anonymise, {})).status_code == 200
    assert not stored.exists() and (await tenant.get(file)).status_code == 404
    # What a crash between the commit and the deletion leaves: the file as it was written.
    stored.write_bytes(as_uploaded)
    os.utime(stored, ns=(written.st_atime_ns, written.st_mtime_ns))
    again = await tenant.post(anonymise, {})
    assert again.status_code == 200, again.text
    assert not stored.exists()


async def test_terminate_deletes_the_contact(tenant, mailbox, sessions):
    address = unique_email("term")
    campaign = await tenant.create_campaign(expires_after="PT3S",
                                            reminders={"interval": "PT1H", "max_count": 0})
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "t-1", "email": address,
                                                   "last_name": "Terminus"})
    contact_id = enrolled["results"][0]["contact_id"]
    journey_id = enrolled["results"][0]["journey_id"]
    refused = await tenant.http.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert refused.status_code == 409 and journey_id in refused.json()["error"]["message"]
    await mailbox.wait_for(address)
    await tenant.wait_for_stage(journey_id, "expired", timeout=30)
    response = await tenant.http.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth)
    assert response.status_code == 204, response.text
    assert (await tenant.get(f"/v1/contacts/{contact_id}")).status_code == 404
    assert (await tenant.get(f"/v1/journeys/{journey_id}")).status_code == 404
    assert await places_holding(sessions, address) == []
    # The audit trail keeps that it happened and who did it (the contact's audit is still
    # readable by id, without values).
    async with transaction(sessions) as session:
        actions = (await session.execute(text(
            "SELECT action, actor_type FROM audit_entries WHERE contact_id = :c ORDER BY id"),
            {"c": contact_id})).all()
    assert actions[-1] == ("terminate", "api_key")


async def test_a_contact_deleted_while_a_worker_holds_its_journey_is_refused_not_deadlocked(
        tenant, mailbox, sessions):
    """A send locks its journey, then writes rows that point at the contact (which waits for a
    lock on the contact); a DELETE that locked the contact first must not then wait for the
    journey: the two would deadlock, and one of them fail."""
    address = unique_email("busy")
    campaign = await tenant.create_campaign(reminders={"interval": "PT1H", "max_count": 0})
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "busy-1", "email": address})
    contact_id = enrolled["results"][0]["contact_id"]
    journey_id = enrolled["results"][0]["journey_id"]
    await mailbox.wait_for(address)
    async with sessions() as worker, worker.begin():
        # As a send does: the journey first.
        await worker.execute(text("SELECT 1 FROM journeys WHERE id = :j FOR UPDATE"),
                             {"j": journey_id})
        deleting = asyncio.create_task(
            tenant.http.delete(f"/v1/contacts/{contact_id}", headers=tenant.auth))

        async def delete_waits_or_answered() -> bool:
            if deleting.done():
                return True
            async with sessions() as probe:
                waiting = await probe.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"))
            return waiting > 0
        for _ in range(200):
            if await delete_waits_or_answered():
                break
            await asyncio.sleep(0.05)
        # Then what the send writes next takes a key share on the contact.
        await worker.execute(text("SELECT 1 FROM contacts WHERE id = :c FOR KEY SHARE"),
                             {"c": contact_id})
    refused = await deleting
    assert refused.status_code == 409, refused.text
    assert journey_id in refused.json()["error"]["message"]


async def test_inactive_contacts_are_anonymised_by_the_scheduled_workflow(
    tenant, temporal_env, settings, sessions, record_histories
):
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                     json={"anonymise_inactive_after_days": 30})
    assert response.status_code == 200
    old = (await tenant.post("/v1/contacts", {"last_name": "Dormant"})).json()
    fresh = (await tenant.post("/v1/contacts", {"last_name": "Lively"})).json()
    async with transaction(sessions) as session:
        await session.execute(text("UPDATE contacts SET updated_at = now() - interval '40 days' "
                                   "WHERE id = :c"), {"c": old["id"]})
    handle = await temporal_env.client.start_workflow(
        AnonymiseInactiveContactsWorkflow.run, AnonymiseInactiveInput(batch_size=1),
        id=f"anonymise-inactive-test-{uuid.uuid4()}", task_queue=settings.temporal_task_queue)
    assert (await handle.result()).anonymised >= 1
    assert (await tenant.get(f"/v1/contacts/{old['id']}")).json()["anonymised_at"] is not None
    assert (await tenant.get(f"/v1/contacts/{fresh['id']}")).json()["last_name"] == "Lively"
    if record_histories:
        await save_history(handle, "anonymise_inactive_contacts")


async def expired_journey_with_consent_shown(tenant, mailbox, http) -> tuple[str, str]:
    """A contact who opened their page (the consents shown to them from the customer's IP and
    browser) and whose journey then expired, so nothing blocks erasing them: (contact, journey)."""
    address = unique_email("shown")
    campaign = await tenant.create_campaign(expires_after="PT3S",
                                            reminders={"interval": "PT1H", "max_count": 0})
    [result] = (await tenant.enrol(campaign["id"], {"external_id": f"shown-{uuid.uuid4().hex}",
                                                    "email": address}))["results"]
    [invitation] = await mailbox.wait_for(address)
    assert (await Customer(http).open(mailbox.link(invitation))).status_code == 200
    await tenant.wait_for_stage(result["journey_id"], "expired")
    return result["contact_id"], result["journey_id"]


async def signed_consent_form(tenant, contact_id: str) -> dict:
    """The back office records the contact's signed GDPR consent form; returns its document."""
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "v1", "text": "We keep your data."})
    recorded = await tenant.post(f"/v1/contacts/{contact_id}/gdpr-consent", {
        "state": "accepted", "purpose": "data-processing", "source": "back_office",
        "given_at": datetime.now(UTC).isoformat(), "actor": "user:anna",
        "legal_text": {"language": "en"},
        "document": {"filename": "signed.pdf", "content_type": "application/pdf",
                     "content_base64": base64.b64encode(b"%PDF-1.4 signed by me").decode()}})
    assert recorded.status_code == 200, recorded.text
    [document] = recorded.json()["documents"]
    return document


async def test_anonymising_erases_the_signed_consent_form_and_where_consents_were_shown(
        tenant, mailbox, http, sessions):
    contact_id, _ = await expired_journey_with_consent_shown(tenant, mailbox, http)
    document = await signed_consent_form(tenant, contact_id)
    gdpr = f"/v1/contacts/{contact_id}/gdpr-consent"
    download = f"{gdpr}/documents/{document['id']}"
    assert (await tenant.get(download)).content == b"%PDF-1.4 signed by me"

    assert (await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})).status_code == 200

    gone = await tenant.get(download)
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"]["code"] == "anonymised"
    state = (await tenant.get(gdpr)).json()
    assert state["documents"] == [] and state["state"] == "accepted" and state["anonymised"]
    assert await places_holding(sessions, "signed by me") == []
    # What was shown, in which version, and when, stays as proof; from where and in which
    # browser does not.
    async with sessions() as session:
        displays = (await session.execute(text(
            "SELECT ip, user_agent, shown_at, legal_text_sha256 FROM consent_displays "
            "WHERE contact_id = :c"), {"c": contact_id})).all()
    assert displays and all(ip is None and agent is None and at and sha
                            for ip, agent, at, sha in displays), displays
    conversion = (await tenant.get("/v1/consent-notices/conversion")).json()
    assert conversion, "the notices shown still count"


async def test_an_anonymised_contact_takes_no_kyc_document(tenant, sessions, http, mailbox,
                                                            settings):
    """Neither the client's API nor the customer's KYC page stores an identity document for a
    contact anonymised meanwhile; the page says the request has ended."""
    await kyc_define(tenant, 1, KYC_IDENTITY + KYC_ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await kyc_contact(sessions, tenant)
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    customer = Customer(http)
    assert (await customer.open(link)).status_code == 200
    form = {"csrf_token": customer.csrf(), "document_type": "passport", "number": "NL765432",
            "expires_at": "2031-12-31"}
    assert (await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})).status_code == 200

    refused = await kyc_upload(tenant, contact_id)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "contact_anonymised"
    assert "anonymised" in refused.json()["error"]["message"]
    # A link the profile issued as the anonymisation committed (its message's transaction
    # read the address before it went, and stored the link after the links were deleted).
    async with transaction(sessions) as session:
        late = await links.issue(session, settings, purpose=TokenPurpose.kyc_documents,
                                 step="kyc/late/email", contact_id=uuid.UUID(contact_id),
                                 expires_at=datetime.now(UTC) + timedelta(days=1))
    late = late.removeprefix("http://testserver")
    for response in (await http.get(late),
                     await http.post(late, data=form, files={"file": ("p.pdf", b"%PDF-1.4 x",
                                                                      "application/pdf")})):
        assert response.status_code == 410, response.text
        assert "This request has ended" in response.text
    async with sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM kyc_documents "
                                         "WHERE contact_id = :c"), {"c": contact_id}) == 0


async def test_the_client_ends_an_open_journey_to_erase_its_contact(
        tenant, other_tenant, http, mailbox):
    """An open journey blocks erasure: the refusal names it and how to end it; the client
    cancels that one journey (or all of them with the erasure) instead of waiting for it to
    expire."""
    campaign = await tenant.create_campaign(reminders={"interval": "PT1H", "max_count": 0})
    address = unique_email("stuck")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": f"stuck-{address}",
                                                      "email": address}))["results"]
    contact_id, journey_id = enrolled["contact_id"], enrolled["journey_id"]
    [invitation] = await mailbox.wait_for(address)
    base = f"/v1/contacts/{contact_id}"

    for refused in (await tenant.post(f"{base}/anonymise", {}),
                    await tenant.http.delete(base, headers=tenant.auth)):
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert f"POST /v1/journeys/{journey_id}/cancel" in error["message"]
        assert "cancel_journeys=true" in error["message"]
        assert [f["field"] for f in error["fields"]] == ["journeys"]
        assert f"/v1/journeys/{journey_id}/cancel" in error["fields"][0]["message"]

    cancel = f"/v1/journeys/{journey_id}/cancel"
    assert (await other_tenant.post(cancel, {})).status_code == 404
    cancelled = await tenant.post(cancel, {})
    assert cancelled.status_code == 200, cancelled.text
    journey = cancelled.json()
    assert journey["stage"] == "cancelled" and journey["finished_at"]
    assert journey["history"][-1]["detail"] == {"by": "client", "reason": "journey_cancelled"}
    again = await tenant.post(cancel, {})
    assert (again.status_code, again.json()) == (200, journey)
    page = await Customer(http).open(mailbox.link(invitation))
    assert "has withdrawn it" in page.text, page.text
    assert (await tenant.post(f"{base}/anonymise", {})).status_code == 200

    # Or in one call: the erasure withdraws the open journeys first.
    other = unique_email("stuck")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": f"stuck-{other}",
                                                      "email": other}))["results"]
    await mailbox.wait_for(other)
    erased = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise"
                               "?cancel_journeys=true", {})
    assert erased.status_code == 200, erased.text
    journey = await tenant.journey(enrolled["journey_id"])
    # The anonymisation blanks the history's details, but for who ended the journey and why,
    # which names nobody.
    assert journey["stage"] == "cancelled"
    assert [(e["type"], e["detail"]) for e in journey["history"]] == [
        ("invitation_sent", None),
        ("cancelled", {"by": "client", "reason": "contact_erasure"})], journey["history"]
    # A journey that ended otherwise has nothing to cancel.
    expired = await tenant.create_campaign(expires_after="PT2S",
                                           reminders={"interval": "PT1H", "max_count": 0})
    [late] = (await tenant.enrol(expired["id"], {"external_id": "late-1",
                                                 "email": unique_email("late")}))["results"]
    await tenant.wait_for_stage(late["journey_id"], "expired")
    ended = await tenant.post(f"/v1/journeys/{late['journey_id']}/cancel", {})
    assert ended.status_code == 409 and "expired" in ended.json()["error"]["message"]


async def test_the_export_holds_the_gdpr_consent_its_forms_and_the_consents_shown(
        tenant, mailbox, http):
    contact_id, journey_id = await expired_journey_with_consent_shown(tenant, mailbox, http)
    document = await signed_consent_form(tenant, contact_id)

    export = (await tenant.get(f"/v1/contacts/{contact_id}/export")).json()
    gdpr = export["gdpr_consent"]
    assert gdpr["state"] == "accepted" and gdpr["updated_at"]
    assert gdpr["anonymisation_blocked"] is None
    [form] = gdpr["documents"]
    assert {k: form[k] for k in ("id", "filename", "content_type", "sha256")} == {
        k: document[k] for k in ("id", "filename", "content_type", "sha256")}
    assert "content" not in form and form["consent_event_id"] in {
        c["id"] for c in export["consents"]}
    downloaded = await tenant.get(form["download"])
    assert downloaded.content == b"%PDF-1.4 signed by me"
    shown = export["consent_displays"]
    assert {d["purpose"] for d in shown} == {"service-communication", "newsletter"}
    assert all(d["journey_id"] == journey_id and d["ip"] == "203.0.113.7" and d["user_agent"]
               and d["legal_text_sha256"] and d["shown_at"] and d["shown_in"] for d in shown)


async def test_a_deleted_contacts_queued_events_keep_their_place_in_the_sequence(
        tenant, webhook_receiver):
    """Sequence numbers run without gaps: an event queued about a contact deleted before it
    was delivered goes out all the same, saying only that the contact was deleted."""
    hook = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    await tenant.ensure_purpose("newsletter", "direct_marketing")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "v1", "text": "Newsletter, please."})
    webhook_receiver.failures[hook] = [503] * 1000  # the receiver is down for now
    contacts = []
    for name in ("Gone", "Kept"):
        created = await tenant.post("/v1/contacts", {
            "external_id": f"{name}-{uuid.uuid4().hex}", "last_name": name,
            "contact_points": [{"kind": "email", "value": unique_email(name.lower())}]})
        assert created.status_code == 201, created.text
        contacts.append(created.json()["id"])
        granted = await tenant.post(f"/v1/contacts/{contacts[-1]}/consents", {"changes": [{
            "purpose": "newsletter", "channel": "email", "granted": True,
            "source": "back_office", "given_at": datetime.now(UTC).isoformat(),
            "legal_text": {"language": "en"}}]})
        assert granted.status_code == 201, granted.text
    gone, kept = contacts
    deleted = await tenant.http.delete(f"/v1/contacts/{gone}", headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text
    webhook_receiver.failures[hook] = []  # back up

    # Arrival order is not guaranteed (retries run side by side): the sequence orders them.
    first, second = sorted(await webhook_receiver.wait_for(hook, "consent.changed", count=2),
                           key=lambda d: int(d.headers["webhook-sequence"]))
    assert [first.headers["webhook-sequence"], second.headers["webhook-sequence"]] == ["1", "2"]
    assert first.payload["data"] == {"deleted": True, "contact_id": gone}
    assert second.payload["data"]["contact"]["id"] == kept


async def aged(sessions, contact_id: str, days: int = 40) -> None:
    """Everything the contact did or had done to it happened `days` ago."""
    async with transaction(sessions) as session:
        for statement in (
                "UPDATE contacts SET updated_at = now() - make_interval(days => :d) "
                "WHERE id = :c",
                "UPDATE journeys SET updated_at = now() - make_interval(days => :d) "
                "WHERE contact_id = :c",
                "UPDATE kyc_documents SET uploaded_at = now() - make_interval(days => :d) "
                "WHERE contact_id = :c",
                "UPDATE kyc_events SET at = now() - make_interval(days => :d) "
                "WHERE contact_id = :c"):
            await session.execute(text(statement), {"c": contact_id, "d": days})


async def run_inactive_anonymisation(temporal_env, settings) -> None:
    """One run of the schedule's workflow, over every client with a retention period."""
    handle = await temporal_env.client.start_workflow(
        AnonymiseInactiveContactsWorkflow.run, AnonymiseInactiveInput(batch_size=100),
        id=f"anonymise-inactive-test-{uuid.uuid4()}", task_queue=settings.temporal_task_queue)
    try:
        await asyncio.wait_for(handle.result(), timeout=60)
    except TimeoutError:
        pending = [(p.activity_type.name, p.attempt, p.last_failure.message)
                   for p in (await handle.describe()).raw_description.pending_activities]
        await handle.terminate("the test gave up on it")
        raise AssertionError(f"the inactive anonymisation did not finish: {pending}") from None


async def test_inactive_contacts_a_rule_protects_are_skipped_not_a_stalled_batch(
        tenant, temporal_env, settings, sessions, mailbox):
    """A dormant contact is anonymised, while dormant ones a rule protects (KYC documents under
    review, an unpaid claim) are kept: they neither fail the run nor keep it from the others;
    once nothing protects them (the claim withdrawn), the next run anonymises them."""
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                       json={"anonymise_inactive_after_days": 30})
    assert response.status_code == 200, response.text
    dormant = (await tenant.post("/v1/contacts", {"last_name": "Dormant"})).json()["id"]
    await kyc_define(tenant, 2, KYC_IDENTITY + KYC_ID_OR_PASSPORT)
    reviewed, _ = await kyc_contact(sessions, tenant)
    assert (await kyc_upload(tenant, reviewed)).status_code == 201

    async def registered() -> bool:
        async with transaction(sessions) as session:
            return bool(await session.scalar(text(
                "SELECT count(*) FROM kyc_events WHERE contact_id = :c AND step LIKE '%/email'"),
                {"c": reviewed}))
    await eventually(registered, what="the KYC registration message recorded")
    campaign = await tenant.create_campaign(languages=["en"], consents=[], payments=True)
    [owing] = (await tenant.enrol(campaign["id"], {
        "external_id": f"owes-{uuid.uuid4().hex[:8]}", "email": unique_email("owes"),
        "claim": payment_claim(41)}))["results"]
    assert (await tenant.post(f"/v1/journeys/{owing['journey_id']}/cancel", {})
            ).status_code in (200, 202)
    await tenant.wait_for_stage(owing["journey_id"], "cancelled")
    for contact_id in (dormant, reviewed, owing["contact_id"]):
        await aged(sessions, contact_id)

    await run_inactive_anonymisation(temporal_env, settings)
    assert (await tenant.get(f"/v1/contacts/{dormant}")).json()["anonymised_at"] is not None
    for kept in (reviewed, owing["contact_id"]):
        assert (await tenant.get(f"/v1/contacts/{kept}")).json()["anonymised_at"] is None

    await tenant.ok("POST", f"/v1/journeys/{owing['journey_id']}/claim-withdrawn")
    await run_inactive_anonymisation(temporal_env, settings)
    assert (await tenant.get(f"/v1/contacts/{owing['contact_id']}")).json()[
        "anonymised_at"] is not None
    assert (await tenant.get(f"/v1/contacts/{reviewed}")).json()["anonymised_at"] is None


async def test_a_contact_enrolled_while_the_inactive_run_goes_is_passed_over_not_waited_for(
        tenant, temporal_env, settings, sessions):
    """A dormant contact whose journey an enrolment is writing as the scheduled run reaches it
    is left to that enrolment: the run neither anonymises it from under its new journey nor
    waits for it, and anonymises the others."""
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                       json={"anonymise_inactive_after_days": 30})
    assert response.status_code == 200, response.text
    dormant, enrolling = [(await tenant.post("/v1/contacts", {"last_name": name})).json()["id"]
                          for name in ("Dormant", "Enrolling")]
    for contact_id in (dormant, enrolling):
        await aged(sessions, contact_id)
    campaign = await tenant.create_campaign(languages=["en"])
    async with sessions() as enrolment, enrolment.begin():
        # As an enrolment writes it, committed (and its workflow started) after the run.
        contact_id, campaign_id = uuid.UUID(enrolling), uuid.UUID(campaign["id"])
        enrolment.add(Journey(client_id=tenant.id, campaign_id=campaign_id,
                              contact_id=contact_id, stage="enrolled", language="en",
                              workflow_id=workflow_id(campaign_id, contact_id)))
        await enrolment.flush()
        await run_inactive_anonymisation(temporal_env, settings)
    assert (await tenant.get(f"/v1/contacts/{dormant}")).json()["anonymised_at"] is not None
    kept = (await tenant.get(f"/v1/contacts/{enrolling}")).json()
    assert (kept["anonymised_at"], kept["last_name"]) == (None, "Enrolling")


async def test_recent_consent_and_client_messages_count_as_activity(
        tenant, temporal_env, settings, sessions):
    """A contact whose record has not changed for longer than the retention but who gave
    consent by phone just now, or whom the client just wrote to, is not inactive."""
    response = await tenant.http.patch("/v1/contact-settings", headers=tenant.auth,
                                       json={"anonymise_inactive_after_days": 30})
    assert response.status_code == 200, response.text
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "1", "text": "Send me news."})
    assert (await tenant.http.put("/v1/message-policies/invoice", json={
        "category": "financial"}, headers=tenant.auth)).status_code == 200
    contacts = {}
    for name in ("caller", "invoiced", "dormant"):
        created = await tenant.post("/v1/contacts", {"last_name": name, "contact_points": [
            {"kind": "email", "value": unique_email(name)}]})
        assert created.status_code == 201, created.text
        contacts[name] = created.json()["id"]
    given = await tenant.post(f"/v1/contacts/{contacts['caller']}/consents", {"changes": [{
        "purpose": "newsletter", "channel": "email", "granted": True,
        "given_at": datetime.now(UTC).isoformat(), "source": "call_centre",
        "legal_text": {"language": "en"}}]})
    assert given.status_code == 201, given.text
    sent = await tenant.post("/v1/messages", {
        "contact_id": contacts["invoiced"], "message_type": "invoice",
        "subject": "Your invoice", "text": "Attached."})
    assert sent.status_code == 202, sent.text
    for contact_id in contacts.values():
        await aged(sessions, contact_id)

    await run_inactive_anonymisation(temporal_env, settings)
    anonymised = {name: (await tenant.get(f"/v1/contacts/{contact_id}")).json()["anonymised_at"]
                  is not None for name, contact_id in contacts.items()}
    assert anonymised == {"caller": False, "invoiced": False, "dormant": True}


async def test_the_export_holds_the_webhook_events_about_the_contact(
        tenant, mailbox, webhook_receiver):
    """The events told to the client's endpoints about the contact (what the contact typed, a
    bounce's reason) are theirs too: the export lists them with their deliveries."""
    hook = await tenant.subscribe(webhook_receiver)
    address = unique_email("bouncy")
    campaign = await tenant.create_campaign()
    [r] = (await tenant.enrol(campaign["id"], {"external_id": f"b-{uuid.uuid4().hex[:8]}",
                                               "first_name": "Bo", "email": address}))["results"]
    [invitation] = await mailbox.wait_for(address)
    bounced = await tenant.post("/v1/bounces", {
        "message_id": invitation.headers["Message-ID"], "recipient": address, "kind": "soft",
        "reason": "452 mailbox of Bo Bouncer full"})
    assert bounced.status_code == 202, bounced.text
    [told] = await webhook_receiver.wait_for(hook, "message.bounced")

    async def delivered() -> dict | None:
        export = (await tenant.get(f"/v1/contacts/{r['contact_id']}/export")).json()
        events = [e for e in export["webhook_events"] if e["type"] == "message.bounced"]
        return events[0] if events and events[0]["deliveries"][0]["delivered_at"] else None
    event = await eventually(delivered, what="the bounce's delivery in the export")
    assert (event["id"], event["timestamp"], event["data"]) == (
        told.headers["webhook-id"], told.payload["timestamp"], told.payload["data"])
    [delivery] = event["deliveries"]
    assert (delivery["endpoint_id"], delivery["status"]) == (
        tenant.endpoint_ids[hook], "delivered"), delivery


async def test_an_unpaid_claim_blocks_erasure_until_paid_or_withdrawn(
        tenant, other_tenant):
    """A claim still owed keeps its contact (the client must know who owes it), even once its
    journey has ended and with ?cancel_journeys=true; the refusal says how to clear it. The
    client reports it paid, or withdraws it (written off) once its journeys have ended."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[], payments=True)
    results = {}
    for n, name in ((51, "owes"), (52, "pays"), (53, "running")):
        [results[name]] = (await tenant.enrol(campaign["id"], {
            "external_id": f"{name}-{uuid.uuid4().hex[:8]}", "email": unique_email(name),
            "claim": payment_claim(n)}))["results"]
    for name in ("owes", "pays"):
        assert (await tenant.post(f"/v1/journeys/{results[name]['journey_id']}/cancel", {})
                ).status_code in (200, 202)
        await tenant.wait_for_stage(results[name]["journey_id"], "cancelled")
    owes, journey_id = results["owes"]["contact_id"], results["owes"]["journey_id"]
    base = f"/v1/contacts/{owes}"

    for code, refused in (
            ("anonymisation_blocked", await tenant.post(f"{base}/anonymise", {})),
            ("anonymisation_blocked",
             await tenant.post(f"{base}/anonymise?cancel_journeys=true", {})),
            ("terminate_blocked", await tenant.http.delete(base, headers=tenant.auth)),
            ("terminate_blocked", await tenant.http.delete(
                base, headers=tenant.auth, params={"cancel_journeys": "true"}))):
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == code, error
        [field] = error["fields"]
        assert field["field"] == "claims", error
        assert "claim INV-51" in field["message"] and "unpaid" in field["message"]
        assert f"POST /v1/journeys/{journey_id}/payment-completed" in field["message"]
        assert f"POST /v1/journeys/{journey_id}/claim-withdrawn" in field["message"]

    withdraw = f"/v1/journeys/{journey_id}/claim-withdrawn"
    assert (await other_tenant.post(withdraw, {})).status_code == 404
    # A journey still running asks for the payment: it ends first.
    running = await tenant.post(f"/v1/journeys/{results['running']['journey_id']}"
                                "/claim-withdrawn", {})
    assert running.status_code == 409, running.text
    assert (f"POST /v1/journeys/{results['running']['journey_id']}/cancel"
            in running.json()["error"]["message"])
    # Nor does ?cancel_journeys=true withdraw a journey while the claim refuses the erasure
    # all the same: the refusal leaves the customer's request standing.
    running_contact = results["running"]["contact_id"]
    refused = await tenant.post(f"/v1/contacts/{running_contact}/anonymise?cancel_journeys=true",
                                {})
    assert refused.status_code == 409, refused.text
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["claims"], refused.text
    assert (await tenant.journey(results["running"]["journey_id"]))["stage"] == "invited"
    withdrawn = await tenant.post(withdraw, {})
    assert withdrawn.status_code == 200, withdrawn.text
    journey = withdrawn.json()
    assert journey["paid_at"] is None
    assert journey["history"][-1]["type"] == "claim_withdrawn"
    assert journey["history"][-1]["detail"] == {"reference": "INV-51", "by": "client"}
    again = await tenant.post(withdraw, {})
    assert (again.status_code, again.json()) == (200, journey)
    assert (await tenant.post(f"{base}/anonymise", {})).status_code == 200

    # A claim reported paid blocks nothing, and has nothing to withdraw.
    pays = results["pays"]
    await tenant.ok("POST", f"/v1/journeys/{pays['journey_id']}/payment-completed", {})
    refused = await tenant.post(f"/v1/journeys/{pays['journey_id']}/claim-withdrawn", {})
    assert refused.status_code == 409 and "reported paid" in refused.text, refused.text
    deleted = await tenant.http.delete(f"/v1/contacts/{pays['contact_id']}", headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text


async def test_a_contact_anonymised_while_a_launch_reads_it_gets_no_journey(
        tenant, sessions, settings, mailbox):
    """A launch read a page of its selection, and a contact on it was anonymised before the
    launch wrote the page's journeys: the contact got a journey (an invitation to nobody, a
    journey holding an erased person) that its anonymisation had not seen to refuse."""
    address = unique_email("erased")
    contact_id = (await person_with(tenant, email=address))["id"]
    campaign_id = await light_campaign(tenant)
    async with sessions() as eraser, eraser.begin():
        # Anonymised as the API does it, committed only once the launch has read the page.
        contact = await eraser.get_one(Contact, uuid.UUID(contact_id), with_for_update=True)
        await gdpr.anonymise(eraser, contact, Actor(ActorType.api_key, "test"),
                             settings=settings)
        await launch(tenant, campaign_id, selection={"missing_verified_only": False})

        async def launch_waits() -> bool:
            async with sessions() as probe:
                return bool(await probe.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")))
        await eventually(launch_waits, what="the launch to wait for the anonymisation")
    done = await finished_launch(tenant, campaign_id)
    assert (done["selected"], done["started"], done["skipped"]) == (1, 0, 1), done
    assert (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys")).json()["items"] == []
    assert mailbox.to(address) == []


async def test_a_create_retried_after_its_contact_is_erased_gets_nothing_erased_back(
        tenant, sessions):
    """A contact created with an Idempotency-Key: the answer kept for a retry of that create is
    the contact as it was. Its anonymisation or deletion takes that answer too, so nothing of
    the person is left in it, and the create sent again with the key is a new create, not
    the erased person handed back."""
    for erasure in ("anonymise", "delete"):
        n = uuid.uuid4().hex[:10]
        email = unique_email(f"idem{n}")
        body = {"external_id": f"crm-{n}", "first_name": f"Ilse{n}", "last_name": f"Gone{n}",
                "contact_points": [{"kind": "email", "value": email}]}
        headers = {**tenant.auth, "Idempotency-Key": f"create-{n}"}
        first = await tenant.http.post("/v1/contacts", json=body, headers=headers)
        assert first.status_code == 201, first.text
        contact = f"/v1/contacts/{first.json()['id']}"
        erased = await (tenant.post(f"{contact}/anonymise", {}) if erasure == "anonymise"
                        else tenant.http.delete(contact, headers=tenant.auth))
        assert erased.status_code in (200, 204), erased.text
        for value in (f"Ilse{n}", f"Gone{n}", f"crm-{n}", email):
            assert await places_holding(sessions, value) == [], (erasure, value)
        again = await tenant.http.post("/v1/contacts", json=body, headers=headers)
        assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers, (
            erasure, again.text)
        assert again.json()["id"] != first.json()["id"]
