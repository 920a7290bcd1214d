"""Webhook delivery walked as a client runs it: endpoints over the API, events raised by real
journeys, a real HTTP receiver that fails, recovers, rotates secrets and stops retries."""

import base64
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from api.main import create_app
from core.vocabulary import CLIENT_ID
from tests.helpers import Tenant, eventually, unique_email
from tests.histories import save_history
from worker import configure_logging
from workflows.webhook_endpoint import WebhookEndpointWorkflow, endpoint_workflow_id

EXPIRED = "journey.expired"


async def expiring_journeys(tenant: Tenant, count: int) -> list[str]:
    """Journeys that expire a second after their invitation: the quickest real events."""
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], reminders={"interval": "PT1H", "max_count": 0},
        expires_after="PT1S")
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": f"e-{i}", "email": unique_email()} for i in range(count)))
    return [r["journey_id"] for r in enrolled["results"]]


async def deliveries(tenant: Tenant, hook: str, **params) -> list[dict]:
    return await tenant.ok("GET", f"/v1/webhook-endpoints/{tenant.endpoint_ids[hook]}/deliveries"
                           + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""))


async def test_receiver_down_then_back_gets_every_event_once(
    tenant, webhook_receiver, temporal_env, record_histories
):
    hook = await tenant.subscribe(webhook_receiver, [EXPIRED])
    endpoint_id = tenant.endpoint_ids[hook]
    webhook_receiver.failures[hook] = [503, 500, 502, 503]  # down for the first four attempts
    journeys = await expiring_journeys(tenant, 5)

    received = await webhook_receiver.wait_for(hook, EXPIRED, count=5, timeout=30)
    by_id = {d.id: d for d in received}
    assert len(by_id) == 5
    assert {d.payload["data"]["journey_id"] for d in by_id.values()} == set(journeys)
    # Per endpoint, every event carries its own place in the endpoint's sequence.
    assert sorted(int(d.headers["webhook-sequence"]) for d in by_id.values()) == [1, 2, 3, 4, 5]
    # Retried events kept their id: the failed requests were for the same five ids.
    assert set(webhook_receiver.requests[hook]) == set(by_id)
    assert len(webhook_receiver.requests[hook]) == 9

    # The log is written just after the receiver answers.
    async def logged() -> list[dict] | None:
        done = all(d["status"] == "delivered" for d in await deliveries(tenant, hook))
        return done and (await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/attempts"))[
            "items"]
    log = await eventually(logged, what="delivery log")
    assert sorted(a["status_code"] for a in log) == [204] * 5 + [500, 502, 503, 503]
    assert all(a["latency_ms"] >= 0 and a["event_type"] == EXPIRED for a in log)
    assert {a["delivery_status"] for a in log} == {"delivered"}
    endpoint = await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}")
    assert endpoint["last_success_at"] and not endpoint["failing"]

    # Deleting the endpoint ends its delivery workflow.
    await tenant.ok("DELETE", f"/v1/webhook-endpoints/{endpoint_id}", status=204)
    handle = temporal_env.client.get_workflow_handle_for(
        WebhookEndpointWorkflow.run, endpoint_workflow_id(endpoint_id))
    await handle.result()
    if record_histories:
        await save_history(handle, "webhook_endpoint_deleted")


async def test_410_stops_retries_of_that_event(tenant, webhook_receiver):
    hook = await tenant.subscribe(webhook_receiver, [EXPIRED])
    webhook_receiver.failures[hook] = [410]
    [first] = await expiring_journeys(tenant, 1)

    async def refused() -> list[dict]:
        return [d for d in await deliveries(tenant, hook) if d["status"] == "failed"]
    [failed] = await eventually(refused, what="410 recorded")
    assert failed["attempts"] == 1 and failed["last_status_code"] == 410
    assert failed["next_attempt_at"] is None

    # A later event goes through, and the refused one was never tried again meanwhile,
    # although the retry schedule would have tried it several times by now.
    [second] = await expiring_journeys(tenant, 1)
    [got] = await webhook_receiver.wait_for(hook, EXPIRED)
    assert got.payload["data"]["journey_id"] == second
    assert webhook_receiver.requests[hook].count(failed["event_id"]) == 1
    assert first not in {d.payload["data"]["journey_id"] for d in webhook_receiver.events(hook)}


