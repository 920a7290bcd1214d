"""Unit tests of message rendering and field naming (pure logic)."""

from datetime import UTC, datetime

import pytest

from api.routes.consents import attachment
from api.schemas import field_path
from messaging.rendering import (
    claim_view,
    pick_language,
    render_email,
    render_letter,
    render_page,
    render_sms,
    supported_languages,
)
from messaging.sms import measure

CONTEXT = {"client_name": "Acme <b>&</b> Co", "campaign_name": "c", "first_name": "Eva",
           "last_name": "M", "link": "https://x.test/c/tok", "incentive": None,
           "preferences_link": "https://x.test/p/pref",
           "expires_at": datetime(2026, 12, 24, 12, 0, tzinfo=UTC), "collect": ["email"]}


def test_supported_languages_include_en_nl_de():
    assert {"en", "nl", "de"} <= set(supported_languages())


@pytest.mark.parametrize(("wanted", "got"), [("nl", "nl"), ("de-AT", "de"), ("NL_be", "nl"),
                                             ("fr", "en"), (None, "en"), ("", "en")])
def test_pick_language_falls_back_to_english(wanted, got):
    assert pick_language(wanted) == got


@pytest.mark.parametrize(("language", "by_name", "anonymous"), [
    ("en", "Hello Eva M,", "Hello,"), ("nl", "Beste Eva M,", "Goedendag,"),
    ("de", "Guten Tag Eva M,", "Guten Tag,")])
@pytest.mark.parametrize("template", ["invitation", "reminder", "verification",
                                      "verification_reminder"])
def test_every_email_renders_in_every_language(template, language, by_name, anonymous):
    mail = render_email(template, language, CONTEXT)
    assert mail.subject and "\n" not in mail.subject
    # Mail to an address only typed (perhaps a stranger's) names nobody, whatever it is given.
    typed = template.startswith("verification")
    assert mail.text.startswith((anonymous if typed else by_name) + "\n")
    assert ("Eva" in mail.text + mail.html) != typed
    assert "https://x.test/c/tok" in mail.text and 'href="https://x.test/c/tok"' in mail.html
    # A message with a preference link shows it (mail to a typed address has none).
    assert "https://x.test/p/pref" in mail.text and 'href="https://x.test/p/pref"' in mail.html
    # HTML escapes what the client typed; plain text keeps it as written.
    assert "Acme &lt;b&gt;&amp;&lt;/b&gt; Co" in mail.html and "<b>&</b>" not in mail.html


@pytest.mark.parametrize(("language", "email", "details"), [
    ("en", "email", "contact details"), ("nl", "e-mail", "contactgegevens"),
    ("de", "E-Mail", "Kontaktdaten")])
@pytest.mark.parametrize("collect", [["mobile"], ["email", "mobile"], ["address"]])
def test_a_campaign_asking_more_than_an_email_address_says_contact_details(
        collect, language, email, details):
    for template in ("invitation", "reminder"):
        mail = render_email(template, language, {**CONTEXT, "collect": collect})
        assert email not in mail.subject and details in mail.subject, mail.subject
    invitation = render_email("invitation", language, {**CONTEXT, "collect": collect})
    assert email not in invitation.text.split("\n\n")[1], invitation.text


@pytest.mark.parametrize(("collect", "asked"), [
    (["email"], "add your email address."), (["mobile"], "add your mobile number."),
    (["email", "mobile"], "add your email address and mobile number."),
    (["address"], "check your contact details.")])
def test_a_letter_asks_for_what_its_campaign_collects(collect, asked):
    context = {"client_name": "Acme", "first_name": "Eva", "last_name": "M", "incentive": None,
               "expires_at": datetime(2026, 12, 24, tzinfo=UTC), "collect": collect}
    letter = render_letter("invitation", "en", context)
    [paragraph] = [p for p in letter.paragraphs if p.startswith("Please take a minute")]
    assert asked in paragraph
    assert render_letter("invitation", "nl", context).paragraphs[2].startswith(
        "Neem even de tijd")


@pytest.mark.parametrize(("collect", "heading", "mentions_email"), [
    (["email"], "your address is confirmed", True),
    (["mobile"], "your mobile number is confirmed", False),
    (["email", "mobile"], "your details are confirmed", True)])
def test_the_confirmation_page_names_what_was_confirmed(collect, heading, mentions_email):
    page = render_page("finished", "en", {"client_name": "Acme", "stage": "verified",
                                          "collect": collect})
    assert heading in page
    assert ("bottom of every email" in page) is mentions_email


