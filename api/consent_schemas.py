"""Request and response bodies of the consent API: purposes, legal texts, ledger, preferences."""

import ipaddress
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator

from api.schemas import (
    JsonBool,
    Language,
    LegalTextBody,
    LegalTextVersion,
    Name,
    Slug,
    Strict,
    SupportedLanguage,
    meaning,
    never_null,
    with_time_zone,
    written_out,
)
from contacts.schemas import ExternalId
from core.vocabulary import Channel, ConsentSource, MessageCategory, PurposeKind


NAME_DESCRIPTION = ("the purpose's name in your default language (`journeys clients create "
                    "--language`): what customers reading it see, where `names` has none in it")
NAMES_DESCRIPTION = (
    "the purpose's name per language (en, nl, de), e.g. {\"nl\": \"Nieuwsbrief\", \"de\": "
    "\"Newsletter\"}: what customers reading that language see; where a language other than "
    "your default one has none, the purpose's legal text in that language names it")
PurposeNames = Annotated[dict[SupportedLanguage, Name], Field(description=NAMES_DESCRIPTION)]


class PurposeCreate(Strict):
    key: Slug
    name: Name = Field(description=NAME_DESCRIPTION)
    kind: PurposeKind
    names: PurposeNames = {}


class PurposeUpdate(Strict):
    name: Name | None = Field(default=None, description=NAME_DESCRIPTION)
    names: PurposeNames | None = Field(default=None, description=(
        f"{NAMES_DESCRIPTION}; replaces the names the purpose had ({{}}: none)"))

    _not_cleared = field_validator("name", "names")(never_null)


class PurposeOut(BaseModel):
    id: uuid.UUID
    key: str
    name: str = Field(description=NAME_DESCRIPTION)
    names: dict[str, str] = Field(description=NAMES_DESCRIPTION)
    kind: str
    created_at: datetime


class LegalTextCreate(Strict):
    language: SupportedLanguage
    version: LegalTextVersion
    text: LegalTextBody


class LegalTextOut(BaseModel):
    purpose_key: str
    language: str
    version: str
    text: str
    sha256: str
    created_at: datetime


class MessagePolicyIn(Strict):
    category: MessageCategory
    purpose: Slug | None = Field(default=None, validate_default=True,
                                 description="required for marketing: the consent it needs")

    @field_validator("purpose")
    @classmethod
    def _marketing_names_its_purpose(cls, value: str | None, info: Any) -> str | None:
        if value is None and info.data.get("category") == MessageCategory.marketing:
            raise ValueError("a marketing message type needs the purpose it markets")
        return value


class MessagePolicyOut(BaseModel):
    message_type: str
    category: str
    purpose: str | None


# No consent decision or SMS reply is older; one near year 1 in a zone ahead of UTC is not even
# a moment the database can store.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


# When the customer decided, or their reply came: written out, not seconds since 1970.
Moment = Annotated[datetime, BeforeValidator(written_out)]


def a_moment(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if with_time_zone(value) < EARLIEST:
        raise ValueError(f"must be {EARLIEST.date().isoformat()} or later")
    return value


def not_in_future(value: datetime) -> datetime:
    a_moment(value)
    if value > datetime.now(UTC):
        raise ValueError("cannot be in the future: it is when the customer gave the consent")
    return value


def an_ip_address(value: str) -> str:
    """As the ledger keeps it for proof: an IPv4 or IPv6 address, written the standard way."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError("not an IP address, e.g. 203.0.113.7 or 2001:db8::1") from None


class LegalTextRef(Strict):
    language: Language
    version: str | None = Field(default=None, description="default: the newest version")


class ConsentChange(Strict):
    """A decision the customer made through the client (back office, call centre, API)."""

    purpose: Slug
    channel: Channel
    granted: JsonBool
    given_at: Moment
    source: Literal[ConsentSource.back_office, ConsentSource.api, ConsentSource.call_centre,
                    ConsentSource.import_]
    legal_text: LegalTextRef
    actor: str | None = Field(default=None, max_length=200,
                              description="the user or agent who recorded it")
    ip: Annotated[str, Field(max_length=64), AfterValidator(an_ip_address)] | None = None
    user_agent: str | None = Field(default=None, max_length=500)

    _given_at = field_validator("given_at")(not_in_future)


class ConsentChanges(Strict):
    changes: list[ConsentChange] = Field(min_length=1, max_length=100)


class ConsentEventOut(BaseModel):
    id: uuid.UUID
    purpose: str
    channel: str
    granted: bool
    given_at: datetime
    recorded_at: datetime
    source: str
    actor: str | None
    shown_in: str | None
    legal_text: dict[str, Any]
    ip: str | None
    user_agent: str | None


class Preference(BaseModel):
    purpose: str
    channel: str
    granted: bool
    since: datetime
    source: str


class ConsentImportItem(ConsentChange):
    external_id: ExternalId


class ConsentImport(Strict):
    # Validated one by one, so one bad row never drops the others.
    items: list[Any] = Field(min_length=1, max_length=10_000)


class InboundSms(Strict):
    sender: str = Field(alias="from", min_length=3, max_length=32)
    text: str = Field(max_length=1600)
    received_at: Moment | None = None

    _received_at = field_validator("received_at")(a_moment)


ALLOWED_DOCUMENT_TYPES = ("application/pdf", "image/png", "image/jpeg")
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


class ConsentDocumentIn(Strict):
    # No path, no quote, no control character: it goes into a download's header.
    filename: str = Field(min_length=1, max_length=200, pattern=meaning(
        r'^[^/\\"\x00-\x1f\x7f]+$', 'a file name without /, \\, " or control characters'))
    content_type: Literal["application/pdf", "image/png", "image/jpeg"]
    content_base64: str = Field(min_length=4, max_length=MAX_DOCUMENT_BYTES * 4 // 3 + 4)

    def content(self) -> bytes:
        import base64
        import binascii
        try:
            return base64.b64decode(self.content_base64, validate=True)
        except binascii.Error:
            raise ValueError("content_base64 is not valid base64") from None


class GdprConsentChange(Strict):
    """The contact's answer to the consent form, recorded by the client (e.g. signed on paper)."""

    state: Literal["accepted", "rejected", "withdrawn"]
    purpose: Slug = Field(description="the data_processing purpose (the consent form)")
    given_at: Moment
    source: Literal[ConsentSource.back_office, ConsentSource.api, ConsentSource.call_centre]
    legal_text: LegalTextRef
    actor: str | None = Field(default=None, max_length=200)
    document: ConsentDocumentIn | None = None

    _given_at = field_validator("given_at")(not_in_future)


class ConsentDocumentOut(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    sha256: str
    created_at: datetime


class GdprConsentOut(BaseModel):
    state: str
    updated_at: datetime | None
    documents: list[ConsentDocumentOut]
    anonymised: bool = False
    anonymisation_blocked: list[str] | None = Field(default=None, description=(
        "why the client's `anonymise` consequence of a rejected or withdrawn consent was not "
        "applied (e.g. a journey still open), so the contact is kept: as this request's answer "
        "left it, or as the newest answer (on the re-consent page or recorded here) left it; "
        "null otherwise"))
