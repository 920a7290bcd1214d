"""Campaign launches on the real stack: a thousand registry contacts fanned out by one call,
paused, resumed and cancelled (the launch's query and the API's stage counts checked at each
step), launched again without duplicates; selections by filter and by import; recurring
launches by a Temporal Schedule; bad input."""

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from core.contracts import JourneyState
from db.models import ContactImport
from db.session import transaction

from tests.helpers import Customer, Tenant, eventually, unique_email
from tests.histories import save_history
from workflows.campaign_launch import CampaignLaunchWorkflow, launch_workflow_id

# Longer than the few batches the stack starts in a worker round trip, short for a test.
QUIET = 1.5


def registry_file(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["external_id", "first_name", "email", "tags",
                                             "categories"], lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


async def import_contacts(tenant: Tenant, count: int, **labels: str) -> str:
    """Puts `count` contacts with an email address into the registry (CSV import, as a
    client does); returns the import id."""
    run = uuid.uuid4().hex[:6]
    content = registry_file([{"external_id": f"reg-{run}-{i}", "first_name": f"Reg{i}",
                              "email": f"reg{i}.{run}@example.com", "tags": labels.get("tags", ""),
                              "categories": labels.get("categories", "")} for i in range(count)])
    response = await tenant.http.post("/v1/contact-imports", content=content,
                                      headers={**tenant.auth, "content-type": "text/csv"})
    assert response.status_code == 202, response.text
    import_id = response.json()["id"]

    async def done() -> dict | None:
        job = (await tenant.get(f"/v1/contact-imports/{import_id}")).json()
        return job if job["status"] == "completed" else None
    job = await eventually(done, timeout=120, what="the import")
    assert job["created"] == count, job
    return import_id


async def light_campaign(tenant: Tenant, **overrides: Any) -> str:
    return (await tenant.create_campaign(languages=["en"], consents=[], **overrides))["id"]


async def progress(tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    response = await tenant.get(f"/v1/campaigns/{campaign_id}/progress")
    assert response.status_code == 200, response.text
    return response.json()


async def launch(tenant: Tenant, campaign_id: str, status: int = 202, **body: Any) -> dict:
    return await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch", body, status)


async def finished_launch(tenant: Tenant, campaign_id: str, timeout: float = 120) -> dict:
    async def probe() -> dict | None:
        launch = (await progress(tenant, campaign_id))["launch"]
        return launch if launch["finished_at"] else None
    return await eventually(probe, timeout=timeout, what="the launch to finish")


async def stays(tenant: Tenant, campaign_id: str, started: int) -> dict[str, Any]:
    """Nothing more starts: neither the launch's count nor the journeys in the database move."""
    await asyncio.sleep(QUIET)
    now = await progress(tenant, campaign_id)
    assert now["launch"]["started"] == started and now["journeys"] == started, now
    return now


async def test_thousand_contacts_paused_resumed_cancelled_and_launched_again(
    tenant, temporal_env, record_histories
):
    await import_contacts(tenant, 1000)
    campaign_id = await light_campaign(tenant)

    first = await launch(tenant, campaign_id)
    assert first["id"] == launch_workflow_id(campaign_id, 1) and first["state"] == "running"
    # The same call again while it runs is that launch, not a second one.
    again = await launch(tenant, campaign_id, status=200)
    assert again["id"] == first["id"]
    assert first["spread_over"] is again["spread_over"] is None
    busy = await tenant.post(f"/v1/campaigns/{campaign_id}/launch",
                             {"selection": {"tags": ["other"]}})
    assert busy.status_code == 409, busy.text
    # Asked again to spread its invitations, it would otherwise answer as though it did.
    busy = await tenant.post(f"/v1/campaigns/{campaign_id}/launch", {"spread_over": "PT1H"})
    assert busy.status_code == 409 and "another spread_over" in busy.text, busy.text

    async def some_started() -> bool:
        return (await progress(tenant, campaign_id))["launch"]["started"] >= 100
    await eventually(some_started, what="a first hundred journeys")
    paused = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/pause")
    assert paused["state"] == "paused" and paused["selected"] == 1000
    assert 100 <= paused["started"] < 1000, paused
    now = await stays(tenant, campaign_id, paused["started"])
    assert now["launch"]["state"] == "paused" and now["status"] == "active"
    handle = temporal_env.client.get_workflow_handle_for(CampaignLaunchWorkflow.run, first["id"])
    assert (await handle.query(CampaignLaunchWorkflow.state)).started == paused["started"]
    paused_run = (await handle.describe()).run_id

    resumed = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/resume")
    assert resumed["state"] == "running"

    async def more_started() -> bool:
        return (await progress(tenant, campaign_id))["launch"]["started"] >= paused["started"] + 100
    await eventually(more_started, what="the launch going on")
    # No body, as for pause and resume: the launch alone stops.
    cancelled = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel")
    assert cancelled["state"] == "cancelled" and cancelled["started"] < 1000, cancelled
    started = cancelled["started"]
    await stays(tenant, campaign_id, started)
    ended = await finished_launch(tenant, campaign_id)
    assert (ended["state"], ended["started"], ended["journeys_cancelled"]) == (
        "cancelled", started, 0)
    # Each started journey goes on: its invitation is sent; nothing else was started.
    async def all_invited() -> dict | None:
        now = await progress(tenant, campaign_id)
        return now if now["stages"]["invited"] == started else None
    # Generous: on a busy machine the worker works through the invitations well after the starts.
    counts = await eventually(all_invited, timeout=240, what="the invitations")
    assert counts["journeys"] == started
    assert (await tenant.post(f"/v1/campaigns/{campaign_id}/launch/resume", {})).status_code == 409
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(
            first["id"], run_id=paused_run), "campaign_launch_paused")
        await save_history(handle, "campaign_launch_cancelled")

    # Launched again: the rest get their journey, nobody a second one.
    second = await launch(tenant, campaign_id)
    assert second["id"] == launch_workflow_id(campaign_id, 2)
    done = await finished_launch(tenant, campaign_id)
    assert (done["state"], done["selected"], done["started"], done["skipped"]) == (
        "completed", 1000, 1000 - started, started)
    assert (await progress(tenant, campaign_id))["journeys"] == 1000
    third = await launch(tenant, campaign_id)
    assert third["id"] == launch_workflow_id(campaign_id, 3)
    done = await finished_launch(tenant, campaign_id)
    assert (done["started"], done["skipped"]) == (0, 1000)
    assert (await progress(tenant, campaign_id))["journeys"] == 1000
    # Its history stayed short: a run continues as new every few batches.
    history = await temporal_env.client.get_workflow_handle(second["id"]).fetch_history()
    assert len(history.events) < 100, len(history.events)

    # Operators find the campaign's launches as they find its journeys; the runs a launch
    # continued as new keep them too.
    async def launches() -> set[str] | None:
        listed = {w.id async for w in temporal_env.client.list_workflows(
            f"CampaignId = '{campaign_id}' AND ClientId = '{tenant.id}' AND "
            "WorkflowType = 'CampaignLaunch' AND ExecutionStatus = 'Completed'")}
        return listed if len(listed) == 3 else None
    assert await eventually(launches, what="the launches in visibility") == {
        first["id"], second["id"], third["id"]}


async def launch_under_way(tenant) -> str:
    """A campaign whose launch of 200 contacts has started some of its journeys."""
    await import_contacts(tenant, 200)
    campaign_id = await light_campaign(tenant)
    await launch(tenant, campaign_id)

    async def some_started() -> bool:
        return (await progress(tenant, campaign_id))["launch"]["started"] >= 50
    await eventually(some_started, what="some journeys")
    return campaign_id


async def test_cancel_can_cancel_the_journeys_the_launch_started(tenant, temporal_env):
    campaign_id = await launch_under_way(tenant)
    cancelled = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel",
                                {"cancel_journeys": True})
    started = cancelled["started"]
    ended = await finished_launch(tenant, campaign_id)
    assert ended["journeys_cancelled"] == started
    now = await progress(tenant, campaign_id)
    assert now["stages"]["cancelled"] == now["journeys"] == started, now
    [journey] = (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys", limit=1)).json()["items"]
    handle = temporal_env.client.get_workflow_handle(journey["workflow_id"],
                                                     result_type=JourneyState)

    async def workflow_cancelled() -> bool:
        status = (await handle.describe()).status
        if status == WorkflowExecutionStatus.COMPLETED:
            # Withdrawn in the database first: a journey whose opening message found it so
            # ended as cancelled before the Temporal cancel reached it.
            return (await handle.result()).stage == "cancelled"
        return status == WorkflowExecutionStatus.CANCELED
    await eventually(workflow_cancelled, what="the journey workflow cancelled")


async def test_a_finished_launchs_count_of_cancelled_journeys_is_final(tenant, temporal_env):
    """A client polling a launch cancelled with its journeys never sees it finished with a
    count that changes afterwards, nor loses the count once Temporal has forgotten the launch
    (retention)."""
    campaign_id = await launch_under_way(tenant)
    cancelled = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel",
                                {"cancel_journeys": True})
    seen: set[int | None] = set()
    while not (launch := (await progress(tenant, campaign_id))["launch"])["finished_at"]:
        pass  # polled as fast as a client could, to meet the moment it finishes
    for _ in range(20):
        seen.add((await progress(tenant, campaign_id))["launch"]["journeys_cancelled"])
    assert {launch["journeys_cancelled"]} | seen == {cancelled["started"]}, (launch, seen)

    client = temporal_env.client

    async def delete(run_id: str) -> None:
        await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(
                workflow_id=launch["id"], run_id=run_id)))
    # Each run: the launch continues as new every few batches.
    async for run in client.list_workflows(f"WorkflowId = '{launch['id']}'"):
        await delete(run.run_id)

    async def forgotten() -> dict | None:
        # Visibility can list the newest run late, and the API asks that one: deleted by id.
        try:
            await delete((await client.get_workflow_handle(launch["id"]).describe()).run_id)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        now = (await progress(tenant, campaign_id))["launch"]
        return now if now["batches"] is None else None
    # Deletion is asynchronous in Temporal (a task after the call returns); under CI's load it
    # took longer than 30 s.
    kept = await eventually(forgotten, timeout=120, what="the launch forgotten by Temporal")
    assert (kept["finished_at"], kept["journeys_cancelled"]) == (
        launch["finished_at"], cancelled["started"])


