"""What a screen reader meets on the customer's pages, walked over HTTP as a browser without
JavaScript would: a page sent back with a mistake says so in its title and starts at the
mistake (autofocus: the pages run no script), and a legal text shown in another language than
the page's is marked with its own, for the reader's voice."""

import re

from tests.helpers import Customer, unique_email
from tests.test_kyc import FAR, ID_OR_PASSPORT, IDENTITY, define, new_contact, refuted_upload_link

TITLE = re.compile(r"<title>(.*?)</title>", re.S)
NEWSLETTER_EN = {"en": {"text": "Send me the monthly newsletter.", "version": "3"}}


def title(page: str) -> str:
    return TITLE.search(page).group(1).strip()


async def invited(tenant, mailbox, http, campaign: dict, **contact):
    address = unique_email("a11y")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address, **contact})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    page = mailbox.link(invitation)
    await customer.open(page)
    return customer, page, invitation


async def test_a_form_sent_back_says_error_in_its_title_and_starts_at_the_summary(
    tenant, mailbox, http
):
    customer, page, _ = await invited(tenant, mailbox, http, await tenant.create_campaign(),
                                      language="nl")
    assert title(customer.page) == f"Uw contactgegevens · {tenant.name}"
    response = await customer.submit(page, email="not-an-email", consent=["terms"])
    assert response.status_code == 422
    assert title(customer.page) == f"Fout: Uw contactgegevens · {tenant.name}"
    assert '<div class="error-summary" role="alert" tabindex="-1" autofocus>' in customer.page
    assert customer.page.count("autofocus") == 1


async def test_a_code_typed_wrong_says_error_in_its_title_and_is_focused(tenant, mailbox, http):
    campaign = await tenant.create_campaign(collect=["mobile"], languages=["en"], consents=[])
    customer, page, _ = await invited(tenant, mailbox, http, campaign)
    await customer.submit(page, mobile="+31612345678")
    assert 'id="code"' in customer.page and not title(customer.page).startswith("Error:")
    response = await customer.submit(page + "/code", code="12345")
    assert response.status_code == 422
    assert title(customer.page) == f"Error: Your contact details · {tenant.name}"
    assert re.search(r'<p class="field-error" role="alert" id="code-error" tabindex="-1" '
                     r'autofocus>A code has 6 digits', customer.page), customer.page
    assert customer.page.count("autofocus") == 1


async def test_a_page_awaiting_a_code_and_a_link_has_one_h1(tenant, mailbox, http):
    campaign = await tenant.create_campaign(collect=["email", "mobile"], languages=["en"],
                                            consents=[])
    customer, page, _ = await invited(tenant, mailbox, http, campaign)
    await customer.submit(page, email=unique_email("a11y-new"), mobile="+31612345678")
    assert 'id="code"' in customer.page and "Check your inbox" in customer.page
    # A screen reader's list of headings: the code to enter heads the page, the link beside it.
    headings = re.findall(r"<h([1-6])>(.*?)</h\1>", customer.page)
    assert headings == [("1", "Enter the code we sent by SMS"), ("2", "Check your inbox"),
                        ("3", "What happens next")], headings


