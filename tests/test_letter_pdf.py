"""Letters rendered to PDF and read back as the post and the customer would: the text, where the
address sits (the envelope window), and the QR code decoded to the personal link."""

import re
from datetime import UTC, date, datetime
from io import BytesIO

import pytest
import segno

from core.settings import Settings
from messaging.address import AddressError, PostalAddress, window_lines
from messaging.letter_pdf import (
    ADDRESS_Y,
    WINDOW_HEIGHT,
    WINDOW_WIDTH,
    WINDOW_X,
    WINDOW_Y,
    Branding,
    rgb,
)
from messaging.letters import LetterRequest, compose_letter
from tests.helpers import PrintedLetter

LINK = "https://journeys.example.com/c/Xy3_kP9-qLm2Rt7Vw8Zb4Nc6Hd1Jf5Gs"
SHORT = "journeys.example.com/s/K7P2QX"
ADDRESS = PostalAddress(recipient="Łukasz Dvořák", street_lines=["Keizersgracht 123 A"],
                        postal_code="1015 CJ", city="Amsterdam", country="NL")
BRANDING = Branding(name="Acme Energie", colour="#b91c1c",
                    return_address="Acme Energie BV · Postbus 1 · 1000 AA Amsterdam")


def request(**overrides) -> LetterRequest:
    values = dict(
        template="invitation", language="en",
        context={"client_name": "Acme Energie", "first_name": "Łukasz", "last_name": "Dvořák",
                 "link": LINK,
                 "expires_at": datetime(2026, 12, 24, tzinfo=UTC), "incentive": None},
        branding=BRANDING, address=ADDRESS, sender_country="NL", link=LINK, short_link=SHORT,
        date=date(2026, 11, 25), idempotency_key="journey-1/letter-1",
    )
    return LetterRequest(**{**values, **overrides})


@pytest.mark.parametrize(("language", "expected"), [
    ("en", ["Please check your contact details", "Dear Łukasz Dvořák,",
            "Acme Energie would like to keep your contact details up to date",
            "Scan the code or go to:", "Kind regards,", "until December 24, 2026",
            "November 25, 2026"]),
    ("nl", ["Wilt u uw contactgegevens controleren?", "Beste Łukasz Dvořák,",
            "Acme Energie wil uw contactgegevens graag actueel houden",
            "Scan de code of ga naar:", "Met vriendelijke groet,", "tot 24 december 2026",
            "25 november 2026"]),
])
def test_letter_reads_back_in_the_customers_language(language, expected, tmp_path):
    letter = compose_letter(request(language=language), Settings())
    printed = PrintedLetter(letter.pdf, tmp_path)
    text = printed.text()
    for phrase in [*expected, "Łukasz Dvořák", "Keizersgracht 123 A", "1015 CJ Amsterdam", SHORT,
                   "Acme Energie BV · Postbus 1 · 1000 AA Amsterdam"]:
        assert phrase in text, phrase
    assert printed.qr_codes() == [LINK]
    assert letter.pages == 1 and letter.subject == expected[0]
    assert letter.address_lines == ["Łukasz Dvořák", "Keizersgracht 123 A", "1015 CJ Amsterdam"]


def test_address_sits_in_the_envelope_window(tmp_path):
    abroad = PostalAddress(recipient="Erika Mustermann", extra_lines=["Musterfirma GmbH"],
                           street_lines=["Heidestraße 17"], postal_code="51147", city="Köln",
                           country="DE")
    letter = compose_letter(request(address=abroad), Settings())
    words = PrintedLetter(letter.pdf, tmp_path).words()
    address_words = {w for line in letter.address_lines for w in line.split()}
    placed = [w for w in words if w.text in address_words]
    assert {w.text for w in placed} == address_words == {
        "Erika", "Mustermann", "Musterfirma", "GmbH", "Heidestraße", "17", "51147", "Köln",
        "GERMANY"}
    for w in placed:
        # Inside the address zone of the window (below the return line), with room to spare.
        assert WINDOW_X + 4 < w.x_min and w.x_max < WINDOW_X + WINDOW_WIDTH - 4, w
        assert ADDRESS_Y - 1 < w.y_min and w.y_max < WINDOW_Y + WINDOW_HEIGHT - 1, w
    return_line = [w for w in words if w.text == "Postbus"]
    assert return_line and WINDOW_Y < return_line[0].y_min and return_line[0].y_max < ADDRESS_Y
    # Nothing else is printed where the window shows.
    in_window = [w for w in words if WINDOW_X < w.x_min < WINDOW_X + WINDOW_WIDTH
                 and WINDOW_Y < w.y_min < WINDOW_Y + WINDOW_HEIGHT]
    assert {w.text for w in in_window} == address_words | set(BRANDING.return_address.split())