async def test_only_a_journey_cancelled_with_its_launch_says_the_client_withdrew_it(
        tenant, http, temporal_env, record_histories):
    """Cancelled with its launch, a journey is the client's withdrawal: its history says so and
    its page says the client withdrew the request. One an operator cancelled in the Temporal UI
    says it was the operator, and its page only that the request ended."""
    campaign_id = await launch_under_way(tenant)
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/pause")
    journeys = (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys", limit=2)).json()["items"]
    pages = {}
    for journey, who in zip(journeys, ("operator", "client")):
        link = (await tenant.get(f"/v1/contacts/{journey['contact_id']}/enrichment-link",
                                 campaign_id=campaign_id)).json()
        assert link["journey_id"] == journey["id"]
        pages[who] = (journey, link["url"].removeprefix("http://testserver"))
    by_operator, by_client = (pages[who][0] for who in ("operator", "client"))
    await temporal_env.client.get_workflow_handle(by_operator["workflow_id"]).cancel()
    await tenant.wait_for_stage(by_operator["id"], "cancelled")
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel",
                    {"cancel_journeys": True})

    for who, detail in (("operator", {"by": "operator"}),
                        ("client", {"by": "client", "reason": "launch_cancelled"})):
        journey, path = pages[who]

        async def recorded() -> list[dict] | None:
            # The launch marks its journeys cancelled too, before they record who did it; an
            # invitation that went out as it was cancelled may be recorded after it.
            history = (await tenant.journey(journey["id"]))["history"]
            return [e["detail"] for e in history if e["type"] == "cancelled"] or None
        assert await eventually(recorded, what=f"the cancellation by the {who}") == [detail]
        customer = Customer(http)
        await customer.open(path)
        assert "This request has ended" in customer.page
        withdrawn = f"{tenant.name} has withdrawn it. You do not need to do anything."
        asked = f"If you have a question about it, please contact {tenant.name}."
        assert (withdrawn in customer.page, asked in customer.page) == (
            who == "client", who == "operator"), who
    handle = temporal_env.client.get_workflow_handle(by_client["workflow_id"])

    async def workflow_cancelled() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await eventually(workflow_cancelled, what="the journey workflow cancelled")
    if record_histories:
        await save_history(handle, "journey_cancelled_with_its_launch")


