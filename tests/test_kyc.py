"""KYC profiles walked the way a client's operators and its customers walk them, on the real
stack: PostgreSQL, Temporal dev server, SMTP sink and a webhook receiver over HTTP. Periods and
reminder lead times are seconds here; in production they are days."""

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from babel.dates import format_date
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from core.kyc_contracts import KycProfile
from core.kyc_rules import last_valid_day
from core.vocabulary import CONTACT_ID, KYC_STATE, ErrorType
from db.kyc_models import KycDocument
from db.kyc_models import KycProfile as ProfileRow
from db.models import Contact, ContactPoint, LinkToken
from db.session import transaction
from messaging.local_outbox import read_records
from tests.helpers import (
    LINK,
    Customer,
    Tenant,
    eventually,
    handler_descriptions,
    mark_complained,
    own_api,
    sweep_lost_work,
    unique_email,
)
from tests.histories import save_history
from worker import running_worker
from workflows.kyc import KycWorkflow

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
FAR = (datetime.now(UTC) + timedelta(days=3650)).date().isoformat()
# An ID card dated FAR is valid all of that day: it expires as the next one begins.
FAR_ENDS = (datetime.now(UTC) + timedelta(days=3651)).date().isoformat()
IDENTITY = [{"field": "first_name"}, {"field": "last_name"}, {"field": "email"}]
ID_OR_PASSPORT = [
    {"field": "id_number", "semi_optional": True, "requires_renewal": True},
    {"field": "passport_number", "semi_optional": True, "requires_renewal": True},
]


async def new_contact(sessions, tenant: Tenant, *, mobile: bool = False,
                      email_domain: str = "example.com", **fields: Any) -> tuple[str, str]:
    """A contact as the client's registry holds it (the contact API is issue 5's work), with
    an email address or else a mobile number."""
    kind, value = (("mobile", f"+3161{str(uuid.uuid4().int)[:7]}") if mobile
                   else ("email", unique_email("kyc").replace("example.com", email_domain)))
    async with transaction(sessions) as session:
        contact = Contact(client_id=tenant.id, external_id=f"crm-{uuid.uuid4().hex[:8]}",
                          first_name="Eva", last_name="Janssen", **fields)
        session.add(contact)
        await session.flush()
        session.add(ContactPoint(client_id=tenant.id, contact_id=contact.id, kind=kind,
                                 value=value))
    return str(contact.id), value


async def define(tenant: Tenant, level: int, rules: list[dict], **fields: Any) -> dict[str, Any]:
    response = await tenant.post("/v1/kyc/definitions", {
        "name": f"Level {level}", "level": level, "rules": {"person": rules}, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def upload(tenant: Tenant, contact_id: str, document_type: str = "passport",
                 data: bytes = PDF, **form: str) -> httpx.Response:
    return await tenant.http.post(
        f"/v1/kyc/contacts/{contact_id}/documents", headers=tenant.auth,
        files={"file": ("scan.pdf", data, "application/pdf")},
        data={"document_type": document_type, "number": "NL123456", "expires_at": FAR, **form})


async def profile(tenant: Tenant, contact_id: str) -> dict[str, Any]:
    response = await tenant.get(f"/v1/kyc/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for_state(tenant: Tenant, contact_id: str, state: str,
                         timeout: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await tenant.get(f"/v1/kyc/contacts/{contact_id}")
        return response.json() if response.status_code == 200 and \
            response.json()["state"] == state else None
    return await eventually(probe, timeout=timeout, what=f"KYC profile {state}")


async def mail_with(mailbox, address: str, subject_part: str, count: int = 1) -> list:
    async def probe() -> list | None:
        found = [m for m in mailbox.to(address) if subject_part in m.subject]
        return found if len(found) >= count else None
    return await eventually(probe, what=f"email {subject_part!r} to {address}")


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def contact_email(sessions, contact_id: str) -> str:
    async with sessions() as session:
        return await session.scalar(select(ContactPoint.value).where(
            ContactPoint.contact_id == uuid.UUID(contact_id), ContactPoint.kind == "email"))


async def test_assign_verify_remind_expire_renew(tenant, sessions, http, mailbox,
                                                 webhook_receiver, temporal_env,
                                                 record_histories):
    hook = await tenant.subscribe(webhook_receiver, ["kyc.assigned", "kyc.verified",
                                                     "kyc.expiring", "kyc.expired"])
    await define(tenant, 2, IDENTITY + ID_OR_PASSPORT, expires_after="PT8S",
                 remind_before="PT4S")
    contact_id, email = await new_contact(sessions, tenant, language="nl")

    # Uploading the passport makes the contact qualify: the profile is assigned by itself.
    uploaded = await upload(tenant, contact_id)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["content_type"] == "application/pdf"
    pending = await wait_for_state(tenant, contact_id, "pending_verification")
    assert pending["definition"]["level"] == 2
    assert pending["workflow_id"] == f"kyc/{tenant.id}/{contact_id}"
    [assigned] = await webhook_receiver.wait_for(hook, "kyc.assigned")
    assert assigned.payload["data"]["kyc"]["state"] == "pending_verification"
    assert assigned.payload["data"]["change"] == "assigned"
    assert assigned.payload["data"]["contact"]["id"] == contact_id
    await mail_with(mailbox, email, "identiteitsgegevens zijn geregistreerd")

    verified = await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})
    assert verified.status_code == 200, verified.text
    verified = verified.json()
    assert verified["state"] == "verified" and verified["verified_at"]
    expires_at = at(verified["expires_at"])
    assert expires_at == at(verified["assigned_at"]) + timedelta(seconds=8)
    await webhook_receiver.wait_for(hook, "kyc.verified")
    again = await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})
    assert again.status_code == 409 and again.json()["error"]["code"] == "kyc_wrong_state"

    # Reminded before the profile expires, then expired when the period has passed.
    [expiring] = await webhook_receiver.wait_for(hook, "kyc.expiring")
    assert datetime.now(UTC) < expires_at
    [reminder] = await mail_with(mailbox, email, "verloopt op")
    assert "/k/" in mailbox.link(reminder)
    expired = await wait_for_state(tenant, contact_id, "expired")
    assert expired["reason"] == "period_passed"
    [gone] = await webhook_receiver.wait_for(hook, "kyc.expired")
    assert at(gone.payload["data"]["at"]) >= expires_at
    [notice] = await mail_with(mailbox, email, "is verlopen")

    # The customer renews from the link in the message: back to pending verification.
    customer = Customer(http)
    page = await customer.open(mailbox.link(notice))
    assert page.status_code == 200 and "Upload een geldig document" in customer.page
    data = {"csrf_token": customer.csrf(), "document_type": "passport", "number": "NL765432",
            "expires_at": FAR}
    renewed = await http.post(mailbox.link(notice), data=data,
                              files={"file": ("new-passport.png", PNG, "image/png")})
    assert renewed.status_code == 303
    renewal = await wait_for_state(tenant, contact_id, "pending_verification")
    assert at(renewal["assigned_at"]) > expires_at
    assert [d["source"] for d in renewal["documents"]] == ["api", "customer_page"]
    reassigned = (await webhook_receiver.wait_for(hook, "kyc.assigned", count=2))[-1]
    assert reassigned.payload["data"]["change"] == "renewed"
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 200
    history = [e["type"] for e in (await profile(tenant, contact_id))["history"]
               if not e["type"].endswith("_sent")]
    assert history == ["assigned", "verified", "reminded", "expired", "renewed", "verified"]
    assert not webhook_receiver.bad_signatures

    # The renewal continued the workflow as new: history stays bounded over the years.
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    state = await handle.query(KycWorkflow.state, result_type=KycProfile)
    assert state.run == 2 and state.state == "verified"
    description = await handle.describe()
    assert description.typed_search_attributes.get(KYC_STATE) == "verified"
    assert description.typed_search_attributes.get(CONTACT_ID) == contact_id
    if record_histories:
        first_run = [w async for w in temporal_env.client.list_workflows(
            f"WorkflowId = '{handle.id}' AND ExecutionStatus = 'ContinuedAsNew'")]
        await save_history(temporal_env.client.get_workflow_handle(
            handle.id, run_id=first_run[0].run_id), "kyc_assign_verify_expire_renew")


async def test_refuted_customer_fixes_it_from_the_link(tenant, sessions, http, mailbox,
                                                       webhook_receiver, temporal_env,
                                                       record_histories):
    hook = await tenant.subscribe(webhook_receiver, ["kyc.refuted"])
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    assert (await upload(tenant, contact_id, "id_card")).status_code == 201
    await wait_for_state(tenant, contact_id, "pending_verification")

    empty = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": ""})
    assert empty.status_code == 422 and empty.json()["error"]["fields"][0]["field"] == "reason"
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute",
                                {"reason": "The photo of the ID card is unreadable."})
    assert refuted.status_code == 200 and refuted.json()["state"] == "refuted"
    [event] = await webhook_receiver.wait_for(hook, "kyc.refuted")
    assert event.payload["data"]["kyc"]["reason"] == "The photo of the ID card is unreadable."
    [mail] = await mail_with(mailbox, email, "could not verify")
    assert "The photo of the ID card is unreadable." in mail.text
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 409

    customer = Customer(http)
    link = mailbox.link(mail)
    await customer.open(link)
    assert "The photo of the ID card is unreadable." in customer.page
    # A wrong file is explained on the page and nothing is stored.
    bad = await http.post(link, data={"csrf_token": customer.csrf(), "document_type": "id_card",
                                      "number": "X1"},
                          files={"file": ("id.pdf", b"<html>not a scan</html>", "application/pdf")})
    assert bad.status_code == 415 and "This kind of file is not accepted" in bad.text
    assert 'aria-invalid="true"' in bad.text
    # An ID card that has already expired could renew nothing.
    stale = await http.post(link, data={"csrf_token": customer.csrf(), "document_type": "id_card",
                                        "number": "X122", "expires_at": "2020-01-01"},
                            files={"file": ("id.jpg", b"\xff\xd8\xff\xe0 a photo", "image/jpeg")})
    assert stale.status_code == 422 and "This document has expired" in stale.text
    forged = await http.post(link, data={"csrf_token": "forged", "document_type": "id_card"},
                             files={"file": ("id.pdf", PDF, "application/pdf")})
    assert forged.status_code == 403
    assert len((await profile(tenant, contact_id))["documents"]) == 1

    good = await http.post(link, data={"csrf_token": customer.csrf(), "document_type": "id_card",
                                       "number": "X123", "expires_at": FAR},
                           files={"file": ("id.jpg", b"\xff\xd8\xff\xe0 a photo", "image/jpeg")})
    assert good.status_code == 303
    # Judged before the answer: the page it leads to already tells the outcome.
    after = await http.get(good.headers["location"])
    assert "We have received your documents and are checking them" in after.text
    assert (await profile(tenant, contact_id))["state"] == "pending_verification"
    assert (await wait_for_state(tenant, contact_id, "pending_verification"))["reason"] is None
    if record_histories:
        handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
        first_run = [w async for w in temporal_env.client.list_workflows(
            f"WorkflowId = '{handle.id}' AND ExecutionStatus = 'ContinuedAsNew'")]
        await save_history(temporal_env.client.get_workflow_handle(
            handle.id, run_id=first_run[0].run_id), "kyc_refuted_then_renewed")


