"""Unit tests of the SMS and letter texts: every language renders, and SMS stay short and GSM-7."""

from datetime import UTC, datetime

import pytest

from messaging.rendering import render_letter, render_sms
from messaging.sms_encoding import SmsEncoding, measure

# A personal link as long as production's: host plus a 43-character token.
LINK = "https://contact.example-energie.nl/c/" + "T" * 43
CONTEXT = {"client_name": "Acme Energie", "first_name": "Eva", "last_name": "Jansen",
           "link": LINK,
           "expires_at": datetime(2026, 12, 24, tzinfo=UTC), "incentive": None,
           "code": "493817", "valid_minutes": 10}


@pytest.mark.parametrize("language", ["en", "nl", "de"])
@pytest.mark.parametrize(("template", "max_segments"), [
    ("invitation", 1), ("reminder", 2), ("verification_code", 1)])
def test_sms_texts_stay_gsm7_and_short(template, language, max_segments):
    text = render_sms(template, language, CONTEXT)
    length = measure(text)
    assert length.encoding is SmsEncoding.gsm7, text
    assert 0 < length.segments <= max_segments, (length, text)
    assert "\n" not in text and text == text.strip()
    assert (LINK in text) == (template != "verification_code")


def test_sms_code_and_validity_are_in_the_text():
    assert render_sms("verification_code", "nl", CONTEXT) == (
        "493817 is uw verificatiecode van Acme Energie. De code is 10 minuten geldig.")


@pytest.mark.parametrize(("language", "greeting", "closing"), [
    ("en", "Dear customer,", "Kind regards,"), ("nl", "Geachte klant,", "Met vriendelijke groet,"),
    ("de", "Sehr geehrte Kundin, sehr geehrter Kunde,", "Mit freundlichen Grüßen")])
def test_letter_without_first_name_and_with_incentive(language, greeting, closing):
    letter = render_letter("invitation", language,
                           {**CONTEXT, "first_name": None, "incentive": "Win  a\nvoucher!"})
    assert letter.paragraphs[0] == greeting and letter.closing == closing
    assert "Win a voucher!" in letter.paragraphs
    assert all(p == " ".join(p.split()) for p in letter.paragraphs)
