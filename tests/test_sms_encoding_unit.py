"""Unit tests of SMS length and segment counting (GSM-7 with its extension table, UCS-2)."""

import pytest

from core.settings import Settings
from messaging.sms import sms_length_problem
from messaging.sms_encoding import GSM7_BASIC, GSM7_EXTENSION, SmsEncoding, measure

GSM, UCS2 = SmsEncoding.gsm7, SmsEncoding.ucs2


def test_alphabet_has_the_128_positions_less_the_escape():
    assert len(GSM7_BASIC) == 127 and len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", GSM, 0, 0),
    ("a" * 160, GSM, 160, 1),
    ("a" * 161, GSM, 161, 2),
    ("a" * 306, GSM, 306, 2),
    ("a" * 307, GSM, 307, 3),
    # Extension characters cost two septets: 80 euro signs fill one SMS, 81 need two.
    ("€" * 80, GSM, 160, 1),
    ("€" * 81, GSM, 162, 2),
    ("a" * 159 + "€", GSM, 161, 2),
    ("[x]{y}~|^\\", GSM, 18, 1),
    # Accented letters of the GSM alphabet stay GSM-7 ...
    ("Grüße aus Köln! é è ù ì ò ñ Ä Ö Ü ß Ç", GSM, 37, 1),
    # ... one outside it switches the whole text to UCS-2.
    ("ç" * 70, UCS2, 70, 1),  # the alphabet has the capital Ç only
    ("ç" * 71, UCS2, 71, 2),
    ("Łódź", UCS2, 4, 1),
    # An emoji is a surrogate pair: two UTF-16 units.
    ("😀" * 35, UCS2, 70, 1),
    ("😀" * 36, UCS2, 72, 2),
    ("a" * 69 + "😀", UCS2, 71, 2),
    ("ç" + "a" * 133, UCS2, 134, 2),
    ("ç" + "a" * 134, UCS2, 135, 3),
])
def test_encoding_units_and_segments(text, encoding, units, segments):
    length = measure(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_escape_pair_never_split_across_segments():
    # 152 + 2 septets would straddle the 153-septet segment boundary, so the euro sign moves to
    # the second segment, and the text then needs a third one although 306 septets fit two.
    text = "a" * 152 + "€" + "a" * 152
    length = measure(text)
    assert length.units == 306
    assert length.segments == 3


def test_surrogate_pair_never_split_across_segments():
    text = "a" * 66 + "😀" + "a" * 66  # 134 units, the emoji across the 67-unit boundary
    assert measure(text).segments == 3


@pytest.mark.parametrize(("text", "remaining"), [("a" * 150, 10), ("a" * 160, 0),
                                                 ("a" * 161, 145), ("😀", 68)])
def test_remaining_room_in_the_last_segment(text, remaining):
    assert measure(text).remaining == remaining


def test_a_client_name_of_plain_letters_fits_every_sms_at_its_longest():
    """Every SMS text is GSM-7 in every language, so only a name outside the alphabet sends
    them as UCS-2, where a long one no longer fits the segment limit."""
    settings = Settings(public_base_url="https://journeys.example.com")
    assert sms_length_problem(("Bakkerij de Gouden Korenaar " * 8)[:200], settings) is None
    assert sms_length_problem("Łódzka Spółdzielnia", settings) is None
    assert "UCS-2" in sms_length_problem("Łódzka Spółdzielnia " * 8, settings)