async def test_a_refutation_without_a_reason_is_refused(tenant, sessions):
    """The customer is emailed the reason: a blank one would tell them nothing."""
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    for blank in ("   ", "\n\t "):
        refused = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": blank})
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["reason"]
    assert (await profile(tenant, contact_id))["state"] == "pending_verification"
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute",
                                {"reason": "  Unreadable.  "})
    assert refuted.status_code == 200 and refuted.json()["reason"] == "Unreadable."


async def refuted_upload_link(tenant, mailbox, contact_id: str, email: str) -> str:
    """An ID card uploaded by the client and refuted: the link to the customer's upload page
    from the mail that says so."""
    assert (await upload(tenant, contact_id, "id_card")).status_code == 201
    await wait_for_state(tenant, contact_id, "pending_verification")
    await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "Unreadable."})
    return mailbox.link((await mail_with(mailbox, email, "could not verify"))[0])


async def test_a_kyc_form_posted_twice_stores_one_document(tenant, sessions, http, mailbox,
                                                          webhook_receiver, settings):
    """A double click (two posts at once) or a post sent again with the browser's Back: the
    customer's one upload is one document, judged once."""
    hook = await tenant.subscribe(webhook_receiver, ["kyc.assigned"])
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    customer = Customer(http)
    await customer.open(link)
    form = {**customer.hidden_fields(), "document_type": "id_card", "number": "X123",
            "expires_at": FAR}

    async def post() -> httpx.Response:
        return await http.post(link, data=form,
                               files={"file": ("id.jpg", b"\xff\xd8\xff\xe0 a photo",
                                               "image/jpeg")})
    first, second = await asyncio.gather(post(), post())
    again = await post()
    assert [r.status_code for r in (first, second, again)] == [303, 303, 303]
    assert len({r.headers["location"] for r in (first, second, again)}) == 1
    renewed = await wait_for_state(tenant, contact_id, "pending_verification")
    assert [d["source"] for d in renewed["documents"]] == ["api", "customer_page"]
    await webhook_receiver.wait_for(hook, "kyc.assigned", count=2)
    await asyncio.sleep(1)  # a second judgment would be recorded by now
    history = [e["type"] for e in (await profile(tenant, contact_id))["history"]]
    assert history.count("renewed") == 1, history
    assert len(webhook_receiver.events(hook, "kyc.assigned")) == 2
    # The post that lost the race to store took its own file away with it.
    async with sessions() as session:
        keys = set(await session.scalars(select(KycDocument.storage_key).where(
            KycDocument.contact_id == uuid.UUID(contact_id))))
    folder = settings.kyc_storage_dir / str(tenant.id) / contact_id
    assert {f"{tenant.id}/{contact_id}/{p.name}" for p in folder.iterdir()} == keys
    # A new form (the page shown again) is a new upload.
    await customer.open(link)
    form = {**customer.hidden_fields(), "document_type": "passport", "number": "P1",
            "expires_at": FAR}
    assert (await post()).status_code == 303
    assert len((await profile(tenant, contact_id))["documents"]) == 3


async def test_a_kyc_form_sent_again_with_another_file_is_a_new_upload(tenant, sessions, http,
                                                                     mailbox):
    """The customer uploads, goes Back, picks another file (or corrects the number) and sends
    the same form again: that is what they upload now, not the first one again."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    customer = Customer(http)
    await customer.open(link)
    form = {**customer.hidden_fields(), "document_type": "id_card", "number": "X123",
            "expires_at": FAR}

    async def post(data: bytes, **fields: str) -> list[tuple[str, str]]:
        response = await http.post(link, data={**form, **fields},
                                   files={"file": ("id.png", data, "image/png")})
        assert response.status_code == 303, response.text
        documents = (await profile(tenant, contact_id))["documents"]
        return [(d["number"], d["sha256"]) for d in documents if d["source"] == "customer_page"]

    blurred, sharp = PNG, PNG + b"sharp"
    first = await post(blurred)
    assert await post(blurred) == first  # a reload: the same upload
    [_, (_, sharp_sha)] = await post(sharp)
    assert await post(sharp, number="X124") == [*first, ("X123", sharp_sha), ("X124", sharp_sha)]
    without = await http.post(link, data=form)
    assert without.status_code == 422 and len((await profile(tenant, contact_id))["documents"]) == 4


async def test_an_upload_retried_with_its_idempotency_key_stores_one_document(
        tenant, sessions, mailbox, settings):
    """A client that sends its upload again (a timeout, a retry at once) with the same
    Idempotency-Key: one document, judged once, and the first answer again."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    await refuted_upload_link(tenant, mailbox, contact_id, email)
    key = {"Idempotency-Key": f"scan-{uuid.uuid4()}"}

    async def post(contact: str = contact_id, data: bytes = PNG,
                   headers: dict[str, str] = key) -> httpx.Response:
        return await tenant.http.post(
            f"/v1/kyc/contacts/{contact}/documents", headers={**tenant.auth, **headers},
            files={"file": ("id.png", data, "image/png")},
            data={"document_type": "id_card", "number": "X123", "expires_at": FAR})
    # Of two at once, the one that finds the other judging is told it is in progress.
    first, second = sorted(await asyncio.gather(post(), post()), key=lambda r: r.status_code)
    again = await post()
    assert first.status_code == again.status_code == 201, again.text
    assert second.status_code == 201 or second.json()["error"]["code"] == "in_progress"
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    renewed = await wait_for_state(tenant, contact_id, "pending_verification")
    assert [d["source"] for d in renewed["documents"]] == ["api", "api"]
    await asyncio.sleep(1)  # a second judgment would be recorded by now
    history = [e["type"] for e in (await profile(tenant, contact_id))["history"]]
    assert history.count("renewed") == 1, history
    # The post that lost the race to store took its own file away with it.
    async with sessions() as session:
        keys = set(await session.scalars(select(KycDocument.storage_key).where(
            KycDocument.contact_id == uuid.UUID(contact_id))))
    folder = settings.kyc_storage_dir / str(tenant.id) / contact_id
    assert {f"{tenant.id}/{contact_id}/{p.name}" for p in folder.iterdir()} == keys

    # The key reused for another upload is the client's mistake, said so and storing nothing.
    other_contact, _ = await new_contact(sessions, tenant)
    for reused in (await post(data=PNG + b"another scan"), await post(other_contact)):
        assert reused.status_code == 409, reused.text
        assert "Idempotency-Key" in reused.json()["error"]["message"]
    assert len((await profile(tenant, contact_id))["documents"]) == 2
    bad = await post(headers={"Idempotency-Key": "k" * 201})
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "Idempotency-Key", bad.text
    # Without a key each post is an upload of its own.
    assert [(await post(headers={})).status_code for _ in range(2)] == [201, 201]
    assert len((await profile(tenant, contact_id))["documents"]) == 4


async def test_a_retry_that_overtakes_the_upload_is_told_it_is_in_progress(
        tenant, sessions, settings, temporal_env):
    """The retry of an upload whose first request still waits for the profile's judgment is
    told so (409, Retry-After), not answered before the judgment; once the first has answered,
    the retry is answered as it was."""
    own = settings.model_copy(update={"temporal_task_queue": f"kyc-slow-{uuid.uuid4().hex[:6]}",
                                      "kyc_judgment_wait": timedelta(seconds=15)})
    async with own_api(own, tenant) as client:
        await define(client, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
        contact_id, _ = await new_contact(sessions, client)
        async with running_worker(temporal_env.client, own):
            await client.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
            await client.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "blurred"})

        async def post() -> httpx.Response:
            return await client.http.post(
                f"/v1/kyc/contacts/{contact_id}/documents",
                headers={**client.auth, "Idempotency-Key": f"scan-{contact_id}"},
                files={"file": ("id.png", PNG, "image/png")},
                data={"document_type": "id_card", "number": "X123", "expires_at": FAR})
        # No worker: the first request waits for the judgment.
        first = asyncio.create_task(post())

        async def stored() -> bool:
            async with sessions() as session:
                return bool(await session.scalar(select(func.count()).select_from(
                    KycDocument).where(KycDocument.contact_id == uuid.UUID(contact_id))))
        await eventually(stored, what="the first upload stored")
        overtaking = await post()
        assert overtaking.status_code == 409, overtaking.text
        assert overtaking.json()["error"]["code"] == "in_progress"
        assert int(overtaking.headers["Retry-After"]) >= 1
        async with running_worker(temporal_env.client, own):
            answered = await first
            assert answered.status_code == 201, answered.text
            assert (await profile(client, contact_id))["state"] == "pending_verification"
            again = await post()
        assert (again.status_code, again.json()) == (201, answered.json())
        assert again.headers["Idempotent-Replayed"] == "true"


