"""SMS and print provider adapters: the local outboxes on disk, and the HTTP adapters against a
real provider API served over HTTP (success, permanent 4xx, retryable 5xx/timeouts)."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest

from core.settings import Settings
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
from messaging.provider_http import PermanentDeliveryFailure, RetryableDeliveryFailure
from messaging.sms import HttpSmsSender, OutboxSmsSender, OutgoingSms, make_sms_sender
from stack import free_port
from tests.helpers import MessagingProvider

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


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_http_sms_4xx_is_permanent(provider, http, status):
    provider.failures = [status]
    with pytest.raises(PermanentDeliveryFailure, match=f"HTTP {status}"):
        await make_sms_sender(provider_settings(provider), http).send(SMS)
    assert provider.received == []


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


async def test_wrong_token_is_permanent_and_the_token_is_never_in_the_error(provider, http):
    settings = provider_settings(provider, sms_http_token="wrong-secret-token")
    with pytest.raises(PermanentDeliveryFailure) as err:
        await make_sms_sender(settings, http).send(SMS)
    assert "HTTP 401" in str(err.value) and "wrong-secret-token" not in str(err.value)
    assert "wrong-secret-token" not in repr(settings)


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
