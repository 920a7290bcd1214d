"""Event history of one journey walked to the end (opened, data entered, verified), against the
trivial workflow's history completed by one update."""

from temporalio.client import WorkflowHandle

from bench.figures.launch import launched_campaign
from bench.harness import INVITATION, VERIFICATION, Bench, Row, Target, until
from bench.raw import AnswerInput, RawWorkflow


async def event_count(handle: WorkflowHandle) -> int:
    await handle.result()
    return len((await handle.fetch_history()).events)


async def walk_one_journey(bench: Bench) -> str:
    """A customer opens the invitation link, enters an email, opens and confirms the
    verification link; returns the journey's workflow id."""
    campaign_id = bench.shared["campaign_id"]

    async def invited() -> bool:
        return await bench.count_journeys(campaign_id, "invited") > 0
    await until(invited, what="an invited journey")
    [journey] = await bench.journeys_in(campaign_id, "invited", 1)
    contact = f"/c/{bench.link(journey.id, INVITATION, 'invitation')}"
    response = await bench.post_form(contact, await bench.get_page(contact),
                                     email=f"history-{journey.id}@example.com", consent="terms")
    if response.status_code != 303:
        raise RuntimeError(f"submission failed: {response.status_code}")
    verify = f"/v/{bench.link(journey.id, VERIFICATION, 'verification-1')}"

    async def link_sent() -> bool:
        return (await bench.get_page(verify)).status == 200
    await until(link_sent, what="the verification email")
    response = await bench.post_form(verify, await bench.get_page(verify))
    if response.status_code != 200 or "address is confirmed" not in response.text:
        raise RuntimeError(f"confirmation failed: {response.status_code}")
    return journey.workflow_id


async def measure(bench: Bench) -> list[Row]:
    if "campaign_id" not in bench.shared:  # run on its own (--only history)
        await launched_campaign(bench, 1)
    workflow_id = await walk_one_journey(bench)
    ours = await event_count(bench.temporal.get_workflow_handle(workflow_id))
    raw_id = bench.shared["raw_workflow_ids"][-1]
    raw_handle = bench.temporal.get_workflow_handle(raw_id)
    await raw_handle.execute_update(RawWorkflow.answer, AnswerInput("done"))
    raw = await event_count(raw_handle)
    return [Row("history events of one verified journey", ours, raw, "events",
                "trivial workflow completed by one update", Target("value", "≤", 100))]
