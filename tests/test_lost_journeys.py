"""A journey whose workflow an operator terminated in the Temporal UI: the database holds it
open, and nothing would ever end it. Whoever meets it ends it as cancelled."""

from tests.helpers import Customer, on_the_page, unique_email


async def entered(tenant, http, mailbox) -> tuple[dict, Customer, str]:
    """A journey waiting for its email to be confirmed: (enrolment, the customer, the link)."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("lost"))
    typed = unique_email("typed")
    await customer.submit(page, email=typed)
    await tenant.wait_for_stage(enrolled["journey_id"], "verification_pending")
    [verification] = await mailbox.wait_for(typed)
    return enrolled, customer, mailbox.link(verification)


async def terminate(temporal_env, tenant, journey_id: str) -> None:
    journey = await tenant.journey(journey_id)
    await temporal_env.client.get_workflow_handle(journey["workflow_id"]).terminate(
        reason="operator")


async def test_the_customer_is_told_the_request_ended_not_thanked(tenant, http, mailbox,
                                                                  temporal_env):
    enrolled, customer, link = await entered(tenant, http, mailbox)
    await terminate(temporal_env, tenant, enrolled["journey_id"])

    await customer.open(link)
    response = await customer.submit(link)
    assert "This request has ended" in response.text and "Thank you" not in response.text
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "cancelled" and journey["pending_email"] is not None
    assert (journey["history"][-1]["type"], journey["history"][-1]["detail"]) == (
        "cancelled", {"workflow": "terminated"})
    funnel = await tenant.ok("GET", f"/v1/campaigns/{journey['campaign_id']}/funnel")
    assert (funnel["finished"], funnel["total"]["cancelled"]) == (1, 1)

    # Nothing holds the contact's erasure back any more.
    done = await tenant.post(f"/v1/contacts/{enrolled['contact_id']}/anonymise", {})
    assert done.status_code == 200, done.text


async def test_erasing_the_contact_ends_its_lost_journey(tenant, http, mailbox, temporal_env):
    enrolled, _, _ = await entered(tenant, http, mailbox)
    contact = f"/v1/contacts/{enrolled['contact_id']}"
    # While the workflow runs, the open journey blocks the erasure.
    assert (await tenant.post(f"{contact}/anonymise", {})).status_code == 409
    await terminate(temporal_env, tenant, enrolled["journey_id"])
    deleted = await tenant.http.delete(contact, headers=tenant.auth)
    assert deleted.status_code == 204, deleted.text