async def preference_centre(tenant, mailbox, http) -> tuple[Customer, str]:
    """The preference centre of an invited customer, offering one English legal text."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    await tenant.ensure_purpose("newsletter", "direct_marketing")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "3", "text": "Send me the monthly newsletter."})
    _, _, invitation = await invited(tenant, mailbox, http, campaign)
    preferences = re.search(r"http://testserver(/p/[A-Za-z0-9_\-]+)", invitation.text).group(1)
    customer = Customer(http)
    await customer.open(preferences)
    return customer, preferences


async def test_a_refused_preference_form_says_error_and_starts_at_why(tenant, mailbox, http):
    customer, preferences = await preference_centre(tenant, mailbox, http)
    assert title(customer.page).startswith("Your communication preferences")
    refused = await customer.submit(preferences, granted=["newsletter:bogus"])
    assert refused.status_code == 422
    assert title(customer.page) == f"Error: Your communication preferences · {tenant.name}"
    assert '<div class="error-summary" role="alert" tabindex="-1" autofocus>' in customer.page


async def test_an_unknown_printed_code_says_error_and_is_focused(http):
    asked = await http.get("/l", headers={"accept-language": "de"})
    assert title(asked.text) == "Ihre persönliche Seite"
    # On the letter the code is printed under the QR code ("Scan the code or go to:").
    assert "Er steht unter dem QR-Code" in asked.text
    unknown = await http.get("/l?code=K7M4-9QXD-2B5H", headers={"accept-language": "de"})
    assert unknown.status_code == 404
    assert title(unknown.text) == "Fehler: Ihre persönliche Seite"
    assert 'id="code-error" tabindex="-1" autofocus>' in unknown.text
    english = await http.get("/l")
    assert "It is printed below the QR code" in english.text


async def test_the_form_expired_page_has_a_title_of_its_own(tenant, mailbox, http):
    customer, page, _ = await invited(tenant, mailbox, http, await tenant.create_campaign())
    forged = await http.post(page, data={"email": unique_email(), "consent": "terms"})
    assert forged.status_code == 403
    assert "<h1>Please try again</h1>" in forged.text
    assert title(forged.text) == f"Please try again · {tenant.name}"


async def test_a_consent_text_in_another_language_than_the_page_is_marked(tenant, mailbox, http):
    """The client dropped Dutch from its campaign: a journey begun in Dutch keeps its Dutch
    page, beside the English text, which a Dutch voice would misread unmarked."""
    campaign = await tenant.create_campaign()
    customer, page, _ = await invited(tenant, mailbox, http, campaign, language="nl")
    assert '<html lang="nl">' in customer.page
    assert 'lang="en">' not in customer.page.split("<footer")[0].split("</header>")[1]
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {
        "languages": ["en"], "consents": [
            {"key": "terms", "purpose": "service-communication", "channel": "email",
             "mandatory": True, "texts": {"en": {"version": "2026-1"}}},
            {"key": "newsletter", "purpose": "newsletter", "channel": "email",
             "texts": NEWSLETTER_EN}]})
    await customer.open(page)
    assert '<html lang="nl">' in customer.page
    assert ('<label for="consent-terms"><span lang="en">I agree to receive service emails.'
            '</span> <span class="required">(verplicht)</span></label>') in customer.page
    assert '<span lang="en">Send me the monthly newsletter.</span>' in customer.page


async def test_a_preference_text_in_another_language_than_the_page_is_marked(
    tenant, mailbox, http
):
    customer, preferences = await preference_centre(tenant, mailbox, http)
    assert '<p class="legal-text">Send me the monthly newsletter.</p>' in customer.page
    await http.post(f"{preferences}/language", data={"language": "de",
                                                     "csrf_token": customer.csrf()})
    await customer.open(preferences)
    assert '<html lang="de">' in customer.page
    assert '<p class="legal-text" lang="en">Send me the monthly newsletter.</p>' in customer.page


async def test_a_reconsent_form_in_another_language_than_the_page_is_marked(
    tenant, mailbox, http
):
    await tenant.ensure_purpose("data-processing", "data_processing")
    form = {"key": "gdpr", "purpose": "data-processing", "channel": "any", "mandatory": True}
    campaign = await tenant.create_campaign(
        name="Privacy notice v2", kind="reconsent", languages=["en", "nl"],
        consents=[{**form, "texts": {"en": {"text": "We keep your address.", "version": "v2"},
                                     "nl": {"text": "Wij bewaren uw adres.", "version": "v2"}}}])
    customer, page, _ = await invited(tenant, mailbox, http, campaign, language="nl")
    assert '<section class="legal-text" aria-label="Voorwaarden"><p>Wij bewaren' in customer.page
    await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {
        "languages": ["en"], "consents": [{**form, "texts": {"en": {"version": "v2"}}}]})
    await customer.open(page)
    assert '<html lang="nl">' in customer.page
    assert '<p lang="en">We keep your address.</p>' in customer.page


async def test_a_refused_dashboard_sign_in_says_error_and_is_focused(http):
    customer = Customer(http)
    await customer.open("/dashboard/login")
    assert title(customer.page) == "Sign in to the dashboard"
    refused = await customer.submit("/dashboard/login", api_key="not-a-key")
    assert refused.status_code in (401, 403, 422), refused.status_code
    assert title(customer.page) == "Error: Sign in to the dashboard"
    assert 'id="api-key-error" tabindex="-1" autofocus>' in customer.page


async def test_a_refused_kyc_upload_says_error_in_its_title_and_starts_at_the_summary(
    tenant, sessions, http, mailbox
):
    await define(tenant, 1, IDENTITY + ID_OR_PASSPORT, expires_after="P365D")
    contact_id, email = await new_contact(sessions, tenant)
    link = await refuted_upload_link(tenant, mailbox, contact_id, email)
    customer = Customer(http)
    await customer.open(link)
    assert title(customer.page) == f"Your identity documents · {tenant.name}"
    assert "autofocus" not in customer.page
    # Sent without the scan: nothing stored, the page says why.
    refused = await customer.submit(link, document_type="id_card", number="X123",
                                    expires_at=FAR)
    assert refused.status_code == 422
    assert title(customer.page) == f"Error: Your identity documents · {tenant.name}"
    assert '<div class="error-summary" role="alert" tabindex="-1" autofocus>' in customer.page
    assert customer.page.count("autofocus") == 1
    await customer.submit(f"{link}/language", language="nl")
    await customer.submit(link, document_type="id_card", number="X123", expires_at="2020-01-01")
    assert title(customer.page).startswith("Fout: "), title(customer.page)
    assert customer.page.count("autofocus") == 1