def test_a_long_name_and_street_are_printed_smaller_inside_the_window(tmp_path):
    """Too wide for the window at 10 pt, they were refused and the customer got no letter;
    DIN 5008 allows 8 pt in the address zone."""
    long = PostalAddress(recipient="María Fernanda Rodríguez de la Fuente-Álvarez",
                         street_lines=["Burgemeester van Nispen tot Sevenaerstraat 123 A"],
                         postal_code="6901 AB", city="Zevenaar", country="NL")
    letter = compose_letter(request(address=long), Settings())
    words = PrintedLetter(letter.pdf, tmp_path).words()
    address_words = {w for line in letter.address_lines for w in line.split()}
    placed = [w for w in words if w.text in address_words]
    assert {w.text for w in placed} == address_words
    for w in placed:
        assert WINDOW_X + 4 < w.x_min and w.x_max < WINDOW_X + WINDOW_WIDTH - 4, w
        assert ADDRESS_Y - 1 < w.y_min and w.y_max < WINDOW_Y + WINDOW_HEIGHT - 1, w
    # All in one size, smaller than the date's 10 pt, and no smaller than 8 pt.
    [date] = [w for w in words if w.text == "November"]
    sizes = {round(10 * (w.y_max - w.y_min) / (date.y_max - date.y_min), 1) for w in placed}
    assert len(sizes) == 1 and 8 <= min(sizes) < 10, sizes


def test_logo_replaces_the_printed_name_and_the_qr_code_is_vector(tmp_path):
    logo = BytesIO()
    segno.make("logo").save(logo, kind="png", scale=4)
    branded = compose_letter(request(branding=Branding(name="Acme Energie", logo=logo.getvalue())),
                             Settings())
    plain = compose_letter(request(), Settings())
    with_logo = PrintedLetter(branded.pdf, tmp_path / "a")
    without = PrintedLetter(plain.pdf, tmp_path / "b")
    assert with_logo.images() == 1 and without.images() == 0

    def letterhead(printed: PrintedLetter) -> list[str]:
        return [w.text for w in printed.words() if w.y_max < 36]
    assert letterhead(with_logo) == [] and letterhead(without) == ["Acme", "Energie"]


def test_a_long_client_name_stays_on_the_page(tmp_path):
    """Above the letterhead's rule and within the right margin, as is the signature."""
    name = "Łódzka Spółdzielnia Mieszkaniowa Budownictwa Wielorodzinnego Oddział Północny " * 2
    letter = compose_letter(request(branding=Branding(name=name.strip(), colour="#b91c1c")),
                            Settings())
    words = PrintedLetter(letter.pdf, tmp_path).words()
    page_width = 210
    assert all(w.x_max < page_width - 15 for w in words), [
        w.text for w in words if w.x_max >= page_width - 15]
    head = [w.text for w in words if w.y_max < 36]
    assert " ".join(head) == name.strip()


def test_long_text_moves_the_qr_code_to_a_second_page_whole(tmp_path):
    long = request(context={**request().context, "incentive": "Win a prize. " * 400})
    letter = compose_letter(long, Settings())
    assert letter.pages >= 2
    printed = PrintedLetter(letter.pdf, tmp_path)
    assert SHORT in printed.text()


@pytest.mark.parametrize(("language", "numbered"), [
    ("en", "Page {page} of {pages}"), ("nl", "Pagina {page} van {pages}"),
    ("de", "Seite {page} von {pages}")])
def test_pages_after_the_first_are_numbered_in_the_customers_language(language, numbered,
                                                                      tmp_path):
    """As DIN 5008 asks, so a customer with loose sheets knows none is missing; the first page,
    with the letterhead, has no number, and a one-page letter none at all."""
    long = request(language=language,
                   context={**request().context, "incentive": "Win a prize. " * 800})
    letter = compose_letter(long, Settings())
    assert letter.pages >= 3
    printed = PrintedLetter(letter.pdf, tmp_path)
    a_number = re.compile(numbered.format(page=r"\d+", pages=r"\d+"))
    assert not a_number.search(printed.text(page=1))
    for page in range(2, letter.pages + 1):
        assert numbered.format(page=page, pages=letter.pages) in printed.text(page=page), page
    # Text that reads like fpdf2's own page count placeholder is printed as written.
    short = compose_letter(request(language=language, context={
        **request().context, "incentive": "Quote {nb} on the form."}), Settings())
    assert short.pages == 1
    text = PrintedLetter(short.pdf, tmp_path / "short").text()
    assert not a_number.search(text) and "Quote {nb} on the form." in text


