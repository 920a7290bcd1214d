"""Lays out one A4 letter as a PDF: client branding, the address in the window of a DIN 5008
(form B) window envelope, the text in the customer's language and a QR code to the personal page.

Positions are in millimetres from the top-left corner of the page.
"""

import re
import threading
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import segno
from babel.dates import format_date
from fpdf import FPDF, XPos, YPos

from core.settings import LETTER_FONT_HINT
from messaging.address import AddressError
from messaging.rendering import RenderedLetter

PAGE_WIDTH = 210
LEFT, RIGHT = 25, 20
TEXT_WIDTH = PAGE_WIDTH - LEFT - RIGHT
# DIN 5008 form B address field: 85 x 45 mm at 20 mm from the left and 45 mm from the top, its
# first 17.7 mm for the return line, then the address zone; text starts 5 mm inside the field.
# It sits behind the window of DL, C6/5 and C5 envelopes (DIN 680) when folded at the marks.
WINDOW_X, WINDOW_Y, WINDOW_WIDTH, WINDOW_HEIGHT = 20, 45, 85, 45
RETURN_LINE_Y = WINDOW_Y + 12.7
ADDRESS_Y = WINDOW_Y + 17.7
ADDRESS_WIDTH = WINDOW_WIDTH - 10
# The return line takes the address zone's width: 7 pt, smaller for a long one down to 6 pt, the
# smallest the post's readers and the customer still read.
RETURN_LINE_SIZES = (7.0, 6.5, 6.0)
RETURN_LINE_HEIGHT = 3.5
# The address at 10 pt; a long name or street smaller, down to the 8 pt DIN 5008 allows in the
# address zone (in a sans-serif type, as ours is), before the window cannot take it.
ADDRESS_SIZES = (10.0, 9.0, 8.0)
LEADING = 1.2 * 25.4 / 72  # mm per point of type: 12 pt leading for 10 pt type
FOLD_MARKS = (105, 210)
HOLE_MARK = 148.5
SUBJECT_Y = 98.5
QR_SIZE = 34
# From the end of the text to the closing's end: the space above the code, the code, the space
# and the caption under it, the printed link and the space under it, the closing and the space
# under it; then the client's name, 5 mm a line.
REPLY_HEIGHT = 2 + QR_SIZE + 3 + 5 + 6 + 6 + 5 + 2
# Below the text, which breaks to a new page 20 mm from the bottom.
PAGE_NUMBER_Y = 297 - 14
BLACK = (0, 0, 0)
HEX_COLOUR = re.compile(r"#([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Branding:
    name: str
    colour: str = "#1d4ed8"
    # PNG or JPEG, printed at the top left instead of the name.
    logo: bytes | None = None
    # One line above the address, e.g. "Acme BV · Postbus 1 · 1000 AA Amsterdam".
    return_address: str | None = None


@dataclass(frozen=True)
class LetterDocument:
    branding: Branding
    address_lines: list[str]
    language: str
    text: RenderedLetter
    link: str
    short_link: str
    date: date


@dataclass(frozen=True)
class LetterFonts:
    """A Unicode TrueType family, so every customer's name prints as written."""

    regular: Path
    bold: Path


class LetterFontError(Exception):
    """The installation's letter font cannot be read: no letter prints, and no return line can
    be measured, until an operator fixes LETTER_FONT_REGULAR / LETTER_FONT_BOLD."""


def _add_font(pdf: FPDF, style: str, font: Path | str, setting: str) -> None:
    try:
        pdf.add_font("Letter", style, str(font))
    except Exception as err:  # missing, unreadable, or not a TrueType file
        raise LetterFontError(f"{setting} ({font}) cannot be read as a TrueType font ({err}); "
                              f"{LETTER_FONT_HINT}") from err


@dataclass(frozen=True)
class RenderedPdf:
    content: bytes
    pages: int


def rgb(colour: str) -> tuple[int, int, int]:
    found = HEX_COLOUR.fullmatch(colour)
    if not found:
        raise ValueError(f"colour {colour!r} is not of the form #RRGGBB")
    value = found.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _letterhead(pdf: FPDF, branding: Branding) -> None:
    colour = rgb(branding.colour)
    if branding.logo:
        pdf.image(BytesIO(branding.logo), x=LEFT, y=14, h=18)
    else:
        # A long name gets a smaller type, then more lines: it must stay above the rule.
        size = 18
        pdf.set_font("Letter", "B", size)
        while pdf.get_string_width(branding.name) > TEXT_WIDTH and size > 10:
            size -= 1
            pdf.set_font("Letter", "B", size)
        pdf.set_text_color(*colour)
        pdf.set_xy(LEFT, 16)
        pdf.multi_cell(TEXT_WIDTH, size * 0.4, branding.name, max_line_height=size * 0.4)
    pdf.set_draw_color(*colour)
    pdf.set_line_width(0.8)
    pdf.line(LEFT, 36, PAGE_WIDTH - RIGHT, 36)
    # Fold marks and the punch mark in the left margin, as DIN 5008 places them.
    pdf.set_draw_color(150, 150, 150)
    pdf.set_line_width(0.2)
    for y in FOLD_MARKS:
        pdf.line(4, y, 9, y)
    pdf.line(4, HOLE_MARK, 11, HOLE_MARK)
    pdf.set_text_color(*BLACK)


def _missing_glyphs(pdf: FPDF, text: str) -> str:
    """The characters of text the current font has no glyph for, each once."""
    return "".join(dict.fromkeys(
        ch for ch in text if not ch.isspace() and ord(ch) not in pdf.current_font.cmap))


_measuring = threading.Lock()


@lru_cache(maxsize=4)
def _measuring_pdf(font: str, setting: str) -> FPDF:
    pdf = FPDF(unit="mm", format="A4")
    _add_font(pdf, "", font, setting)
    pdf.set_font("Letter", "", RETURN_LINE_SIZES[-1])
    return pdf


def unprintable(text: str, font: Path, setting: str) -> str | None:
    """Why text cannot be printed in this font of the letter's (the file `setting` names), or
    None: fpdf2 would leave out the characters it has no glyph for without a word. Raises
    LetterFontError when the font cannot be read."""
    with _measuring:
        missing = _missing_glyphs(_measuring_pdf(str(font), setting), text)
    return f"has characters the letter's font cannot print: {missing}" if missing else None


def return_line_problem(text: str, font: Path) -> str | None:
    """Why this return line (a branding's letter_sender) cannot be printed in the envelope
    window with the letter's regular font, or None. Raises LetterFontError when the font cannot
    be read."""
    if missing := unprintable(text, font, "LETTER_FONT_REGULAR"):
        return missing
    with _measuring:
        pdf = _measuring_pdf(str(font), "LETTER_FONT_REGULAR")
        pdf.set_font("Letter", "", RETURN_LINE_SIZES[-1])
        width = pdf.get_string_width(text)
    if width > ADDRESS_WIDTH:
        return (f"too long for the envelope window: {width:.0f} mm wide at "
                f"{RETURN_LINE_SIZES[-1]:g} pt, at most {ADDRESS_WIDTH} mm fit; shorten it")
    return None


def _cut(pdf: FPDF, text: str, width: float) -> str:
    """text, or as much of it as fits width with an ellipsis."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text.rstrip() + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _return_line(pdf: FPDF, text: str, x: float) -> None:
    """One line in the window's return zone, its type smaller for a long one; one stored before
    the API measured it goes on two lines, cut if need be, never past the window's edge."""
    for size in RETURN_LINE_SIZES:
        pdf.set_font("Letter", "", size)
        if pdf.get_string_width(text) <= ADDRESS_WIDTH:
            pdf.set_xy(x, RETURN_LINE_Y)
            pdf.cell(ADDRESS_WIDTH, RETURN_LINE_HEIGHT, text)
            return
    words, first = text.split(), ""
    while words and pdf.get_string_width(f"{first} {words[0]}".strip()) <= ADDRESS_WIDTH:
        first = f"{first} {words.pop(0)}".strip()
    if words and words[0] == "·":  # the separator the break takes the place of
        words.pop(0)
    lines = [_cut(pdf, line, ADDRESS_WIDTH) for line in (first, " ".join(words)) if line]
    leading = RETURN_LINE_SIZES[-1] * 0.42
    # Ending where the one line ends, above the address zone.
    top = RETURN_LINE_Y + RETURN_LINE_HEIGHT - leading * len(lines)
    for i, line in enumerate(lines):
        pdf.set_xy(x, top + i * leading)
        pdf.cell(ADDRESS_WIDTH, leading, line)


def _address_field(pdf: FPDF, letter: LetterDocument) -> None:
    text_x = WINDOW_X + 5
    if letter.branding.return_address:
        _return_line(pdf, letter.branding.return_address, text_x)
    for size in ADDRESS_SIZES:
        pdf.set_font("Letter", "", size)
        too_long = [line for line in letter.address_lines
                    if pdf.get_string_width(line) > ADDRESS_WIDTH]
        if not too_long:
            break
    else:
        raise AddressError(f"address line {too_long[0]!r} is too long for the envelope window")
    for i, line in enumerate(letter.address_lines):
        # fpdf2 leaves a character out without a word where the font has no glyph for it: a
        # name or street in Japanese would go out blank.
        if missing := _missing_glyphs(pdf, line):
            raise AddressError(f"address line {line!r} has characters the letter's font "
                               f"cannot print: {missing}")
        pdf.set_xy(text_x, ADDRESS_Y + i * size * LEADING)
        pdf.cell(ADDRESS_WIDTH, size * LEADING, line)
    pdf.set_font("Letter", "", 10)
    pdf.set_xy(125, 85)
    pdf.cell(PAGE_WIDTH - RIGHT - 125, 5, format_date(letter.date, "long", locale=letter.language),
             align="R")


def _qr_code(pdf: FPDF, link: str, x: float, y: float) -> None:
    """Drawn as vector squares, so it stays sharp whatever the print resolution."""
    code = segno.make(link, error="m", micro=False)
    rows = [list(row) for row in code.matrix_iter(scale=1, border=0)]
    module = QR_SIZE / len(rows)
    pdf.set_fill_color(*BLACK)
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            # One rectangle per horizontal run keeps the file small and the edges seamless.
            pdf.rect(x + start * module, y + r * module, (c - start) * module, module, style="F")


class _LetterPdf(FPDF):
    """Numbers the pages after the first ("Page 2 of 3"), as DIN 5008 asks, so a customer
    holding loose sheets knows whether one is missing."""

    def __init__(self, page_number: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._page_number = page_number
        # The total is known only when the letter is done: fpdf2 keeps room for it and puts it
        # in then, at the right of that room as the number ends the line. Not fpdf2's "{nb}",
        # which a customer's name or a client's wording could hold and would print as a number.
        self.alias_nb_pages("{pages-of-this-letter}", align="R")

    def footer(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font("Letter", "", 8)
        self.set_xy(LEFT, PAGE_NUMBER_Y)
        self.cell(TEXT_WIDTH, 4, self._page_number.format(
            page=self.page_no(), pages=self.str_alias_nb_pages), align="R")


def render_letter_pdf(letter: LetterDocument, fonts: LetterFonts) -> RenderedPdf:
    pdf = _LetterPdf(letter.text.page_number)
    _add_font(pdf, "", fonts.regular, "LETTER_FONT_REGULAR")
    _add_font(pdf, "B", fonts.bold, "LETTER_FONT_BOLD")
    pdf.set_margins(LEFT, 20, RIGHT)
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_title(letter.text.subject)
    pdf.set_author(letter.branding.name)
    pdf.set_lang(letter.language)
    pdf.add_page()
    _letterhead(pdf, letter.branding)
    _address_field(pdf, letter)

    pdf.set_xy(LEFT, SUBJECT_Y)
    pdf.set_font("Letter", "B", 11)
    pdf.multi_cell(TEXT_WIDTH, 6, letter.text.subject, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    pdf.set_font("Letter", "", 10)
    for paragraph in letter.text.paragraphs:
        pdf.multi_cell(TEXT_WIDTH, 5, paragraph, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)

    # The code, its caption, the printed link and the closing stay together on one page: a
    # text of the wrong length would otherwise send a sheet with the signature alone, or put
    # the code on one page and its link on the next.
    name_lines = len(pdf.multi_cell(TEXT_WIDTH, 5, letter.branding.name, dry_run=True,
                                    output="LINES"))
    if pdf.get_y() + REPLY_HEIGHT + 5 * name_lines > pdf.page_break_trigger:
        pdf.add_page()
    top = pdf.get_y() + 2
    _qr_code(pdf, letter.link, LEFT, top)
    pdf.set_xy(LEFT, top + QR_SIZE + 3)
    pdf.cell(TEXT_WIDTH, 5, letter.text.qr_caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Letter", "B", 11)
    pdf.cell(TEXT_WIDTH, 6, letter.short_link, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.set_font("Letter", "", 10)
    pdf.cell(TEXT_WIDTH, 5, letter.text.closing, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    pdf.multi_cell(TEXT_WIDTH, 5, letter.branding.name)
    return RenderedPdf(content=bytes(pdf.output()), pages=pdf.pages_count)
