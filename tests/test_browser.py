"""The customer's pages in a real browser: Debian's Chromium driven by Playwright, with axe-core
checking accessibility on every page. Journeys run on the real stack, served over HTTP; the
invitation and verification emails are read from the SMTP sink. Screenshots go to
tests/artifacts/screenshots/."""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import update

from core.security import sha256_hex
from db.models import LinkToken
from db.session import transaction
from tests.helpers import LocalHttpServer, eventually, unique_email

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
# Headless and quiet: nothing is fetched from the internet, ever.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # The client's own host name, as its DNS would point it at the installation.
                 "--host-resolver-rules=MAP brand.test 127.0.0.1"]
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900},
             # The smallest phones, and any phone at 200 % text size (WCAG 1.4.10 Reflow); not
             # emulated as a phone, which zooms out to fit a page too wide, hiding its scrolling.
             "narrow": {"width": 320, "height": 640}}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
LINK = re.compile(r"https?://[^/\s]+(/[cv]/[A-Za-z0-9_\-]+)")
PREFERENCES_LINK = re.compile(r"https?://[^/\s]+(/p/[A-Za-z0-9_\-]+)")


@dataclass
class LiveApp(LocalHttpServer):
    """The test session's app (already started) served over real HTTP for the browser."""

    app: object = None

    def _app(self):
        return self.app

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="session")
async def live(app) -> AsyncIterator[LiveApp]:
    server = LiveApp(app=app)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "needs Debian's chromium (apt-get install chromium; .ci/run does)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    assert AXE.exists(), "needs axe-core: (cd tests/browser && npm ci); .ci/run does"
    return AXE.read_text()


class Tab:
    """One browser tab of a customer: every page it shows is checked by axe-core and must
    load without a content-security-policy violation."""

    def __init__(self, page: Page, axe_source: str, name: str) -> None:
        self.page, self._axe, self.name = page, axe_source, name
        self.csp_violations: list[str] = []
        page.on("console", lambda m: self.csp_violations.append(m.text)
                if "Content Security Policy" in m.text else None)

    async def goto(self, url: str) -> None:
        await self.page.goto(url)

    async def check(self, shot: str) -> None:
        """axe-core finds no serious or critical violation; a screenshot for the artefacts."""
        # Evaluated over the DevTools protocol, which the page's CSP (no scripts) does not bind.
        await self.page.evaluate(self._axe + "\n;0")
        result = await self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]])
                   for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not serious, f"{self.name}/{shot}: {serious}"
        assert not self.csp_violations, self.csp_violations
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=SCREENSHOTS / f"{self.name}-{shot}.png", full_page=True)


@pytest.fixture
async def tab(browser, axe_source, request) -> AsyncIterator[Tab]:
    viewport = getattr(request, "param", "desktop")
    context = await browser.new_context(viewport=VIEWPORTS[viewport],
                                        is_mobile=viewport == "phone")
    page = await context.new_page()
    yield Tab(page, axe_source, f"{request.node.name}".replace("[", "-").rstrip("]"))
    await context.close()


async def invited(tenant, mailbox, live: LiveApp, campaign: dict, language: str = "en",
                  **contact) -> tuple[str, str]:
    """Enrols one contact and returns (their address, the page link of the invitation)."""
    email = unique_email("browser")
    enrolled = await tenant.enrol(campaign["id"], {
        "external_id": email, "first_name": "Noor", "language": language, "email": email,
        **contact})
    assert enrolled["accepted"] == 1
    [invitation] = await mailbox.wait_for(email)
    return email, live.url(LINK.search(invitation.text).group(1))


def mail_link(mail) -> str:
    return LINK.search(mail.text).group(1)