async def test_failing_endpoint_is_disabled_and_the_client_told(tenant, webhook_receiver):
    started = datetime.now(UTC)
    bad = await tenant.subscribe(webhook_receiver, [EXPIRED])
    watcher = await tenant.subscribe(webhook_receiver, ["webhook_endpoint.disabled"])
    webhook_receiver.failures[bad] = [500] * 1000
    [journey] = await expiring_journeys(tenant, 1)

    [notice] = await webhook_receiver.wait_for(watcher, "webhook_endpoint.disabled", timeout=30)
    bad_id = tenant.endpoint_ids[bad]
    assert notice.payload["data"]["endpoint"]["id"] == bad_id
    assert notice.payload["data"]["last_status_code"] == 500
    endpoint = await tenant.ok("GET", f"/v1/webhook-endpoints/{bad_id}")
    assert endpoint["failing"] and not endpoint["enabled"] and endpoint["failing_since"]
    # The miniature schedule ran to its end (3 s; the dev server fires timers about 1 s late).
    log = (await tenant.ok("GET", f"/v1/webhook-endpoints/{bad_id}/attempts"))["items"]
    assert len(log) == len(webhook_receiver.requests[bad]) >= 3
    assert {a["status_code"] for a in log} == {500}
    [gave_up] = await deliveries(tenant, bad)
    assert gave_up["status"] == "failed"

    # The client fixes the receiver, enables the endpoint and replays what it missed.
    webhook_receiver.failures[bad] = []
    enabled = await tenant.ok("PATCH", f"/v1/webhook-endpoints/{bad_id}", {"enabled": True})
    assert enabled["enabled"] and not enabled["failing"]
    replayed = await tenant.ok("POST", f"/v1/webhook-endpoints/{bad_id}/replay", {
        "since": started.isoformat(), "until": datetime.now(UTC).isoformat()}, status=202)
    assert replayed == {"queued": 1}
    [got] = await webhook_receiver.wait_for(bad, EXPIRED)
    assert got.payload["data"]["journey_id"] == journey


async def test_replay_of_a_time_range_to_a_new_endpoint(tenant, webhook_receiver):
    first = await tenant.subscribe(webhook_receiver, [EXPIRED])
    early = await expiring_journeys(tenant, 2)
    await webhook_receiver.wait_for(first, EXPIRED, count=2)
    middle = datetime.now(UTC)
    late = await expiring_journeys(tenant, 1)
    await webhook_receiver.wait_for(first, EXPIRED, count=3)
    ids = {d.payload["data"]["journey_id"]: d.id for d in webhook_receiver.events(first)}

    # An endpoint added later gets exactly the range asked for, with the original event ids.
    second = await tenant.subscribe(webhook_receiver, [EXPIRED])
    result = await tenant.ok("POST", f"/v1/webhook-endpoints/{tenant.endpoint_ids[second]}/replay",
                             {"since": (middle - timedelta(hours=1)).isoformat(),
                              "until": middle.isoformat()}, status=202)
    assert result == {"queued": 2}
    got = await webhook_receiver.wait_for(second, EXPIRED, count=2)
    assert {d.id for d in got} == {ids[j] for j in early}
    assert late[0] not in {d.payload["data"]["journey_id"] for d in got}

    # Resending one event sends it again under the same id.
    [resent_id] = [ids[early[0]]]
    await tenant.ok("POST", f"/v1/webhook-endpoints/{tenant.endpoint_ids[second]}/events/"
                    f"{resent_id}/resend", status=202)
    again = await webhook_receiver.wait_for(second, EXPIRED, count=3)
    assert [d.id for d in again].count(resent_id) == 2
    # Not to an endpoint that does not subscribe to its type, as a replay would not.
    other = await tenant.subscribe(webhook_receiver, ["consent.changed"])
    refused = await tenant.http.post(f"/v1/webhook-endpoints/{tenant.endpoint_ids[other]}/events/"
                                     f"{resent_id}/resend", headers=tenant.auth)
    assert refused.status_code == 409, refused.text

    bad_range = await tenant.http.post(
        f"/v1/webhook-endpoints/{tenant.endpoint_ids[second]}/replay",
        json={"since": middle.isoformat(), "until": (middle - timedelta(1)).isoformat()},
        headers=tenant.auth)
    assert bad_range.status_code == 422
    assert bad_range.json()["error"]["fields"] == [{"field": "until",
                                                   "message": "must be after since"}]