@pytest.mark.parametrize("stage", ["expired", "cancelled", "lost"])
def test_an_ended_request_does_not_claim_nothing_was_recorded(stage):
    """Consents ticked before a journey expired or was withdrawn stand in the ledger."""
    page = render_page("finished", "en", {"client_name": "Acme", "stage": stage})
    assert "This request has" in page and "No data was changed" not in page


def test_page_escapes_user_data():
    page = render_page("confirm", "en", {"client_name": "x", "email": "<script>@x.com",
                                         "csrf_token": "t", "action": "/v/t"})
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(("loc", "path"), [
    (("body", "contacts", 3, "email"), "contacts[3].email"),
    (("body", "reminders", "interval"), "reminders.interval"),
    (("query", "limit"), "limit"),
    (("body",), "body"),
])
def test_field_path(loc, path):
    assert field_path(loc) == path


@pytest.mark.parametrize("language", ["nl", "de"])
def test_every_text_is_translated(language, tmp_path):
    """Every string marked in templates/ has a translation (re-extract after adding text)."""
    import subprocess
    import sys
    from pathlib import Path

    from babel.messages.pofile import read_po

    root = Path(__file__).parent.parent
    pot = tmp_path / "messages.pot"
    subprocess.run([Path(sys.executable).parent / "pybabel", "extract", "-F", "babel.cfg",
                    "--no-location", "-o", pot, "."], cwd=root, capture_output=True, check=True)
    with pot.open("rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    with (root / "templates" / "locales" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f, locale=language)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    assert len(wanted) > 50
    assert not sorted(wanted - translated), f"untranslated in {language}"


@pytest.mark.parametrize(("name", "header"), [
    ("form.pdf", "attachment; filename=\"form.pdf\"; filename*=UTF-8''form.pdf"),
    ("für\u2028.pdf", "attachment; filename=\"f_r_.pdf\"; filename*=UTF-8''f%C3%BCr%E2%80%A8.pdf"),
])
def test_a_download_names_its_file_without_breaking_the_header(name, header):
    assert attachment(name) == header
    header.encode("latin-1")  # what HTTP headers carry


def test_letters_and_sms_of_a_payment_reminder_name_the_open_payment():
    """As its emails do (the Mail to Pay case): reference, amount and due date, in the
    letter's subject and own paragraph and at the start of the SMS, which stays GSM-7 (no
    no-break space)."""
    claim = claim_view({"reference": "INV-7", "payment_url": "https://pay.example/7",
                        "amount": "125.50", "currency": "EUR", "due_on": "2099-12-31"},
                       None, "nl")
    context = {"client_name": "Acme", "first_name": "Eva", "last_name": "M", "incentive": None,
               "link": "https://x.test/c/tok", "expires_at": datetime(2026, 12, 24, tzinfo=UTC),
               "claim": claim}
    owed = "Openstaande betaling: INV-7, € 125,50, te betalen uiterlijk 31 december 2099."
    letter = render_letter("invitation", "nl", context)
    assert letter.subject == "Openstaande betaling INV-7"
    assert letter.paragraphs[2].replace("\xa0", " ") == owed
    for name in ("invitation", "reminder"):
        sms = render_sms(name, "nl", context)
        assert sms.startswith(owed)
        assert measure(sms).encoding == "GSM-7"
    # Paid: nothing more to say about it.
    paid = claim_view({"reference": "INV-7", "payment_url": "https://pay.example/7"},
                      datetime.now(UTC), "nl")
    assert "INV-7" not in render_sms("invitation", "nl", {**context, "claim": paid})


def test_a_claim_reference_is_shown_as_written_never_as_markup():
    claim = claim_view({"reference": "<b>INV</b> & 7", "payment_url": "https://pay.example/7"},
                       None, "en")
    for name in ("invitation", "reminder"):
        mail = render_email(name, "en", {**CONTEXT, "claim": claim, "owed": True})
        assert "Open payment: &lt;b&gt;INV&lt;/b&gt; &amp; 7." in mail.html, mail.html
        assert "Open payment: <b>INV</b> & 7." in mail.text


@pytest.mark.parametrize(("language", "one", "ten"), [
    ("en", "valid for 1 minute.", "valid for 10 minutes."),
    ("nl", "1 minuut geldig.", "10 minuten geldig."),
    ("de", "1 Minute gültig.", "10 Minuten gültig.")])
def test_the_code_sms_counts_its_minutes(language, one, ten):
    context = {"code": "123456", "client_name": "Acme"}
    assert render_sms("verification_code", language, {**context, "valid_minutes": 1}
                      ).endswith(one)
    assert render_sms("verification_code", language, {**context, "valid_minutes": 10}
                      ).endswith(ten)
