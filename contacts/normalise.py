"""Canonical forms of what clients send: email addresses and card numbers (phone numbers:
messaging.phone)."""

from pydantic import validate_email
from pydantic_core import PydanticCustomError


def email(value: str) -> str:
    try:
        _, address = validate_email(value.strip())
    except PydanticCustomError as err:
        raise PydanticCustomError("email", "not a valid email address") from err
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def same_email(a: str, b: str) -> bool:
    """Whether two canonical addresses are one: letter case counts nowhere, the local part's
    neither, as in the uniqueness rule's keys and the suppression list."""
    return a.casefold() == b.casefold()


def point_key(kind: str, value: str) -> tuple[str, str]:
    """What makes two contact points one: an email address in any letter case (kept as first
    spelt), a mobile number in its E.164 form."""
    return kind, value.casefold() if kind == "email" else value


def card_number(value: str) -> str:
    """Digits of a payment card number that passes the Luhn check."""
    digits = "".join(ch for ch in value if ch not in " -")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise PydanticCustomError("card", "a card number has 12 to 19 digits")
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    if total % 10:
        raise PydanticCustomError("card", "not a valid card number (checksum)")
    return digits


def masked_card(digits: str) -> str:
    return f"•••• {digits[-4:]}"
