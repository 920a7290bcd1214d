"""The people on a faulty stack: the client enrols a campaign over the API, and each customer
walks the journey as a person facing an outage would (an error page or a dead connection is
tried again after a short pause, for a bounded time); then the tally of what was delivered."""

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.harness import FaultStack
from tests.helpers import HIDDEN, eventually

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# What a person reads on the contact page once the verification mail is on its way.
SENT = "Check your inbox"
# Bounds for one person: how long a page may take before they reload it, the pause after an
# error, and how long they keep trying one step. Generous, because a busy CI machine is slow.
PATIENCE = 30
PAUSE = (0.5, 2.0)
PERSEVERANCE = 240
# A killed worker's in-flight send is retried after its activity timeout (1 minute), possibly
# more than once when the worker is killed again.
MAIL_WAIT = 240
EVENTS = ("contact.data_collected", "contact.data_verified", "consent.changed")
ENROL_BATCH = 100


@dataclass
class Tally:
    """What the people met on their way, and how far they got."""

    retried: Counter[str] = field(default_factory=Counter)
    submitted: int = 0


class Person:
    """One browser: its own cookies, the stack's connection pool, and patience."""

    def __init__(self, transport: httpx.AsyncBaseTransport, base_url: str, tally: Tally,
                 gate: asyncio.Semaphore, headers: dict[str, str] | None = None) -> None:
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=PATIENCE,
                                      headers=headers)
        self.tally, self.gate = tally, gate

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The same request again after an error page, a refused connection or a time-out
        (a reload), until it is answered or the person gives up."""
        deadline = time.monotonic() + PERSEVERANCE
        while True:
            try:
                async with self.gate:
                    response = await self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    return response
                assert response.status_code == 503, (
                    f"{method} {path}: {response.status_code}, not 503\n{response.text[:500]}")
                assert response.headers.get("retry-after"), "503 without Retry-After"
                problem = f"{response.status_code}"
            except (httpx.TransportError, httpx.TimeoutException) as err:
                problem = type(err).__name__
            self.tally.retried[problem] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} still failing ({problem}) after "
                                     f"{PERSEVERANCE}s")
            await asyncio.sleep(random.uniform(*PAUSE))

    def form(self, page: str, **fields: Any) -> dict[str, Any]:
        found = CSRF.search(page)
        assert found, f"no form on the page: {page[:2000]}"
        return {**dict(HIDDEN.findall(page)), "csrf_token": found.group(1), **fields}


class Customer(Person):
    async def walk(self, stack: FaultStack, address: str) -> None:
        link = await stack.mail.wait_for_link(address, "c", MAIL_WAIT)
        await self.enter_data(link, address)
        self.tally.submitted += 1
        verify = await stack.mail.wait_for_link(address, "v", MAIL_WAIT)
        page = await self.request("GET", verify)
        assert page.status_code == 200, page.text[:2000]
        if "<form" in page.text:
            confirmed = await self.request("POST", verify, data=self.form(page.text))
            assert confirmed.status_code == 200, confirmed.text[:2000]

    async def enter_data(self, link: str, address: str) -> None:
        """Fills in the form once; a person who sees "check your inbox" does not fill it in
        again."""
        page = await self.request("GET", link)
        assert page.status_code == 200, page.text[:2000]
        if SENT in page.text:
            return
        answer = await self.request("POST", link, data=self.form(
            page.text, email=address, consent=["terms"]))
        assert answer.status_code in (200, 303), f"{answer.status_code}: {answer.text[:2000]}"


async def create_campaign(stack: FaultStack, client: Person) -> dict[str, Any]:
    async def ok(path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await client.request("POST", path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    await ok("/v1/purposes", {"key": "service-communication", "name": "Service emails",
                              "kind": "service"})
    name = uuid.uuid4().hex[:8]
    endpoint = await ok("/v1/webhook-endpoints",
                        {"url": stack.receiver.url(name), "events": ["*"]})
    stack.receiver.secrets[name] = endpoint["secret"]
    return await ok("/v1/campaigns", {
        "name": "Faults", "languages": ["en"],
        "consents": [{"key": "terms", "purpose": "service-communication", "channel": "email",
                      "mandatory": True,
                      "texts": {"en": {"text": "I want service emails.", "version": "1"}}}],
        "reminders": {"interval": "PT1H", "max_count": 1}, "expires_after": "P1D"})


@dataclass
class Campaign:
    """A campaign of `size` contacts, enrolled in batches while the earlier ones walk."""

    stack: FaultStack
    size: int
    tally: Tally = field(default_factory=Tally)
    started: float = field(default_factory=time.monotonic)
    id: str = ""
    contacts: list[dict[str, str]] = field(default_factory=list)

    async def run(self) -> None:
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=50))
        gate = asyncio.Semaphore(40)
        base = self.stack.settings.public_base_url
        client = Person(transport, base, self.tally, gate, headers=self.stack.auth)
        try:
            self.id = (await create_campaign(self.stack, client))["id"]
            walks = []
            run = uuid.uuid4().hex[:6]
            for first in range(0, self.size, ENROL_BATCH):
                batch = [{"external_id": f"fault-{i}", "email": f"c{i}-{run}@example.com",
                          "first_name": "F"}
                         for i in range(first, min(first + ENROL_BATCH, self.size))]
                enrolled = await client.request(
                    "POST", f"/v1/campaigns/{self.id}/contacts", json={"contacts": batch})
                assert enrolled.status_code == 202, enrolled.text
                self.contacts += batch
                walks += [asyncio.create_task(
                    Customer(transport, base, self.tally, gate).walk(self.stack, item["email"]))
                    for item in batch]
            await asyncio.gather(*walks)
        finally:
            await transport.aclose()

    async def progress(self, fraction: float, timeout: float = 300) -> None:
        """Waits until that share of the customers has submitted their data."""
        async def reached() -> bool:
            return self.tally.submitted >= fraction * self.size
        await eventually(reached, timeout=timeout, interval=0.2,
                         what=f"{fraction:.0%} of {self.size} customers submitting")


async def expect_unavailable(stack: FaultStack, method: str, path: str,
                             **kwargs: Any) -> None:
    """What a client or a customer gets while a part is down: 503 with Retry-After, and an
    error body (API) or a page (people) that says to try again, never a raw 500."""
    response = await stack.http.request(method, path, **kwargs)
    assert response.status_code == 503, f"{method} {path}: {response.status_code} {response.text}"
    assert int(response.headers["retry-after"]) > 0
    if path.startswith("/v1/"):
        assert response.json()["error"]["code"] == "unavailable", response.text
    else:
        assert "briefly unavailable" in response.text, response.text


async def verify_nothing_lost(stack: FaultStack, campaign: Campaign, fault: str) -> str:
    """Every journey verified, every consent once in the ledger, every event received once
    (after dedup by webhook-id); returns the counts as one line."""
    n = campaign.size
    q_verified = "select count(*) from journeys where client_id = :client and stage = 'verified'"

    async def all_verified() -> bool:
        return await stack.count(q_verified) == n
    await eventually(all_verified, timeout=120, interval=1,
                     what=f"all {n} journeys verified in the database")

    def unique(event_type: str) -> set[str]:
        return {d.id for d in stack.receiver.received if d.payload["type"] == event_type}

    async def all_received() -> bool:
        return all(len(unique(t)) >= n for t in EVENTS)
    try:
        await eventually(all_received, timeout=120, interval=1,
                         what="every webhook event received")
    except AssertionError as err:
        raise AssertionError(f"{err}: {', '.join(f'{t} {len(unique(t))}' for t in EVENTS)}")

    ledger = await stack.count("select count(*) from consent_events where client_id = :client")
    ledger_contacts = await stack.count(
        "select count(distinct contact_id) from consent_events where client_id = :client")
    received = Counter(d.payload["type"] for d in stack.receiver.received)
    counts = {t: len(unique(t)) for t in EVENTS}
    per_contact = {t: len({d.payload["data"]["contact"]["id"] for d in stack.receiver.received
                           if d.payload["type"] == t}) for t in EVENTS}
    retried = ", ".join(f"{k} x{v}" for k, v in campaign.tally.retried.most_common()) or "none"
    line = (f"{fault}: {n} contacts, {await stack.count(q_verified)} verified; consent ledger "
            f"{ledger} entries for {ledger_contacts} contacts; webhooks "
            f"{sum(received.values())} received, unique "
            + ", ".join(f"{t} {c}" for t, c in counts.items())
            + f"; customers retried: {retried}; "
            f"{time.monotonic() - campaign.started:.0f} s")
    assert ledger == n and ledger_contacts == n, line
    assert counts == dict.fromkeys(EVENTS, n) and per_contact == counts, line
    assert set(received) == set(EVENTS), f"unexpected events {set(received) - set(EVENTS)}"
    assert not stack.receiver.bad_signatures, line
    return line