async def test_journeys_a_cancel_finds_not_yet_invited_send_nothing_after_it_answers(
    tenant, temporal_env, record_histories
):
    """Cancelled with its journeys, a launch's journeys whose invitation has not gone yet are
    cancelled before the cancel answers: none of them invites anybody afterwards (the
    invitations are spread out, so most are still to go when it answers)."""
    await import_contacts(tenant, 100)
    campaign_id = await light_campaign(tenant)
    held = await launch(tenant, campaign_id, paused=True, spread_over="PT10S")

    async def counted() -> bool:
        return (await progress(tenant, campaign_id))["launch"]["selected"] == 100
    await eventually(counted, what="the selection counted")
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/resume")
    # Sent at once: it answers once the first batch, begun with the resume, has started.
    cancelled = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel",
                                {"cancel_journeys": True})
    answered = await progress(tenant, campaign_id)
    assert answered["stages"]["enrolled"] == 0, answered
    cancelled_at_answer = {j["id"]: j["workflow_id"] for j in (await tenant.get(
        f"/v1/campaigns/{campaign_id}/journeys", stage="cancelled", limit=1000)).json()["items"]}
    assert cancelled_at_answer, answered
    assert cancelled["journeys_cancelled"] == len(cancelled_at_answer), cancelled

    async def all_cancelled() -> bool:
        launch = (await progress(tenant, campaign_id))["launch"]
        return launch["journeys_cancelled"] == cancelled["started"]
    await eventually(all_cancelled, what="the launch's other journeys cancelled")
    # Once its workflow has closed a journey sends nothing more: one that had not invited
    # anyone by the answer still has not.
    async def workflows_closed() -> bool:
        statuses = [(await temporal_env.client.get_workflow_handle(w).describe()).status
                    for w in cancelled_at_answer.values()]
        return all(s != WorkflowExecutionStatus.RUNNING for s in statuses)
    await eventually(workflows_closed, what="the cancelled journeys' workflows closed")
    for journey_id in cancelled_at_answer:
        history = [e["type"] for e in (await tenant.journey(journey_id))["history"]]
        assert history == ["cancelled"], (journey_id, history)
    if record_histories:
        await save_history(temporal_env.client.get_workflow_handle(held["id"]),
                           "campaign_launch_cancelled_with_unreached_journeys")


