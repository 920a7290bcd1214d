"""Unit tests of phone number parsing: what a customer types becomes E.164 or a clear message."""

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from messaging.phone import (
    PhoneNumberError,
    check_region,
    display_phone,
    mobile_example,
    parse_phone,
)


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("06 12345678", "NL", "+31612345678"),
    ("06-1234 5678", "nl", "+31612345678"),
    ("+31 6 12345678", "NL", "+31612345678"),
    ("0031 6 12345678", None, "+31612345678"),
    ("+31612345678", "DE", "+31612345678"),  # an explicit country code wins over the region
    ("01512 3456789", "DE", "+4915123456789"),
    ("07400 123456", "GB", "+447400123456"),
    ("(650) 253-0000", "US", "+16502530000"),  # the US plan cannot tell mobile from fixed
])
def test_valid_mobile_numbers_normalise_to_e164(raw, region, e164):
    assert parse_phone(raw, region) == e164


@pytest.mark.parametrize(("raw", "region", "message"), [
    ("", "NL", "enter a phone number"),
    ("   ", "NL", "enter a phone number"),
    ("call me", "NL", "not a phone number"),
    ("020 123 4567", "NL", "not a mobile number"),  # an Amsterdam landline
    ("+31 6 1234", "NL", "invalid for region NL"),
    ("06 1234567", "NL", "invalid for region NL"),
    ("+49 30 1234567", "NL", "not a mobile number"),
    ("12", "NL", "too short to be a phone number"),
    ("+31 6 123456789012", "NL", "too long to be a phone number"),
    ("+999 1234567", "NL", "unknown country code; start with + and the country code, "
                           "e.g. +31 6 12345678"),
    ("0612345678", None, "add the country code, e.g. +31 6 12345678"),
    # E.164 has no room for an extension: stored, the number would silently lose it.
    ("+31 20 123 4567 ext 9", "NL", "enter the number without an extension (ext. 9)"),
])
def test_bad_numbers_say_why(raw, region, message):
    with pytest.raises(PhoneNumberError) as err:
        parse_phone(raw, region)
    assert str(err.value) == message


def test_landline_accepted_when_mobile_not_required():
    assert parse_phone("020 123 4567", "NL", mobile=False) == "+31201234567"


def test_unknown_default_region_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown phone region 'XX'"):
        parse_phone("06 12345678", "XX")
    assert check_region(" nl ") == "NL"


def test_errors_become_pydantic_field_errors():
    class Form(BaseModel):
        mobile: str

        @field_validator("mobile")
        @classmethod
        def _mobile(cls, value: str) -> str:
            return parse_phone(value, "NL")

    assert Form(mobile="06 12345678").mobile == "+31612345678"
    with pytest.raises(ValidationError) as err:
        Form(mobile="020 123 4567")
    assert err.value.errors()[0]["loc"] == ("mobile",)
    assert "not a mobile number" in err.value.errors()[0]["msg"]


@pytest.mark.parametrize(("region", "shown"), [("NL", "06 12345678"), ("DE", "+31 6 12345678"),
                                               (None, "+31 6 12345678")])
def test_display_in_national_format_at_home_only(region, shown):
    assert display_phone("+31612345678", region) == shown


@pytest.mark.parametrize(("region", "example"), [
    ("NL", ("06 12345678", "+31 6 12345678")), ("BE", ("0450 00 12 34", "+32 450 00 12 34")),
    ("TA", ("06 12345678", "+31 6 12345678"))])
def test_the_page_gives_a_mobile_number_of_the_clients_region_as_example(region, example):
    assert mobile_example(region) == example
