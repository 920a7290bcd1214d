"""Branding per client and per campaign, over the API and as the customer sees it (page, email,
links on the client's own host name), and the page's language switch."""

import io
import re
import uuid

import pytest
import segno

from core.settings import Settings
from db import crud
from db.session import transaction
from messaging.branding import brand_for, contrast, letter_branding, readable_on
from messaging.letters import compose_letter
from tests.helpers import Customer, PrintedLetter, Tenant, unique_email
from tests.test_letter_pdf import request as letter_request

DOMAIN = "https://contact.acme.example"


def png(text: str = "logo", scale: int = 4) -> bytes:
    image = io.BytesIO()
    segno.make(text).save(image, kind="png", scale=scale)
    return image.getvalue()


async def upload(tenant, content: bytes, content_type: str = "image/png"):
    return await tenant.http.post("/v1/branding/logos", headers=tenant.auth,
                                  files={"file": ("logo.png", content, content_type)})


def fields(response) -> dict[str, str]:
    return {f["field"]: f["message"] for f in response.json()["error"]["fields"]}


def test_contrast_follows_wcag():
    assert contrast("#ffffff", "#000000") == pytest.approx(21)
    assert contrast("#1d4ed8", "#ffffff") > 4.5
    assert readable_on("#fde047") == "#111827" and readable_on("#1e3a8a") == "#ffffff"


def test_a_campaign_colour_over_the_clients_text_colour_stays_readable():
    brand = brand_for("Acme", {"primary_colour": "#1e3a8a", "on_primary_colour": "#ffffff"},
                      {"primary_colour": "#767676"}, Settings())
    assert contrast(brand.primary_colour, brand.on_primary_colour) >= 4.5
    assert brand.base_url == Settings().public_base_url


async def test_branding_is_validated_with_field_errors(tenant):
    bad = await tenant.http.put("/v1/branding", headers=tenant.auth, json={
        "primary_colour": "#1d4ed8", "on_primary_colour": "#3b82f6", "font": "comic-sans",
        "privacy_url": "http://acme.example/privacy", "custom_domain": "https://acme.example/c",
        "sms_sender": "Far too long a name"})
    assert bad.status_code == 422
    problems = fields(bad)
    assert "WCAG AA" in problems["on_primary_colour"] and "4.5:1" in problems["on_primary_colour"]
    assert {"font", "privacy_url", "sms_sender"} <= set(problems)

    pale = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                 json={"primary_colour": "#fde047"})
    assert pale.status_code == 422 and "3.0:1" in fields(pale)["primary_colour"]

    domain = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                   json={"custom_domain": "https://acme.example/c?x=1"})
    assert domain.status_code == 422 and "path" in fields(domain)["custom_domain"]
    # The tests run in dev mode, where http is allowed too: the message says so.
    ftp = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                json={"custom_domain": "ftp://acme.example"})
    assert fields(ftp)["custom_domain"] == "must start with https:// or http://"
    # A line break or tab (which URL parsing drops without a word) would end every link of
    # the client's messages and break its mail's List-Unsubscribe header.
    for broken, problem in [("http://links.example.com\n", "control characters"),
                            ("https://links.example.com\r\nX-Injected: 1", "control characters"),
                            ("http://links.exa\tmple.com", "control characters"),
                            ('http://"x<b>.example.com', "valid host")]:
        refused = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                        json={"custom_domain": broken})
        assert refused.status_code == 422 and problem in fields(refused)["custom_domain"]
    nothing = await tenant.ok("GET", "/v1/branding")
    assert nothing["branding"] == {} and nothing["logo_url"] is None


async def test_a_custom_domain_too_long_for_the_clients_sms_is_refused(sessions, http):
    """A name outside GSM-7 sends every SMS as UCS-2 (67 characters a segment): the host name
    in its links may then push a text past SMS_MAX_SEGMENTS, which would skip every such SMS."""
    async with transaction(sessions) as session:
        client, key = await crud.create_client(session, name="Łódzka Spółdzielnia Mieszkaniowa")
    tenant = Tenant(id=client.id, name=client.name, key=key, http=http)
    long_domain = "https://kontakt.lodzka-spoldzielnia.example"

    refused = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                    json={"custom_domain": long_domain})
    assert refused.status_code == 422
    assert re.fullmatch(r"too long for an SMS: with it, the \w+ text in \w+ needs 5 UCS-2 "
                        r"segments, at most 4 allowed", fields(refused)["custom_domain"])
    campaign = await tenant.post("/v1/campaigns", {
        "name": "Check", "branding": {"custom_domain": long_domain}})
    assert campaign.status_code == 422
    assert "too long for an SMS" in fields(campaign)["branding.custom_domain"]
    assert (await tenant.ok("GET", "/v1/branding"))["branding"] == {}

    short = await tenant.ok("PUT", "/v1/branding", {"custom_domain": "https://lsm.example"})
    assert short["branding"]["custom_domain"] == "https://lsm.example"


