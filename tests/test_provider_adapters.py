"""SMS and print provider adapters: the local outboxes on disk, and the HTTP adapters against a
real provider API served over HTTP (success, permanent 4xx, retryable 5xx/timeouts, answers
that blame our installation), also as journeys meet them."""

import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr
from sqlalchemy import select

from core.settings import Settings
from db.models import ContactAddress, ContactPoint
from messaging.address import PostalAddress
from messaging.letter_pdf import Branding
from messaging.letters import (
    HttpLetterSender,
    LetterRequest,
    OutboxLetterSender,
    compose_letter,
    make_letter_sender,
)
from messaging.local_outbox import outbox_id, read_records
from messaging.provider_http import (
    DeliveryFailed,
    PermanentDeliveryFailure,
    ProviderMisconfigured,
    RetryableDeliveryFailure,
)
from messaging.sms import HttpSmsSender, OutboxSmsSender, OutgoingSms, make_sms_sender
from stack import free_port
from tests.helpers import AppServer, MessagingProvider, eventually, own_api
from tests.test_channel_plans import ADDRESS, contact, enrol, mobile_number
from worker import running_worker

SMS = OutgoingSms(to="+31612345678", sender="Acme", text="Acme asks you to check your details: "
                  "https://x.test/c/tok €", idempotency_key="journey-1/sms-1")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def provider_settings(provider: MessagingProvider, **overrides) -> Settings:
    return Settings(**{
        "sms_adapter": "http", "sms_http_url": provider.url("/sms"),
        "sms_http_token": provider.token, "letter_adapter": "http",
        "letter_http_url": provider.url("/letters"), "letter_http_token": provider.token,
        **overrides})


def letter(key: str = "journey-1/letter-1"):
    return compose_letter(LetterRequest(
        template="invitation", language="nl",
        context={"client_name": "Acme", "first_name": "Eva", "last_name": "de Vries",
                 "link": "https://x.test/c/tok",
                 "expires_at": datetime(2026, 12, 24, tzinfo=UTC), "incentive": None},
        branding=Branding(name="Acme"),
        address=PostalAddress(recipient="Eva de Vries", street_lines=["Dorpsstraat 1"],
                              postal_code="1234 AB", city="Delft", country="NL"),
        sender_country="NL", link="https://x.test/c/tok", short_link="x.test/s/ABC",
        date=date(2026, 11, 25), idempotency_key=key,
    ), Settings())


# --- HTTP SMS ------------------------------------------------------------------------------


async def test_http_sms_is_posted_as_json_with_its_length(provider, http):
    sender = make_sms_sender(provider_settings(provider), http)
    assert isinstance(sender, HttpSmsSender)
    receipt = await sender.send(SMS)
    assert receipt.provider_message_id == "prov-1"
    (request,) = provider.received
    assert request.json == {"to": "+31612345678", "from": "Acme", "text": SMS.text,
                            "reference": request.headers["idempotency-key"],
                            "encoding": "GSM-7", "segments": 1}
    assert receipt.length.units == len(SMS.text) + 1  # the euro sign takes two septets


async def test_provider_without_an_id_gets_our_reference(provider, http):
    provider.silent = True
    receipt = await make_sms_sender(provider_settings(provider), http).send(SMS)
    assert receipt.provider_message_id == outbox_id(SMS.idempotency_key)
    assert len(provider.received) == 1


@pytest.mark.parametrize("status", [400, 410, 422])
async def test_http_sms_refused_for_the_message_is_permanent(provider, http, status):
    provider.failures = [status]
    with pytest.raises(PermanentDeliveryFailure, match=f"HTTP {status}"):
        await make_sms_sender(provider_settings(provider), http).send(SMS)
    assert provider.received == []


@pytest.mark.parametrize(("status", "setting"), [
    (401, "SMS_HTTP_TOKEN"), (403, "SMS_HTTP_TOKEN"), (404, "SMS_HTTP_URL"),
    (405, "SMS_HTTP_URL"), (407, "proxy"), (413, "SMS_HTTP_URL"), (415, "SMS_HTTP_URL"),
    (301, "SMS_HTTP_URL"), (302, "SMS_HTTP_URL"), (307, "SMS_HTTP_URL"), (308, "SMS_HTTP_URL")])
