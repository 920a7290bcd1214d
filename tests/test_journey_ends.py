"""Every end of a journey reaches the client once, as it was first recorded: a journey cancelled
in the database only (its workflow never started or had ended) raises `journey.cancelled`, and a
workflow outliving such a cancellation changes nothing when it ends in turn, nor when the customer
answers it: it ends as the journey's record says."""

import uuid

from sqlalchemy import select

from api import withdrawals
from db.models import WebhookEvent
from db.session import transaction
from tests.helpers import Customer, on_the_page, unique_email
from tests.histories import save_history
from tests.test_lost_journeys import entered
from tests.test_mobile_journey import codes_sent, start, uuid_digits, wait_codes
from workflows.journey import JourneyWorkflow
from workflows.webhook_endpoint import EndpointDispatcher


async def cancelled_in_the_database(sessions, settings, temporal_env, journey_id: str) -> None:
    """Cancels the journey as a cancelled launch does those whose workflow it met closed or
    not yet started (`mark_cancelled`). Only a race brings it to a running workflow (one
    that started, or was reset in the Temporal UI, right after the launch looked): called
    directly, the workflow runs on past the cancellation."""
    async with transaction(sessions) as session:
        await withdrawals.mark_cancelled(
            session, EndpointDispatcher(temporal_env.client, settings),
            [uuid.UUID(journey_id)], withdrawals.LAUNCH_CANCELLED)


async def ends_as_recorded(tenant, temporal_env, sessions, journey_id: str,
                           history: str | None = None) -> set[str]:
    """Checks that the journey stays cancelled and its workflow ends as cancelled too (its
    history saved as `history`, if given); returns the types of the webhook events the
    journey raised."""
    journey = await tenant.journey(journey_id)
    handle = temporal_env.client.get_workflow_handle_for(JourneyWorkflow.run,
                                                         journey["workflow_id"])
    assert (await handle.result()).stage == "cancelled"
    if history:
        await save_history(handle, history)
    journey = await tenant.journey(journey_id)
    assert journey["stage"] == "cancelled"
    assert journey["history"][-1]["detail"] == {"by": "client", "reason": "launch_cancelled"}
    async with sessions() as session:
        return set(await session.scalars(select(WebhookEvent.type).where(
            WebhookEvent.key.startswith(journey_id))))


async def test_a_workflow_outliving_its_journeys_cancellation_does_not_end_it_again(
        tenant, sessions, settings, temporal_env, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled", "journey.expired"])
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT5S")
    address = unique_email("outlived")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    journey_id = enrolled["journey_id"]
    journey = await tenant.wait_for_stage(journey_id, "invited")
    # Its workflow runs on, and expires.
    await cancelled_in_the_database(sessions, settings, temporal_env, journey_id)

    [cancelled] = await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert (cancelled.payload["data"]["journey_id"], cancelled.payload["data"]["detail"]) == (
        journey_id, {"by": "client", "reason": "launch_cancelled"})
    # The workflow, told the journey ended before, ends as it: its state no longer says
    # expired.
    ended = await temporal_env.client.get_workflow_handle_for(
        JourneyWorkflow.run, journey["workflow_id"]).result()
    assert ended.stage == "cancelled"
    journey = await tenant.journey(journey_id)
    assert journey["stage"] == "cancelled"
    assert [e["type"] for e in journey["history"]][-1] == "cancelled"
    assert "expired" not in [e["type"] for e in journey["history"]]
    await tenant.wait_for_stage(journey_id, "cancelled")
    assert webhook_receiver.events(hook, "journey.expired") == []
    assert len(webhook_receiver.events(hook, "journey.cancelled")) == 1


async def test_a_confirmation_after_a_cancellation_in_the_database_verifies_nothing(
        tenant, http, mailbox, sessions, settings, temporal_env, webhook_receiver,
        record_histories):
    hook = await tenant.subscribe(webhook_receiver, ["journey.cancelled",
                                                     "contact.data_verified"])
    enrolled, customer, link = await entered(tenant, http, mailbox)
    await customer.open(link)  # the confirm button shown before the cancellation
    await cancelled_in_the_database(sessions, settings, temporal_env, enrolled["journey_id"])

    response = await customer.submit(link)
    assert "This request has ended" in response.text and "Thank you" not in response.text
    await webhook_receiver.wait_for(hook, "journey.cancelled")
    assert await ends_as_recorded(
        tenant, temporal_env, sessions, enrolled["journey_id"],
        "email_journey_confirmed_after_cancelled_in_the_database" if record_histories else None
    ) == {"contact.data_collected", "journey.cancelled"}
    assert "verified" not in [e["type"] for e in
                              (await tenant.journey(enrolled["journey_id"]))["history"]]
    assert webhook_receiver.events(hook, "contact.data_verified") == []


async def test_a_submission_after_a_cancellation_in_the_database_records_nothing(
        tenant, http, mailbox, sessions, settings, temporal_env):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("outlived"))
    await cancelled_in_the_database(sessions, settings, temporal_env, enrolled["journey_id"])

    typed = unique_email("typed")
    response = await customer.submit(page, email=typed)
    assert "This request has ended" in response.text and "Thank you" not in response.text
    assert await ends_as_recorded(tenant, temporal_env, sessions, enrolled["journey_id"]) == {
        "journey.cancelled"}
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["pending_email"] is None
    assert "data_entered" not in [e["type"] for e in journey["history"]]
    assert mailbox.to(typed) == []  # no link to confirm an address for a cancelled request