async def test_logos_are_checked_stored_once_and_served_by_us(tenant, other_tenant, http):
    image = png()
    first = await upload(tenant, image)
    assert first.status_code == 201, first.text
    logo = first.json()
    again = await upload(tenant, image)
    assert again.json()["id"] == logo["id"]

    served = await http.get(f"/brand/logos/{logo['id']}.png")
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    for unknown in (uuid.uuid4(), "xyz"):
        assert (await http.get(f"/brand/logos/{unknown}.png")).status_code == 404

    assert (await upload(tenant, b"<svg onload=alert(1)>", "image/svg+xml")).status_code == 415
    damaged = bytearray(image)
    damaged[40] ^= 0xFF
    assert (await upload(tenant, bytes(damaged))).status_code == 422
    too_big = await upload(tenant, image[:8] + bytes(300 * 1024))
    assert too_big.status_code == 413

    # Another client cannot put this client's logo on its pages.
    stolen = await other_tenant.http.put("/v1/branding", headers=other_tenant.auth,
                                         json={"logo_id": logo["id"]})
    assert stolen.status_code == 422 and "logo_id" in fields(stolen)


async def test_branded_journey_on_the_clients_domain(tenant, http, mailbox):
    logo = (await upload(tenant, png())).json()
    branding = await tenant.ok("PUT", "/v1/branding", {
        "logo_id": logo["id"], "primary_colour": "#14532d", "font": "humanist",
        "email_from_name": "Acme Service", "letter_sender": "Acme BV · Postbus 1 · Amsterdam",
        "privacy_url": "https://acme.example/privacy", "imprint_url": "https://acme.example/imprint",
        "custom_domain": DOMAIN + "/"})
    assert branding["branding"]["custom_domain"] == DOMAIN
    assert branding["logo_url"] == f"{DOMAIN}/brand/logos/{logo['id']}.png"

    # The campaign overrides some of it; its colours must still read well over the client's.
    unreadable = await tenant.post("/v1/campaigns", {
        "name": "Bad", "branding": {"on_primary_colour": "#166534"}})
    assert unreadable.status_code == 422
    assert "branding.on_primary_colour" in fields(unreadable)
    campaign = await tenant.create_campaign(branding={
        "primary_colour": "#7c2d12", "email_from_name": "Acme Spring Check"})

    email = unique_email("brand")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "b-1", "first_name": "Bo",
                                                   "email": email})
    [invitation] = await mailbox.wait_for(email)
    # Links for print (letters, QR codes) lead to the client's host name too.
    printed = await tenant.ok(
        "GET", f"/v1/contacts/{enrolled['results'][0]['contact_id']}/enrichment-link")
    assert printed["url"].startswith(f"{DOMAIN}/c/")
    assert invitation.sender.startswith('"Acme Spring Check"') or \
        invitation.sender.startswith("Acme Spring Check")
    link = re.search(rf"{re.escape(DOMAIN)}(/c/[A-Za-z0-9_\-]+)", invitation.text)
    assert link, invitation.text
    assert "http://testserver" not in invitation.text
    assert f"{DOMAIN}/p/" in invitation.text  # the preference link too
    assert f'src="{DOMAIN}/brand/logos/{logo["id"]}.png"' in invitation.html
    assert "background:#7c2d12" in invitation.html
    assert "https://acme.example/privacy" in invitation.text

    # The page (any host name: it uses only relative URLs) shows the campaign's branding.
    customer = Customer(http)
    page = await customer.open(link.group(1))
    assert page.status_code == 200
    theme = re.search(r'<link rel="stylesheet" href="(/theme/[^"]+)"', customer.page).group(1)
    assert theme == "/theme/7c2d12/ffffff/humanist.css"
    assert f'src="/brand/logos/{logo["id"]}.png"' in customer.page
    assert 'href="https://acme.example/imprint"' in customer.page
    css = await http.get(theme)
    assert css.headers["content-type"].startswith("text/css")
    assert "--brand: #7c2d12" in css.text and "Seravek" in css.text
    assert (await http.get("/theme/7c2d12/ffffff/x.css")).status_code == 404
    assert "https://" not in page.headers["content-security-policy"]

    # Changing the campaign's branding applies from the next page view.
    await tenant.ok("PUT", f"/v1/campaigns/{campaign['id']}/branding", {})
    await customer.open(link.group(1))
    assert "/theme/14532d/ffffff/humanist.css" in customer.page


