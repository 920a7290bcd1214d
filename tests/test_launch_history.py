"""A campaign's launches as a client follows them: told by webhook when each one finished
(completed or cancelled, with its counts), and listed with their counts, newest first, beyond
the newest one that `/progress` shows."""

from tests.helpers import Tenant, WebhookReceiver, eventually, handler_descriptions
from tests.test_campaign_launch import finished_launch, import_contacts, launch, light_campaign


async def test_finished_launches_are_announced_and_listed(
        tenant: Tenant, webhook_receiver: WebhookReceiver):
    hook = await tenant.subscribe(webhook_receiver, ["launch.completed", "launch.cancelled"])
    import_id = await import_contacts(tenant, 3)
    campaign_id = await light_campaign(tenant)
    selection = {"selection": {"import_id": import_id}}

    first = await launch(tenant, campaign_id, **selection)
    await finished_launch(tenant, campaign_id)
    [completed] = await webhook_receiver.wait_for(hook, "launch.completed")
    assert completed.payload["data"]["campaign"]["id"] == campaign_id
    done = completed.payload["data"]["launch"]
    assert (done["id"], done["state"], done["selected"], done["started"], done["skipped"]) == (
        first["id"], "completed", 3, 3, 0)
    assert done["finished_at"]

    second = await launch(tenant, campaign_id, paused=True, **selection)
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel",
                    {"cancel_journeys": False})
    await finished_launch(tenant, campaign_id)
    [cancelled] = await webhook_receiver.wait_for(hook, "launch.cancelled")
    stopped = cancelled.payload["data"]["launch"]
    assert (stopped["id"], stopped["state"], stopped["started"], stopped["journeys_cancelled"]
            ) == (second["id"], "cancelled", 0, 0)
    assert len(webhook_receiver.events(hook, "launch.completed")) == 1

    newest = await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/launches?limit=1")
    assert [(item["number"], item["state"]) for item in newest["items"]] == [(2, "cancelled")]
    older = await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/launches?limit=1"
                                   f"&cursor={newest['next_cursor']}")
    assert [(item["number"], item["state"], item["selected"], item["started"])
            for item in older["items"]] == [(1, "completed", 3, 3)]
    assert older["next_cursor"] is None
    refused = await tenant.get(f"/v1/campaigns/{campaign_id}/launches", cursor=0)
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"] == "cursor"


async def test_a_launch_an_operator_terminated_reads_as_cancelled(
        tenant: Tenant, webhook_receiver: WebhookReceiver, temporal_env):
    """Terminated in the Temporal UI, a launch records no end of its own: `/progress` and
    `/launches` said `paused` for ever, while `/launch/resume` answered that none ran. They now
    say it was cancelled, its workflow gone, with the counts it had; no webhook announces it."""
    hook = await tenant.subscribe(webhook_receiver, ["launch.completed", "launch.cancelled"])
    await import_contacts(tenant, 2, tags="terminated")
    campaign_id = await light_campaign(tenant)
    held = await launch(tenant, campaign_id, paused=True, selection={"tags": ["terminated"]})
    counted = await eventually(lambda: selected(tenant, campaign_id), what="the selection")
    await temporal_env.client.get_workflow_handle(held["id"]).terminate("operator")

    ended = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/progress"))["launch"]
    assert (ended["id"], ended["state"], ended["cancelled_because"], ended["selected"],
            ended["started"]) == (held["id"], "cancelled", "workflow_gone", counted, 0), ended
    assert ended["finished_at"]
    [listed] = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/launches"))["items"]
    assert listed == ended
    resumed = await tenant.http.post(f"/v1/campaigns/{campaign_id}/launch/resume",
                                     headers=tenant.auth)
    assert resumed.status_code == 409, resumed.text
    assert webhook_receiver.events(hook, "launch.cancelled") == []


async def test_a_launch_an_operator_cancelled_says_so(
        tenant: Tenant, webhook_receiver: WebhookReceiver, temporal_env):
    """Cancelled in the Temporal UI, a launch read as the client's own cancel: the client was
    told its launch was cancelled, and not that someone else had. It says `operator`."""
    hook = await tenant.subscribe(webhook_receiver, ["launch.cancelled"])
    await import_contacts(tenant, 2, tags="operator")
    campaign_id = await light_campaign(tenant)
    held = await launch(tenant, campaign_id, paused=True, selection={"tags": ["operator"]})
    await eventually(lambda: selected(tenant, campaign_id), what="the selection")
    await temporal_env.client.get_workflow_handle(held["id"]).cancel()

    ended = await finished_launch(tenant, campaign_id)
    assert (ended["id"], ended["state"], ended["cancelled_because"]) == (
        held["id"], "cancelled", "operator"), ended
    [cancelled] = await webhook_receiver.wait_for(hook, "launch.cancelled")
    assert cancelled.payload["data"]["launch"]["cancelled_because"] == "operator"


async def selected(tenant: Tenant, campaign_id: str) -> int | None:
    """The selection the paused launch counted, once its first activity has."""
    launch = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/progress"))["launch"]
    return launch["selected"] or None


async def test_an_operator_reads_what_a_launch_takes_in_the_temporal_ui(tenant: Tenant,
                                                                       temporal_env):
    """Its updates and query were listed bare: each says what it is for, the cancel that an
    update records as the client's among them."""
    campaign_id = await light_campaign(tenant)
    held = await launch(tenant, campaign_id, paused=True)
    described = await handler_descriptions(temporal_env.client.get_workflow_handle(held["id"]))
    assert [name for name, description in described.items() if not description] == []
    assert '"cancel_journeys"' in described["cancel"]
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch/cancel", {})