async def test_the_registry_follows_the_document_a_customer_renews_with(
        tenant, sessions, http, mailbox):
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    assert (await upload(tenant, contact_id, "id_card")).status_code == 201
    contact = (await tenant.get(f"/v1/contacts/{contact_id}")).json()
    assert (contact["id_number"], contact["id_expires_on"]) == ("NL123456", FAR)
    await wait_for_state(tenant, contact_id, "pending_verification")
    await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "Unreadable."})
    link = mailbox.link((await mail_with(mailbox, email, "could not verify"))[0])

    customer = Customer(http)
    await customer.open(link)
    renewed_until = (datetime.now(UTC) + timedelta(days=2000)).date().isoformat()
    posted = await http.post(link, data={
        **customer.hidden_fields(), "document_type": "id_card", "number": "X765",
        "expires_at": renewed_until}, files={"file": ("id.png", PNG, "image/png")})
    assert posted.status_code == 303
    assert (await profile(tenant, contact_id))["state"] == "pending_verification"
    contact = (await tenant.get(f"/v1/contacts/{contact_id}")).json()
    assert (contact["id_number"], contact["id_expires_on"]) == ("X765", renewed_until)
    [change] = [e for e in (await tenant.get(f"/v1/contacts/{contact_id}/audit")).json()["items"]
                if e["action"] == "update" and e["actor_type"] == "customer"]
    assert change["detail"]["changes"]["id_number"] == {"old": "NL123456", "new": "X765"}


async def test_a_customer_is_told_a_number_belongs_to_another_record(
        tenant, sessions, http, mailbox):
    """An ID number the uniqueness rule gives to another contact: the page says the number
    cannot be used here, never whose it is, and keeps what the customer typed."""
    from tests.test_contacts import person, set_rule
    await set_rule(tenant)
    other = await tenant.post("/v1/contacts", person(last_name="Janssen", id_number="NL777"))
    assert other.status_code == 201, other.text
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant, ssn=f"S{uuid.uuid4().hex[:8]}")
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)

    customer = Customer(http)
    await customer.open(link)

    async def post_taken_number() -> httpx.Response:
        return await http.post(link, data={
            **customer.hidden_fields(), "document_type": "id_card", "number": "NL777",
            "expires_at": FAR}, files={"file": ("id.png", PNG, "image/png")})
    taken = await post_taken_number()
    assert taken.status_code == 409
    assert "This number cannot be used for this profile: it belongs to another record" \
        in taken.text
    assert "as printed on it" not in taken.text and other.json()["id"] not in taken.text
    assert 'value="NL777"' in taken.text and f'value="{FAR}"' in taken.text
    assert '<option value="id_card" selected>' in taken.text
    await customer.submit(f"{link}/language", language="nl")
    assert "hoort bij een ander dossier" in (await post_taken_number()).text
    await customer.submit(f"{link}/language", language="de")
    assert "gehört zu einem anderen Datensatz" in (await post_taken_number()).text
    assert len((await profile(tenant, contact_id))["documents"]) == 1


async def verified_by_id_card(tenant, sessions, webhook_receiver, event: str, *,
                              remind_before: str) -> tuple[Any, str, dict[str, Any]]:
    """A contact verified at once by an ID card valid for long, a hook on `event`: (the hook,
    the contact's id, the document)."""
    hook = await tenant.subscribe(webhook_receiver, [event])
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False,
                 remind_before=remind_before)
    contact_id, _ = await new_contact(sessions, tenant)
    document = (await upload(tenant, contact_id, "id_card")).json()
    assigned = await wait_for_state(tenant, contact_id, "verified")
    assert at(assigned["expires_at"]) == at(f"{FAR_ENDS}T00:00:00+00:00")
    return hook, contact_id, document


async def test_a_registry_expiry_change_reschedules_the_profile(tenant, sessions,
                                                                 webhook_receiver, mailbox):
    """The contact's id_expires_on is the expiry of the ID card the profile rests on: changed
    in the registry, the document and the profile's expiry (and reminder) follow. The card is
    valid all of the day printed on it: the profile expires when the next one begins, and the
    customer is told the printed date."""
    hook, contact_id, document = await verified_by_id_card(
        tenant, sessions, webhook_receiver, "kyc.expiring", remind_before="P3D")

    soon = (datetime.now(UTC) + timedelta(days=2)).date()
    ends = f"{soon + timedelta(days=1)}T00:00:00+00:00"
    patched = await tenant.http.patch(f"/v1/contacts/{contact_id}", headers=tenant.auth,
                                      json={"id_expires_on": soon.isoformat()})
    assert patched.status_code == 200, patched.text
    # Answered once judged, as a document's correction is.
    moved = await profile(tenant, contact_id)
    assert at(moved["expires_at"]) == at(ends)
    assert moved["expiry_cause"] == "document_expired"
    [corrected] = moved["documents"]
    assert corrected["id"] == document["id"]
    assert at(corrected["expires_at"]) == at(ends)
    contact = (await tenant.get(f"/v1/contacts/{contact_id}")).json()
    assert contact["id_expires_on"] == soon.isoformat()
    # The reminder is due three days before the new expiry, so at once.
    [expiring] = await webhook_receiver.wait_for(hook, "kyc.expiring")
    assert at(expiring.payload["data"]["kyc"]["expires_at"]) == at(ends)
    email = await contact_email(sessions, contact_id)
    [reminder] = await mail_with(mailbox, email, "expires on")
    assert f"expires on {soon:%B} {soon.day}, {soon.year}" in reminder.subject, reminder.subject
    types = [e["type"] for e in (await profile(tenant, contact_id))["history"]
             if not e["type"].endswith("_sent")]
    assert types == ["assigned", "rescheduled", "reminded"]


async def test_the_kyc_page_marks_expired_documents_and_switches_language(
        tenant, sessions, http, mailbox):
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    old = await upload(tenant, contact_id, "passport", number="P0LD", expires_at="2020-01-01")
    assert old.status_code == 201, old.text
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)

    customer = Customer(http)
    await customer.open(link)
    [passport, id_card] = re.findall(r"<li>((?:Passport|ID card) ·.*?)</li>", customer.page)
    assert "Expired on January 1, 2020" in passport and "Expired" not in id_card
    # The client's default language first, as a campaign's pages list the campaign's first.
    assert re.findall(r'name="language" value="(\w+)"', customer.page) == ["en", "de", "nl"]

    forged = await http.post(f"{link}/language", data={"csrf_token": "forged",
                                                       "language": "nl"})
    assert forged.status_code == 403
    dutch = await customer.submit(f"{link}/language", language="nl")
    assert dutch.status_code == 200 and 'lang="nl"' in customer.page
    assert "Verlopen op 1 januari 2020" in customer.page and "Ontvangen documenten" in customer.page
    # Kept as the contact's language: the profile's later messages speak it too.
    assert (await tenant.get(f"/v1/contacts/{contact_id}")).json()["language"] == "nl"
    await customer.submit(f"{link}/language", language="de")
    assert "Abgelaufen am 1. Januar 2020" in customer.page
    # A language the page does not offer changes nothing.
    await customer.submit(f"{link}/language", language="xx")
    assert 'lang="de"' in customer.page


async def test_a_customer_without_email_is_told_by_sms(tenant, sessions, http, settings):
    await define(tenant, 1, [{"field": "last_name"}, {"field": "mobile"}])
    contact_id, mobile = await new_contact(sessions, tenant, mobile=True)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "No ID card yet."})

    async def texted() -> list | None:
        return [r for r in read_records(settings.sms_outbox_dir)
                if r["to"] == mobile and "No ID card yet." in r["text"]] or None
    [sms] = await eventually(texted, what="the refute SMS")
    link = LINK.search(sms["text"])
    assert link, sms["text"]
    page = await Customer(http).open(link.group(1))
    assert page.status_code == 200 and "No ID card yet." in page.text


async def test_a_german_customer_is_told_until_which_day_the_verification_lasts(
        tenant, sessions, mailbox):
    """German writes it "bis zum 15. Dezember 2026 gültig", not "gültig bis 15. Dezember"."""
    await define(tenant, 1, IDENTITY, expires_after="P400D")
    contact_id, email = await new_contact(sessions, tenant, language="de")
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    verified = await tenant.ok("POST", f"/v1/kyc/contacts/{contact_id}/verify", {})
    last_day = format_date(last_valid_day(at(verified["expires_at"])), "long", locale="de")
    [mail] = await mail_with(mailbox, email, "Identität ist verifiziert")
    assert f"Ihre Verifizierung ist bis zum {last_day} gültig." in mail.text, mail.text


async def test_a_refused_email_shows_in_the_profiles_history(tenant, sessions):
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant, email_domain="hard-bounce.example.com")
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200

    async def bounced() -> dict | None:
        history = (await profile(tenant, contact_id))["history"]
        return next((e for e in history if e["type"] == "kyc_assigned_bounced"), None)
    event = await eventually(bounced, what="the refused assignment email in the history")
    assert event["detail"]["recipient"] == email and event["detail"]["channel"] == "email"
    assert "550" in event["detail"]["reason"]
    # The profile goes on: the back office can still decide it.
    verified = await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})
    assert verified.status_code == 200 and verified.json()["state"] == "verified"


