"""The daily cap of verification messages (links, codes) per recipient holds however they are
asked for: at once from many pages, or for spellings of one mailbox. It counts per client,
so a stranger at one business cannot use it up at another, under a higher ceiling for all
clients together."""

import asyncio
import random
import uuid

import pytest
from sqlalchemy import select, text

from db import crud
from db.models import Journey
from db.session import transaction
from tests.helpers import Customer, Tenant, eventually, unique_email
from tests.histories import save_history
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


async def another_client(sessions, http) -> Tenant:
    async with transaction(sessions) as session:
        client, key = await crud.create_client(session, name=f"Other {uuid.uuid4().hex[:6]}")
    return Tenant(id=client.id, name=client.name, key=key, http=http)


async def typed_at(tenant, mailbox, http, address: str, times: int) -> str:
    """A customer of the client types the address `times` times on their page (each asks for a
    new link); the journey's id."""
    [(journey_id, customer, page)] = await invited_pages(tenant, mailbox, http, 1)
    for _ in range(times):
        assert (await customer.submit(page, email=address)).status_code == 200
    return journey_id


async def test_a_stranger_at_one_client_cannot_use_up_the_cap_at_another(
        tenant, other_tenant, http, mailbox, settings):
    """A customer of client A types the victim's address until A's cap is reached; the victim,
    a customer of client B, still gets the mail that verifies their own address at B."""
    victim = unique_email("victim")
    cap = settings.verification_messages_per_recipient_per_day
    await typed_at(tenant, mailbox, http, victim, cap)
    await mailbox.wait_for(victim, count=cap)
    again = await typed_at(tenant, mailbox, http, victim, 1)
    assert await sends_decided(tenant, [again], "verification_sent",
                               "verification_suppressed") == ["verification_suppressed"]

    own = await typed_at(other_tenant, mailbox, http, victim, 1)
    await other_tenant.wait_for_stage(own, "verification_pending")
    assert await sends_decided(other_tenant, [own], "verification_sent",
                               "verification_suppressed") == ["verification_sent"]
    await mailbox.wait_for(victim, count=cap + 1)


async def test_all_clients_together_keep_to_a_higher_ceiling(
        tenant, http, mailbox, settings, sessions):
    """Per client the cap, and all clients together at most four times it: a recipient typed
    everywhere is not flooded across businesses either (the suppression is in the journey's
    history, as for one client's cap)."""
    victim = unique_email("victim")
    cap = settings.verification_messages_per_recipient_per_day
    clients = [tenant] + [await another_client(sessions, http) for _ in range(4)]
    for client in clients[:4]:
        await typed_at(client, mailbox, http, victim, cap)
    await mailbox.wait_for(victim, count=4 * cap)
    last = await typed_at(clients[4], mailbox, http, victim, 1)
    assert await sends_decided(clients[4], [last], "verification_sent",
                               "verification_suppressed") == ["verification_suppressed"]
    await asyncio.sleep(1)
    assert len(mailbox.to(victim)) == 4 * cap


async def test_codes_count_per_client(tenant, other_tenant, http, mailbox, settings):
    number = f"+3162{random.randrange(10**7):07d}"
    cap = settings.verification_messages_per_recipient_per_day
    pages = await invited_pages(tenant, mailbox, http, cap + 1, collect=["mobile"])
    for _, customer, page in pages:
        assert (await customer.submit(page, mobile=number)).status_code == 200
    outcomes = await sends_decided(tenant, [j for j, _, _ in pages], "code_sent",
                                   "code_suppressed")
    assert sorted(outcomes) == ["code_sent"] * cap + ["code_suppressed"]
    [(own, customer, page)] = await invited_pages(other_tenant, mailbox, http, 1,
                                                  collect=["mobile"])
    assert (await customer.submit(page, mobile=number)).status_code == 200
    assert await sends_decided(other_tenant, [own], "code_sent", "code_suppressed") == [
        "code_sent"]
    assert len(codes_sent(settings, number)) == cap + 1


async def test_a_reminder_the_cap_kept_back_leaves_the_customers_link_valid(
        tenant, http, mailbox, settings, temporal_env, record_histories):
    """The customer asked for new links until the daily cap; the verification reminder that
    falls due then is kept back, and the newest link they hold still confirms (no "a newer
    link was sent" for a link that never went)."""
    [(journey_id, customer, page)] = await invited_pages(
        tenant, mailbox, http, 1, reminders={"interval": "PT3S", "max_count": 1})
    typed = unique_email("typed")
    cap = settings.verification_messages_per_recipient_per_day
    for n in range(1, cap + 1):
        await customer.open(page)
        await customer.submit(page, email=typed)
        await mailbox.wait_for(typed, count=n)

    async def kept_back():
        types = [e["type"] for e in (await tenant.journey(journey_id))["history"]]
        return "verification_reminder_suppressed" in types
    await eventually(kept_back, what="the reminder kept back by the cap")
    mails = mailbox.to(typed)
    assert len(mails) == cap
    newest = mailbox.link(mails[-1])
    await customer.open(newest)
    await customer.submit(newest)
    assert "newer link" not in customer.page
    journey = await tenant.wait_for_stage(journey_id, "verified")
    if record_histories:
        handle = temporal_env.client.get_workflow_handle(journey["workflow_id"])
        await handle.result()
        await save_history(handle, "verification_reminder_kept_back_keeps_link")