async def test_a_replayed_event_the_endpoint_missed_is_ordered_by_its_timestamp(
        tenant, webhook_receiver):
    """An event recorded while the endpoint was disabled is numbered when a replay first queues
    it, after newer ones; its payload's timestamp places it where it was recorded."""
    hook = await tenant.subscribe(webhook_receiver, [EXPIRED])
    endpoint = f"/v1/webhook-endpoints/{tenant.endpoint_ids[hook]}"
    [first] = await expiring_journeys(tenant, 1)
    await webhook_receiver.wait_for(hook, EXPIRED)
    since = datetime.now(UTC)
    await tenant.ok("PATCH", endpoint, {"enabled": False})
    [missed] = await expiring_journeys(tenant, 1)

    async def recorded() -> bool:
        return (await tenant.journey(missed))["stage"] == "expired"
    await eventually(recorded, what="the missed event")
    await tenant.ok("PATCH", endpoint, {"enabled": True})
    [newer] = await expiring_journeys(tenant, 1)
    await webhook_receiver.wait_for(hook, EXPIRED, count=2)
    replayed = await tenant.ok("POST", f"{endpoint}/replay", {
        "since": since.isoformat(), "until": datetime.now(UTC).isoformat()}, status=202)
    # The newer event had been queued (it keeps its number); the missed one had not.
    assert replayed == {"queued": 2}
    got = {d.payload["data"]["journey_id"]: d
           for d in await webhook_receiver.wait_for(hook, EXPIRED, count=4)}
    sequence = {j: int(got[j].headers["webhook-sequence"]) for j in (first, missed, newer)}
    assert sequence == {first: 1, newer: 2, missed: 3}
    by_time = sorted(got, key=lambda j: datetime.fromisoformat(got[j].payload["timestamp"]))
    assert by_time == [first, missed, newer]


async def test_secret_rotation_signs_with_both_secrets_during_the_overlap(
    tenant, webhook_receiver
):
    hook = await tenant.subscribe(webhook_receiver, [EXPIRED])
    endpoint_id = tenant.endpoint_ids[hook]
    old = webhook_receiver.secrets[hook]
    rotated = await tenant.ok("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
                              {"overlap": "PT1H"})
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"]
    webhook_receiver.secrets[hook] = new
    await expiring_journeys(tenant, 1)
    [delivery] = await webhook_receiver.wait_for(hook, EXPIRED)
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(delivery.body, delivery.headers)

    # A rotation without overlap drops the previous secret at once.
    newest = (await tenant.ok("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
                              {"overlap": "PT0S"}))["secret"]
    webhook_receiver.secrets[hook] = newest
    await expiring_journeys(tenant, 1)
    later = (await webhook_receiver.wait_for(hook, EXPIRED, count=2))[-1]
    Webhook(newest).verify(later.body, later.headers)
    for secret in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(later.body, later.headers)
    assert not webhook_receiver.bad_signatures


async def test_another_clients_endpoints_and_events_are_not_found(
    tenant, other_tenant, webhook_receiver
):
    hook = await tenant.subscribe(webhook_receiver, [EXPIRED])
    endpoint_id = tenant.endpoint_ids[hook]
    await expiring_journeys(tenant, 1)
    [delivery] = await webhook_receiver.wait_for(hook, EXPIRED)
    theirs = await other_tenant.subscribe(webhook_receiver, [EXPIRED])
    their_endpoint = other_tenant.endpoint_ids[theirs]

    base = f"/v1/webhook-endpoints/{endpoint_id}"
    for method, path, body in [
        ("GET", base, None), ("PATCH", base, {"enabled": False}), ("DELETE", base, None),
        ("GET", f"{base}/attempts", None), ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/rotate-secret", {}),
        ("POST", f"{base}/replay", {"since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"}),
        ("POST", f"{base}/events/{delivery.id}/resend", None),
        # Their own endpoint, but our event.
        ("POST", f"/v1/webhook-endpoints/{their_endpoint}/events/{delivery.id}/resend", None),
    ]:
        response = await other_tenant.http.request(method, path, json=body, headers=other_tenant.auth)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    listed = await other_tenant.ok("GET", "/v1/webhook-endpoints")
    assert [e["id"] for e in listed] == [their_endpoint]
    assert (await tenant.ok("GET", base))["enabled"]


@pytest.fixture
async def strict_app(settings):
    """The app as production runs it: private and loopback webhook targets refused."""
    app = create_app(settings.model_copy(update={"webhook_allow_private_targets": False}))
    async with app.router.lifespan_context(app):
        yield app