@pytest.mark.parametrize("tab", ["phone", "desktop"], indirect=True)
@pytest.mark.parametrize("language", ["en", "nl"])
async def test_email_journey_in_the_browser(tab: Tab, language, tenant, mailbox, live):
    page = tab.page
    campaign = await tenant.create_campaign(incentive_text={
        "en": "Win a weekend away!", "nl": "Win een weekend weg!"}[language])
    known, link = await invited(tenant, mailbox, live, campaign)
    await tab.goto(link)
    await expect(page.locator("#email")).to_have_value(known)  # pre-filled
    await expect(page.get_by_text("Your profile is 50% complete")).to_be_visible()
    if language == "nl":
        # The switch is a plain form: no JavaScript, nothing but the token in the URL.
        await page.get_by_role("button", name="Nederlands").click()
        assert page.url == link
        await expect(page.locator("html")).to_have_attribute("lang", "nl")
    await tab.check("1-form")

    new = unique_email("browser-new")
    await page.locator("#email").fill(new)
    await page.locator("#consent-terms").check()
    await page.get_by_role("button", name={"en": "Continue", "nl": "Doorgaan"}[language]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        {"en": "Check your inbox", "nl": "Controleer uw inbox"}[language])
    await tab.check("2-check-inbox")

    [verification] = await mailbox.wait_for(new)
    assert {"en": "confirm", "nl": "bevestig"}[language] in verification.subject.lower()
    await tab.goto(live.url(mail_link(verification)))
    await expect(page.get_by_text(new)).to_be_visible()
    await tab.check("3-confirm")
    await page.get_by_role("button", name={"en": "Confirm", "nl": "Bevestigen"}[language]).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        {"en": "Thank you, your address is confirmed",
         "nl": "Bedankt, uw adres is bevestigd"}[language])
    await tab.check("4-verified")

    # Back after success shows the outcome again, never a form that could confirm twice.
    await page.go_back()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        {"en": "Thank you, your address is confirmed",
         "nl": "Bedankt, uw adres is bevestigd"}[language])
    await expect(page.get_by_role("button", name={"en": "Confirm", "nl": "Bevestigen"}[
        language], exact=True)).to_have_count(0)


async def test_missing_mandatory_consent_is_announced_inline(tab: Tab, tenant, mailbox, live):
    page = tab.page
    _, link = await invited(tenant, mailbox, live, await tenant.create_campaign())
    await tab.goto(link)
    await page.locator("#consent-newsletter").check()
    await page.get_by_role("button", name="Continue").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("This consent is required to continue.")
    terms = page.locator("#consent-terms")
    await expect(terms).to_have_attribute("aria-invalid", "true")
    await expect(terms).to_have_accessible_description("This consent is required to continue.")
    # What was typed and ticked is kept.
    await expect(page.locator("#consent-newsletter")).to_be_checked()
    await tab.check("error")


async def test_a_consent_text_keeps_its_paragraphs(tab: Tab, tenant, mailbox, live):
    """The ledger keeps a legal text with its line breaks; the page ran it into one block."""
    text = "How we keep your data\n\n1. Only to reach you.\n2. Never sold."
    campaign = await tenant.create_campaign(languages=["en"], consents=[{
        "key": "terms", "purpose": "service-communication", "channel": "email",
        "mandatory": True, "texts": {"en": {"text": text, "version": "p1"}}}])
    _, link = await invited(tenant, mailbox, live, campaign)
    await tab.goto(link)
    shown = await tab.page.locator("label[for=consent-terms]").inner_text()
    assert shown.startswith("How we keep your data\n\n1. Only to reach you.\n2. Never sold.")
    await tab.check("paragraphs")


async def test_dutch_mobile_number_in_national_format(tab: Tab, tenant, mailbox, live, settings):
    page = tab.page
    campaign = await tenant.create_campaign(collect=["mobile"], consents=[],
                                            branding={"sms_sender": "AcmeNL"})
    _, link = await invited(tenant, mailbox, live, campaign, language="nl")
    digits = f"1{uuid.uuid4().int % 10**7:07d}"  # 06-1…: a Dutch mobile range
    await tab.goto(link)
    await page.locator("#mobile").fill(f"06 {digits}")
    await page.get_by_role("button", name="Doorgaan").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Voer de code in die wij per sms stuurden")
    await tab.check("code")

    async def sms_to_e164():
        return [s for s in map(json.loads, (p.read_text() for p in
                settings.sms_outbox_dir.glob("*.json"))) if s["to"] == f"+316{digits}"]
    [sms] = await eventually(sms_to_e164, what="the code by SMS to the E.164 number")
    assert sms["sender"] == "AcmeNL"  # the campaign's sender id
    # Typed on a keyboard of another script (here Arabic-Indic digits), the code is the code:
    # neither the browser nor we may refuse it, nor count it as a wrong try.
    code = re.search(r"\b(\d{3}) ?(\d{3})\b", sms["text"])
    await page.locator("#code").fill((code[1] + code[2]).translate(ARABIC_INDIC))
    await page.get_by_role("button", name="Code bevestigen").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Bedankt, uw mobiele nummer is bevestigd")