async def test_a_new_code_asked_for_after_a_cancellation_in_the_database_sends_none(
        tenant, http, mailbox, sessions, settings, temporal_env, record_histories):
    number = "+3165234" + uuid_digits()
    # No cooldown: "send again" reaches the sending of a code at once.
    enrolled, customer, page = await start(tenant, mailbox, http, number,
                                           verification={"code_resend_cooldown": "PT0S"})
    await wait_codes(settings, number, 1)
    await cancelled_in_the_database(sessions, settings, temporal_env, enrolled["journey_id"])

    await customer.submit(page + "/resend-code")  # on the code page left open
    assert "Dit verzoek is afgesloten" in customer.page  # it speaks Dutch
    assert 'id="code"' not in customer.page
    assert len(codes_sent(settings, number)) == 1
    assert (await tenant.journey(enrolled["journey_id"]))["stage"] == "cancelled"
    assert await ends_as_recorded(
        tenant, temporal_env, sessions, enrolled["journey_id"],
        "mobile_code_asked_after_cancelled_in_the_database" if record_histories else None
    ) == {"contact.data_collected", "journey.cancelled"}
    assert len(codes_sent(settings, number)) == 1


async def test_a_workflow_outliving_its_journeys_cancellation_ends_at_its_next_message(
        tenant, mailbox, sessions, settings, temporal_env, record_histories):
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT20S",
                                            reminders={"interval": "PT3S", "max_count": 1})
    address = unique_email("reminded")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    await mailbox.wait_for(address)  # the invitation
    await cancelled_in_the_database(sessions, settings, temporal_env, enrolled["journey_id"])

    # The reminder, skipped, tells the workflow: it ends then, not at its expiry.
    assert await ends_as_recorded(
        tenant, temporal_env, sessions, enrolled["journey_id"],
        "email_journey_reminded_after_cancelled_in_the_database" if record_histories else None
    ) == {"journey.cancelled"}
    handle = temporal_env.client.get_workflow_handle_for(
        JourneyWorkflow.run, (await tenant.journey(enrolled["journey_id"]))["workflow_id"])
    state = await handle.result()
    assert (await handle.describe()).close_time < state.deadline
    assert len(mailbox.to(address)) == 1


async def test_an_expired_journeys_page_speaks_of_details_only_if_some_were_entered(
        tenant, http, mailbox):
    campaign = await tenant.create_campaign(languages=["en"], consents=[], expires_after="PT4S")
    untouched, _, untouched_page = await on_the_page(tenant, http, mailbox, campaign,
                                                     unique_email("untouched"))
    typed, customer, typed_page = await on_the_page(tenant, http, mailbox, campaign,
                                                    unique_email("typed"))
    await customer.submit(typed_page, email=unique_email("new"))
    for enrolled in (untouched, typed):
        await tenant.wait_for_stage(enrolled["journey_id"], "expired")

    nothing = await Customer(http).open(untouched_page)
    assert nothing.status_code == 410 and "This request has ended" in nothing.text
    assert "Details you entered" not in nothing.text
    assert "If you want to update your details, please contact" in nothing.text
    something = await Customer(http).open(typed_page)
    assert "Details you entered but did not confirm will not be used." in something.text
