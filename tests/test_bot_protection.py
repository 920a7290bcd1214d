"""Public forms resist bots without a captcha: a honeypot and rate limits per IP and per link."""

import httpx

from api.main import create_app
from tests.helpers import Customer, unique_email


async def invited(tenant, mailbox) -> tuple[str, str, dict]:
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
    [invitation] = await mailbox.wait_for(address)
    return address, mailbox.link(invitation), enrolled["results"][0]


async def test_a_filled_honeypot_is_answered_like_success_and_changes_nothing(
    tenant, http, mailbox
):
    address, page, enrolled = await invited(tenant, mailbox)
    customer = Customer(http)
    await customer.open(page)
    assert 'name="website"' in customer.page and 'aria-hidden="true"' in customer.page
    await tenant.wait_for_stage(enrolled["journey_id"], "opened")
    response = await http.post(page, data={"csrf_token": customer.csrf(), "email": address,
                                           "website": "http://spam.example"})
    assert response.status_code == 303
    journey = await tenant.journey(enrolled["journey_id"])
    assert journey["stage"] == "opened" and journey["pending_email"] is None
    assert len(mailbox.to(address)) == 1  # no verification email went out


async def test_too_many_posts_on_one_link_get_429(tenant, http, mailbox, settings):
    _, page, _ = await invited(tenant, mailbox)
    customer = Customer(http)
    await customer.open(page)
    # Counted per minute: twice the limit and two more exceed it twice whichever minute
    # boundary the posts straddle (a run crossing one split them 3 and 9 and saw no 429).
    responses = [await http.post(page, data={"csrf_token": customer.csrf(), "email": "x@"})
                 for _ in range(2 * settings.form_posts_per_link_per_minute + 2)]
    statuses = [r.status_code for r in responses]
    assert statuses[0] == 422 and statuses.count(429) >= 2, statuses
    limited = next(r for r in reversed(responses) if r.status_code == 429)
    assert "Too many attempts" in limited.text
    assert 0 < int(limited.headers["retry-after"]) <= 60


async def test_too_many_posts_from_one_ip_get_429(tenant, mailbox, settings):
    strict = create_app(settings.model_copy(update={"form_posts_per_ip_per_minute": 3}))
    async with strict.router.lifespan_context(strict):
        transport = httpx.ASGITransport(app=strict, client=("198.51.100.77", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            statuses = [(await http.post(path, data={})).status_code for path in (
                "/c/guess-0", "/k/guess-1", "/dashboard/login", "/c/guess-2", "/k/guess-3")]
        # Every public form counts: the KYC upload page and the dashboard's login too.
        assert statuses == [404, 404, 403, 429, 429]

        # The login is one address for every client: only each IP's own posts count there.
        logins = []
        for n in range(settings.form_posts_per_link_per_minute + 2):
            transport = httpx.ASGITransport(app=strict, client=(f"198.51.100.{n}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                logins.append((await http.post("/dashboard/login", data={})).status_code)
        assert set(logins) == {403}


async def test_someone_typing_a_strangers_address_everywhere_cannot_flood_it(
    tenant, http, mailbox, settings
):
    """Seven pages, one victim: the victim gets at most the daily cap of verification mails,
    however the address's letters are cased, and every page answers the same way, so nobody
    learns whether the address is known."""
    victim = unique_email("victim")
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    pages = []
    for n in range(7):
        address = unique_email(f"attacker{n}")
        enrolled = await tenant.enrol(campaign["id"], {"external_id": address, "email": address})
        [invitation] = await mailbox.wait_for(address)
        pages.append((mailbox.link(invitation), enrolled["results"][0]["journey_id"]))
    answers = []
    for n, (page, journey_id) in enumerate(pages):
        customer = Customer(http)
        await customer.open(page)
        typed = victim if n < 4 else victim.upper()
        answers.append((await customer.submit(page, email=typed)).status_code)
        await tenant.wait_for_stage(journey_id, "verification_pending")
    assert set(answers) == {200}
    cap = settings.verification_messages_per_recipient_per_day
    mailbox.to(victim)  # reads what arrived
    assert len([m for m in mailbox.parsed.values() if m.to.lower() == victim.lower()]) == cap
    last = await tenant.journey(pages[-1][1])
    assert last["history"][-1]["type"] == "verification_suppressed"
