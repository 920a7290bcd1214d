"""The client's dashboard, opened from a signed link or after signing in with an API key:
campaigns with their funnel chart and progress, and failing webhook endpoints."""

import re

from sqlalchemy import update

from db.models import Client, WebhookEndpoint, utcnow
from db.session import transaction
from stack import free_port
from tests.helpers import Customer, eventually, unique_email

BAR = re.compile(r'<rect x="100" y="4" width="(\d+)" height="18" rx="2" class="funnel-bar funnel-(\w+)">')


async def test_dashboard_from_a_signed_link(tenant, other_tenant, http, mailbox, webhook_receiver,
                                            sessions):
    campaign = await tenant.create_campaign(name="Spring check", languages=["en"])
    addresses = [unique_email() for _ in range(4)]
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": f"d-{i}", "email": a} for i, a in enumerate(addresses)))
    for result in enrolled["results"]:
        await tenant.wait_for_stage(result["journey_id"], "invited")
    invitation = (await mailbox.wait_for(addresses[0]))[0]
    await Customer(http).open(mailbox.link(invitation))
    await tenant.wait_for_stage(enrolled["results"][0]["journey_id"], "opened")

    hook = await tenant.subscribe(webhook_receiver)
    async with transaction(sessions) as session:  # as the delivery workflow leaves it
        await session.execute(update(WebhookEndpoint).where(
            WebhookEndpoint.id == tenant.endpoint_ids[hook]).values(
            enabled=False, failing_since=utcnow()))

    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)
    assert link["url"].startswith("http://testserver/d/") and link["expires_at"]
    page = await http.get(link["url"].removeprefix("http://testserver"))
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "Spring check" in page.text and "<script" not in page.text
    assert "0 of 4 journeys finished, 4 running" in page.text
    bars = {step: int(width) for width, step in BAR.findall(page.text)}
    assert bars == {"invited": 220, "opened": 55, "entered": 0, "verified": 0, "expired": 0,
                    "opted_out": 0, "cancelled": 0}
    assert 'class="funnel-count">4<' in page.text
    assert "Failing since" in page.text and webhook_receiver.url(hook) in page.text

    # Another client's link shows only its own (empty) dashboard.
    theirs = await other_tenant.ok("POST", "/v1/dashboard-links", status=201)
    their_page = await http.get(theirs["url"].removeprefix("http://testserver"))
    assert their_page.status_code == 200 and "Spring check" not in their_page.text
    assert "No campaigns yet." in their_page.text

    # A forged or altered token opens nothing.
    token = link["url"].rsplit("/", 1)[1]
    key_hex, expires, mac = token.split(".")
    for forged in (f"{key_hex}.{int(expires) + 3600}.{mac}", f"{key_hex}.{expires}.x" + mac,
                   f"{tenant.id.hex}.{expires}.{mac}", "not-a-token", f"{key_hex}.\u00b2.x",
                   f"{key_hex}.{'9' * 5000}.x"):
        response = await http.get(f"/d/{forged}")
        assert response.status_code == 404 and "Spring check" not in response.text


async def test_dashboard_sign_in_with_an_api_key(tenant, http):
    await tenant.create_campaign(name="Autumn check", languages=["en"])
    customer = Customer(http)  # a browser, with cookies and the CSRF token of the form
    form = await customer.open("/dashboard/login")
    assert form.status_code == 200 and 'type="password"' in form.text

    wrong = await customer.submit("/dashboard/login", api_key="cj_nope_nope")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    forged = await http.post("/dashboard/login", data={"api_key": tenant.key,
                                                        "csrf_token": "1.forged"})
    assert forged.status_code == 403

    await customer.open("/dashboard/login")
    response = await http.post("/dashboard/login",
                               data={"api_key": tenant.key, "csrf_token": customer.csrf()})
    assert response.status_code == 303 and response.headers["location"].startswith("/d/")
    page = await customer.open(response.headers["location"])
    assert page.status_code == 200 and "Autumn check" in page.text


async def test_a_payment_campaign_shows_who_paid(tenant, http):
    from tests.test_payment_journey import claim, paid
    campaign = await tenant.create_campaign(name="Invoices", payments=True, languages=["en"])
    enrolled = await tenant.enrol(campaign["id"], *(
        {"external_id": f"p-{n}", "email": unique_email(), "claim": claim(n)} for n in range(2)))
    await paid(tenant, enrolled["results"][0]["journey_id"], amount="125.50")
    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)
    page = (await http.get(link["url"].removeprefix("http://testserver"))).text
    bars = {step: int(width) for width, step in BAR.findall(page)}
    assert bars["paid"] == 110 and "Paid" in page
    # A campaign without payments has no such bar.
    await tenant.create_campaign(name="Plain", languages=["en"])
    page = (await http.get(link["url"].removeprefix("http://testserver"))).text
    assert page.count('class="funnel-bar funnel-paid"') == 1


async def test_an_endpoint_that_does_not_deliver_is_shown_before_it_is_disabled(tenant, http):
    from tests.test_webhooks import expiring_journeys
    nobody = await tenant.post("/v1/webhook-endpoints", {
        "url": f"http://127.0.0.1:{free_port()}/hooks", "events": ["journey.expired"]})
    assert nobody.status_code == 201, nobody.text
    await expiring_journeys(tenant, 2)

    async def refused() -> list | None:
        attempts = (await tenant.ok(
            "GET", f"/v1/webhook-endpoints/{nobody.json()['id']}/attempts"))["items"]
        return len({a["event_id"] for a in attempts}) == 2 or None
    await eventually(refused, what="both expiries' first delivery attempts")
    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)
    page = (await http.get(link["url"].removeprefix("http://testserver"))).text
    assert "Not delivering, 2 events wait for a retry:" in page
    assert nobody.json()["url"] in page and "All webhook endpoints are delivering." not in page


async def test_each_campaign_shows_its_status_in_the_clients_language(tenant, http, sessions):
    """A paused or archived campaign must not look like one still sending: each shows its
    status, in the client's language."""
    names = {"active": "Running check", "paused": "Held check", "archived": "Old check"}
    for status, name in names.items():
        campaign = await tenant.create_campaign(name=name, languages=["en"])
        if status != "active":
            await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"status": status})
    link = await tenant.ok("POST", "/v1/dashboard-links", status=201)

    async def statuses() -> dict[str, str]:
        page = (await http.get(link["url"].removeprefix("http://testserver"))).text
        return dict(re.findall(r'<h3>([^<]+?) <span class="campaign-status">([^<]+)</span></h3>',
                               page))
    assert await statuses() == {"Running check": "Active", "Held check": "Paused",
                                "Old check": "Archived"}
    async with transaction(sessions) as session:
        client = await session.get_one(Client, tenant.id)
        client.default_language = "nl"
    assert await statuses() == {"Running check": "Actief", "Held check": "Gepauzeerd",
                                "Old check": "Gearchiveerd"}