async def test_an_email_refused_for_good_is_not_written_to_again(tenant, sessions, settings):
    """The assignment email bounced hard: the registry marks the address, as after a journey's
    bounce, and the profile's next message goes by SMS instead of to the dead address."""
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant, email_domain="hard-bounce.example.com")
    mobile = f"+3161{str(uuid.uuid4().int)[:7]}"
    await tenant.ok("POST", f"/v1/contacts/{contact_id}/contact-points",
                    {"kind": "mobile", "value": mobile}, status=201)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200

    async def marked() -> dict | None:
        record = await tenant.ok("GET", f"/v1/contacts/{contact_id}")
        point = next(p for p in record["contact_points"] if p["kind"] == "email")
        return point["undeliverable"]
    assert "550" in (await eventually(marked, what="the bounced address marked"))["reason"]

    await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "No ID card yet."})

    async def texted() -> list | None:
        return [r for r in read_records(settings.sms_outbox_dir)
                if r["to"] == mobile and "No ID card yet." in r["text"]] or None
    await eventually(texted, what="the refute SMS")
    history = (await profile(tenant, contact_id))["history"]
    assert [e["type"] for e in history if e["type"].endswith("_bounced")] == [
        "kyc_assigned_bounced"]


async def test_an_address_reported_as_spam_is_not_written_to(tenant, sessions, settings,
                                                             mailbox):
    """The customer reported one of our emails as spam: the profile's messages go by SMS to a
    contact with a mobile, and to one without, nowhere, the profile's history saying why."""
    await define(tenant, 1, IDENTITY)
    texted_id, texted_email = await new_contact(sessions, tenant)
    mobile = f"+3161{str(uuid.uuid4().int)[:7]}"
    await tenant.ok("POST", f"/v1/contacts/{texted_id}/contact-points",
                    {"kind": "mobile", "value": mobile}, status=201)
    silent_id, silent_email = await new_contact(sessions, tenant)
    for contact_id in (texted_id, silent_id):
        await mark_complained(sessions, contact_id, "email")
        assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200

    async def texted() -> list | None:
        return [r for r in read_records(settings.sms_outbox_dir) if r["to"] == mobile] or None
    await eventually(texted, what="the assignment SMS")

    async def skipped() -> dict | None:
        history = (await profile(tenant, silent_id))["history"]
        return next((e for e in history if e["type"] == "kyc_assigned_skipped"), None)
    event = await eventually(skipped, what="the unsent assignment in the history")
    assert "reported a message as spam" in event["detail"]["reason"], event
    assert mailbox.to(texted_email) == mailbox.to(silent_email) == []


async def test_a_new_document_expiry_reschedules_the_profile(tenant, sessions, webhook_receiver):
    hook, contact_id, document = await verified_by_id_card(
        tenant, sessions, webhook_receiver, "kyc.expired", remind_before="PT1S")

    async def correct(expires_at: datetime) -> dict[str, Any]:
        response = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                           json={"expires_at": expires_at.isoformat()},
                                           headers=tenant.auth)
        assert response.status_code == 200, response.text

        async def moved() -> dict[str, Any] | None:
            current = await profile(tenant, contact_id)
            return current if current["expires_at"] and \
                at(current["expires_at"]) == expires_at else None
        return await eventually(moved, what="the profile's expiry to move")

    earlier = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    assert (await correct(earlier))["expiry_cause"] == "document_expired"
    await correct(earlier + timedelta(days=30))  # the first timer no longer counts
    final = earlier + timedelta(seconds=2)
    await correct(final)
    expired = await wait_for_state(tenant, contact_id, "expired")
    assert expired["reason"] == "document_expired"
    [event] = await webhook_receiver.wait_for(hook, "kyc.expired")
    assert at(event.payload["data"]["at"]) >= final
    types = [e["type"] for e in expired["history"] if not e["type"].endswith("_sent")]
    assert types.count("rescheduled") == 3 and types[-1] == "expired"


async def test_an_expiry_corrected_into_the_past_expires_the_profile(tenant, sessions,
                                                                      webhook_receiver):
    """The ID card's expiry was typed wrong and is corrected to a date already past: the
    profile resting on it is expired, as on the day that date came, not left without one."""
    hook, contact_id, document = await verified_by_id_card(
        tenant, sessions, webhook_receiver, "kyc.expired", remind_before="PT1S")
    passed = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    response = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                       json={"expires_at": passed.isoformat()},
                                       headers=tenant.auth)
    assert response.status_code == 200, response.text
    expired = await wait_for_state(tenant, contact_id, "expired")
    assert expired["reason"] == expired["expiry_cause"] == "document_expired"
    assert at(expired["expires_at"]) == passed
    [event] = await webhook_receiver.wait_for(hook, "kyc.expired")
    assert event.payload["data"]["kyc"]["state"] == "expired"


async def test_an_expiry_at_the_calendars_edge_is_a_field_error(tenant, sessions, http,
                                                               mailbox):
    """A date and time whose UTC falls past the year 9999 or before the year 1: the field is
    refused, on upload, correction and the customer's page, as any other bad date."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    for edge in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:30:00+01:00"):
        uploaded = await upload(tenant, contact_id, expires_at=edge)
        assert uploaded.status_code == 422, uploaded.text
        assert uploaded.json()["error"]["fields"] == [{
            "field": "expires_at",
            "message": "is out of range: in UTC it falls outside the years 1 to 9999"}]
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    [document] = (await profile(tenant, contact_id))["documents"]
    for edge in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:30:00+01:00"):
        corrected = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                            json={"expires_at": edge}, headers=tenant.auth)
        assert corrected.status_code == 422, corrected.text
        [problem] = corrected.json()["error"]["fields"]
        assert problem["field"] == "expires_at" and "9999" in problem["message"], problem

    customer = Customer(http)
    await customer.open(link)
    posted = await http.post(link, data={
        **customer.hidden_fields(), "document_type": "id_card", "number": "NL1",
        "expires_at": "9999-12-31T23:59:59-05:00"}, files={"file": ("id.png", PNG, "image/png")})
    assert posted.status_code == 422
    assert "Enter the date like 2031-12-31." in posted.text
    assert len((await profile(tenant, contact_id))["documents"]) == 1


async def test_an_upload_keeps_its_file_name_without_control_characters(tenant, sessions):
    """A NUL in the multipart file name (which browsers and scripts can send) failed the upload
    at its commit, its file already stored, and answered the API's JSON even on the page."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    boundary = "cjboundary"
    fields = {"document_type": "passport", "number": "NL123456", "expires_at": FAR}
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode() for name, value in fields.items()) + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="scan\x00\u202efdp.exe"\r\nContent-Type: application/pdf\r\n\r\n'
        .encode() + PDF + f"\r\n--{boundary}--\r\n".encode())
    uploaded = await tenant.http.post(
        f"/v1/kyc/contacts/{contact_id}/documents", content=body, headers={
            **tenant.auth, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["filename"] == "scanfdp.exe"


async def test_a_bad_document_number_is_told_in_words(tenant, sessions):
    """Uploaded or corrected, a number with characters no document prints is refused with the
    same plain words, never the pattern that checks it."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, _ = await new_contact(sessions, tenant)
    plain = [{"field": "number", "message": "letters, digits, spaces and - / . only, at most 100"}]
    for bad in ("bad!", "N" * 101):
        uploaded = await upload(tenant, contact_id, number=bad)
        assert uploaded.status_code == 422 and uploaded.json()["error"]["fields"] == plain
    document = (await upload(tenant, contact_id)).json()
    for bad in ("bad!", "N" * 101):
        corrected = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                            json={"number": bad}, headers=tenant.auth)
        assert corrected.status_code == 422, corrected.text
        assert corrected.json()["error"]["fields"] == plain, corrected.text
    spaced = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                     json={"number": " NL 654/3.2-1 "}, headers=tenant.auth)
    assert spaced.status_code == 200 and spaced.json()["number"] == "NL 654/3.2-1"


async def test_an_id_card_or_passport_keeps_its_number_when_corrected(tenant, sessions):
    """A correction cannot take the number off a passport, as an upload cannot leave it out:
    the registry's number and the profile's expiry rest on it. Cleared in the registry, the
    number went from the passport too, and the profile never expired."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    passport = (await upload(tenant, contact_id)).json()
    verified = await wait_for_state(tenant, contact_id, "verified")
    assert verified["expiry_cause"] == "document_expired"
    required = [{"field": "number", "message": "required for document kind passport"}]
    assert (await upload(tenant, contact_id, number="   ")).json()["error"]["fields"] == required
    for cleared in (None, "", "   "):
        corrected = await tenant.http.patch(f"/v1/kyc/documents/{passport['id']}",
                                            json={"number": cleared}, headers=tenant.auth)
        assert corrected.status_code == 422, corrected.text
        assert corrected.json()["error"]["fields"] == required
    # Nor can clearing the registry's number, which the passport's would follow.
    registry = await tenant.http.patch(f"/v1/contacts/{contact_id}",
                                       json={"passport_number": None}, headers=tenant.auth)
    assert registry.status_code == 422, registry.text
    [error] = registry.json()["error"]["fields"]
    assert error["field"] == "passport_number" and passport["id"] in error["message"]
    kept = await profile(tenant, contact_id)
    assert kept["documents"][0]["number"] == "NL123456"
    assert (kept["expires_at"], kept["expiry_cause"]) == (
        verified["expires_at"], "document_expired")
    assert (await tenant.ok("GET", f"/v1/contacts/{contact_id}"))["passport_number"] == \
        "NL123456"
    # A proof of address needs no number: a blank one is none, as on the upload form.
    proof = (await upload(tenant, contact_id, "proof_of_address", number="A1")).json()
    cleared = await tenant.http.patch(f"/v1/kyc/documents/{proof['id']}",
                                      json={"number": "  "}, headers=tenant.auth)
    assert cleared.status_code == 200 and cleared.json()["number"] is None, cleared.text


async def test_level_changes_follow_the_crm_rules(tenant, sessions):
    basic = await define(tenant, 1, IDENTITY, max_credit_limit="500.00")
    identified = await define(tenant, 2, IDENTITY + ID_OR_PASSPORT)
    premium = await define(tenant, 3, IDENTITY + ID_OR_PASSPORT + [
        {"field": "mobile", "attachment": "proof_of_address"}])
    # A field required at a lower level must be defined at every higher one.
    inconsistent = await tenant.post("/v1/kyc/definitions", {
        "name": "No email", "level": 4, "rules": {"person": [{"field": "first_name"}]}})
    assert inconsistent.status_code == 422
    assert any("'email'" in f["message"] for f in inconsistent.json()["error"]["fields"])
    early = await tenant.post("/v1/kyc/definitions", {
        "name": "Early", "level": 5, "rules": {"person": IDENTITY}, "expires_after": "P365D",
        "remind_before": "P400D"})
    assert early.status_code == 422 and early.json()["error"]["fields"] == [
        {"field": "remind_before", "message": "must be shorter than expires_after"}]
    contact_id, _ = await new_contact(sessions, tenant)

    async def assign(definition: dict | None) -> httpx.Response:
        return await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign",
                                 {"definition_id": definition["id"] if definition else None})

    missing = await assign({"id": str(uuid.uuid4())})
    assert missing.status_code == 422 and missing.json()["error"]["fields"] == [
        {"field": "definition_id", "message": "no KYC definition with this id"}], missing.text
    refused = await assign(identified)
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"] == [
        {"field": "id_number | passport_number", "message": "required"}]
    # Qualifying for no level: what the lowest one lacks.
    unknown, _ = await new_contact(sessions, tenant, mobile=True)
    nowhere = await tenant.post(f"/v1/kyc/contacts/{unknown}/assign", {})
    assert nowhere.status_code == 422
    assert nowhere.json()["error"]["fields"] == [{"field": "email", "message": "required"}]
    # Without a choice: the highest level whose information is present.
    first = await assign(None)
    assert first.status_code == 200 and first.json()["definition"]["level"] == 1
    assert first.json()["state"] == "pending_verification"
    assert (await assign(None)).json()["assigned_at"] == first.json()["assigned_at"]
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 200

    # Verified: a higher level only once its information is present.
    assert (await assign(identified)).status_code == 422
    # A number the registry knows still needs its document: the answer names the document.
    known = await tenant.http.patch(f"/v1/contacts/{contact_id}", headers=tenant.auth,
                                    json={"id_number": "NL123456"})
    assert known.status_code == 200, known.text
    lacking = await assign(identified)
    assert lacking.status_code == 422 and lacking.json()["error"]["fields"] == [
        {"field": "id_card | passport_number", "message": "required"}], lacking.text
    assert (await upload(tenant, contact_id)).status_code == 201
    higher = await assign(identified)
    assert higher.status_code == 200, higher.text
    assert higher.json()["state"] == "pending_verification"
    assert at(higher.json()["assigned_at"]) > at(first.json()["assigned_at"])

    # Not verified: a higher level at once, even with information missing.
    highest = await assign(premium)
    assert highest.status_code == 200 and highest.json()["definition"]["level"] == 3
    assert highest.json()["state"] == "pending_verification"

    # A lower level: free, and verified at once (although its definition asks for verification).
    lower = await assign(basic)
    assert lower.status_code == 200
    assert lower.json()["definition"]["level"] == 1 and lower.json()["state"] == "verified"
    assert lower.json()["definition"]["max_credit_limit"] == "500.00"
    changes = [e["type"] for e in lower.json()["history"] if not e["type"].endswith("_sent")]
    assert changes == ["assigned", "verified", "changed", "changed", "changed"]