async def test_an_answer_blaming_our_installation_is_retried_and_names_the_setting(
        provider, http, caplog, status, setting):
    """A stale token or a wrong URL says nothing of the recipient: no permanent failure (which
    a journey records as the customer's bounce), but a retry, logged as an error telling the
    operator what to fix; once fixed, the same message goes."""
    sender = make_sms_sender(provider_settings(provider), http)
    provider.failures = [status]
    with caplog.at_level(logging.ERROR, logger="messaging.provider_http"), \
            pytest.raises(ProviderMisconfigured) as err:
        await sender.send(SMS)
    assert not isinstance(err.value, PermanentDeliveryFailure)
    assert isinstance(err.value, RetryableDeliveryFailure)
    assert setting in str(err.value) and f"HTTP {status}" in str(err.value)
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert setting in logged.getMessage() and "retried until it is fixed" in logged.getMessage()
    assert (await sender.send(SMS)).provider_message_id == "prov-1"


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_http_sms_5xx_is_retryable_and_the_retry_is_recognisable(provider, http, status):
    sender = make_sms_sender(provider_settings(provider), http)
    provider.failures = [status]
    with pytest.raises(RetryableDeliveryFailure, match=f"HTTP {status}"):
        await sender.send(SMS)
    receipt = await sender.send(SMS)
    assert receipt.provider_message_id == "prov-1" and len(provider.received) == 1
    # The same idempotency key both times, so a provider can drop a duplicate.
    assert [a["idempotency-key"] for a in provider.attempts] == [outbox_id(SMS.idempotency_key)] * 2


async def test_wrong_token_is_retried_and_the_token_is_never_in_the_error(provider, http):
    settings = provider_settings(provider, sms_http_token="wrong-secret-token")
    with pytest.raises(ProviderMisconfigured) as err:
        await make_sms_sender(settings, http).send(SMS)
    assert "HTTP 401" in str(err.value) and "wrong-secret-token" not in str(err.value)
    assert "check SMS_HTTP_TOKEN" in str(err.value)
    assert "wrong-secret-token" not in repr(settings)


async def refusal_of(app: FastAPI, http: httpx.AsyncClient) -> str:
    """The failure our SMS sender makes of what a provider (`app`, serving POST /sms) answers."""
    server = AppServer(app=app)
    await server.start()
    try:
        settings = Settings(sms_adapter="http", sms_http_url=f"http://127.0.0.1:{server.port}/sms",
                            sms_http_token="live_sk_SECRET123")
        with pytest.raises(DeliveryFailed) as err:
            await make_sms_sender(settings, http).send(SMS)
    finally:
        await server.stop()
    return str(err.value)


@pytest.mark.parametrize("status", [400, 401])
async def test_a_provider_echoing_our_token_does_not_put_it_in_the_error(http, status):
    """Some APIs quote the credentials they were given; the answer's excerpt becomes a bounce
    reason (journey history, bounces API, `message.bounced`), which clients read."""
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        return Response(json.dumps({"error": f"bad request for {request.headers['authorization']}"
                                             f" (token={request.headers['authorization'][7:]},"
                                             " other: Basic dXNlcjpwYXNz)"}), status)
    reason = await refusal_of(app, http)
    assert "SECRET123" not in reason and "dXNlcjpwYXNz" not in reason
    assert f"HTTP {status}" in reason and "Bearer [redacted]" in reason


@pytest.mark.parametrize("status", [400, 503])
async def test_a_provider_echoing_the_number_does_not_put_it_in_the_error(http, status):
    """Some APIs quote the number they could not reach: the excerpt became the bounce reason
    clients read and, retried, the failure an operator reads in the Temporal UI, which the
    contact's erasure does not reach. It says `recipient` instead, with or without the plus."""
    app = FastAPI()

    @app.post("/sms")
    async def sms(request: Request) -> Response:
        to = (await request.json())["to"]
        return Response(json.dumps({"error": f"cannot reach {to}",
                                    "detail": f"msisdn {to.lstrip('+')} unknown"}), status)
    reason = await refusal_of(app, http)
    assert "612345678" not in reason, reason
    assert "cannot reach recipient" in reason and "msisdn recipient unknown" in reason, reason


async def test_http_sms_timeout_is_retryable(provider, http):
    provider.stall_seconds = 0.5
    settings = provider_settings(provider, sms_timeout_seconds=0.1)
    with pytest.raises(RetryableDeliveryFailure, match="did not answer within 0.1s"):
        await make_sms_sender(settings, http).send(SMS)