async def test_double_submit_is_one_submission(tab: Tab, tenant, mailbox, live):
    page = tab.page
    campaign = await tenant.create_campaign()
    _, link = await invited(tenant, mailbox, live, campaign)
    await tab.goto(link)
    new = unique_email("double")
    await page.locator("#email").fill(new)
    await page.locator("#consent-terms").check()
    # What the browser posts for this form, posted twice at once with the browser's cookies:
    # a double click on a slow connection (Chromium itself sends one post per click).
    body = await page.evaluate("""() => new URLSearchParams(new FormData(
        document.querySelector('form[novalidate]'))).toString()""")
    posts = [page.context.request.post(link, data=body, max_redirects=0, headers={
        "content-type": "application/x-www-form-urlencoded"}) for _ in range(2)]
    answers = await asyncio.gather(*posts)
    assert [a.status for a in answers] == [303, 303]
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    await mailbox.wait_for(new)
    journeys = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/journeys")
    [journey] = journeys["items"]
    history = (await tenant.journey(journey["id"]))["history"]
    assert [e["type"] for e in history].count("data_entered") == 1, history
    assert len(mailbox.to(new)) == 1


async def test_tampered_and_expired_links(tab: Tab, tenant, mailbox, live, sessions):
    page = tab.page
    _, link = await invited(tenant, mailbox, live, await tenant.create_campaign())
    tampered = link[:-1] + ("A" if link[-1] != "A" else "B")
    response = await page.goto(tampered)
    assert response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("This link is not valid")
    await tab.check("tampered")

    token = link.rsplit("/", 1)[1]
    async with transaction(sessions) as session:
        await session.execute(update(LinkToken).where(
            LinkToken.token_sha256 == sha256_hex(token)).values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    # A real link past its time says how things stand, not that it was typed wrong.
    response = await page.goto(link)
    assert response.status == 410
    await expect(page.get_by_role("heading", level=1)).to_have_text("This request has ended")
    await tab.check("expired")


async def test_branded_page_on_the_clients_host_name(tab: Tab, tenant, mailbox, live):
    page = tab.page
    domain = f"http://brand.test:{live.port}"
    await tenant.ok("PUT", "/v1/branding", {
        "primary_colour": "#14532d", "font": "transitional", "custom_domain": domain,
        "privacy_url": "https://acme.example/privacy"})
    campaign = await tenant.create_campaign()
    email = unique_email("branded")
    await tenant.enrol(campaign["id"], {"external_id": email, "email": email})
    [invitation] = await mailbox.wait_for(email)
    link = re.search(rf"{re.escape(domain)}/c/[A-Za-z0-9_\-]+", invitation.text).group(0)
    await tab.goto(link)
    header = page.locator("header.brand")
    await expect(header).to_have_css("background-color", "rgb(20, 83, 45)")
    await expect(page.locator("body")).to_have_css("font-family", re.compile("Charter"))
    await expect(page.get_by_role("link", name="Privacy statement")).to_have_attribute(
        "href", "https://acme.example/privacy")
    await tab.check("form")
    # The form posts to the same host name: it works behind the client's domain.
    await page.locator("#consent-terms").check()
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert page.url.startswith(domain)


async def test_typing_the_code_printed_on_paper(tab: Tab, tenant, live):
    page = tab.page
    campaign = await tenant.create_campaign()
    email = unique_email("paper")
    [enrolled] = (await tenant.enrol(campaign["id"], {"external_id": email, "email": email})
                  )["results"]
    printed = await tenant.ok("GET", f"/v1/contacts/{enrolled['contact_id']}/enrichment-link")
    code = printed["short_link"].rsplit("/", 1)[1]

    # Only the host typed: the page asks for the code.
    await tab.goto(live.url("/l"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Enter your personal code")
    await tab.check("1-ask")
    await page.get_by_label("Code").fill("K7M4-9QXD-2B5H")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_contain_text("We do not know this code")
    await expect(page).to_have_title("Error: Your personal page")
    await expect(page.locator("#code-error")).to_be_focused()
    await tab.check("2-unknown")

    # The code as people type it: lower case, without dashes.
    await page.get_by_label("Code").fill(code.replace("-", "").lower())
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#email")).to_have_value(email)
    assert page.url == live.url(printed["url"].removeprefix("http://testserver"))


def contrast(colour: str, background: str) -> float:
    """WCAG contrast ratio of two computed CSS colours ("rgb(17, 24, 39)")."""
    def luminance(css: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    light, dark = sorted((luminance(colour), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


async def test_pay_now_is_readable_on_a_light_brand_colour(tab: Tab, tenant, mailbox, live):
    """An accepted brand colour lighter than the default blue (white on it is 3.2:1): the
    button text takes the on-brand colour chosen for it, as the Continue button does."""
    page = tab.page
    await tenant.ok("PUT", "/v1/branding", {"primary_colour": "#d97706"})
    campaign = await tenant.create_campaign(payments=True)
    _, link = await invited(tenant, mailbox, live, campaign, claim={
        "reference": "INV-1", "payment_url": "https://pay.example.com/1", "amount": "125.50"})
    await tab.goto(link)
    pay = page.get_by_role("link", name="Pay now")
    await expect(pay).to_have_css("background-color", "rgb(217, 119, 6)")
    await expect(pay).to_have_css(
        "color", await page.get_by_role("button", name="Continue").evaluate(
            "e => getComputedStyle(e).color"))
    assert contrast(await pay.evaluate("e => getComputedStyle(e).color"),
                    "rgb(217, 119, 6)") >= 4.5
    await tab.check("pay")


async def test_a_form_sent_back_starts_at_its_errors(tab: Tab, tenant, mailbox, live):
    """Without script the page came back with the focus at its top and the title unchanged:
    the title says there is an error, and the focus starts on the summary, whose links go to
    the fields. The focus ring stands out from the white card and from the grey page."""
    page = tab.page
    _, link = await invited(tenant, mailbox, live, await tenant.create_campaign())
    await tab.goto(link)
    await expect(page).to_have_title(re.compile(r"^Your contact details"))
    await page.locator("#email").fill("not-an-email")
    await page.get_by_role("button", name="Continue").click()
    await expect(page).to_have_title(re.compile(r"^Error: Your contact details"))
    summary = page.locator(".error-summary")
    await expect(summary).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Enter a valid email address")).to_be_focused()
    ring = await page.evaluate("() => getComputedStyle(document.activeElement).outlineColor")
    card = await page.locator("main").evaluate("e => getComputedStyle(e).backgroundColor")
    ground = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert contrast(ring, card) >= 3 and contrast(ring, ground) >= 3, (ring, card, ground)
    await tab.check("error")


@pytest.mark.parametrize("tab", ["narrow"], indirect=True)
@pytest.mark.parametrize(("language", "heading"), [
    ("Deutsch", "Ihre Kommunikationseinstellungen"), ("Nederlands", "Uw communicatievoorkeuren")])
async def test_the_preference_centre_fits_a_320_px_screen(tab: Tab, language, heading, tenant,
                                                          mailbox, live):
    """The heading is one long word in German and Dutch: it pushed the whole page sideways.
    The newsletter text the client has in English only is marked as English."""
    page = tab.page
    campaign = await tenant.create_campaign(languages=["en"], consents=[
        {"key": "newsletter", "purpose": "newsletter", "channel": "email",
         "texts": {"en": {"text": "Send me the monthly newsletter.", "version": "3"}}}])
    email = unique_email("narrow")
    await tenant.enrol(campaign["id"], {"external_id": email, "email": email})
    [invitation] = await mailbox.wait_for(email)
    await tab.goto(live.url(PREFERENCES_LINK.search(invitation.text).group(1)))
    await page.get_by_role("button", name=language).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    assert await page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"), "scrolls sideways"
    await expect(page.locator(".legal-text")).to_have_attribute("lang", "en")
    await tab.check("preferences")
