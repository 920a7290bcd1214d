"""Hands a rendered letter to a print provider: the local outbox (dev, tests) or an HTTP upload.
The provider's acceptance is what the journey records as "letter sent"."""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from core.settings import Settings
from messaging.address import PostalAddress, window_lines
from messaging.letter_pdf import Branding, LetterDocument, LetterFonts, render_letter_pdf
from messaging.local_outbox import anonymise_records, outbox_id, write_atomically, write_record
from messaging.provider_http import ProviderApi
from messaging.rendering import pick_language, render_letter


@dataclass(frozen=True)
class OutgoingLetter:
    pdf: bytes
    pages: int
    # As printed in the window; the provider may use them for its own address check.
    address_lines: list[str]
    country: str
    subject: str
    # Deterministic per journey step: the same letter uploaded twice carries the same key.
    idempotency_key: str


@dataclass(frozen=True)
class LetterReceipt:
    provider_message_id: str


@dataclass(frozen=True)
class LetterRequest:
    """Everything one letter is made of; the journey supplies it per contact."""

    template: str
    language: str
    context: dict[str, Any]
    branding: Branding
    address: PostalAddress
    # The client's country: mail to any other country gets a country line.
    sender_country: str
    link: str
    short_link: str
    date: date
    idempotency_key: str


def compose_letter(request: LetterRequest, settings: Settings) -> OutgoingLetter:
    """Renders the text in the customer's language and lays it out as a PDF. Raises
    AddressError when the address cannot be printed for the window."""
    language = pick_language(request.language)
    lines = window_lines(request.address, sender_country=request.sender_country, language=language)
    text = render_letter(request.template, language, request.context)
    pdf = render_letter_pdf(
        LetterDocument(branding=request.branding, address_lines=lines, language=language,
                       text=text, link=request.link, short_link=request.short_link,
                       date=request.date),
        LetterFonts(regular=settings.letter_font_regular, bold=settings.letter_font_bold),
    )
    return OutgoingLetter(pdf=pdf.content, pages=pdf.pages, address_lines=lines,
                          country=request.address.country.upper(), subject=text.subject,
                          idempotency_key=request.idempotency_key)


class LetterSender(Protocol):
    async def send(self, letter: OutgoingLetter) -> LetterReceipt: ...


def _metadata(letter: OutgoingLetter, reference: str) -> dict[str, object]:
    return {"reference": reference, "pages": letter.pages, "country": letter.country,
            "address_lines": letter.address_lines, "subject": letter.subject}


class OutboxLetterSender:
    """Writes <id>.pdf and <id>.json; /dev/outbox lists them and serves the PDF."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def send(self, letter: OutgoingLetter) -> LetterReceipt:
        id = outbox_id(letter.idempotency_key)
        # The PDF first: a letter is listed (by its JSON) only once its PDF is complete.
        write_atomically(self._directory / f"{id}.pdf", letter.pdf)
        write_record(self._directory, id, {
            "id": id, **_metadata(letter, id), "provider_message_id": id,
            "sent_at": datetime.now(UTC).isoformat(),
        })
        return LetterReceipt(provider_message_id=id)


def anonymise_outbox(directory: Path, idempotency_keys: list[str]) -> None:
    """The outbox's letters with these keys lose their PDF and the address they went to."""
    anonymise_records(directory, idempotency_keys, {"address_lines": []})


class HttpLetterSender:
    """Uploads the PDF as multipart/form-data (`file`, plus `metadata` as JSON); the provider
    answers {"id": ...} once it has accepted the letter for printing and posting."""

    def __init__(self, api: ProviderApi) -> None:
        self._api = api

    async def send(self, letter: OutgoingLetter) -> LetterReceipt:
        reference = outbox_id(letter.idempotency_key)
        id = await self._api.submit(
            reference,
            data={"metadata": json.dumps(_metadata(letter, reference))},
            files={"file": (f"{reference}.pdf", letter.pdf, "application/pdf")},
        )
        return LetterReceipt(provider_message_id=id)


def make_letter_sender(settings: Settings, http: httpx.AsyncClient) -> LetterSender:
    if settings.letter_adapter == "http":
        return HttpLetterSender(ProviderApi.for_channel(settings, "letter", http))
    return OutboxLetterSender(settings.letter_outbox_dir)