async def test_endpoint_urls_to_private_addresses_are_refused(tenant, strict_app):
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        client = Tenant(id=tenant.id, name=tenant.name, key=tenant.key, http=http)
        for url in ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/",
                    "http://169.254.169.254/latest/meta-data", "http://[::1]/hook",
                    "http://[::ffff:192.168.0.1]/", "http://100.64.0.1/", "ftp://example.com/x",
                    "http://user:pw@93.184.216.34/"]:
            response = await client.http.post("/v1/webhook-endpoints", headers=client.auth,
                                              json={"url": url, "events": ["*"]})
            assert response.status_code == 422, (url, response.text)
            assert response.json()["error"]["fields"][0]["field"] == "url", url
        created = await client.ok("POST", "/v1/webhook-endpoints",
                                  {"url": "https://93.184.216.34/hook", "events": ["*"]}, status=201)
        moved = await client.http.patch(f"/v1/webhook-endpoints/{created['id']}",
                                        json={"url": "http://192.168.1.1/"}, headers=client.auth)
        assert moved.status_code == 422
        await client.ok("DELETE", f"/v1/webhook-endpoints/{created['id']}", status=204)



async def test_endpoint_workflows_carry_their_client(tenant, webhook_receiver, temporal_env):
    """An operator filters them by `ClientId` in the Temporal UI, as journeys and launches."""
    by_event = await tenant.subscribe(webhook_receiver, [EXPIRED])
    await expiring_journeys(tenant, 1)  # started by the recording activity's wake-up
    await webhook_receiver.wait_for(by_event, EXPIRED)
    by_api = await tenant.subscribe(webhook_receiver, [EXPIRED])
    path = f"/v1/webhook-endpoints/{tenant.endpoint_ids[by_api]}"
    for enabled in (False, True):  # enabled again, it is woken by the API
        await tenant.ok("PATCH", path, {"enabled": enabled})
    for hook in (by_event, by_api):
        handle = temporal_env.client.get_workflow_handle(
            endpoint_workflow_id(tenant.endpoint_ids[hook]))
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(CLIENT_ID) == str(tenant.id), hook