def test_the_code_its_link_and_the_closing_stay_together_whatever_the_texts_length(tmp_path):
    """Whichever length the campaign's text has, the page with the code also has its printed
    link and the closing: no sheet goes out with the signature alone."""
    context = request().context
    for words in range(164, 236, 8):  # one page, the closing or name alone on a second, two
        incentive = " ".join(["prize"] * words)
        letter = compose_letter(request(context={**context, "incentive": incentive}), Settings())
        printed = PrintedLetter(letter.pdf, tmp_path / str(words))
        last = printed.text(page=letter.pages).removesuffix(
            f" Page {letter.pages} of {letter.pages}")
        assert printed.qr_codes(page=letter.pages) == [LINK], words
        assert last.endswith(f"Scan the code or go to: {SHORT} Kind regards, Acme Energie"), (
            words, last[-200:])
        if letter.pages > 1:
            assert SHORT not in printed.text(page=1) and printed.qr_codes(page=1) == []


@pytest.mark.parametrize(("address", "message"), [
    (PostalAddress(recipient="A" * 60, street_lines=["Street 1"], postal_code="1234 AB",
                   city="Delft", country="NL"), "too long for the envelope window"),
    (PostalAddress(recipient="Eva", street_lines=["a", "b", "c", "d"], postal_code="1234 AB",
                   city="Delft", country="BE"), "7 lines; at most 6 fit the window"),
    (PostalAddress(recipient="Eva", street_lines=["a"], postal_code="1", city="X", country="QQ"),
     "unknown country code 'QQ'"),
    (PostalAddress(recipient=" ", street_lines=["a"], postal_code="1", city="X", country="NL"),
     "needs a recipient and a city"),
    # The font prints Latin, Greek and Cyrillic; left out, the name would go out blank.
    (PostalAddress(recipient="山田 太郎", street_lines=["千代田1-1"], postal_code="100-0001",
                   city="Chiyoda", country="JP"), "cannot print: 山田太郎"),
])
def test_addresses_that_cannot_be_posted_are_refused(address, message):
    with pytest.raises(AddressError, match=message):
        compose_letter(request(address=address), Settings())


@pytest.mark.parametrize(("country", "sender", "tail"), [
    ("NL", "NL", ["Main St 1", "1234 AB Delft"]),
    ("BE", "NL", ["Main St 1", "1234 AB Delft", "BELGIUM"]),
    ("GB", "NL", ["Main St 1", "DELFT", "1234 AB", "UNITED KINGDOM"]),
    ("US", "US", ["Main St 1", "Delft 1234 AB"]),
])
def test_window_lines_follow_the_destination_post(country, sender, tail):
    address = PostalAddress(recipient="Eva", street_lines=["Main St 1"], postal_code="1234 AB",
                            city="Delft", country=country)
    assert window_lines(address, sender_country=sender, language="en") == ["Eva", *tail]


@pytest.mark.parametrize(("country", "region", "postal_code", "city", "tail"), [
    ("US", "CA", "94043", "Mountain View", ["Mountain View, CA 94043"]),
    ("CA", "on", "M5V 2T6", "Toronto", ["Toronto ON M5V 2T6"]),
    ("AU", "NSW", "2000", "Sydney", ["Sydney NSW 2000"]),
    ("IT", "RM", "00100", "Roma", ["00100 Roma RM"]),
    ("BR", "SP", "01310-100", "São Paulo", ["São Paulo-SP", "01310-100"]),
    ("JP", "Tokyo", "100-0001", "Chiyoda-ku", ["Chiyoda-ku, TOKYO", "100-0001"]),
    # A country whose post prints no region: none, whatever the address holds.
    ("NL", "Noord-Holland", "1015 CJ", "Amsterdam", ["1015 CJ Amsterdam"]),
])
def test_the_region_is_printed_where_the_destination_post_wants_it(
        country, region, postal_code, city, tail):
    address = PostalAddress(recipient="Eva", street_lines=["Main St 1"], postal_code=postal_code,
                            city=city, country=country, region=region)
    assert window_lines(address, sender_country=country, language="en") == ["Eva", "Main St 1", *tail]


def test_country_line_in_the_letters_language():
    address = PostalAddress(recipient="Eva", street_lines=["x 1"], postal_code="1000",
                            city="Brussel", country="be")
    assert window_lines(address, sender_country="NL", language="nl")[-1] == "BELGIË"


@pytest.mark.parametrize("colour", ["red", "#12345", "#gggggg", "1d4ed8"])
def test_brand_colour_must_be_hex(colour):
    with pytest.raises(ValueError, match="#RRGGBB"):
        rgb(colour)