async def test_selection_by_tags_categories_and_import(tenant, other_tenant, sessions):
    await import_contacts(tenant, 3, tags="vip|news", categories="gold")
    await import_contacts(tenant, 4, tags="vip")
    await import_contacts(tenant, 5)
    campaign_id = await light_campaign(tenant)

    # Begun paused, a launch tells how many it would invite before it invites anyone.
    held = await launch(tenant, campaign_id, selection={"tags": ["VIP"]}, paused=True)
    assert held["state"] == "paused"

    async def counted() -> dict | None:
        now = (await progress(tenant, campaign_id))["launch"]
        return now if now["selected"] else None
    assert (await eventually(counted, what="the selection counted"))["selected"] == 7
    await stays(tenant, campaign_id, 0)
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/resume")
    done = await finished_launch(tenant, campaign_id)
    assert (done["selected"], done["started"]) == (7, 7)

    other_campaign = await light_campaign(tenant)
    await launch(tenant, other_campaign, selection={"tags": ["vip"], "categories": ["gold"]})
    assert (await finished_launch(tenant, other_campaign))["started"] == 3

    # By import: exactly the contacts of that file.
    import_id = await import_contacts(tenant, 2)
    by_import = await light_campaign(tenant)
    await launch(tenant, by_import, selection={"import_id": import_id})
    assert (await finished_launch(tenant, by_import))["started"] == 2
    journeys = (await tenant.get(f"/v1/campaigns/{by_import}/journeys")).json()["items"]
    assert len({j["contact_id"] for j in journeys}) == 2
    # One still running has written part of its file: it was selected as if it were all.
    for status in ("running", "failed"):
        async with transaction(sessions) as session:
            await session.execute(update(ContactImport).where(
                ContactImport.id == uuid.UUID(import_id)).values(status=status))
        early = await tenant.post(f"/v1/campaigns/{await light_campaign(tenant)}/launch",
                                  {"selection": {"import_id": import_id}})
        assert early.status_code == 409 and status in early.json()["error"]["message"], status
    # Another client's import is not a selection of yours.
    theirs = await import_contacts(other_tenant, 1)
    refused = await tenant.post(f"/v1/campaigns/{by_import}/launch",
                                {"selection": {"import_id": theirs}})
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"] == "selection.import_id"