async def test_unreachable_provider_is_retryable(http):
    settings = Settings(sms_adapter="http", sms_http_url=f"http://127.0.0.1:{free_port()}/sms",
                        sms_http_token="t")
    with pytest.raises(RetryableDeliveryFailure, match="provider unreachable"):
        await make_sms_sender(settings, http).send(SMS)


@pytest.mark.parametrize(("sms", "message"), [
    (OutgoingSms(to="+31612345678", sender="A", text="a" * 613, idempotency_key="k"),
     "needs 5 GSM-7 segments; at most 4 allowed"),
    (OutgoingSms(to="+31612345678", sender="A", text="😀" * 135, idempotency_key="k"),
     "needs 5 UCS-2 segments; at most 4 allowed"),
    (OutgoingSms(to="+31612345678", sender="A", text="", idempotency_key="k"), "empty SMS text"),
    (OutgoingSms(to="0612345678", sender="A", text="hi", idempotency_key="k"), "add the country code"),
    (OutgoingSms(to="+31 6 12345678", sender="A", text="hi", idempotency_key="k"), "in E.164"),
    (OutgoingSms(to="+31201234567", sender="A", text="hi", idempotency_key="k"), "not a mobile"),
    (OutgoingSms(to="+31612345678", sender="Acme Energie BV", text="hi", idempotency_key="k"),
     "at most 11 letters and digits"),
])
async def test_unsendable_sms_refused_before_reaching_the_provider(provider, http, sms, message):
    with pytest.raises(PermanentDeliveryFailure, match=message):
        await make_sms_sender(provider_settings(provider), http).send(sms)
    assert provider.received == []


# --- HTTP letters --------------------------------------------------------------------------


async def test_http_letter_upload_accepted(provider, http):
    outgoing = letter()
    sender = make_letter_sender(provider_settings(provider), http)
    assert isinstance(sender, HttpLetterSender)
    receipt = await sender.send(outgoing)
    assert receipt.provider_message_id == "prov-1"
    (request,) = provider.received
    assert request.pdf == outgoing.pdf and request.pdf.startswith(b"%PDF-")
    assert request.metadata == {
        "reference": request.headers["idempotency-key"], "pages": 1, "country": "NL",
        "address_lines": ["Eva de Vries", "Dorpsstraat 1", "1234 AB Delft"],
        "subject": "Wilt u uw contactgegevens controleren?"}


async def test_http_letter_at_a_wrong_url_is_retried_naming_it(provider, http):
    settings = provider_settings(provider, letter_http_url=provider.url("/letter"))
    with pytest.raises(ProviderMisconfigured, match="check LETTER_HTTP_URL"):
        await make_letter_sender(settings, http).send(letter())


async def test_http_letter_4xx_permanent_5xx_retryable(provider, http):
    sender = make_letter_sender(provider_settings(provider), http)
    provider.failures = [422, 503]
    with pytest.raises(PermanentDeliveryFailure, match="HTTP 422"):
        await sender.send(letter())
    with pytest.raises(RetryableDeliveryFailure, match="HTTP 503"):
        await sender.send(letter())
    assert (await sender.send(letter())).provider_message_id == "prov-1"


# --- local outboxes ------------------------------------------------------------------------


async def test_outbox_sms_file_holds_what_was_sent_once_per_key(tmp_path, http):
    sender = make_sms_sender(Settings(sms_outbox_dir=tmp_path), http)
    assert isinstance(sender, OutboxSmsSender)
    first = await sender.send(SMS)
    again = await sender.send(SMS)  # a retried activity
    other = await sender.send(OutgoingSms(to="+4915123456789", sender="Acme", text="😀 hi",
                                          idempotency_key="journey-2/sms-1"))
    assert first.provider_message_id == again.provider_message_id != other.provider_message_id
    records = read_records(tmp_path)
    assert len(records) == 2 and len(list(tmp_path.iterdir())) == 2
    newest, oldest = records
    assert newest["to"] == "+4915123456789" and newest["encoding"] == "UCS-2"
    assert oldest == {**oldest, "to": "+31612345678", "sender": "Acme", "text": SMS.text,
                      "encoding": "GSM-7", "segments": 1,
                      "provider_message_id": first.provider_message_id}
    assert datetime.fromisoformat(oldest["sent_at"]).tzinfo is not None