async def test_a_page_cursor_past_what_the_database_holds_is_a_field_error(tenant,
                                                                          webhook_receiver):
    base = f"/v1/webhook-endpoints/{tenant.endpoint_ids[await tenant.subscribe(webhook_receiver)]}"
    for path, name in ((f"{base}/attempts", "cursor"), (f"{base}/deliveries", "before_sequence")):
        response = await tenant.http.get(path, params={name: 2**31}, headers=tenant.auth)
        assert response.status_code == 422, (path, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [name]


async def test_a_change_names_what_it_changes_and_null_clears_only_the_description(tenant):
    """`events: null` was answered 200 and changed nothing: the client believed it had reset
    the endpoint to every event. Null clears the description only; the rest must be given."""
    created = await tenant.ok("POST", "/v1/webhook-endpoints", {
        "url": "https://hooks.example/changes", "events": ["journey.expired"],
        "description": "expiries"}, status=201)
    path = f"/v1/webhook-endpoints/{created['id']}"
    for field in ("url", "events", "enabled"):
        refused = await tenant.ok("PATCH", path, {field: None}, status=422)
        [error] = refused["error"]["fields"]
        assert error == {"field": field, "message": (
            f"{field} always has a value: give one, or leave it out to keep it")}
    changed = await tenant.ok("PATCH", path, {"events": ["*"], "description": None})
    assert (changed["events"], changed["description"], changed["url"]) == (
        ["*"], None, "https://hooks.example/changes")


async def test_the_worker_does_not_log_a_webhook_url_and_its_secret(tenant, webhook_receiver,
                                                                    caplog):
    """A receiver's URL may carry its secret (`?token=`, a secret path); httpx logged every
    request's full URL at INFO, which the worker runs at."""
    configure_logging()
    caplog.set_level(logging.INFO)
    name = "logged" + uuid.uuid4().hex[:6]
    created = await tenant.post("/v1/webhook-endpoints", {
        "url": webhook_receiver.url(name) + "?token=receiver-secret-42", "events": ["*"]})
    assert created.status_code == 201, created.text
    webhook_receiver.secrets[name] = created.json()["secret"]
    await tenant.ok("PATCH", "/v1/contact-settings", {"default_region": "BE"})
    await webhook_receiver.wait_for(name, "contact_settings.updated")
    assert not [r.getMessage() for r in caplog.records
                if "receiver-secret-42" in r.getMessage()]


async def test_an_endpoint_refusing_every_event_is_retried_then_disabled_and_told(
        tenant, http, webhook_receiver):
    """A receiver whose secret was pasted wrong refuses every event (401, as a failed
    signature check answers): the events are retried, the endpoint shows on the dashboard,
    then is disabled as failing with the client told; fixed and enabled, a replay delivers."""
    from tests.test_webhook_delivery import rename_campaigns
    started = datetime.now(UTC)
    hook = await tenant.subscribe(webhook_receiver, ["campaign.updated"])
    watcher = await tenant.subscribe(webhook_receiver, ["webhook_endpoint.disabled"])
    right_secret = webhook_receiver.secrets[hook]
    webhook_receiver.secrets[hook] = "whsec_" + base64.b64encode(b"pasted wrong" * 3).decode()
    await rename_campaigns(tenant, 1)
    endpoint_id = tenant.endpoint_ids[hook]

    async def retried() -> list[dict] | None:
        log = (await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}/attempts"))["items"]
        return log if len(log) >= 2 else None
    log = await eventually(retried, what="a refused event tried again")
    assert {a["status_code"] for a in log} == {401} and len({a["event_id"] for a in log}) == 1

    [notice] = await webhook_receiver.wait_for(watcher, "webhook_endpoint.disabled", timeout=30)
    assert notice.payload["data"]["endpoint"]["id"] == endpoint_id
    assert notice.payload["data"]["last_status_code"] == 401
    endpoint = await tenant.ok("GET", f"/v1/webhook-endpoints/{endpoint_id}")
    assert endpoint["failing"] and not endpoint["enabled"]
    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)
    page = (await http.get(link["url"].removeprefix("http://testserver"))).text
    assert "Failing since" in page and webhook_receiver.url(hook) in page

    webhook_receiver.secrets[hook] = right_secret
    await tenant.ok("PATCH", f"/v1/webhook-endpoints/{endpoint_id}", {"enabled": True})
    await tenant.ok("POST", f"/v1/webhook-endpoints/{endpoint_id}/replay", {
        "since": started.isoformat(), "until": datetime.now(UTC).isoformat()}, status=202)
    [got] = await webhook_receiver.wait_for(hook, "campaign.updated")
    assert got.id == log[0]["event_id"]


def readme_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The `verify` function of README's *Verifying a webhook*, as a client would copy it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("**Verifying a webhook.**", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)
    return namespace["verify"]


async def test_the_readme_recipe_verifies_a_delivered_webhook(tenant, webhook_receiver):
    verify = readme_verify()
    from tests.test_webhook_delivery import rename_campaigns
    hook = await tenant.subscribe(webhook_receiver, ["campaign.updated"])
    secret = webhook_receiver.secrets[hook]
    await rename_campaigns(tenant, 1)
    [got] = await webhook_receiver.wait_for(hook, "campaign.updated")
    headers = {name.lower(): value for name, value in got.headers.items()}
    assert verify(secret, headers, got.body)

    # During a rotation either secret verifies one of the two signatures.
    new = (await tenant.ok("POST", f"/v1/webhook-endpoints/{tenant.endpoint_ids[hook]}/"
                           "rotate-secret", {"overlap": "PT1H"}))["secret"]
    webhook_receiver.secrets[hook] = new
    await rename_campaigns(tenant, 1)
    rotated = (await webhook_receiver.wait_for(hook, "campaign.updated", count=2))[-1]
    rotated_headers = {name.lower(): value for name, value in rotated.headers.items()}
    assert verify(secret, rotated_headers, rotated.body)
    assert verify(new, rotated_headers, rotated.body)

    # A changed body, another secret, or a request replayed 10 minutes later is refused.
    assert not verify(secret, headers, got.body.replace(b"}", b" }", 1))
    assert not verify("whsec_" + base64.b64encode(b"x" * 24).decode(), headers, got.body)
    old = str(int(headers["webhook-timestamp"]) - 600)
    resigned = Webhook(secret).sign(headers["webhook-id"], datetime.fromtimestamp(int(old), UTC),
                                    got.body.decode())
    assert not verify(secret, {**headers, "webhook-timestamp": old,
                               "webhook-signature": resigned}, got.body)