async def test_bad_launch_and_recurrence_input_is_refused_with_field_errors(tenant):
    campaign_id = await light_campaign(tenant)
    for body, field in [
        ({"selection": {"tags": [""]}}, "selection.tags[0]"),
        # No contact can carry it: the launch selected no one and said nothing.
        ({"selection": {"tags": ["vip", "v!p"]}}, "selection.tags[1]"),
        ({"selection": {"import_id": "nope"}}, "selection.import_id"),
        ({"selection": {"segment": "all"}}, "selection.segment"),
        ({"paused": "maybe"}, "paused"),
    ]:
        response = await tenant.post(f"/v1/campaigns/{campaign_id}/launch", body)
        assert response.status_code == 422, response.text
        assert field in [f["field"] for f in response.json()["error"]["fields"]], response.text
    for body in [{"every": "PT0S"}, {"cron": "every day"}, {"every": "P1D", "cron": "0 9 1 * *"},
                 {}, {"every": "P1D", "selection": {"tags": ["x" * 101]}}]:
        response = await tenant.http.put(f"/v1/campaigns/{campaign_id}/recurrence", json=body,
                                         headers=tenant.auth)
        assert response.status_code == 422 and response.json()["error"]["fields"], response.text
    response = await tenant.post("/v1/campaigns", {
        "name": "Recurring", "languages": ["en"], "recurrence": {"cron": "61 * * * *"}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "recurrence.cron"
    response = await tenant.http.put(f"/v1/campaigns/{campaign_id}/recurrence",
                                     json={"cron": "61 * * * *"}, headers=tenant.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "cron"
    for action in ("pause", "resume", "cancel"):
        response = await tenant.post(f"/v1/campaigns/{campaign_id}/launch/{action}", {})
        assert response.status_code == 409, response.text
    response = await tenant.http.patch(f"/v1/campaigns/{campaign_id}", json={"status": "gone"},
                                       headers=tenant.auth)
    assert response.status_code == 422
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "archived"})
    refused = await tenant.post(f"/v1/campaigns/{campaign_id}/launch", {})
    assert refused.status_code == 409


async def test_a_cron_expression_that_never_fires_is_refused(tenant, temporal_env):
    """31 February parses but never comes: the schedule would exist with no run ahead."""
    never = "0 9 31 2 *"
    created = await tenant.post("/v1/campaigns", {
        "name": "Never", "languages": ["en"], "recurrence": {"cron": never}})
    assert created.status_code == 422, created.text
    [problem] = created.json()["error"]["fields"]
    assert problem["field"] == "recurrence.cron" and "never" in problem["message"]
    assert "Never" not in [c["name"] for c in (await tenant.get("/v1/campaigns")).json()["items"]]

    # A recurring campaign keeps the schedule it had; one without stays without.
    recurring = await light_campaign(tenant, recurrence={"cron": "0 9 1 * *"})
    plain = await light_campaign(tenant)
    for campaign_id in (recurring, plain):
        refused = await tenant.http.put(f"/v1/campaigns/{campaign_id}/recurrence",
                                        json={"cron": never}, headers=tenant.auth)
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["cron"]
    kept = await tenant.ok("GET", f"/v1/campaigns/{recurring}/recurrence")
    assert kept["recurrence"]["cron"] == "0 9 1 * *" and kept["next_runs"]
    assert (await tenant.get(f"/v1/campaigns/{plain}/recurrence")).status_code == 404
    # Asked by id: the schedule list is eventually consistent and may still name it.
    with pytest.raises(RPCError) as gone:
        await temporal_env.client.get_schedule_handle(f"campaign/{plain}/recurrence").describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    # A paused schedule still plans its runs: a paused campaign's cron is not taken for one
    # that never fires.
    await tenant.ok("PATCH", f"/v1/campaigns/{plain}", {"status": "paused"})
    await tenant.ok("PUT", f"/v1/campaigns/{plain}/recurrence", {"cron": "0 9 29 2 *"})


async def test_a_launch_its_schedule_started_has_a_summary(tenant, temporal_env):
    """An operator reads in the Temporal UI's list which campaign a launch is of, also for one
    the campaign's recurrence started (here Trigger on its schedule), as for a launch by the
    API: it had no summary."""
    campaign_id = await light_campaign(tenant, recurrence={"cron": "0 9 1 * *"})
    schedule = temporal_env.client.get_schedule_handle(f"campaign/{campaign_id}/recurrence")
    await schedule.trigger()

    async def started() -> list | None:
        return (await schedule.describe()).info.recent_actions or None
    [action] = await eventually(started, what="the triggered launch")
    launch = temporal_env.client.get_workflow_handle(action.action.workflow_id)
    assert await (await launch.describe()).static_summary() == (
        f"Scheduled launch of campaign {campaign_id}")


async def test_a_recurrence_runs_at_most_as_often_as_the_setting_allows(tenant, settings):
    """Each run reads the whole selection: a schedule every second would scan the registry
    every second. The tests' own setting lets one fire within a test."""
    hourly = create_app(settings.model_copy(
        update={"recurrence_min_interval": timedelta(hours=1)}))
    campaign = await tenant.create_campaign(languages=["en"])
    async with hourly.router.lifespan_context(hourly):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=hourly),
                                     base_url="http://testserver", headers=tenant.auth) as http:
            too_often = await http.put(f"/v1/campaigns/{campaign['id']}/recurrence",
                                       json={"every": "PT59M"})
            created = await http.post("/v1/campaigns", json={
                "name": "Busy", "languages": ["en"], "recurrence": {"every": "PT1M"}})
            hourly_ok = await http.put(f"/v1/campaigns/{campaign['id']}/recurrence",
                                       json={"every": "PT1H"})
            # A cron expression may not fire more often either, nor replace the schedule.
            by_minute = await http.put(f"/v1/campaigns/{campaign['id']}/recurrence",
                                       json={"cron": "*/30 * * * *"})
            kept = await http.get(f"/v1/campaigns/{campaign['id']}/recurrence")
            hourly_cron = await http.post("/v1/campaigns", json={
                "name": "Hourly", "languages": ["en"], "recurrence": {"cron": "0 * * * *"}})
            yearly = await http.put(f"/v1/campaigns/{campaign['id']}/recurrence",
                                    json={"every": "P999999999D"})
    assert too_often.status_code == 422 and too_often.json()["error"]["fields"] == [
        {"field": "every", "message": "at least PT1H (RECURRENCE_MIN_INTERVAL)"}]
    assert created.status_code == 422
    assert created.json()["error"]["fields"][0]["field"] == "recurrence.every"
    assert hourly_ok.status_code == 200, hourly_ok.text
    assert by_minute.status_code == 422 and by_minute.json()["error"]["fields"] == [
        {"field": "cron", "message": "fires more often than every PT1H (RECURRENCE_MIN_INTERVAL)"}]
    assert kept.json()["recurrence"]["every"] == "PT1H"
    assert hourly_cron.status_code == 201, hourly_cron.text
    assert yearly.status_code == 422
    assert [f["field"] for f in yearly.json()["error"]["fields"]] == ["every"]


