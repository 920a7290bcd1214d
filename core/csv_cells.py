"""CSV cells for spreadsheets: a value a customer or client typed must not run as a formula in
the spreadsheet the client opens the report in (CSV injection, as OWASP describes it)."""

import re
from typing import Any

# What a spreadsheet reads as the start of a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A signed number or phone number (+31 6 12345678, -12.5) is data, and stays as it is.
NUMBER = re.compile(r"[+-][\d\s().,/-]*")


def safe_cell(value: Any) -> Any:
    """The value, or, when it would start a formula, the value as text (a leading apostrophe,
    which spreadsheets show as nothing)."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: safe_cell(value) for key, value in row.items()}
