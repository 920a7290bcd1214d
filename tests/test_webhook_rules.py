"""The pure rules of webhook delivery: answers, retry schedule, Retry-After, signatures, SSRF."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks import Webhook, WebhookVerificationError

from core.contracts import RetrySchedule
from core.public_transport import public_only_transport
from core.webhook_rules import (
    Outcome,
    next_attempt_delay,
    outcome,
    parse_retry_after,
    signature_header,
    target_problem,
)
from tests.helpers import AppServer

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
PRODUCTION = RetrySchedule(
    delays=[timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), 2 * H, 5 * H, 10 * H],
    then_every=10 * H, give_up_after=timedelta(days=3))


@pytest.mark.parametrize("code, expected", [
    (200, Outcome.delivered), (204, Outcome.delivered), (299, Outcome.delivered),
    (None, Outcome.retry), (301, Outcome.retry), (500, Outcome.retry), (503, Outcome.retry),
    (408, Outcome.retry), (409, Outcome.retry), (425, Outcome.retry), (429, Outcome.retry),
    # A receiver refusing with another 4xx is usually misconfigured (wrong secret or path):
    # retried, so the endpoint shows as failing; only 410 stops one event at once.
    (400, Outcome.retry), (401, Outcome.retry), (403, Outcome.retry), (404, Outcome.retry),
    (422, Outcome.retry), (410, Outcome.failed),
])
def test_what_an_answer_means(code, expected):
    assert outcome(code) == expected


def test_the_production_schedule_runs_three_days_then_gives_up():
    start, now, attempts, waits = NOW, NOW, 1, []
    while (delay := next_attempt_delay(PRODUCTION, attempts=attempts, round_started_at=start,
                                       now=now)) is not None:
        waits.append(delay)
        now += delay
        attempts += 1
    assert waits[:6] == PRODUCTION.delays
    assert set(waits[6:]) == {10 * H} and len(waits[6:]) == 5
    assert now - start <= timedelta(days=3) < now - start + 10 * H


def test_retry_after_is_honoured_up_to_the_longest_gap():
    kwargs = {"attempts": 1, "round_started_at": NOW, "now": NOW}
    assert next_attempt_delay(PRODUCTION, retry_after=timedelta(seconds=2), **kwargs) == \
        timedelta(seconds=5)
    assert next_attempt_delay(PRODUCTION, retry_after=timedelta(minutes=2), **kwargs) == \
        timedelta(minutes=2)
    assert next_attempt_delay(PRODUCTION, retry_after=timedelta(days=30), **kwargs) == 10 * H


def test_retry_after_as_seconds_or_http_date():
    assert parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert parse_retry_after("Wed, 25 Nov 2026 12:01:30 GMT", NOW) == timedelta(seconds=90)
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", NOW) == timedelta(0)
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


@pytest.mark.parametrize("value", ["9" * 20, "1" * 5000, "0" * 30 + "99999999999",
                                   "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_huge_retry_after_waits_the_longest_gap_without_overflowing(value):
    delay = parse_retry_after(value, NOW)
    assert delay is not None and delay >= timedelta(days=365)
    assert next_attempt_delay(PRODUCTION, attempts=1, round_started_at=NOW, now=NOW,
                              retry_after=delay) == 10 * H


@pytest.mark.parametrize("value", ["\u00b2", "1e9", "-5", "Fri, 31 Dec 99999 23:59:59 GMT"])
def test_a_retry_after_that_is_no_delay_is_ignored(value):
    assert parse_retry_after(value, NOW) is None


def test_both_secrets_sign_during_a_rotation():
    old, new = "whsec_" + "a" * 32, "whsec_" + "b" * 32
    # The library checks the timestamp against its own clock, so sign with the real time.
    now = datetime.now(UTC)
    header = signature_header([new, old], msg_id="msg_1", timestamp=now, body='{"a":1}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": header}
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "c" * 32).verify('{"a":1}', headers)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost:8000/", "http://10.0.0.5/", "http://172.16.3.4/",
    "http://192.168.1.1/", "http://169.254.169.254/", "http://[::1]/", "http://[fd00::1]/",
    "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://224.0.0.1/",
    # IPv6 forms that reach an IPv4 address: 6to4 (loopback), NAT64 (cloud metadata), the
    # IPv4-compatible form (both), and local-use NAT64.
    "http://[2002:7f00:1::]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[::7f00:1]/",
    "http://[::a9fe:a9fe]/", "http://[64:ff9b:1::7f00:1]/",
    # SIIT's IPv4-translated form (loopback, metadata), and deprecated site-local.
    "http://[::ffff:0:7f00:1]:8080/", "http://[::ffff:0:a9fe:a9fe]/", "http://[fec0::1]/",
])
async def test_private_targets_are_refused(url):
    assert await target_problem(url, allow_private=False)
    assert await target_problem(url, allow_private=True) is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost",
                                 "https://u:p@example.com/", "https://example.com:0/h",
                                 "https://example.com:99999/h"])
async def test_only_plain_http_urls(url):
    assert await target_problem(url, allow_private=True)


async def test_public_targets_pass():
    assert await target_problem("https://93.184.216.34/hook", allow_private=False) is None


async def test_deliveries_connect_only_to_what_was_checked():
    """The address is checked when the connection is made, so a name re-pointed inside
    between the check and the connection (DNS rebinding) reaches nothing."""
    async def deliver(url: str, **refusing) -> httpx.Response:
        transport = public_only_transport(httpx.Limits(), **refusing)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(url, content=b"{}")
    for internal in ("http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/"):
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await deliver(internal)

    # The same transport delivers to an address it accepts (here a local receiver, let pass).
    received = []
    receiver = FastAPI()

    @receiver.post("/hook", status_code=204)
    async def hook() -> None:
        received.append("/hook")
    server = AppServer(app=receiver)
    await server.start()
    try:
        response = await deliver(f"http://127.0.0.1:{server.port}/hook",
                                 refused=lambda address: False)
    finally:
        await server.stop()
    assert response.status_code == 204 and received == ["/hook"]
