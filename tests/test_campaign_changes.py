"""Changing a campaign after it started, as a client does it over the API: settings merged into
the campaign and checked as on creation, journeys started after the change follow the new
settings while running ones keep theirs, every change kept with who made it and announced by
webhook; the list of campaigns, paginated and filtered by status; and a create sent again with
its Idempotency-Key."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.journey_records import JourneyRecords
from core.contracts import ConsentDecision, RecordSubmissionInput, SubmitDataInput
from tests.helpers import Customer, Tenant, WebhookReceiver, on_the_page, unique_email
from workflows.webhook_endpoint import EndpointDispatcher


async def enrolled_journey(tenant: Tenant, campaign_id: str) -> str:
    answer = await tenant.enrol(campaign_id, {"external_id": f"crm-{uuid.uuid4().hex[:8]}",
                                              "email": unique_email()})
    return answer["results"][0]["journey_id"]


async def patch(tenant: Tenant, campaign_id: str, body: dict[str, Any], status: int = 200) -> Any:
    return await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", body, status)


def refused_fields(answer: dict[str, Any]) -> set[str]:
    return {f["field"] for f in answer["error"]["fields"]}


async def test_settings_change_applies_to_journeys_started_after_it(
        tenant: Tenant, webhook_receiver: WebhookReceiver):
    hook = await tenant.subscribe(webhook_receiver, ["campaign.updated"])
    campaign = await tenant.create_campaign(expires_after="P1D",
                                            reminders={"interval": "PT1H", "max_count": 2})
    before = await enrolled_journey(tenant, campaign["id"])
    await tenant.wait_for_stage(before, "invited")

    changed = await patch(tenant, campaign["id"], {
        "name": "Email check, second wave", "expires_after": "PT3S",
        "reminders": {"max_count": 0}, "incentive_text": "Win a bike"})

    assert changed["name"] == "Email check, second wave"
    # Merged: what the patch leaves out stays as it was.
    assert changed["spec"]["reminders"] == {"interval": "PT1H", "max_count": 0}
    assert changed["spec"]["consents"] == campaign["spec"]["consents"]
    assert changed["spec"]["incentive_text"] == "Win a bike"
    assert datetime.fromisoformat(changed["updated_at"]) > datetime.fromisoformat(
        campaign["updated_at"])
    assert (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}")) == changed

    after = await enrolled_journey(tenant, campaign["id"])
    await tenant.wait_for_stage(after, "expired")
    # Started with a day to answer, the earlier journey keeps it.
    assert (await tenant.journey(before))["stage"] == "invited"

    [change] = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/changes"))["items"]
    assert change["actor"]["type"] == "api_key"
    assert change["changes"] == {
        "expires_after": {"old": "P1D", "new": "PT3S"},
        "incentive_text": {"old": None, "new": "Win a bike"},
        "name": {"old": "Email check", "new": "Email check, second wave"},
        "reminders": {"old": {"interval": "PT1H", "max_count": 2},
                      "new": {"interval": "PT1H", "max_count": 0}}}
    [event] = await webhook_receiver.wait_for(hook, "campaign.updated")
    assert event.payload["data"]["campaign"]["id"] == campaign["id"]
    assert event.payload["data"]["id"] == change["id"]
    assert event.payload["data"]["changes"] == change["changes"]

    # `null` restores the default; a change that changes nothing is not kept.
    removed = await patch(tenant, campaign["id"], {"incentive_text": None, "kind":
                                                   "data_collection"})
    assert removed["spec"]["incentive_text"] is None
    await patch(tenant, campaign["id"], {"name": "Email check, second wave"})
    changes = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/changes"))["items"]
    assert [list(c["changes"]) for c in changes] == [
        ["expires_after", "incentive_text", "name", "reminders"], ["incentive_text"]]


async def test_a_changed_consent_text_is_shown_from_then_on_and_the_one_answered_recorded(
        tenant: Tenant, http, mailbox):
    campaign = await tenant.create_campaign()
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    assert "I agree to receive service emails." in customer.page
    [terms, newsletter] = campaign["spec"]["consents"]
    terms["texts"]["en"] = {"version": "2026-2", "text": "I agree to service emails by post."}
    changed = await patch(tenant, campaign["id"], {"consents": [terms, newsletter]})
    assert changed["spec"]["consents"][0]["texts"]["en"]["version"] == "2026-2"

    # Answered on the page shown before the change: the ledger holds the words shown.
    await customer.submit(page, email=address, consent=["terms"])
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert [(e["purpose"], e["legal_text"]["version"], e["legal_text"]["text"])
            for e in ledger if e["granted"]] == [
        ("service-communication", "2026-1", "I agree to receive service emails.")]
    # The journey, still open, shows the new words from then on.
    again = Customer(http)
    await again.open(page)
    assert "I agree to service emails by post." in again.page


async def test_a_consent_taken_out_as_a_form_is_posted_does_not_stop_the_journey(
        tenant: Tenant, sessions, settings, temporal_env):
    campaign = await tenant.create_campaign()
    address = unique_email()
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": address,
                                                      "email": address}))["results"]
    [terms, _] = campaign["spec"]["consents"]
    await patch(tenant, campaign["id"], {"consents": [terms]})
    # The page built the decisions before the change; the journey records them after it.
    records = JourneyRecords(sessions, settings, EndpointDispatcher(temporal_env.client, settings),
                             temporal_env.client)
    await ActivityEnvironment().run(records.record_submission, RecordSubmissionInput(
        journey_id=enrolled["journey_id"], step="submission-1", submission=SubmitDataInput(
            email=address, given_at=datetime.now(UTC), ip="203.0.113.7", user_agent="test",
            language="en", consents=[ConsentDecision(key="terms", granted=True),
                                     ConsentDecision(key="newsletter", granted=True)])))
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert [e["purpose"] for e in ledger] == ["service-communication"]


async def test_changes_that_cannot_be_honoured_are_refused_by_field(tenant: Tenant):
    campaign = await tenant.create_campaign()
    for body, field in (({"kind": "reconsent"}, "kind"), ({"mode": "verify_existing"}, "mode"),
                        ({"payments": True}, "payments"), ({"collect": ["mobile"]}, "collect"),
                        ({"recurrence": {"every": "P30D"}}, "recurrence"),
                        ({"default_language": "de"}, "default_language"),
                        ({"languages": ["en", "de"]}, "consents"),
                        ({"expires_after": 30}, "expires_after"),
                        ({"reminders": {"interval": "-P1D"}}, "reminders.interval"),
                        ({"channel_plan": [{"channel": "fax"}]}, "channel_plan[0].channel"),
                        ({"consents": [{"key": "x", "purpose": "nope", "channel": "email",
                                        "texts": {"en": {"version": "1", "text": "T"},
                                                  "nl": {"version": "1", "text": "T"}}}]},
                         "consents[0].purpose"),
                        ({"branding": {"primary_colour": "#ffff00"}}, "branding.primary_colour"),
                        ({"status": "gone"}, "status"), ({"colour": "red"}, "colour")):
        answer = await patch(tenant, campaign["id"], body, 422)
        assert refused_fields(answer) == {field}, (body, answer)
    assert "create a new campaign" in (await patch(
        tenant, campaign["id"], {"mode": "verify_existing"}, 422))["error"]["fields"][0]["message"]
    unchanged = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}")
    assert unchanged == campaign
    assert (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/changes"))["items"] == []


async def test_changes_made_at_the_same_moment_each_keep_their_setting(tenant: Tenant):
    """Colleagues changing different settings at once: each patch is merged into what the
    others stored, so none undoes another, and each is in the changes log."""
    campaign = await tenant.create_campaign()
    settings = {"name": "Email check, autumn", "incentive_text": "Win a bike",
                "expires_after": "P2D", "verification_link_ttl": "P3D",
                "reminders": {"interval": "PT1H", "max_count": 1}, "send_confirmation": True,
                "default_language": "nl",
                "messages": {"invitation": {"en": {"subject": "Please check your email"}}}}
    answers = await asyncio.gather(*(
        tenant.http.patch(f"/v1/campaigns/{campaign['id']}", headers=tenant.auth,
                          json={key: value}) for key, value in settings.items()))
    assert [a.status_code for a in answers] == [200] * len(settings), [a.text for a in answers]

    changed = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}")
    assert changed["name"] == settings["name"]
    assert {key: changed["spec"][key] for key in settings} == settings
    changes = (await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/changes"))["items"]
    assert sorted(key for c in changes for key in c["changes"]) == sorted(settings)
    assert {key: c["changes"][key]["new"] for c in changes for key in c["changes"]} == settings


async def test_campaign_list_is_paginated_and_filtered_by_status(tenant: Tenant):
    ids = [(await tenant.create_campaign(name=f"Wave {i}"))["id"] for i in range(3)]
    await patch(tenant, ids[1], {"status": "archived"})

    first = await tenant.ok("GET", "/v1/campaigns?limit=2")
    assert [c["id"] for c in first["items"]] == ids[:2] and first["next_cursor"]
    rest = await tenant.ok("GET", f"/v1/campaigns?limit=2&cursor={first['next_cursor']}")
    assert [c["id"] for c in rest["items"]] == ids[2:] and rest["next_cursor"] is None

    archived = await tenant.ok("GET", "/v1/campaigns?status=archived")
    assert [c["id"] for c in archived["items"]] == [ids[1]]
    active = await tenant.ok("GET", "/v1/campaigns?status=active")
    assert [c["id"] for c in active["items"]] == [ids[0], ids[2]]

    for field, value in (("status", "gone"), ("limit", 0), ("cursor", uuid.uuid4())):
        answer = (await tenant.get("/v1/campaigns", **{field: value})).json()
        assert refused_fields(answer) == {field}, (field, answer)


async def test_a_campaign_created_again_with_its_idempotency_key_is_the_one_created(
        tenant: Tenant, other_tenant: Tenant):
    """A client retrying a create whose answer it lost gets the campaign, not a second one."""
    body = {"name": "Retried", "languages": ["en"], "consents": [], "expires_after": "P1D"}
    key = f"create-{uuid.uuid4().hex[:8]}"

    async def create(as_: Tenant, campaign: dict[str, Any], key: str | None = key) -> Any:
        return await as_.http.post("/v1/campaigns", json=campaign, headers={
            **as_.auth, **({"Idempotency-Key": key} if key is not None else {})})

    first = await create(tenant, body)
    assert first.status_code == 201, first.text
    # Sent again, and sent several times at once, as a client's retries may be.
    answers = [await create(tenant, body), *await asyncio.gather(
        *(create(tenant, body, key="at-once") for _ in range(4)))]
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert answers[0].json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert answers[0].headers["Idempotent-Replayed"] == "true"
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers[1:]) == 3
    assert len({a.json()["id"] for a in answers[1:]}) == 1
    # The same campaign spelt otherwise (a default written out) is the same request.
    assert (await create(tenant, {**body, "mode": "collect"})).json()["id"] == \
        first.json()["id"]
    names = [c["name"] for c in (await tenant.ok("GET", "/v1/campaigns"))["items"]]
    assert names == ["Retried", "Retried"]

    # Another campaign with the key is the client's bug, not a retry to answer as the first.
    other = await create(tenant, {**body, "name": "Another"})
    assert other.status_code == 409, other.text
    assert "Idempotency-Key" in other.json()["error"]["message"]
    # Keys are the client's own: another client's same key creates its campaign.
    theirs = await create(other_tenant, body)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    # Without a key every create is a new campaign; an empty key is refused.
    assert (await create(tenant, body, key=None)).json()["id"] != first.json()["id"]
    empty = await create(tenant, body, key="")
    assert empty.status_code == 422 and refused_fields(empty.json()) == {"Idempotency-Key"}


async def test_a_campaign_create_retried_after_a_change_is_answered_as_the_first_was(tenant):
    """The retry of a create whose answer was lost is given that answer: the campaign as it
    was created, not as it was changed or archived since."""
    body = {"name": "Retried", "languages": ["en"], "consents": [], "expires_after": "P1D"}
    headers = {**tenant.auth, "Idempotency-Key": f"create-{uuid.uuid4().hex[:8]}"}
    first = await tenant.http.post("/v1/campaigns", json=body, headers=headers)
    assert first.status_code == 201, first.text
    campaign_id = first.json()["id"]
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign_id}", {"name": "Renamed",
                                                              "status": "archived"})
    again = await tenant.http.post("/v1/campaigns", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json(), again.text
    assert (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}"))["name"] == "Renamed"


DATA_PROCESSING_FORM = {"key": "gdpr", "purpose": "data-processing", "channel": "any",
                        "mandatory": True, "texts": {"en": {"text": "We keep your data.",
                                                            "version": "1"}}}
# A campaign of each shape a client may create: settings stored beside others (defaults, or
# those a shape leaves out) must not turn a later change into a refusal.
SHAPES = {
    "plain": {"reminders": {"interval": "P2D", "max_count": 1}},
    "channel plan": {"channel_plan": [{"channel": "letter"}, {"channel": "email", "after": "P3D"},
                                      {"channel": "sms", "after": "P5D", "max": 2}]},
    "payments": {"payments": True, "channel_plan": [{"channel": "sms"}]},
    "mobile and email": {"collect": ["email", "mobile"], "languages": ["en"], "consents": [],
                         "send_confirmation": True},
    "verify existing": {"mode": "verify_existing", "languages": ["en"], "consents": []},
    "worded and branded": {"incentive_text": "Win a bike", "branding": {
        "primary_colour": "#1d4ed8"}, "messages": {"sms_invitation": {"en": {"text": "Hi!"}}}},
    "reconsent": {"kind": "reconsent", "languages": ["en"], "consents": [DATA_PROCESSING_FORM]},
}


async def test_a_rename_leaves_every_other_setting_of_any_campaign_as_it_was(tenant: Tenant):
    """A change of the name alone is accepted, whatever the campaign's shape, and changes
    nothing else of it."""
    await tenant.ensure_purpose("data-processing", "data_processing")
    for shape, settings in SHAPES.items():
        created = await tenant.create_campaign(name=shape, **settings)
        renamed = await tenant.http.patch(f"/v1/campaigns/{created['id']}", headers=tenant.auth,
                                          json={"name": f"{shape}, renamed"})
        assert renamed.status_code == 200, (shape, renamed.text)
        spec = renamed.json()["spec"]
        assert {**spec, "name": shape} == created["spec"], shape


async def test_a_box_given_to_another_consent_while_the_form_is_open_records_nothing(
        tenant: Tenant, http, mailbox):
    """The client gives the key of a box the page showed to another purpose and channel while
    the customer fills in the form: their tick answered the words shown, not the new ones.
    It was recorded as a grant of the new purpose under its new text, never shown."""
    await tenant.ensure_purpose("sales-calls")
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    [terms, newsletter] = campaign["spec"]["consents"]
    newsletter = {**newsletter, "purpose": "sales-calls", "channel": "phone",
                  "texts": {"en": {"text": "You may call me with offers.", "version": "1"}}}
    await patch(tenant, campaign["id"], {"consents": [terms, newsletter]})
    answer = await customer.submit(page, email=address, consent=["terms", "newsletter"])
    assert answer.status_code == 200, answer.text
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert [(e["purpose"], e["granted"]) for e in ledger] == [("service-communication", True)]
    # The next page asks the new question.
    await customer.open(page)
    assert "You may call me with offers." in customer.page
    assert customer.ticked("consent") == ["terms"]


async def test_a_mandatory_box_given_to_another_consent_is_asked_again(
        tenant: Tenant, http, mailbox):
    await tenant.ensure_purpose("service-letters", "service")
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    [terms, newsletter] = campaign["spec"]["consents"]
    terms = {**terms, "purpose": "service-letters", "channel": "letter",
             "texts": {"en": {"text": "I agree to service letters.", "version": "1"}}}
    await patch(tenant, campaign["id"], {"consents": [terms, newsletter]})
    answer = await customer.submit(page, email=address, consent=["terms"])
    assert answer.status_code == 422, answer.text
    assert "I agree to service letters." in customer.page
    assert customer.ticked("consent") == []
    assert 'id="consent-terms-error"' in customer.page
    assert (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json() == []
    # Ticked on the page that showed it, it is recorded.
    await customer.submit(page, email=address, consent=["terms"])
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert [(e["purpose"], e["channel"], e["granted"], e["legal_text"]["text"])
            for e in ledger if e["granted"]] == [
        ("service-letters", "letter", True, "I agree to service letters.")]


async def test_a_box_given_to_another_consent_as_the_form_is_posted_records_nothing(
        tenant: Tenant, http, mailbox, sessions, settings, temporal_env):
    """The change lands between the page's post and the journey's record of it."""
    await tenant.ensure_purpose("sales-calls")
    campaign = await tenant.create_campaign(languages=["en"])
    address = unique_email()
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, address)
    shown = customer.hidden_fields()
    [terms, newsletter] = campaign["spec"]["consents"]
    newsletter = {**newsletter, "purpose": "sales-calls", "channel": "phone",
                  "texts": {"en": {"text": "You may call me with offers.", "version": "1"}}}
    await patch(tenant, campaign["id"], {"consents": [terms, newsletter]})
    records = JourneyRecords(sessions, settings, EndpointDispatcher(temporal_env.client, settings),
                             temporal_env.client)
    await ActivityEnvironment().run(records.record_submission, RecordSubmissionInput(
        journey_id=enrolled["journey_id"], step="submission-1", submission=SubmitDataInput(
            email=address, given_at=datetime.now(UTC), ip="203.0.113.7", user_agent="test",
            language="en", consents=[
                ConsentDecision(key=key, granted=True, display_id=shown[f"display-{key}"],
                                shown=False) for key in ("terms", "newsletter")])))
    ledger = (await tenant.get(f"/v1/contacts/{enrolled['contact_id']}/consents")).json()
    assert [(e["purpose"], e["granted"]) for e in ledger] == [("service-communication", True)]


async def test_a_campaign_asks_each_purpose_and_channel_once(tenant: Tenant):
    """Two boxes for the newsletter by email ("monthly", "weekly"): ticking one granted and
    declined it at the same moment, the order of the boxes deciding which stood."""
    await tenant.ensure_purpose("newsletter")
    texts = {"en": {"text": "Send me the weekly deals.", "version": "w1"}}
    weekly = {"key": "weekly", "purpose": "newsletter", "channel": "email", "texts": texts}
    body = {"name": "Twice", "languages": ["en"], "consents": [
        {**weekly, "key": "monthly",
         "texts": {"en": {"text": "Send me the monthly newsletter.", "version": "m1"}}}, weekly]}
    refused = await tenant.post("/v1/campaigns", body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["fields"] == [{"field": "consents[1]", "message": (
        "purpose newsletter by email is asked by box 'monthly' already: a campaign asks each "
        "purpose and channel once")}]
    campaign = await tenant.create_campaign(languages=["en"])
    answer = await patch(tenant, campaign["id"], {
        "consents": [*campaign["spec"]["consents"], weekly]}, 422)
    assert refused_fields(answer) == {"consents[2]"}
    # Another channel of the same purpose is another question.
    await patch(tenant, campaign["id"], {
        "consents": [*campaign["spec"]["consents"], {**weekly, "channel": "sms"}]})


async def test_switching_confirmations_off_keeps_the_wording_of_journeys_that_still_send_them(
        tenant: Tenant, http, mailbox):
    """`send_confirmation` is a running journey's input: switched off, the journeys started
    with it still thank their customers, so the campaign keeps the client's wording for them
    (and lets it be changed) as long as one is open; once none is, wording nobody reads is
    refused again."""
    thanks = {"en": {"subject": "Thanks from the Acme team", "text": "We write to you here."}}
    campaign = await tenant.create_campaign(languages=["en"], consents=[], send_confirmation=True,
                                            messages={"confirmation": thanks})
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign, unique_email())
    off = await patch(tenant, campaign["id"], {"send_confirmation": False})
    assert off["spec"]["send_confirmation"] is False
    assert off["spec"]["messages"]["confirmation"] == thanks
    reworded = {"en": {"subject": "Thanks again from Acme", "text": "All set."}}
    await patch(tenant, campaign["id"], {"messages": {"confirmation": reworded}})

    typed = unique_email("typed")
    await customer.submit(page, email=typed)
    [verification] = await mailbox.wait_for(typed)
    confirm = Customer(http)
    await confirm.open(mailbox.link(verification))
    await confirm.submit(mailbox.link(verification))
    await tenant.wait_for_stage(enrolled["journey_id"], "verified")
    [_, confirmation] = await mailbox.wait_for(typed, count=2)
    assert confirmation.subject == "Thanks again from Acme"

    # A journey started since sends none: the wording is nobody's to read any more.
    await enrolled_journey(tenant, campaign["id"])
    answer = await patch(tenant, campaign["id"], {"messages": {"confirmation": thanks}}, 422)
    assert refused_fields(answer) == {"messages.confirmation"}