async def test_outbox_letter_writes_pdf_and_metadata(tmp_path, http):
    sender = make_letter_sender(Settings(letter_outbox_dir=tmp_path), http)
    assert isinstance(sender, OutboxLetterSender)
    outgoing = letter()
    receipt = await sender.send(outgoing)
    await sender.send(outgoing)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{receipt.provider_message_id}.json", f"{receipt.provider_message_id}.pdf"]
    assert (tmp_path / f"{receipt.provider_message_id}.pdf").read_bytes() == outgoing.pdf
    record = json.loads((tmp_path / f"{receipt.provider_message_id}.json").read_text())
    assert record["address_lines"][0] == "Eva de Vries" and record["pages"] == 1


def test_http_adapter_needs_url_and_token():
    with pytest.raises(ValueError, match="LETTER_HTTP_URL and LETTER_HTTP_TOKEN must be set"):
        Settings(letter_adapter="http")


# --- journeys meeting a provider set up wrong ----------------------------------------------


def journey_settings(settings: Settings, provider: MessagingProvider, **overrides) -> Settings:
    return settings.model_copy(update={
        "temporal_task_queue": f"providers-{uuid.uuid4().hex[:6]}",
        "sms_adapter": "http", "sms_http_url": provider.url("/sms"),
        "sms_http_token": SecretStr(provider.token), "letter_adapter": "http",
        "letter_http_url": provider.url("/letters"),
        "letter_http_token": SecretStr(provider.token), "opening_message_local_tries": 1,
        **overrides})


@pytest.mark.parametrize(("channel", "wrong", "told"), [
    ("sms", {"sms_http_token": SecretStr("last-years-token")}, "check SMS_HTTP_TOKEN"),
    ("letter", {"letter_http_url": "/letters/v2"}, "check LETTER_HTTP_URL"),
])
async def test_a_provider_set_up_wrong_blames_no_customer_and_the_journey_goes_on_once_fixed(
        settings, tenant, temporal_env, sessions, provider, channel, wrong, told):
    """The operator's SMS token expired, or LETTER_HTTP_URL has a wrong path: every message is
    refused, and it says nothing of any customer's number or address. Nothing bounces, nothing
    is marked undeliverable; the message waits, and goes once the setting is put right (the
    worker restarted with it)."""
    if "letter_http_url" in wrong:
        wrong = {"letter_http_url": provider.url(wrong["letter_http_url"])}
    broken = journey_settings(settings, provider, **wrong)
    number = mobile_number()
    async with own_api(broken, tenant) as client:
        async with running_worker(temporal_env.client, broken):
            campaign = await client.create_campaign(channel_plan=[{"channel": channel}])
            person = await contact(client, **({"mobile": number} if channel == "sms"
                                               else {"address": ADDRESS}))
            [result] = await enrol(client, campaign["id"], person)
            handle = temporal_env.client.get_workflow_handle(
                f"journey/{campaign['id']}/{person['id']}")

            async def refused_twice():
                pending = (await handle.describe()).raw_description.pending_activities
                return pending[0] if pending and pending[0].attempt > 2 else None
            # The operator sees why in the Temporal UI: the send waits, naming the setting.
            waiting = await eventually(refused_twice, what="the send refused and retried")
            assert told in waiting.last_failure.message, waiting.last_failure.message
            journey = await client.journey(result["journey_id"])
        assert journey["stage"] == "enrolled"
        assert [h for h in journey["history"] if h["type"] in ("bounced", "invitation_sent")] == []
        async with sessions() as session:
            marked = list(await session.scalars(select(ContactPoint.undeliverable_since).where(
                ContactPoint.contact_id == uuid.UUID(person["id"]))))
            marked += await session.scalars(select(ContactAddress.undeliverable_since).where(
                ContactAddress.contact_id == uuid.UUID(person["id"])))
        assert marked and all(since is None for since in marked)
        assert provider.received == []

        fixed = broken.model_copy(update={"sms_http_token": SecretStr(provider.token),
                                          "letter_http_url": provider.url("/letters")})
        async with running_worker(temporal_env.client, fixed):
            journey = await client.wait_for_stage(result["journey_id"], "invited")
        bounces = (await client.get(f"/v1/campaigns/{campaign['id']}/bounces")).json()
    [sent] = [h for h in journey["history"] if h["type"] == "invitation_sent"]
    assert sent["detail"]["channel"] == channel
    assert not any(h["type"] == "bounced" for h in journey["history"])
    assert bounces["items"] == []
    [request] = provider.received
    assert request.json["to"] == number if channel == "sms" else request.pdf.startswith(b"%PDF")
