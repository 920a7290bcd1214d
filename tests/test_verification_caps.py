"""The daily cap of verification messages (links, codes) per recipient holds however they are
asked for: at once from many pages, or for spellings of one mailbox."""

import asyncio
import random
import uuid

import pytest
from sqlalchemy import select, text

from db.models import Journey
from tests.helpers import Customer, eventually, unique_email
from tests.test_mobile_journey import codes_sent


async def invited_pages(tenant, mailbox, http, count: int, **campaign) -> list[tuple]:
    """`count` journeys of one campaign, each one's page open: (journey id, customer, page)."""
    created = await tenant.create_campaign(languages=["en"], consents=[], **campaign)
    people = [unique_email(f"p{n}") for n in range(count)]
    enrolled = await tenant.enrol(created["id"], *[{"external_id": p, "email": p}
                                                   for p in people])
    pages = []
    for person, result in zip(people, enrolled["results"]):
        [invitation] = await mailbox.wait_for(person)
        customer = Customer(http)
        page = mailbox.link(invitation)
        await customer.open(page)
        pages.append((result["journey_id"], customer, page))
    return pages


async def posted_at_once(sessions, http, pages, field: str, value: str) -> None:
    """Posts every page at once with the same address (or number). The journeys are held
    by a test session until every post waits for its own, so that their sends run together
    rather than one after the other as the posts come in."""
    async with sessions() as session, session.begin():
        await session.execute(select(Journey.id).where(
            Journey.id.in_([journey_id for journey_id, _, _ in pages])).with_for_update())
        posts = [asyncio.create_task(http.post(page, data={
            **customer.hidden_fields(), "csrf_token": customer.csrf(), field: value}))
            for _, customer, page in pages]

        async def all_waiting():
            async with session.bind.connect() as conn:
                waiting = await conn.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"))
            return waiting >= len(pages) or None
        await eventually(all_waiting, timeout=30, what="every post waiting for its journey")
    answers = await asyncio.gather(*posts)
    assert all(a.status_code in (200, 303) for a in answers), [a.status_code for a in answers]


async def sends_decided(tenant, journey_ids, sent: str, suppressed: str) -> list[str]:
    """Each journey's send once it is decided: `sent` or `suppressed`."""
    async def probe():
        outcomes = []
        for journey_id in journey_ids:
            types = [e["type"] for e in (await tenant.journey(journey_id))["history"]]
            outcome = next((t for t in types if t in (sent, suppressed)), None)
            if outcome is None:
                return None
            outcomes.append(outcome)
        return outcomes
    return await eventually(probe, timeout=60, what="every send decided")


async def test_verification_mails_asked_at_once_keep_to_the_daily_cap(
        tenant, http, mailbox, settings, sessions):
    victim = unique_email("victim")
    cap = settings.verification_messages_per_recipient_per_day
    pages = await invited_pages(tenant, mailbox, http, 2 * cap)
    await posted_at_once(sessions, http, pages, "email", victim)
    outcomes = await sends_decided(tenant, [j for j, _, _ in pages],
                                   "verification_sent", "verification_suppressed")
    assert outcomes.count("verification_sent") == cap, outcomes
    await mailbox.wait_for(victim, count=cap)
    await asyncio.sleep(1)
    assert len(mailbox.to(victim)) == cap


async def test_codes_asked_at_once_keep_to_the_daily_cap(
        tenant, http, mailbox, settings, sessions):
    number = f"+3161{random.randrange(10**7):07d}"
    cap = settings.verification_messages_per_recipient_per_day
    pages = await invited_pages(tenant, mailbox, http, 2 * cap, collect=["mobile"])
    await posted_at_once(sessions, http, pages, "mobile", number)
    outcomes = await sends_decided(tenant, [j for j, _, _ in pages],
                                   "code_sent", "code_suppressed")
    assert outcomes.count("code_sent") == cap, outcomes
    await asyncio.sleep(1)
    assert len(codes_sent(settings, number)) == cap


def same_mailbox(address: str) -> str:
    """What the test takes for one mailbox: a `+tag` reaches the address without it, and Gmail
    reads no dots (googlemail.com is gmail.com)."""
    local, _, domain = address.lower().rpartition("@")
    local = local.split("+")[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


@pytest.mark.parametrize("domain", ["example.com", "gmail.com"])
async def test_spellings_of_one_mailbox_share_its_daily_cap(
        tenant, http, mailbox, settings, domain):
    """victim+1@, victim+2@ (and at Gmail v.ictim@, vi.ctim+x@googlemail.com) are one mailbox:
    together they get no more verification mails than it would."""
    name = f"victim{uuid.uuid4().hex[:8]}"
    cap = settings.verification_messages_per_recipient_per_day
    spellings = [f"{name}+{n}@{domain}" for n in range(cap + 2)]
    if domain == "gmail.com":
        spellings = [f"{name[:n + 1]}.{name[n + 1:]}+x{n}@{'googlemail.com' if n % 2 else domain}"
                     for n in range(cap + 2)]
    spellings[0] = spellings[0].upper()
    pages = await invited_pages(tenant, mailbox, http, len(spellings))
    for (journey_id, customer, page), typed in zip(pages, spellings):
        assert (await customer.submit(page, email=typed)).status_code == 200
        await tenant.wait_for_stage(journey_id, "verification_pending")
    outcomes = await sends_decided(tenant, [j for j, _, _ in pages],
                                   "verification_sent", "verification_suppressed")
    assert outcomes == ["verification_sent"] * cap + ["verification_suppressed"] * 2
    mailbox.to(name)  # reads what arrived
    received = [m for m in mailbox.parsed.values()
                if same_mailbox(m.to) == same_mailbox(f"{name}@{domain}")]
    assert len(received) == cap, sorted(m.to for m in received)
