"""The letter's return line (branding `letter_sender`) stays inside the envelope window: a long
one is printed smaller, one too long for the window or with characters the letter font cannot
print is refused by the API, and one stored before that check is never printed past the window."""

import pytest

from core.settings import Settings
from messaging.letter_pdf import ADDRESS_Y, WINDOW_WIDTH, WINDOW_X, WINDOW_Y, Branding
from messaging.letters import compose_letter
from tests.helpers import PrintedLetter
from tests.test_channel_plans import ADDRESS, contact, enrol, wait_for_letter
from tests.test_letter_pdf import request

# 63 characters: 85 mm at 7 pt, more than the window's 75 mm address zone; fits at 6 pt.
FITS_SMALLER = "Acme Energie Nederland B.V. · Postbus 12345 · 1000 AA Amsterdam"
# 99 characters, which the API accepted (it took up to 120) and printed 51 mm past the window.
TOO_LONG = ("Acme Energie Nederland BV · Afdeling Klantenservice · Postbus 12345 · "
            "1000 AA Amsterdam · Nederland")


def return_line_words(sender: str, tmp_path) -> list:
    letter = compose_letter(request(branding=Branding(name="Acme", return_address=sender)),
                            Settings())
    words = PrintedLetter(letter.pdf, tmp_path).words()
    # Starting between the window's top and the address zone (whose first line starts just
    # above ADDRESS_Y), within the page's left half.
    return [w for w in words if WINDOW_Y <= w.y_min < ADDRESS_Y - 1 and w.x_min < 110]


@pytest.mark.parametrize("sender", [FITS_SMALLER, TOO_LONG, TOO_LONG + " " + "W" * 40])
def test_the_return_line_stays_inside_the_window(sender, tmp_path):
    words = return_line_words(sender, tmp_path)
    assert words
    for w in words:
        assert WINDOW_X + 4 < w.x_min and w.x_max <= WINDOW_X + WINDOW_WIDTH - 4, w
        assert WINDOW_Y < w.y_min and w.y_max < ADDRESS_Y, w


def test_a_return_line_that_fits_smaller_is_printed_whole_on_one_line(tmp_path):
    words = return_line_words(FITS_SMALLER, tmp_path)
    assert " ".join(w.text for w in words) == FITS_SMALLER
    assert len({round(w.y_min) for w in words}) == 1


def test_a_stored_return_line_too_long_goes_on_two_lines_whole(tmp_path):
    words = return_line_words(TOO_LONG, tmp_path)
    lines = [" ".join(w.text for w in words if round(w.y_min) == y)
             for y in sorted({round(w.y_min) for w in words})]
    # Broken at a separator, which the break replaces.
    assert lines == ["Acme Energie Nederland BV · Afdeling Klantenservice · Postbus 12345",
                     "1000 AA Amsterdam · Nederland"]


async def test_the_api_refuses_a_return_line_the_window_cannot_take(tenant):
    def field(response) -> str:
        assert response.status_code == 422, response.text
        return {f["field"]: f["message"] for f in response.json()["error"]["fields"]}[
            "letter_sender"]

    long = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                 json={"letter_sender": TOO_LONG})
    assert "envelope window" in field(long)
    foreign = await tenant.http.put("/v1/branding", headers=tenant.auth,
                                    json={"letter_sender": "アクメ株式会社 · 東京都千代田区"})
    assert "cannot print" in field(foreign) and "ア" in field(foreign)
    assert (await tenant.ok("GET", "/v1/branding"))["branding"] == {}

    campaign = await tenant.create_campaign()
    override = await tenant.http.put(f"/v1/campaigns/{campaign['id']}/branding",
                                     headers=tenant.auth, json={"letter_sender": TOO_LONG})
    assert "envelope window" in field(override)
    created = await tenant.post("/v1/campaigns", {"name": "Check",
                                                  "branding": {"letter_sender": TOO_LONG}})
    assert created.status_code == 422 and "branding.letter_sender" in {
        f["field"] for f in created.json()["error"]["fields"]}

    fits = await tenant.ok("PUT", "/v1/branding", {"letter_sender": FITS_SMALLER})
    assert fits["branding"]["letter_sender"] == FITS_SMALLER


async def test_a_letter_asks_for_both_the_email_address_and_mobile_number_the_page_needs(
    tenant, settings
):
    """The page takes the form only with both, and the journey is verified only once both are:
    the letter asked to add one "or" the other."""
    campaign = await tenant.create_campaign(
        languages=["en", "nl", "de"], consents=[], collect=["email", "mobile"],
        channel_plan=[{"channel": "letter"}])
    person = await contact(tenant, address=ADDRESS)
    await enrol(tenant, campaign["id"], person)
    letter = await wait_for_letter(settings, person["last_name"])
    printed = " ".join(PrintedLetter(
        (settings.letter_outbox_dir / f"{letter['id']}.pdf").read_bytes(),
        settings.letter_outbox_dir / f"read-{letter['id']}").text().split())
    assert "add your email address and mobile number." in printed, printed
    path = f"/v1/campaigns/{campaign['id']}/messages/preview?kind=letter"
    for language, asked in [("en", "add your email address and mobile number."),
                            ("nl", "uw e-mailadres en mobiele nummer toe te voegen."),
                            ("de", "Ihre E-Mail-Adresse und Mobilnummer zu ergänzen.")]:
        text = " ".join((await tenant.ok("GET", f"{path}&language={language}"))["text"].split())
        assert asked in text, (language, text)


async def test_letter_wording_with_characters_the_letter_cannot_print_is_a_field_error(tenant):
    """The letter would print it without them, the preview showing what the paper lacks: an
    emoji or Japanese in its subject or text is refused, as they would be in the address."""
    def fields(response) -> dict[str, str]:
        assert response.status_code == 422, response.text
        return {f["field"]: f["message"] for f in response.json()["error"]["fields"]}

    refused = await tenant.post("/v1/campaigns", {
        "name": "Check", "languages": ["en"],
        "messages": {"letter": {"en": {"subject": "Win a prize 🎉",
                                       "text": "{client_name} アクメ thanks you 🎉"}}}})
    assert fields(refused) == {
        "messages.letter.en.subject": "has characters the letter's font cannot print: 🎉",
        "messages.letter.en.text": "has characters the letter's font cannot print: アクメ🎉"}

    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    patched = await tenant.http.patch(f"/v1/campaigns/{campaign['id']}", headers=tenant.auth, json={
        "messages": {"letter": {"en": {"text": "Thank you 🙏"}}}})
    assert fields(patched) == {
        "messages.letter.en.text": "has characters the letter's font cannot print: 🙏"}

    # Every script and sign the letter prints passes; an email shows an emoji, so keeps it.
    printable = "Łódź, Ελλάδα, Москва: a “€ 50” voucher – for you"
    saved = await tenant.ok("PATCH", f"/v1/campaigns/{campaign['id']}", {"messages": {
        "letter": {"en": {"subject": printable, "text": printable}},
        "invitation": {"en": {"subject": "Win a prize 🎉", "text": "Thank you 🙏"}}}})
    assert saved["spec"]["messages"]["letter"]["en"]["text"] == printable
    preview = await tenant.ok("GET", f"/v1/campaigns/{campaign['id']}/messages/preview"
                                     "?kind=letter&language=en")
    assert printable in preview["text"]
