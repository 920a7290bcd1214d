"""An erased contact's workflow histories go from Temporal: a journey's history holds what the
customer typed and where they answered from, which the erasure removed from the database."""

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.contact_gdpr import SYSTEM
from contacts import gdpr
from core.contracts import ForgetErasedHistoriesInput
from db.models import Contact, HistoryErasure
from db.session import transaction
from tests.helpers import eventually, on_the_page, unique_email, worker_schedules
from tests.histories import save_history
from tests.test_kyc import ID_OR_PASSPORT, IDENTITY, define, new_contact, upload, wait_for_state
from workflows.history_erasure import SCHEDULE_ID, ForgetErasedHistoriesWorkflow
from workflows.kyc import KycWorkflow


async def verified(tenant, http, mailbox, campaign) -> tuple[dict, str]:
    """A journey walked to `verified` with an email the customer typed: (its enrolment, the
    email typed)."""
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("known"))
    typed = unique_email("typed")
    await customer.submit(page, email=typed)
    [verification] = await mailbox.wait_for(typed)
    link = mailbox.link(verification)
    await customer.open(link)
    await customer.submit(link)
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    return enrolled, typed


async def history_of(temporal_env, tenant, journey_id: str) -> WorkflowHandle:
    journey = await tenant.journey(journey_id)
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])

    async def closed() -> bool:
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING
    await eventually(closed, what="the journey's workflow to close")
    return handle


async def payloads(handle: WorkflowHandle) -> str:
    """Every payload in the workflow's history (inputs, results, updates), decoded."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "metadata" in node and isinstance(node.get("data"), str):
                found.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(json.loads((await handle.fetch_history()).to_json()))
    return "\n".join(found)


async def gone(handle: WorkflowHandle) -> None:
    """Waits until Temporal no longer knows the workflow: it deletes in the background."""
    async def not_found() -> bool:
        try:
            await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return True
            raise
        return False
    await eventually(not_found, what=f"workflow {handle.id} to be deleted")


async def pending(sessions, contact_id: str) -> HistoryErasure | None:
    async with sessions() as session:
        return await session.get(HistoryErasure, uuid.UUID(contact_id))


async def sweep(temporal_env, settings, settle: timedelta) -> WorkflowHandle:
    handle = await temporal_env.client.start_workflow(
        ForgetErasedHistoriesWorkflow.run, ForgetErasedHistoriesInput(settle=settle),
        id=f"forget-erased-histories-test-{uuid.uuid4()}", task_queue=settings.temporal_task_queue)
    await handle.result()
    return handle


async def test_anonymising_deletes_the_journeys_history_and_no_one_elses(
        tenant, http, mailbox, temporal_env, sessions, settings):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    erased, typed = await verified(tenant, http, mailbox, campaign)
    kept, kept_typed = await verified(tenant, http, mailbox, campaign)
    erased_history = await history_of(temporal_env, tenant, erased["journey_id"])
    kept_history = await history_of(temporal_env, tenant, kept["journey_id"])
    # What the customer typed is in the history, and only the erasure takes it out.
    assert typed in await payloads(erased_history)

    done = await tenant.post(f"/v1/contacts/{erased['contact_id']}/anonymise", {})
    assert done.status_code == 200, done.text
    await gone(erased_history)
    assert kept_typed in await payloads(kept_history)

    # The erasure filed them with its commit; the sweep, finding nothing left, ends the file.
    assert await pending(sessions, erased["contact_id"]) is not None
    await sweep(temporal_env, settings, timedelta(0))
    assert await pending(sessions, erased["contact_id"]) is None
    assert (await kept_history.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_the_sweep_deletes_what_other_erasures_left(
        tenant, http, mailbox, temporal_env, sessions, settings, record_histories):
    """Anonymised by the client's retention or consent policy (in the worker, not the API),
    or through the API while Temporal was out of reach: the scheduled sweep deletes them once
    the erasure has settled."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled, typed = await verified(tenant, http, mailbox, campaign)
    history = await history_of(temporal_env, tenant, enrolled["journey_id"])
    async with transaction(sessions) as session:
        contact = await session.get(Contact, uuid.UUID(enrolled["contact_id"]))
        await gdpr.anonymise(session, contact, SYSTEM, settings=settings)

    # Too recent: the journey that erased its own contact may still be closing.
    await sweep(temporal_env, settings, timedelta(hours=1))
    assert typed in await payloads(history)
    assert await pending(sessions, enrolled["contact_id"]) is not None

    handle = await sweep(temporal_env, settings, timedelta(0))
    await gone(history)
    assert await pending(sessions, enrolled["contact_id"]) is None
    assert (await handle.result()).workflows >= 1
    if record_histories:
        await save_history(handle, "forget_erased_histories")

    # Anonymising it again files it again (it finishes what a crash after the commit left).
    again = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise", {})
    assert again.status_code == 200, again.text
    assert await pending(sessions, enrolled["contact_id"]) is not None