async def test_recurring_campaign_invites_again_who_still_misses_verified_data(
    tenant, http, mailbox, temporal_env
):
    await import_contacts(tenant, 3)
    # Journeys expire before the next launch is due, so each launch asks again.
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], expires_after="PT15S",
        reminders={"interval": "PT1H", "max_count": 0},
        recurrence={"every": "PT10S"})
    campaign_id = campaign["id"]
    recurrence = await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/recurrence")
    assert not recurrence["paused"] and recurrence["next_runs"]

    async def journeys() -> list[dict]:
        return (await tenant.get(f"/v1/campaigns/{campaign_id}/journeys")).json()["items"]

    async def first_round() -> list[dict] | None:
        found = await journeys()
        return found if len(found) == 3 else None
    first = await eventually(first_round, timeout=30, what="the first scheduled launch")

    # One customer verifies their address: later launches leave them alone.
    verified = first[0]
    [invitation] = await mailbox.wait_for(
        (await tenant.get(f"/v1/contacts/{verified['contact_id']}")).json()[
            "contact_points"][0]["value"])
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    address = unique_email("recurring")
    await customer.submit(page, email=address)
    [verification] = await mailbox.wait_for(address)
    await customer.open(mailbox.link(verification))
    confirmed = await customer.submit(mailbox.link(verification))
    assert confirmed.status_code == 200
    await tenant.wait_for_stage(verified["id"], "verified")

    async def second_round() -> list[dict] | None:
        found = await journeys()
        return found if len(found) >= 5 else None
    again = await eventually(second_round, timeout=90, what="a later scheduled launch")
    by_contact: dict[str, list[str]] = {}
    for j in again:
        by_contact.setdefault(j["contact_id"], []).append(j["workflow_id"])
    assert by_contact[verified["contact_id"]] == [verified["workflow_id"]]
    for contact_id, ids in by_contact.items():
        if contact_id != verified["contact_id"]:
            assert f"journey/{campaign_id}/{contact_id}/2" in ids, ids
    launch_now = (await progress(tenant, campaign_id))["launch"]
    assert launch_now["trigger"] == "schedule" and launch_now["number"] >= 2

    # Paused with its campaign; then no recurrence at all.
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    assert (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/recurrence"))["paused"]
    await tenant.ok("DELETE", f"/v1/campaigns/{campaign_id}/recurrence", status=204)
    assert (await tenant.get(f"/v1/campaigns/{campaign_id}/recurrence")).status_code == 404


async def test_an_every_recurrence_runs_one_interval_after_it_was_set(tenant):
    """Not aligned to the epoch (P30D on some day at midnight UTC, P7D on Thursdays)."""
    def plain(at: str) -> datetime:
        return datetime.fromisoformat(at.replace("Z", "+00:00"))

    set_at = datetime.now(UTC)
    campaign_id = await light_campaign(tenant, recurrence={"every": "P30D"})
    runs = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/recurrence"))["next_runs"]
    assert abs(plain(runs[0]) - (set_at + timedelta(days=30))) < timedelta(seconds=5), runs
    assert plain(runs[1]) - plain(runs[0]) == timedelta(days=30), runs

    set_at = datetime.now(UTC)
    runs = (await tenant.ok("PUT", f"/v1/campaigns/{campaign_id}/recurrence",
                            {"every": "P7D"}))["next_runs"]
    assert abs(plain(runs[0]) - (set_at + timedelta(days=7))) < timedelta(seconds=5), runs


async def test_a_paused_recurrence_plans_no_launch_and_says_why(tenant, temporal_env):
    campaign_id = await light_campaign(tenant, recurrence={"every": "P1D"})
    url = f"/v1/campaigns/{campaign_id}/recurrence"

    async def recurrence() -> tuple[bool, str | None, bool]:
        now = await tenant.ok("GET", url)
        return now["paused"], now["paused_because"], bool(now["next_runs"])
    assert await recurrence() == (False, None, True)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    assert await recurrence() == (True, "campaign_paused", False)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "active"})
    assert await recurrence() == (False, None, True)
    # An operator pauses the schedule in the Temporal UI.
    await temporal_env.client.get_schedule_handle(f"campaign/{campaign_id}/recurrence").pause()
    assert await recurrence() == (True, "schedule_paused", False)


async def test_a_paused_campaign_whose_schedule_an_operator_unpaused_starts_nothing(
    tenant, temporal_env
):
    await import_contacts(tenant, 3)
    campaign_id = await light_campaign(tenant)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": "paused"})
    await tenant.ok("PUT", f"/v1/campaigns/{campaign_id}/recurrence", {"every": "PT2S"})
    # An operator unpauses the schedule in the Temporal UI; the campaign stays paused, and
    # plans no launch, as one would start nothing.
    await temporal_env.client.get_schedule_handle(
        f"campaign/{campaign_id}/recurrence").unpause()
    recurrence = await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/recurrence")
    assert (recurrence["paused"], recurrence["paused_because"], recurrence["next_runs"]) == (
        True, "campaign_paused", []), recurrence

    async def scheduled_launch_ended() -> dict | None:
        launch = (await progress(tenant, campaign_id))["launch"]
        return launch if launch and launch["finished_at"] else None
    ended = await eventually(scheduled_launch_ended, timeout=30, what="a scheduled launch")
    assert (ended["trigger"], ended["state"], ended["cancelled_because"], ended["started"]) == (
        "schedule", "cancelled", "campaign_paused", 0), ended
    assert (await progress(tenant, campaign_id))["journeys"] == 0