async def test_a_definition_created_four_times_at_once_is_one_and_three_conflicts(tenant):
    """A client retrying a create whose answer it lost, several times at once: the same 409 as
    when the copies come one after another, not a 500 for each one that lost the race."""
    body = {"name": "Level 1", "level": 1, "rules": {"person": IDENTITY}}
    answers = await asyncio.gather(*(tenant.post("/v1/kyc/definitions", body) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], \
        [a.text for a in answers]
    assert len((await tenant.get("/v1/kyc/definitions")).json()) == 1


async def test_a_contact_without_a_profile_is_not_found_whatever_was_tried(tenant, sessions):
    """Verify and refute of a contact without a profile: a 404, as reading it is, also after an
    assignment was tried and refused."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, _ = await new_contact(sessions, tenant)

    async def answers() -> list[tuple[int, str]]:
        return [(r.status_code, r.json()["error"]["code"]) for r in [
            await tenant.get(f"/v1/kyc/contacts/{contact_id}"),
            await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {}),
            await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "Unreadable."}),
        ]]
    assert await answers() == [(404, "not_found")] * 3
    refused = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert refused.status_code == 422, refused.text
    assert await answers() == [(404, "not_found")] * 3


async def test_a_refused_first_assignment_leaves_no_workflow_running(tenant, sessions,
                                                                     temporal_env,
                                                                     record_histories):
    """A contact that does not qualify yet: each refused assignment (of the highest level it
    meets, or of one named) leaves nothing running in the Temporal UI, where operators would
    otherwise find one idle workflow per refused contact. Once it qualifies it is assigned as
    any contact is."""
    definition = await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    runs = []
    for body in ({}, {"definition_id": definition["id"]}):
        refused = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "kyc_missing_information"
        described = await handle.describe()
        runs.append(described.run_id)
        await asyncio.wait_for(handle.result(), timeout=15)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert len(set(runs)) == 2

    async def running() -> list[str]:
        return [w.id async for w in temporal_env.client.list_workflows(
            f"ContactId = '{contact_id}' AND ExecutionStatus = 'Running'")]

    async def closed() -> bool:
        return len([w async for w in temporal_env.client.list_workflows(
            f"ContactId = '{contact_id}' AND ExecutionStatus = 'Completed'")]) == 2
    await eventually(closed, what="the refused assignments' runs closed in visibility")
    assert await running() == []
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(handle.id, run_id=runs[0]),
                           "kyc_first_assignment_refused")

    assert (await upload(tenant, contact_id, "id_card")).status_code == 201
    assert (await wait_for_state(tenant, contact_id, "verified"))["definition"]["level"] == 1
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_an_assignment_racing_a_refused_first_one_is_kept(tenant, sessions, temporal_env):
    """Two assignments of a new contact at once, one refused: the refused one may end the
    workflow the other reaches, but the accepted one's profile runs on either way."""
    low = await define(tenant, 1, IDENTITY, requires_verification=False)
    high = await define(tenant, 2, IDENTITY + ID_OR_PASSPORT)
    for _ in range(3):
        contact_id, _ = await new_contact(sessions, tenant)
        assign = f"/v1/kyc/contacts/{contact_id}/assign"
        answers = await asyncio.gather(tenant.post(assign, {"definition_id": high["id"]}),
                                       tenant.post(assign, {"definition_id": low["id"]}))
        assert [a.status_code for a in answers] == [422, 200], [a.text for a in answers]
        assert answers[1].json()["state"] == "verified"
        handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        state = await handle.query(KycWorkflow.state, result_type=KycProfile)
        assert (state.state, state.level) == ("verified", 1)


async def test_a_restarted_worker_still_expires_on_time(tenant, sessions, settings, temporal_env):
    """The profile's timer lives in Temporal: a worker stopped mid-wait and a new one started
    (with nothing in its cache) expires the profile when it is due."""
    own = settings.model_copy(update={"temporal_task_queue": f"kyc-restart-{uuid.uuid4().hex[:6]}"})
    async with own_api(own, tenant) as client:
        await define(client, 1, IDENTITY, requires_verification=False, expires_after="PT5S",
                     remind_before="PT1S")
        contact_id, _ = await new_contact(sessions, client)
        async with running_worker(temporal_env.client, own):
            assigned = (await client.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).json()
            assert assigned["state"] == "verified"
        expires_at = at(assigned["expires_at"])
        assert datetime.now(UTC) < expires_at  # stopped while the profile waits
        async with running_worker(temporal_env.client, own):
            expired = await wait_for_state(client, contact_id, "expired")
        [event] = [e for e in expired["history"] if e["type"] == "expired"]
        assert expires_at <= at(event["at"]) < expires_at + timedelta(seconds=3)


async def test_an_operators_cancel_does_not_end_a_profile(tenant, sessions, temporal_env,
                                                          record_histories):
    """Cancelled in the Temporal UI (here through the client, as the UI does), a profile goes on
    in a new run: it still expires when due, and the operators' decisions still reach it."""
    await define(tenant, 1, IDENTITY, expires_after="PT6S", remind_before="PT1S")
    contact_id, _ = await new_contact(sessions, tenant)
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.json()["state"] == "pending_verification", assigned.text
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    first_run = (await handle.describe()).run_id
    await handle.cancel()

    async def continued() -> bool:
        described = await temporal_env.client.get_workflow_handle(
            handle.id, run_id=first_run).describe()
        return described.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    await eventually(continued, what="the cancelled run to continue as new")
    verified = await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})
    assert verified.status_code == 200 and verified.json()["state"] == "verified", verified.text
    expired = await wait_for_state(tenant, contact_id, "expired")
    types = [e["type"] for e in expired["history"] if not e["type"].endswith("_sent")]
    assert types == ["assigned", "verified", "reminded", "expired"], types
    state = await handle.query(KycWorkflow.state, result_type=KycProfile)
    assert state.run == 2 and state.state == "expired"
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(handle.id, run_id=first_run),
                           "kyc_cancelled_by_operator")


async def test_a_terminated_profile_starts_again_from_the_database(tenant, sessions,
                                                                   temporal_env):
    """Terminate skips the workflow's clean-up, so nothing of it runs any more: the next request
    about the profile starts its workflow again from what the database keeps of it, its steps
    numbered on (nothing recorded twice or lost) and its expiry still to come."""
    await define(tenant, 1, IDENTITY, expires_after="PT6S", remind_before="PT1S")
    contact_id, _ = await new_contact(sessions, tenant)
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.json()["state"] == "pending_verification", assigned.text
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    await handle.terminate("operator")

    verified = await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})
    assert verified.status_code == 200 and verified.json()["state"] == "verified", verified.text
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    expired = await wait_for_state(tenant, contact_id, "expired")
    types = [e["type"] for e in expired["history"] if not e["type"].endswith("_sent")]
    assert types == ["assigned", "verified", "reminded", "expired"], types
    state = await handle.query(KycWorkflow.state, result_type=KycProfile)
    assert state.state == "expired" and state.seq == 4


