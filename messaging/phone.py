"""Phone numbers as customers type them, parsed with `phonenumbers` and stored as E.164.

Raises PhoneNumberError (a ValueError, so pydantic validators turn it into a field error) with a
message a customer can act on.
"""

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, ValidationResult

# Numbering plans such as the US and Canada cannot tell mobile from fixed lines by the number.
MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code; start with + and the "
    "country code, e.g. +31 6 12345678",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short to be a phone number",
    NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    NumberParseException.TOO_LONG: "too long to be a phone number",
}
LENGTH_ERRORS = {
    ValidationResult.TOO_SHORT: "too short to be a phone number",
    ValidationResult.TOO_LONG: "too long to be a phone number",
}


class PhoneNumberError(ValueError):
    """The input is not a usable phone number; the message says why."""


class NotMobile(PhoneNumberError):
    """A real number that cannot receive text messages (a landline)."""


def check_region(region: str) -> str:
    """A default region as phonenumbers knows it (ISO 3166 alpha-2, upper case)."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}; use an ISO country code such as NL")
    return code


def parse_phone(raw: str, region: str | None, *, mobile: bool = True) -> str:
    """The number in E.164 (+31612345678). `region` is the client's default region, used when the
    customer leaves out the country code; `mobile` requires a number that can receive SMS."""
    text = (raw or "").strip()
    if not text:
        raise PhoneNumberError("enter a phone number")
    default = check_region(region) if region else None
    if default is None:
        if not text.startswith(("+", "00")):
            raise PhoneNumberError("add the country code, e.g. +31 6 12345678")
        # Without a region phonenumbers cannot read the international prefix 00 itself.
        text = "+" + text.removeprefix("00")
    try:
        number = phonenumbers.parse(text, default)
    except NumberParseException as err:
        raise PhoneNumberError(PARSE_ERRORS.get(err.error_type, "not a phone number")) from err
    if number.extension:
        # E.164 has no room for it: kept, the number would silently lose it.
        raise PhoneNumberError("enter the number without an extension (ext. "
                               f"{number.extension})")
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible in LENGTH_ERRORS:
        raise PhoneNumberError(LENGTH_ERRORS[possible])
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code)
        known = where if where != phonenumbers.UNKNOWN_REGION else default
        raise PhoneNumberError(f"invalid for region {known}" if known else "not a phone number")
    if mobile and phonenumbers.number_type(number) not in MOBILE_TYPES:
        raise NotMobile("not a mobile number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def display_phone(e164: str, region: str | None) -> str:
    """How the number reads to a customer of `region`: national format at home, else international
    (06 12345678 for a Dutch customer, +31 6 12345678 for anyone else)."""
    number = phonenumbers.parse(e164, None)
    home = region and phonenumbers.region_code_for_number(number) == region.upper()
    return phonenumbers.format_number(
        number, PhoneNumberFormat.NATIONAL if home else PhoneNumberFormat.INTERNATIONAL
    )


@lru_cache(maxsize=256)  # every contact page shows one; a region's example never changes
def mobile_example(region: str) -> tuple[str, str]:
    """A mobile number of the region as its people write it, nationally and internationally
    (06 12345678 and +31 6 12345678 for NL): what the page shows as an example."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None:  # Tristan da Cunha has no mobile numbers of its own
        return mobile_example("NL")
    return (phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL),
            phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL))


def provider_number(raw: str, region: str) -> str:
    """A number as an SMS provider reports it (a reply's sender, a bounce's recipient) in E.164:
    international form with or without the '+', or national form (0612345678) read in the
    client's region."""
    digits = raw.strip()
    national = digits.startswith("0") and not digits.startswith("00")
    try:
        parsed = (phonenumbers.parse(digits, region) if national
                  else phonenumbers.parse("+" + digits.removeprefix("+").removeprefix("00")))
    except NumberParseException as err:
        raise PhoneNumberError("not a phone number") from err
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