async def test_a_scheduled_launch_due_while_the_clients_launch_runs_starts_nothing(tenant):
    """A launch the client holds (counted, paused) is not overrun by the campaign's schedule,
    and stays the client's to resume or cancel."""
    await import_contacts(tenant, 3)
    campaign_id = await light_campaign(tenant)
    held = await launch(tenant, campaign_id, paused=True)
    await tenant.ok("PUT", f"/v1/campaigns/{campaign_id}/recurrence", {"every": "PT2S"})

    async def scheduled_launch_ended() -> dict | None:
        newest = (await progress(tenant, campaign_id))["launch"]
        return newest if newest["trigger"] == "schedule" and newest["finished_at"] else None
    skipped = await eventually(scheduled_launch_ended, timeout=30, what="a scheduled launch")
    assert (skipped["state"], skipped["cancelled_because"], skipped["started"]) == (
        "cancelled", "launch_running", 0), skipped
    await tenant.ok("DELETE", f"/v1/campaigns/{campaign_id}/recurrence", status=204)
    assert (await progress(tenant, campaign_id))["journeys"] == 0
    cancelled = await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel", {})
    assert (cancelled["number"], cancelled["state"]) == (held["number"], "cancelled"), cancelled

    async def held_launch_ended() -> dict | None:
        launches = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/launches"))["items"]
        first = next(item for item in launches if item["number"] == held["number"])
        return first if first["finished_at"] else None
    await eventually(held_launch_ended, timeout=30, what="the held launch to end")
    assert (await progress(tenant, campaign_id))["journeys"] == 0


async def test_active_said_again_leaves_a_paused_launch_paused(tenant):
    """A client syncing its campaign record sends `status: active` with each change; only a
    campaign leaving `paused` resumes its launch."""
    await import_contacts(tenant, 3)
    campaign_id = await light_campaign(tenant)
    await launch(tenant, campaign_id, paused=True)
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}",
                    {"status": "active", "name": "Spring update"})
    assert (await stays(tenant, campaign_id, 0))["launch"]["state"] == "paused"
    for status in ("paused", "active"):
        await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": status})
    assert (await finished_launch(tenant, campaign_id))["started"] == 3


async def test_a_recurrence_gone_with_its_schedule_is_a_404(tenant, temporal_env):
    """Archiving deletes the schedule, and so may an operator in the Temporal UI: the campaign
    then no longer recurs, and asking says so instead of failing."""
    for end in ("archive", "operator"):
        campaign = await tenant.create_campaign(languages=["en"], consents=[],
                                                recurrence={"every": "PT1H"})
        path = f"/v1/campaigns/{campaign['id']}/recurrence"
        assert (await tenant.ok("GET", path))["schedule_id"]
        if end == "archive":
            await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": "archived"})
        else:
            await temporal_env.client.get_schedule_handle(
                f"campaign/{campaign['id']}/recurrence").delete()
        gone = await tenant.get(path)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found", gone.text
        if end == "operator":
            # The campaign can still be paused and resumed (it failed with a 500).
            for status in ("paused", "active"):
                await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": status})


async def test_invitations_can_be_spread_over_time(tenant):
    await import_contacts(tenant, 3)
    campaign_id = await light_campaign(tenant)
    # Paused at first, so the repeated call finds it still running.
    started = await launch(tenant, campaign_id, spread_over="PT10S", paused=True)
    again = await launch(tenant, campaign_id, status=200, spread_over="PT10S")
    assert again["id"] == started["id"] and started["spread_over"] == "PT10S"
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/resume")
    done = await finished_launch(tenant, campaign_id)
    assert done["started"] == 3 and done["spread_over"] == "PT10S"
    # Every journey exists at once; the later ones wait for their turn to invite.
    now = await progress(tenant, campaign_id)
    assert now["journeys"] == 3 and now["stages"]["enrolled"] >= 1, now

    async def all_invited() -> bool:
        return (await progress(tenant, campaign_id))["stages"]["invited"] == 3
    await eventually(all_invited, timeout=30, what="the spread invitations")
    for too_long_or_short in ("P8D", "PT0.5S"):
        bad = await tenant.post(f"/v1/campaigns/{campaign_id}/launch",
                                {"spread_over": too_long_or_short})
        assert bad.status_code == 422, too_long_or_short
        assert bad.json()["error"]["fields"][0] == {
            "field": "spread_over", "message": "must be between PT1S and P7D"}
    bad = await tenant.post(f"/v1/campaigns/{campaign_id}/launch", {"spread_over": 3600})
    assert bad.json()["error"]["fields"][0] == {"field": "spread_over", "message": (
        "must be an ISO-8601 duration such as PT30S, PT10M or P7D, not a number")}
    bad = await tenant.post(f"/v1/campaigns/{campaign_id}/launch", {"spread_over": "P1X"})
    assert bad.json()["error"]["fields"][0] == {"field": "spread_over", "message": (
        "must be an ISO-8601 duration such as PT30S, PT10M or P7D")}