async def test_an_upload_without_a_worker_is_kept_and_answered(tenant, sessions, settings,
                                                               temporal_env):
    """The answer waits for the profile's judgment only so long: with no worker running, the
    document is stored and judged once a worker is back."""
    own = settings.model_copy(update={"temporal_task_queue": f"kyc-nowork-{uuid.uuid4().hex[:6]}",
                                      "kyc_judgment_wait": timedelta(seconds=1)})
    async with own_api(own, tenant) as client:
        await define(client, 1, IDENTITY, expires_after="P30D")
        contact_id, _ = await new_contact(sessions, client)
        async with running_worker(temporal_env.client, own):
            assigned = (await client.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).json()
            assert assigned["state"] == "pending_verification", assigned
            assert (await client.post(f"/v1/kyc/contacts/{contact_id}/refute",
                                      {"reason": "blurred"})).json()["state"] == "refuted"
        uploaded = await asyncio.wait_for(upload(client, contact_id), 15)
        assert uploaded.status_code == 201, uploaded.text
        assert (await profile(client, contact_id))["state"] == "refuted"
        async with running_worker(temporal_env.client, own):
            await wait_for_state(client, contact_id, "pending_verification")


async def test_a_deleted_contact_ends_its_profile(tenant, sessions, temporal_env):
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="PT2S",
                 remind_before="PT1S")
    contact_id, _ = await new_contact(sessions, tenant)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    async with transaction(sessions) as session:
        await session.delete(await session.get_one(Contact, uuid.UUID(contact_id)))
    # Its timer finds the contact gone and ends the workflow instead of retrying for ever.
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    await asyncio.wait_for(handle.result(), timeout=15)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_bad_uploads_are_rejected_clearly(tenant, sessions, settings):
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, _ = await new_contact(sessions, tenant)
    too_large = await upload(tenant, contact_id,
                             data=PDF + b"0" * settings.kyc_max_document_bytes)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["fields"][0]["field"] == "file"
    wrong_type = await upload(tenant, contact_id, data=b"MZ\x90\x00 an executable")
    assert wrong_type.status_code == 415
    assert "application/pdf" in wrong_type.json()["error"]["fields"][0]["message"]
    no_number = await upload(tenant, contact_id, number="")
    assert no_number.status_code == 422
    assert no_number.json()["error"]["fields"][0]["field"] == "number"
    bad_date = await upload(tenant, contact_id, expires_at="31/12/2031")
    assert bad_date.status_code == 422
    assert bad_date.json()["error"]["fields"][0]["field"] == "expires_at"
    unknown = await upload(tenant, contact_id, document_type="selfie")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["fields"][0]["field"] == "document_type"
    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(KycDocument).where(
            KycDocument.contact_id == uuid.UUID(contact_id)))
    assert stored == 0
    assert (await tenant.get(f"/v1/kyc/contacts/{contact_id}")).status_code == 404


async def test_another_clients_ids_are_not_found(tenant, other_tenant, sessions):
    definition = await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    document = (await upload(tenant, contact_id)).json()
    await wait_for_state(tenant, contact_id, "verified")
    other_contact, _ = await new_contact(sessions, other_tenant)

    for response in [
        await other_tenant.get(f"/v1/kyc/contacts/{contact_id}"),
        await other_tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {}),
        await other_tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {}),
        await other_tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "x"}),
        await upload(other_tenant, contact_id),
        await other_tenant.get(f"/v1/kyc/definitions/{definition['id']}"),
        await other_tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                      json={"number": "X"}, headers=other_tenant.auth),
        await other_tenant.get(f"/v1/kyc/documents/{document['id']}/file"),
    ]:
        assert response.status_code == 404, response.text
    theirs = await other_tenant.post(f"/v1/kyc/contacts/{other_contact}/assign",
                                     {"definition_id": definition["id"]})
    assert theirs.status_code == 422 and theirs.json()["error"]["fields"] == [
        {"field": "definition_id", "message": "no KYC definition with this id"}], theirs.text
    assert (await other_tenant.get("/v1/kyc/definitions")).json() == []
    mine = await tenant.get(f"/v1/kyc/documents/{document['id']}/file")
    assert mine.status_code == 200 and mine.content == PDF
    # The identity document was read by this client only, and its trail says through what.
    trail = (await tenant.get(f"/v1/contacts/{contact_id}/audit", limit=1000)).json()["items"]
    assert {(e["actor_id"], (e["detail"] or {}).get("via")) for e in trail if e["action"] == "read"
            } >= {(trail[0]["actor_id"], "/v1/kyc/documents/{document_id}/file"),
                  (trail[0]["actor_id"], "/v1/kyc/contacts/{contact_id}")}


async def test_expiring_segment_and_batch_notification(tenant, sessions, mailbox):
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="P10D",
                 remind_before="PT1H")
    await define(tenant, 2, IDENTITY + ID_OR_PASSPORT, requires_verification=False,
                 expires_after="P2D", remind_before="PT1H")
    soon, soon_email = await new_contact(sessions, tenant)
    later, later_email = await new_contact(sessions, tenant)
    await upload(tenant, soon)
    await wait_for_state(tenant, soon, "verified")
    assert (await tenant.post(f"/v1/kyc/contacts/{later}/assign", {})).status_code == 200

    within_3 = await tenant.get("/v1/kyc/expiring", within_days=3)
    assert [p["contact_id"] for p in within_3.json()["items"]] == [soon]
    within_11 = await tenant.get("/v1/kyc/expiring", within_days=11)
    assert {p["contact_id"] for p in within_11.json()["items"]} == {soon, later}
    paged = await tenant.get("/v1/kyc/expiring", within_days=11, limit=1)
    assert len(paged.json()["items"]) == 1 and paged.json()["next_cursor"]
    bad = await tenant.get("/v1/kyc/expiring", within_days=-1)
    assert bad.status_code == 422

    sent = await tenant.post("/v1/kyc/expiring/notify", {"within_days": 3})
    assert sent.status_code == 202 and sent.json()["notified"] == 1
    [notice] = await mail_with(mailbox, soon_email, "expires on")
    assert "/k/" in mailbox.link(notice)
    assert not [m for m in mailbox.to(later_email) if "expires on" in m.subject]


async def test_an_anonymised_contact_is_not_in_the_expiring_segment(tenant, sessions, mailbox):
    """Nothing of the person is kept: their profile is neither listed as expiring nor counted,
    nor written to, by the batch notification."""
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="P2D",
                 remind_before="PT1H")
    kept, kept_email = await new_contact(sessions, tenant)
    gone, _ = await new_contact(sessions, tenant)
    for contact_id in (kept, gone):
        assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    done = await tenant.post(f"/v1/contacts/{gone}/anonymise", {})
    assert done.status_code == 200, done.text
    expiring = await tenant.get("/v1/kyc/expiring", within_days=3)
    assert [p["contact_id"] for p in expiring.json()["items"]] == [kept]
    sent = await tenant.post("/v1/kyc/expiring/notify", {"within_days": 3})
    assert sent.status_code == 202 and sent.json()["notified"] == 1
    await mail_with(mailbox, kept_email, "expires on")


async def test_a_contact_created_or_updated_in_the_registry_gets_the_profile_it_qualifies_for(
    tenant: Tenant,
):
    from tests.test_contacts import person, set_rule
    await set_rule(tenant)
    await define(tenant, 1, [{"field": "first_name"}, {"field": "last_name"}])
    created = await tenant.post("/v1/contacts", person())
    assert created.status_code == 201, created.text

    async def assigned(contact_id: str):
        response = await tenant.get(f"/v1/kyc/contacts/{contact_id}")
        return response.json() if response.status_code == 200 else None
    profile = await eventually(lambda: assigned(created.json()["id"]), what="profile assigned")
    assert profile["state"] == "pending_verification"

    # One that lacks a required field gets a profile once an update supplies it.
    bare = await tenant.post("/v1/contacts", person(first_name=None))
    contact_id = bare.json()["id"]
    assert (await tenant.get(f"/v1/kyc/contacts/{contact_id}")).status_code == 404
    patched = await tenant.http.patch(f"/v1/contacts/{contact_id}", headers=tenant.auth,
                                      json={"first_name": "Ann"})
    assert patched.status_code == 200, patched.text
    await eventually(lambda: assigned(contact_id), what="profile assigned after update")


async def test_anonymisation_waits_for_the_review_then_takes_the_documents(
    tenant, sessions, settings
):
    await define(tenant, 2, IDENTITY + ID_OR_PASSPORT)
    contact_id, email = await new_contact(sessions, tenant)
    uploaded = await upload(tenant, contact_id)
    assert uploaded.status_code == 201, uploaded.text
    await wait_for_state(tenant, contact_id, "pending_verification")
    async with transaction(sessions) as session:
        document = await session.get_one(KycDocument, uuid.UUID(uploaded.json()["id"]))
    stored = settings.kyc_storage_dir / document.storage_key
    assert stored.exists()

    # The contact's export holds their KYC data too.
    exported = (await tenant.get(f"/v1/contacts/{contact_id}/export")).json()["kyc"]
    assert exported["profile"]["state"] == "pending_verification"
    assert [(d["document_type"], d["number"]) for d in exported["documents"]] == [
        ("passport", "NL123456")] and "storage_key" not in exported["documents"][0]
    assert email in str(exported["history"])  # where the messages went
    async with sessions() as session:
        links = (await session.scalars(select(LinkToken).where(
            LinkToken.contact_id == uuid.UUID(contact_id)))).all()
    assert links  # the assignment email's preference link

    # The back office has the passport in front of it: the data cannot go yet.
    refused = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert refused.status_code == 409, refused.text
    assert "under review" in refused.json()["error"]["fields"][0]["message"]

    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 200
    done = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert done.status_code == 200, done.text
    assert not stored.exists()
    async with transaction(sessions) as session:
        assert await session.get(KycDocument, document.id) is None
    # The profile keeps its non-personal state; its history no longer says where mail went,
    # and no personal link of the contact's works any more.
    kept = await profile(tenant, contact_id)
    assert kept["state"] == "verified" and email not in str(kept)
    assert email not in str((await tenant.get(f"/v1/contacts/{contact_id}/export")).json())
    async with sessions() as session:
        assert not (await session.scalars(select(LinkToken).where(
            LinkToken.contact_id == uuid.UUID(contact_id)))).all()
    check = (await tenant.post("/v1/suppressions/check", {"email": email})).json()
    assert check["email"]["reason"] == "anonymised"


