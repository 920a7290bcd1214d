"""How an SMS text will travel: GSM-7 (3GPP TS 23.038, with its extension table) or UCS-2, its
length in the encoding's units and the number of segments, known before anything is sent."""

from dataclasses import dataclass
from enum import StrEnum

# The GSM 03.38 default alphabet; every character costs one septet.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Reached through the escape character, so each costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class SmsEncoding(StrEnum):
    gsm7 = "GSM-7"
    ucs2 = "UCS-2"


# (units in a single message, units per segment of a concatenated message): the user data
# header of a concatenated message takes 7 septets in GSM-7 and 3 code units in UCS-2.
LIMITS = {SmsEncoding.gsm7: (160, 153), SmsEncoding.ucs2: (70, 67)}


@dataclass(frozen=True)
class SmsLength:
    encoding: SmsEncoding
    # Septets in GSM-7, UTF-16 code units in UCS-2 (an emoji takes two).
    units: int
    segments: int
    # What still fits in the last segment before another one is needed.
    remaining: int


def _units(char: str, encoding: SmsEncoding) -> int:
    if encoding is SmsEncoding.gsm7:
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def measure(text: str) -> SmsLength:
    encoding = (
        SmsEncoding.gsm7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)
        else SmsEncoding.ucs2
    )
    single, per_segment = LIMITS[encoding]
    units = sum(_units(c, encoding) for c in text)
    if units <= single:
        return SmsLength(encoding, units, 1 if text else 0, single - units)
    # An escape pair or a surrogate pair is never split between segments: a segment whose last
    # unit would hold half of one ends early, which is why a plain division can undercount.
    segments, used = 1, 0
    for char in text:
        cost = _units(char, encoding)
        if used + cost > per_segment:
            segments, used = segments + 1, 0
        used += cost
    return SmsLength(encoding, units, segments, per_segment - used)