async def test_a_deleted_contacts_kyc_profile_goes_an_anonymised_ones_lasts(
        tenant, sessions, temporal_env):
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, requires_verification=False)
    deleted_id, _ = await new_contact(sessions, tenant)
    anonymised_id, _ = await new_contact(sessions, tenant)
    profiles = {}
    for contact_id in (deleted_id, anonymised_id):
        assert (await upload(tenant, contact_id, "id_card")).status_code == 201
        workflow_id = (await wait_for_state(tenant, contact_id, "verified"))["workflow_id"]
        profiles[contact_id] = temporal_env.client.get_workflow_handle(workflow_id)

    erased = await tenant.http.delete(f"/v1/contacts/{deleted_id}", headers=tenant.auth)
    assert erased.status_code == 204, erased.text
    await gone(profiles[deleted_id])

    done = await tenant.post(f"/v1/contacts/{anonymised_id}/anonymise", {})
    assert done.status_code == 200, done.text
    assert (await profiles[anonymised_id].describe()).status == WorkflowExecutionStatus.RUNNING
    async with sessions() as session:
        erasures = {row.contact_id: row.deleted for row in await session.scalars(
            select(HistoryErasure).where(HistoryErasure.client_id == tenant.id))}
    assert erasures == {uuid.UUID(deleted_id): True, uuid.UUID(anonymised_id): False}


async def test_an_anonymised_contacts_kyc_profile_forgets_the_reason_and_goes_on(
        tenant, sessions, temporal_env):
    """The refute reason an operator wrote names the person; the erasure takes it from the
    database, and the profile's running workflow, which lasts as long as the contact, goes on
    in a new run without it, while the run that held it is deleted."""
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT)
    contact_id, _ = await new_contact(sessions, tenant)
    assert (await upload(tenant, contact_id, "id_card")).status_code == 201
    workflow_id = (await wait_for_state(tenant, contact_id, "pending_verification"))["workflow_id"]
    reason = f"The photo is not of Eva Janssen {uuid.uuid4().hex[:6]}."
    refuted = await tenant.post(f"/v1/kyc/contacts/{contact_id}/refute", {"reason": reason})
    assert refuted.status_code == 200, refuted.text
    profile = temporal_env.client.get_workflow_handle(workflow_id)
    refuted_run = temporal_env.client.get_workflow_handle(
        workflow_id, run_id=(await profile.describe()).run_id)
    assert reason in await payloads(refuted_run)

    done = await tenant.post(f"/v1/contacts/{contact_id}/anonymise", {})
    assert done.status_code == 200, done.text
    await gone(refuted_run)
    now = await profile.describe()
    assert now.status == WorkflowExecutionStatus.RUNNING and now.run_id != refuted_run.run_id
    assert reason not in await payloads(profile)
    kept = await profile.query(KycWorkflow.state)
    assert (kept.state, kept.reason) == ("refuted", None)
    shown = await tenant.get(f"/v1/kyc/contacts/{contact_id}")
    assert (shown.json()["state"], shown.json()["reason"]) == ("refuted", None)


async def test_the_worker_keeps_a_schedule_for_the_sweep(temporal_env, settings):
    async with worker_schedules(temporal_env.client, settings):
        schedule = temporal_env.client.get_schedule_handle(SCHEDULE_ID)
        assert (await schedule.describe()).schedule.spec.intervals[0].every == (
            settings.forget_erased_histories_every)