async def test_anonymisation_takes_the_operators_reason_for_good(tenant, sessions):
    await define(tenant, 1, IDENTITY)
    contact_id, _ = await new_contact(sessions, tenant)
    await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    reason = f"Name on the passport reads Smit-{uuid.uuid4().hex[:8]}"
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": reason})
    assert refuted.status_code == 200, refuted.text
    done = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert done.status_code == 200, done.text
    async with sessions() as session:
        row = (await session.scalars(select(ProfileRow).where(
            ProfileRow.contact_id == uuid.UUID(contact_id)))).one()
    # Neither the profile's column nor the record a stopped workflow restarts from keeps it.
    assert row.state == "refuted" and row.workflow_profile["state"] == "refuted"
    assert reason not in str(row.reason) and reason not in str(row.workflow_profile)


async def swept_until_running(temporal_env, settings, handle) -> None:
    """Runs the hourly sweep of lost work until it has started the terminated profile again:
    Temporal's list of closed workflows may lag the termination a moment."""
    async def restarted() -> bool:
        await sweep_lost_work(temporal_env.client, settings.temporal_task_queue)
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await eventually(restarted, what="the sweep to start the profile again")


async def test_an_anonymised_contacts_profile_takes_no_decision(tenant, sessions):
    """Nothing of the person is kept once anonymised: an operator's verify, refute (with its
    reason) or assignment is refused, as an upload is, instead of recorded again."""
    await define(tenant, 1, IDENTITY)
    contact_id, _ = await new_contact(sessions, tenant)
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200
    done = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert done.status_code == 200, done.text
    before = await profile(tenant, contact_id)
    reason = f"Name on the passport reads Smit-{uuid.uuid4().hex[:8]}"
    for action, body in (("refute", {"reason": reason}), ("verify", {}), ("assign", {})):
        refused = await tenant.post(f"/v1/kyc/contacts/{contact_id}/{action}", body)
        assert refused.status_code == 409, (action, refused.text)
        assert refused.json()["error"]["code"] == "contact_anonymised"
    after = await profile(tenant, contact_id)
    assert after == before and reason not in str(after)
    assert reason not in str((await tenant.get(f"/v1/contacts/{contact_id}/export")).json())


async def test_an_operator_takes_no_decision_for_an_anonymised_contact_in_temporal(
        tenant, sessions, settings, temporal_env, record_histories):
    """The API refuses a verify or refute for an anonymised contact (409 contact_anonymised);
    sent to the profile's workflow in the Temporal UI, with the input its description shows,
    it was taken: the profile verified for nobody, or an operator's reason about the person
    kept again. The workflow refuses them too, also once started again after an operator
    terminated it."""
    await define(tenant, 1, IDENTITY, requires_verification=True)
    contact_id, _ = await new_contact(sessions, tenant)
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.json()["state"] == "pending_verification", assigned.text
    done = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert done.status_code == 200, done.text
    before = await profile(tenant, contact_id)
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    reason = f"Name on the passport reads Smit-{uuid.uuid4().hex[:8]}"

    async def refused() -> None:
        now = datetime.now(UTC).isoformat()
        for update, arg in (("refute", {"reason": reason, "at": now}), ("verify", {"at": now})):
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await handle.execute_update(update, arg)
            assert err.value.cause.type == ErrorType.kyc_contact_anonymised, update
        assert (await handle.query(KycWorkflow.state)).state == "pending_verification"
        after = await profile(tenant, contact_id)
        assert after == before and reason not in str(after)
    await refused()

    await handle.terminate("operator")

    await swept_until_running(temporal_env, settings, handle)
    await refused()

    # A decision through the API that reaches the profile just after the anonymisation told it
    # to forget (as here, before the anonymisation's commit) is refused as one before it.
    other, _ = await new_contact(sessions, tenant)
    await tenant.post(f"/v1/kyc/contacts/{other}/assign", {})
    forgetting = await temporal_env.client.get_workflow_handle(
        f"kyc/{tenant.id}/{other}").describe()
    run = temporal_env.client.get_workflow_handle(forgetting.id, run_id=forgetting.run_id)
    await run.execute_update(KycWorkflow.forget_personal_data)
    late = await tenant.post(f"/v1/kyc/contacts/{other}/verify", {})
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "contact_anonymised"
    if record_histories:
        # The run that forgot, which the anonymisation deletes.
        await save_history(run, "kyc_forgotten")


async def test_an_operator_finds_a_contacts_workflows_by_contact_id(tenant, sessions,
                                                                    temporal_env):
    await define(tenant, 1, IDENTITY)
    contact_id, email = await new_contact(sessions, tenant)
    external_id = (await tenant.ok("GET", f"/v1/contacts/{contact_id}"))["external_id"]
    journeys = []
    for _ in range(2):
        campaign = await tenant.create_campaign()
        enrolled = await tenant.enrol(campaign["id"], {"external_id": external_id})
        journeys.append(await tenant.journey(enrolled["results"][0]["journey_id"]))
    assert {j["contact_id"] for j in journeys} == {contact_id}
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).status_code == 200

    # The Temporal UI's query for one contact lists its journeys and its KYC profile.
    async def found() -> set[str] | None:
        ids = {w.id async for w in temporal_env.client.list_workflows(
            f"ContactId = '{contact_id}'")}
        return ids if len(ids) == 3 else None
    assert await eventually(found, what="the contact's workflows in visibility") == {
        *(j["workflow_id"] for j in journeys), f"kyc/{tenant.id}/{contact_id}"}


async def test_an_upload_link_to_an_address_the_client_removed_opens_nothing(
        tenant, sessions, http, mailbox):
    """The mailbox is often a stranger's (the client's records were wrong): its link would show
    the profile and take identity documents for the contact."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, email = await new_contact(sessions, tenant)
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    customer = Customer(http)
    assert (await customer.open(link)).status_code == 200
    [point] = (await tenant.ok("GET", f"/v1/contacts/{contact_id}"))["contact_points"]
    removed = await tenant.http.delete(f"/v1/contacts/{contact_id}/contact-points/{point['id']}",
                                       headers=tenant.auth)
    assert removed.status_code == 204, removed.text
    assert (await Customer(http).open(link)).status_code == 404
    posted = await http.post(link, data={"csrf_token": customer.csrf(),
                                         "document_type": "passport"})
    assert posted.status_code in (403, 404)
    assert [d for d in (await profile(tenant, contact_id))["documents"]
            if d["document_type"] == "passport"] == []


async def test_an_id_card_is_valid_all_of_the_day_printed_on_it(tenant, sessions):
    """The expiry date on an ID card is the last day it is valid: uploaded on that day, it
    still qualifies, and the profile resting on it lasts until the next day begins."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False,
                 expires_after="P365D", remind_before="P1D")
    contact_id, _ = await new_contact(sessions, tenant)
    today = datetime.now(UTC).date()
    ends = at(f"{today + timedelta(days=1)}T00:00:00+00:00")
    uploaded = await upload(tenant, contact_id, "id_card", expires_at=today.isoformat())
    assert uploaded.status_code == 201, uploaded.text
    assert at(uploaded.json()["expires_at"]) == ends
    verified = await wait_for_state(tenant, contact_id, "verified")
    assert (at(verified["expires_at"]), verified["expiry_cause"]) == (ends, "document_expired")
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.status_code == 200, assigned.text
    # The registry keeps the date printed on the card.
    contact = (await tenant.get(f"/v1/contacts/{contact_id}")).json()
    assert contact["id_expires_on"] == today.isoformat()


