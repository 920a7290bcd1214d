"""A campaign's launches as a client follows them: told by webhook when each one finished
(completed or cancelled, with its counts), and listed with their counts, newest first, beyond
the newest one that `/progress` shows."""

from tests.helpers import Tenant, WebhookReceiver
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