async def test_a_customer_who_answers_before_a_spread_invitation_can_confirm(
        tenant, http, mailbox, temporal_env, record_histories):
    """A launch spreads its invitations; meanwhile the client's own message carries an
    enrichment link to a contact whose journey has not started. The customer enters a new
    address and confirms it: the journey is verified, and the campaign's invitation, which the
    client's message stood for, never follows."""
    known = [unique_email("spread") for _ in range(2)]
    for address in known:
        await tenant.ok("POST", "/v1/contacts", {
            "external_id": address, "last_name": "Spread",
            "contact_points": [{"kind": "email", "value": address}]}, status=201)
    campaign_id = await light_campaign(tenant, reminders={"interval": "PT1H", "max_count": 1})
    await launch(tenant, campaign_id, spread_over="PT1H")
    assert (await finished_launch(tenant, campaign_id))["started"] == 2

    async def one_invited() -> list[dict] | None:
        journeys = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/journeys"))["items"]
        stages = sorted(j["stage"] for j in journeys)
        return [j for j in journeys if j["stage"] == "enrolled"] if stages == [
            "enrolled", "invited"] else None
    [delayed] = await eventually(one_invited, what="the first invitation of the spread")
    link = await tenant.ok("GET", f"/v1/contacts/{delayed['contact_id']}/enrichment-link")
    assert link["journey_id"] == delayed["id"]
    page = link["url"].removeprefix("http://testserver")
    customer = Customer(http)
    assert (await customer.open(page)).status_code == 200
    typed = unique_email("typed")
    await customer.submit(page, email=typed)
    [verification] = await mailbox.wait_for(typed)
    confirm = mailbox.link(verification)
    await customer.open(confirm)
    await customer.submit(confirm)
    assert "newer link" not in customer.page
    journey = await tenant.wait_for_stage(delayed["id"], "verified")
    assert "invitation_sent" not in [e["type"] for e in journey["history"]], journey["history"]
    assert mailbox.to(delayed["external_id"]) == []
    handle = temporal_env.client.get_workflow_handle(delayed["workflow_id"])
    assert (await handle.result())["stage"] == "verified"
    if record_histories:
        await save_history(handle, "spread_journey_answered_before_its_invitation")


async def test_a_launch_an_operator_stopped_no_longer_blocks_the_campaign(
    tenant, temporal_env, record_histories
):
    """Cancelled or terminated in the Temporal UI, a launch ends without its own clean-up: the
    campaign can still be launched, paused and archived."""
    await import_contacts(tenant, 3, tags="stopped")
    campaign_id = await light_campaign(tenant)
    for stop in ("cancel", "terminate"):
        held = await launch(tenant, campaign_id, selection={"tags": ["stopped"]}, paused=True)
        handle = temporal_env.client.get_workflow_handle(
            launch_workflow_id(campaign_id, held["number"]))
        await (handle.cancel() if stop == "cancel" else handle.terminate("operator"))
        if stop == "cancel":
            # Cancelled, it records its end as a cancel through the API does.
            ended = await finished_launch(tenant, campaign_id)
            assert ended["state"] == "cancelled" and ended["number"] == held["number"], ended
            if record_histories:
                await save_history(handle, "campaign_launch_cancelled_by_operator")
        again = await launch(tenant, campaign_id, selection={"tags": ["other"]}, paused=True)
        assert again["number"] == held["number"] + 1, stop
        await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel", {})
    for status in ("paused", "archived"):
        await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"status": status})


async def test_launch_calls_sent_at_once_start_one_launch(tenant):
    """A client retrying a launch call before the first answered, or sending it from two
    places: every call answers with the one launch."""
    await import_contacts(tenant, 3)
    campaign = await tenant.create_campaign(languages=["en"])
    answers = await asyncio.gather(*(tenant.post(f"/v1/campaigns/{campaign['id']}/launch",
                                                 {"paused": True}) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202], [
        a.text for a in answers]
    assert {a.json()["id"] for a in answers} == {launch_workflow_id(campaign["id"], 1)}


async def test_a_launch_retried_with_its_idempotency_key_launches_once(tenant):
    """A client that lost the answer to its launch call sends it again, perhaps after the launch
    finished: it gets the first answer, not a second launch that invites everyone again."""
    await import_contacts(tenant, 2)
    campaign_id = await light_campaign(tenant)
    key = f"launch-{uuid.uuid4().hex[:8]}"

    async def launch_with(campaign: str, body: dict[str, Any], key: str = key) -> httpx.Response:
        return await tenant.http.post(f"/v1/campaigns/{campaign}/launch", json=body,
                                      headers={**tenant.auth, "Idempotency-Key": key})

    first = await launch_with(campaign_id, {})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
    await finished_launch(tenant, campaign_id)
    again = await launch_with(campaign_id, {})
    assert again.status_code == 202, again.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    launches = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/launches"))["items"]
    assert [launch["number"] for launch in launches] == [1]
    assert (await progress(tenant, campaign_id))["journeys"] == 2

    # Another launch with the key, of this campaign or another, is the client's bug.
    for campaign, body in ((campaign_id, {"spread_over": "PT1M"}),
                           (await light_campaign(tenant), {})):
        other = await launch_with(campaign, body)
        assert other.status_code == 409, other.text
        assert "Idempotency-Key" in other.json()["error"]["message"]
    # Retries sent at once: one launch, every answer the first one's.
    at_once = await asyncio.gather(*(launch_with(campaign_id, {"paused": True}, key=f"{key}-b")
                                     for _ in range(4)))
    assert [a.status_code for a in at_once] == [202] * 4, [a.text for a in at_once]
    assert len({a.text for a in at_once}) == 1 and at_once[0].json()["number"] == 2
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in at_once) == 3
