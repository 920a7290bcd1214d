"""How an SMS text will travel: GSM-7 (3GPP TS 23.038, with its extension table) or UCS-2, its
length in the encoding's units and the number of segments, known before anything is sent."""

import re
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


GSM7 = GSM7_BASIC | GSM7_EXTENSION


# The characters that cost two units: an escape pair in GSM-7, a surrogate pair in UCS-2.
DOUBLE = {SmsEncoding.gsm7: re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]"),
          SmsEncoding.ucs2: re.compile("[\U00010000-\U0010FFFF]")}


def measure(text: str) -> SmsLength:
    encoding = SmsEncoding.gsm7 if GSM7.issuperset(text) else SmsEncoding.ucs2
    single, per_segment = LIMITS[encoding]
    units = (len(text) + sum(text.count(c) for c in GSM7_EXTENSION)
             if encoding is SmsEncoding.gsm7 else len(text.encode("utf-16-le")) // 2)
    if units <= single:
        return SmsLength(encoding, units, 1 if text else 0, single - units)
    # An escape pair or a surrogate pair is never split between segments: a segment whose last
    # unit would hold half of one ends early, which is why a plain division can undercount.
    segments, used, at = 1, 0, 0
    for pair in [*DOUBLE[encoding].finditer(text), None]:
        # The single units before the pair (or the end) fill segments as they come.
        used += (pair.start() if pair else len(text)) - at
        if used > per_segment:
            more = -(-(used - per_segment) // per_segment)
            segments, used = segments + more, used - more * per_segment
        if pair:
            if used + 2 > per_segment:
                segments, used = segments + 1, 0
            used, at = used + 2, pair.end()
    return SmsLength(encoding, units, segments, per_segment - used)
