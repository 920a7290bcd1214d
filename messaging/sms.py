"""Sends SMS through a provider adapter: the local outbox (dev, tests) or a provider's HTTP API.

Both measure the text first (encoding, segments) and refuse what is too long before sending.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from core.paths import TEMPLATES_DIR
from core.security import new_code
from core.settings import SMS_SENDER, Settings
from core.vocabulary import TokenPurpose
from messaging import links
from messaging.local_outbox import anonymise_records, outbox_id, write_record
from messaging.phone import PhoneNumberError, parse_phone
from messaging.provider_http import PermanentDeliveryFailure, ProviderApi
from messaging.rendering import render_sms, supported_languages
from messaging.sms_encoding import SmsLength, measure


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    sender: str
    text: str
    # Deterministic per journey step: the same SMS sent twice carries the same key.
    idempotency_key: str


@dataclass(frozen=True)
class SmsReceipt:
    provider_message_id: str
    length: SmsLength


class SmsSender(Protocol):
    async def send(self, sms: OutgoingSms) -> SmsReceipt: ...


class SmsUnsendable(PermanentDeliveryFailure):
    """Our own message cannot go out (too long, a bad sender id): no fault of the recipient's
    number, so no bounce of it either."""


def check_sms(sms: OutgoingSms, max_segments: int) -> SmsLength:
    """Refuses what no provider should be asked to send; the length otherwise."""
    # The number itself stays out of the message: failures end up in workflow histories.
    try:
        usable = parse_phone(sms.to, None) == sms.to
    except PhoneNumberError as err:
        raise PermanentDeliveryFailure(f"recipient is not a usable mobile number: {err}") from err
    if not usable:
        raise PermanentDeliveryFailure("recipient is not a mobile number in E.164")
    return check_text(sms, max_segments)


def check_text(sms: OutgoingSms, max_segments: int) -> SmsLength:
    """What check_sms asks of our own part of the message: its sender id and its length."""
    if not re.fullmatch(SMS_SENDER, sms.sender):
        raise SmsUnsendable(
            f"SMS sender {sms.sender!r} must be at most 11 letters and digits, or +E.164")
    length = measure(sms.text)
    if length.segments == 0:
        raise SmsUnsendable("empty SMS text")
    if length.segments > max_segments:
        raise SmsUnsendable(
            f"SMS text needs {length.segments} {length.encoding} segments; at most "
            f"{max_segments} allowed"
        )
    return length


def longest_context(name: str, settings: Settings, *, base_url: str | None = None
                    ) -> dict[str, Any]:
    """An SMS's context with the link at its longest; the other values as short as they come."""
    token = links.link_token(settings, purpose=TokenPurpose.contact_page, step="sms",
                             owner=uuid.UUID(int=0))
    return {"client_name": name, "link": f"{(base_url or settings.public_base_url).rstrip('/')}"
            f"{max(links.PATHS.values(), key=len)}{token}",
            "expires_at": datetime(2026, 9, 30, tzinfo=UTC), "code": new_code(),
            "valid_minutes": 10, "profile_name": "", "reason": ""}


def sms_length_problem(name: str, settings: Settings, *,
                       base_url: str | None = None) -> str | None:
    """Why a client of this name, whose links start with base_url (a custom domain), could not
    send some SMS, or None: a name outside the GSM-7 alphabet turns every text into UCS-2, at
    less than half the characters per segment, and a long name or host name lengthens every
    text. Asked when the name or domain is given; otherwise it shows only as each such SMS is
    skipped when sent."""
    context = longest_context(name, settings, base_url=base_url)
    for template in sorted(p.stem for p in (TEMPLATES_DIR / "sms").glob("*.txt")):
        for language in supported_languages():
            length = measure(render_sms(template, language, context))
            if length.segments > settings.sms_max_segments:
                return (f"too long for an SMS: with it, the {template} text in {language} needs "
                        f"{length.segments} {length.encoding} segments, at most "
                        f"{settings.sms_max_segments} allowed")
    return None


class OutboxSmsSender:
    """Writes each SMS as a JSON file; /dev/outbox lists them."""

    def __init__(self, directory: Path, max_segments: int) -> None:
        self._directory = directory
        self._max_segments = max_segments

    async def send(self, sms: OutgoingSms) -> SmsReceipt:
        length = check_sms(sms, self._max_segments)
        id = outbox_id(sms.idempotency_key)
        write_record(self._directory, id, {
            "id": id,
            "to": sms.to,
            "sender": sms.sender,
            "text": sms.text,
            "encoding": str(length.encoding),
            "units": length.units,
            "segments": length.segments,
            "sent_at": datetime.now(UTC).isoformat(),
            "provider_message_id": id,
        })
        return SmsReceipt(provider_message_id=id, length=length)


def anonymise_outbox(directory: Path, idempotency_keys: list[str]) -> None:
    """The outbox's SMS with these keys no longer say to whom they went or what they said."""
    anonymise_records(directory, idempotency_keys, {"to": "anonymised", "text": ""})


class HttpSmsSender:
    """POSTs {to, from, text, reference, encoding, segments} as JSON; the provider answers
    {"id": ...}."""

    def __init__(self, api: ProviderApi, max_segments: int) -> None:
        self._api = api
        self._max_segments = max_segments

    async def send(self, sms: OutgoingSms) -> SmsReceipt:
        length = check_sms(sms, self._max_segments)
        reference = outbox_id(sms.idempotency_key)
        id = await self._api.submit(
            reference, recipient=sms.to,
            json={"to": sms.to, "from": sms.sender, "text": sms.text, "reference": reference,
                  "encoding": str(length.encoding), "segments": length.segments},
        )
        return SmsReceipt(provider_message_id=id, length=length)


def make_sms_sender(settings: Settings, http: httpx.AsyncClient) -> SmsSender:
    if settings.sms_adapter == "http":
        return HttpSmsSender(ProviderApi.for_channel(settings, "sms", http),
                             settings.sms_max_segments)
    return OutboxSmsSender(settings.sms_outbox_dir, settings.sms_max_segments)