async def test_a_profile_dated_by_the_old_reading_of_a_document_follows_it(
        tenant, sessions, settings, temporal_env):
    """Before migration 0900 an ID card dated D expired as D began, and a running profile
    resting on it with it. 0900 moved the stored documents on to the end of D; the profiles,
    running in Temporal, follow once a worker starts, without anyone touching them."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    # What the old rule stored for an ID card dated FAR.
    old_expiry = at(f"{FAR}T00:00:00+00:00")
    uploaded = await upload(tenant, contact_id, "id_card", expires_at=old_expiry.isoformat())
    assert uploaded.status_code == 201, uploaded.text
    verified = await wait_for_state(tenant, contact_id, "verified")
    assert (at(verified["expires_at"]), verified["expiry_cause"]) == (old_expiry,
                                                                      "document_expired")
    async with transaction(sessions) as session:
        # Migration 0900 on this document; the registry kept the printed date all along.
        document = await session.get_one(KycDocument, uuid.UUID(uploaded.json()["id"]))
        document.expires_at += timedelta(days=1)
        contact = await session.get_one(Contact, uuid.UUID(contact_id))
        contact.id_expires_on = old_expiry.date()

    own = settings.model_copy(update={"temporal_task_queue": f"kyc-0900-{uuid.uuid4().hex[:6]}"})
    async with running_worker(temporal_env.client, own):
        async def followed() -> dict[str, Any] | None:
            shown = await profile(tenant, contact_id)
            return shown if at(shown["expires_at"]) == at(f"{FAR_ENDS}T00:00:00+00:00") else None
        moved = await eventually(followed, timeout=15, what="the profile's expiry moved")
    assert (moved["state"], moved["expiry_cause"]) == ("verified", "document_expired")
    assert [e["type"] for e in moved["history"] if not e["type"].endswith("_sent")] == [
        "assigned", "rescheduled"]
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    state = await handle.query(KycWorkflow.state, result_type=KycProfile)
    assert state.expires_at == at(f"{FAR_ENDS}T00:00:00+00:00")
    # Nothing is left for the next worker to move: it does not signal the profile again.
    signals = [e for e in (await handle.fetch_history()).events
               if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 1
    async with running_worker(temporal_env.client, own):
        pass
    assert [e for e in (await handle.fetch_history()).events
            if e.HasField("workflow_execution_signaled_event_attributes")] == signals


async def test_a_short_period_is_not_reminded_of_at_assignment(tenant, sessions, mailbox,
                                                              temporal_env):
    """A definition valid for 14 days that sets no remind_before: KYC_REMIND_BEFORE (30 days)
    would put the reminder before the assignment. Half the period is the lead time instead."""
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="P14D")
    contact_id, email = await new_contact(sessions, tenant)
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.status_code == 200, assigned.text
    await mail_with(mailbox, email, "identity details are registered")
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    state = await handle.query(KycWorkflow.state, result_type=KycProfile)
    assert state.remind_before == timedelta(days=7) and state.reminded_for is None
    types = [e["type"] for e in (await profile(tenant, contact_id))["history"]
             if not e["type"].endswith("_sent")]
    assert types == ["assigned"]
    assert not [m for m in mailbox.to(email) if "expires on" in m.subject]


async def test_the_client_renews_an_expired_or_refuted_profile_by_assigning_it_again(
        tenant, sessions, mailbox):
    """CRM.COM: an expired or refuted customer goes through the KYC flow again. The client's
    assignment of the same definition renews the profile (it was a silent no-op)."""
    definition = await define(tenant, 1, IDENTITY, expires_after="PT4S", remind_before="PT1S")
    contact_id, email = await new_contact(sessions, tenant)
    assign = f"/v1/kyc/contacts/{contact_id}/assign"
    assert (await tenant.post(assign, {})).status_code == 200
    assert (await tenant.post(f"/v1/kyc/contacts/{contact_id}/verify", {})).status_code == 200
    await wait_for_state(tenant, contact_id, "expired")
    # A definition that asks for no document: the customer is told whom to ask, not to upload.
    [expired] = await mail_with(mailbox, email, "has expired")
    assert "Please contact" in expired.text and "upload" not in expired.text.lower()

    renewed = await tenant.post(assign, {"definition_id": definition["id"]})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["state"] == "pending_verification"
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": "Old."})
    assert refuted.status_code == 200, refuted.text
    again = await tenant.post(assign, {})
    assert again.status_code == 200 and again.json()["state"] == "pending_verification"
    types = [e["type"] for e in (await profile(tenant, contact_id))["history"]
             if not e["type"].endswith("_sent")]
    assert types == ["assigned", "verified", "reminded", "expired", "renewed", "refuted",
                     "renewed"]


async def test_a_renewal_by_assignment_names_what_is_missing(tenant, sessions):
    definition = await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    contact_id, _ = await new_contact(sessions, tenant)
    document = (await upload(tenant, contact_id, "id_card")).json()
    await wait_for_state(tenant, contact_id, "verified")
    passed = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    assert (await tenant.http.patch(f"/v1/kyc/documents/{document['id']}", headers=tenant.auth,
                                    json={"expires_at": passed})).status_code == 200
    await wait_for_state(tenant, contact_id, "expired")
    refused = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign",
                                {"definition_id": definition["id"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "kyc_missing_information"
    assert "expired" in refused.text and "id_card" in refused.text, refused.text


async def test_an_unrelated_change_does_not_renew_an_expired_profile(tenant, sessions):
    """A name fixed in the registry, or a document the definition does not ask for corrected,
    is no new evidence: the expired profile stays expired (it was verified again at once)."""
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="PT3S",
                 remind_before="PT1S")
    contact_id, _ = await new_contact(sessions, tenant)
    document = (await upload(tenant, contact_id, "proof_of_address")).json()
    await wait_for_state(tenant, contact_id, "expired")
    patched = await tenant.http.patch(f"/v1/contacts/{contact_id}", headers=tenant.auth,
                                      json={"last_name": "Janssen-de Vries"})
    assert patched.status_code == 200, patched.text
    # Answered once the profile has judged it, after the name change it was told first.
    corrected = await tenant.http.patch(f"/v1/kyc/documents/{document['id']}",
                                        headers=tenant.auth, json={"number": "POA-2"})
    assert corrected.status_code == 200, corrected.text
    after = await profile(tenant, contact_id)
    assert after["state"] == "expired"
    assert [e["type"] for e in after["history"] if not e["type"].endswith("_sent")] == [
        "assigned", "reminded", "expired"]


async def test_a_definition_is_for_the_kinds_it_has_rules_for(tenant, sessions, mailbox):
    """A company-only level is not one for persons: a person's record changed is not assigned
    it with nothing checked (nor told so), and the client's assignment of it is refused."""
    response = await tenant.post("/v1/kyc/definitions", {
        "name": "Companies", "level": 1, "requires_verification": False,
        "rules": {"company": [{"field": "company_name"}]}})
    assert response.status_code == 201, response.text
    companies = response.json()
    person_id, email = await new_contact(sessions, tenant)
    changed = await tenant.http.patch(f"/v1/contacts/{person_id}", headers=tenant.auth,
                                      json={"first_name": "Evi"})
    assert changed.status_code == 200, changed.text
    assert (await tenant.get(f"/v1/kyc/contacts/{person_id}")).status_code == 404
    assign = f"/v1/kyc/contacts/{person_id}/assign"
    for body in ({}, {"definition_id": companies["id"]}):
        refused = await tenant.post(assign, body)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["definition_id"]
    assert "no rules for a person" in refused.text
    assert (await tenant.get(f"/v1/kyc/contacts/{person_id}")).status_code == 404
    assert not [m for m in mailbox.to(email) if "identity details" in m.subject]

    company_id, _ = await new_contact(sessions, tenant, kind="company", company_name="Acme BV")
    assigned = await tenant.post(f"/v1/kyc/contacts/{company_id}/assign", {})
    assert assigned.status_code == 200, assigned.text
    assert (assigned.json()["definition"]["id"], assigned.json()["state"]) == (
        companies["id"], "verified")


async def test_a_download_is_saved_under_the_uploaded_name_with_its_type(tenant, sessions):
    """A back office saves a document as its uploader named it, with the extension of what it
    was judged to be: a PNG named 'scan.html' is no page to open in a browser."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, _ = await new_contact(sessions, tenant)
    names = {}
    for name, data in (("scan.pdf", PDF), ("Paspoort Ève.html", PNG)):
        uploaded = await tenant.http.post(
            f"/v1/kyc/contacts/{contact_id}/documents", headers=tenant.auth,
            files={"file": (name, data, "application/octet-stream")},
            data={"document_type": "passport", "number": "NL123456", "expires_at": FAR})
        assert uploaded.status_code == 201, uploaded.text
        download = await tenant.get(f"/v1/kyc/documents/{uploaded.json()['id']}/file")
        assert download.status_code == 200 and download.content == data
        names[name] = download.headers["content-disposition"]
    assert names == {
        "scan.pdf": "attachment; filename=\"scan.pdf\"; filename*=UTF-8''scan.pdf",
        "Paspoort Ève.html": "attachment; filename=\"Paspoort _ve.html.png\"; "
                             "filename*=UTF-8''Paspoort%20%C3%88ve.html.png"}


async def test_an_operator_refutes_a_profile_in_the_temporal_ui_as_its_description_says(
        tenant, sessions, temporal_env):
    """The Temporal UI listed a profile's signals, updates and queries without a word on what
    each is for or takes. Each says it now; a refutation sent there with the input `refute`
    describes is the client's profile refuted, with its reason, as through the API."""
    await define(tenant, 1, IDENTITY, requires_verification=True)
    contact_id, _ = await new_contact(sessions, tenant)
    assigned = await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})
    assert assigned.json()["state"] == "pending_verification", assigned.text
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    described = await handler_descriptions(handle)
    assert [name for name, description in described.items() if not description] == []
    assert '"reason"' in described["refute"] and '"at"' in described["refute"]
    await handle.execute_update("refute", {"reason": "The photo is unreadable.",
                                           "at": datetime.now(UTC).isoformat()})
    refuted = await profile(tenant, contact_id)
    assert (refuted["state"], refuted["reason"]) == ("refuted", "The photo is unreadable.")


async def test_a_terminated_profile_nobody_asks_about_still_expires(tenant, sessions, settings,
                                                                    temporal_env):
    """Terminated in the Temporal UI, a profile's workflow took its reminder and expiry along:
    with no request about it, the profile stayed `verified` past its date for ever. The sweep
    of lost work starts it again from the database, and it expires when due."""
    await define(tenant, 1, IDENTITY, requires_verification=False, expires_after="PT6S",
                 remind_before="PT1S")
    contact_id, _ = await new_contact(sessions, tenant)
    assigned = (await tenant.post(f"/v1/kyc/contacts/{contact_id}/assign", {})).json()
    assert assigned["state"] == "verified", assigned
    handle = temporal_env.client.get_workflow_handle(f"kyc/{tenant.id}/{contact_id}")
    await handle.terminate("operator")

    await swept_until_running(temporal_env, settings, handle)
    expired = await wait_for_state(tenant, contact_id, "expired")
    [event] = [e for e in expired["history"] if e["type"] == "expired"]
    assert at(event["at"]) < at(assigned["expires_at"]) + timedelta(seconds=3)