def test_letters_print_the_brand(tmp_path):
    brand = brand_for("Acme", {"primary_colour": "#14532d",
                               "letter_sender": "Acme BV · Postbus 1 · 1000 AA Amsterdam"},
                      None, Settings())
    letter = compose_letter(letter_request(branding=letter_branding(brand, png("acme", 8))),
                            Settings())
    printed = PrintedLetter(letter.pdf, tmp_path)
    assert "Acme BV · Postbus 1 · 1000 AA Amsterdam" in printed.text()
    assert printed.images() == 1  # the logo (the QR code is drawn as vectors)


async def test_language_switch_keeps_only_the_token_in_the_url(tenant, http, mailbox):
    campaign = await tenant.create_campaign()
    email = unique_email("switch")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": "s-1", "first_name": "Sam",
                                                   "language": "en", "email": email})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(email)
    path = mailbox.link(invitation)
    customer = Customer(http)
    await customer.open(path)
    assert "I agree to receive service emails." in customer.page
    assert "Your profile is 50% complete" in customer.page  # a name and an email of four

    # Without the form's CSRF token nothing changes.
    forged = await http.post(f"{path}/language", data={"language": "nl"})
    assert forged.status_code == 403

    switched = await http.post(f"{path}/language", data={
        "language": "nl", "csrf_token": customer.csrf()})
    assert switched.status_code == 303 and switched.headers["location"] == path
    await customer.open(path)
    assert '<html lang="nl">' in customer.page
    assert "Ik ontvang graag service-e-mails." in customer.page  # the legal text in Dutch
    assert (await tenant.journey(journey_id))["language"] == "nl"

    # A language the campaign does not offer is ignored.
    await http.post(f"{path}/language", data={"language": "de", "csrf_token": customer.csrf()})
    assert (await tenant.journey(journey_id))["language"] == "nl"

    # The rest of the journey speaks Dutch: the verification email too.
    new = unique_email("switch-new")
    await customer.submit(path, email=new, consent=["terms"])
    [verification] = await mailbox.wait_for(new)
    assert "bevestig" in verification.text.lower()


async def test_language_switch_works_on_the_page_of_an_ended_request(tenant, http, mailbox):
    campaign = await tenant.create_campaign(
        reminders={"interval": "PT1H", "max_count": 0}, expires_after="PT2S")
    email = unique_email("ended")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": email, "language": "en",
                                                   "email": email})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(email)
    await tenant.wait_for_stage(journey_id, "expired")
    path = mailbox.link(invitation)
    customer = Customer(http)
    ended = await customer.open(path)
    assert ended.status_code == 410 and "This request has ended" in customer.page
    assert f'action="{path}/language"' in customer.page

    switched = await http.post(f"{path}/language", data={
        "language": "nl", "csrf_token": customer.csrf()})
    assert switched.status_code == 303 and switched.headers["location"] == path
    ended = await customer.open(path)
    assert ended.status_code == 410 and '<html lang="nl">' in customer.page
    assert "Dit verzoek is afgesloten" in customer.page
    assert (await tenant.journey(journey_id))["language"] == "nl"
    # Still only with the page's CSRF token.
    forged = await http.post(f"{path}/language", data={"language": "en"})
    assert forged.status_code == 403
    assert (await tenant.journey(journey_id))["language"] == "nl"


async def test_language_switch_on_a_verification_link_changes_only_its_pages(
    tenant, http, mailbox
):
    """The verification link went to an address only typed, perhaps a stranger's (a typo):
    switching language there shows that link's pages in it, and leaves the journey's language,
    which the customer's page and later mails speak, as it was."""
    campaign = await tenant.create_campaign(reminders={"interval": "PT3S", "max_count": 1})
    known, typed = unique_email("known"), unique_email("typo")
    enrolled = await tenant.enrol(campaign["id"], {"external_id": known, "language": "en",
                                                   "email": known})
    journey_id = enrolled["results"][0]["journey_id"]
    [invitation] = await mailbox.wait_for(known)
    page = mailbox.link(invitation)
    customer = Customer(http)
    await customer.open(page)
    await customer.submit(page, email=typed, consent=["terms"])

    [verification] = await mailbox.wait_for(typed)
    link = mailbox.link(verification)
    stranger = Customer(http)
    await stranger.open(link)
    assert f'action="{link}/language"' in stranger.page
    switched = await http.post(f"{link}/language", data={
        "language": "nl", "csrf_token": stranger.csrf()})
    assert switched.status_code == 303 and switched.headers["location"] == link
    await stranger.open(link)
    assert '<html lang="nl">' in stranger.page and "Bevestigen" in stranger.page

    assert (await tenant.journey(journey_id))["language"] == "en"
    await customer.open(page)
    assert '<html lang="en">' in customer.page
    [_, reminder] = await mailbox.wait_for(typed, count=2)
    assert reminder.subject.startswith("Reminder"), reminder.subject
    # The link's own pages keep its choice, also once the reminder's link supersedes it.
    await stranger.submit(link)
    assert '<html lang="nl">' in stranger.page and "Er is een nieuwere link" in stranger.page
