"""Postal addresses as they are printed in an envelope window, in the order the destination
country's post expects, with the country line for mail abroad."""

from dataclasses import dataclass, field

from babel import Locale

# Where the destination's post wants the postcode on its own line after the town, or after it
# on the same line; everywhere else (most of Europe) it goes first: "1234 AB Amsterdam".
POSTCODE_OWN_LINE = frozenset({"GB", "IE"})
POSTCODE_AFTER_TOWN = frozenset({"US", "CA", "AU"})
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


def window_lines(address: PostalAddress, *, sender_country: str, language: str) -> list[str]:
    """The lines in the window. Mail abroad ends with the country in capitals (named in the
    letter's language), as the Universal Postal Union asks."""
    country = address.country.upper()
    if country not in Locale("en").territories:
        raise AddressError(f"unknown country code {address.country!r}")
    if not address.recipient.strip() or not address.city.strip():
        raise AddressError("an address needs a recipient and a city")
    code, city = address.postal_code.strip(), address.city.strip()
    if country in POSTCODE_OWN_LINE:
        town = [city.upper(), code]
    elif country in POSTCODE_AFTER_TOWN:
        town = [f"{city} {code}".strip()]
    else:
        town = [f"{code} {city}".strip()]
    lines = [address.recipient, *address.extra_lines, *address.street_lines, *town]
    if country != sender_country.upper():
        lines.append(Locale.parse(language).territories[country].upper())
    lines = [" ".join(line.split()) for line in lines if line.strip()]
    if len(lines) > MAX_LINES:
        raise AddressError(f"the address has {len(lines)} lines; at most {MAX_LINES} fit the window")
    return lines
