"""Bodies of the contact API, also used to validate each row of a CSV import.

Validation that needs the client's settings (phone region) reads them from the validation
context: `ContactCreate.model_validate(data, context={"region": "NL"})`.
"""

import uuid
from datetime import date, datetime
from typing import Annotated, Any

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from api.schemas import (
    ChangeOut,
    FieldError,
    IsoDate,
    JsonBool,
    Label,
    Language,
    Name,
    Slug,
    Strict,
    meaning,
    one_line,
)
from contacts import normalise
from contacts.uniqueness import RuleError, parse
from core.vocabulary import ContactKind, ContactPointKind, MediumKind
from messaging.phone import check_region, parse_phone

# One line each, as names are: a line break in a street would be a line of its own in the
# letter's address window, a direction mark would make it read as another.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                 AfterValidator(one_line)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
                 AfterValidator(one_line)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=meaning(
    r"^[A-Za-z]{2}$", "a two-letter ISO country code, e.g. NL"))]
# The client's own id, shown and looked up as typed: a line break or direction mark would make
# it read as another in a list, an export or the error CSV of an import.
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                       AfterValidator(one_line)]


def blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# One line as the other parts; a blank one is none (as an import's empty cell), so that the
# same address given without it later is not a change.
PostalCode = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=20),
              AfterValidator(one_line)] | None,
    BeforeValidator(blank_is_none)]
DEFAULT_REGION = "NL"
# A contact's language when none is given; one it always has (its messages speak one).
DEFAULT_LANGUAGE = "en"

# The contact's own columns a client sets directly (everything else has its own endpoint).
SCALAR_FIELDS = (
    "kind", "first_name", "last_name", "company_name", "language", "date_of_birth", "id_number",
    "id_expires_on", "passport_number", "passport_expires_on", "ssn", "industry",
    "industry_sector",
)


def _phone(value: str, info: ValidationInfo, *, mobile: bool) -> str:
    """E.164, reading numbers without a country code in the client's region (a
    PhoneNumberError is a ValueError: its message is the field's error)."""
    return parse_phone(value, (info.context or {}).get("region", DEFAULT_REGION), mobile=mobile)


class ContactPointIn(Strict):
    kind: ContactPointKind
    value: str = Field(min_length=1, max_length=320)
    label: Slug | None = None

    @field_validator("value")
    @classmethod
    def _canonical(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind == ContactPointKind.email:
            return normalise.email(value)
        if kind is None:
            return value
        return _phone(value, info, mobile=kind == ContactPointKind.mobile)


class AddressIn(Strict):
    type: Slug
    line1: Line
    line2: Line | None = None
    postal_code: PostalCode = None
    city: Text
    region: Text | None = None
    country: Country
    primary: JsonBool = False

    @field_validator("country")
    @classmethod
    def _a_country(cls, value: str) -> str:
        # Every country has a numbering plan: phonenumbers' regions are the ISO 3166 codes.
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown country {value!r}; use an ISO country code such as NL")
        return value


class MediumIn(Strict):
    kind: MediumKind
    # What a lookup finds it by and the contact shows: blank it would name no one, and a
    # direction mark would show one id as another, as in a name.
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320),
                     AfterValidator(one_line)]

    @field_validator("value")
    @classmethod
    def _canonical(cls, value: str, info: ValidationInfo) -> str:
        match info.data.get("kind"):
            case MediumKind.card:
                return normalise.card_number(value)
            case MediumKind.phone:
                return _phone(value, info, mobile=False)
            case MediumKind.email:
                return normalise.email(value).casefold()
        return value


class ContactFields(Strict):
    """The scalar fields; absent means "not given" (PATCH leaves them as they are)."""

    kind: ContactKind = ContactKind.person
    first_name: Name | None = None
    last_name: Name | None = None
    company_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                   max_length=300),
                            AfterValidator(one_line)] | None = None
    language: Language | None = None
    date_of_birth: IsoDate | None = None
    id_number: Text | None = None
    id_expires_on: IsoDate | None = None
    passport_number: Text | None = None
    passport_expires_on: IsoDate | None = None
    ssn: Text | None = None
    industry: Text | None = None
    industry_sector: Text | None = None

    @field_validator("date_of_birth")
    @classmethod
    def _in_the_past(cls, value: date | None) -> date | None:
        if value is not None and value >= date.today():
            raise ValueError("must be in the past")
        return value


class ContactCreate(ContactFields):
    external_id: ExternalId | None = Field(
        default=None, description="The client's own id; generated when absent")
    contact_points: list[ContactPointIn] = Field(default_factory=list, max_length=20)
    addresses: list[AddressIn] = Field(default_factory=list, max_length=20)
    identification_media: list[MediumIn] = Field(default_factory=list, max_length=20)
    tags: list[Label] = Field(default_factory=list, max_length=50)
    categories: list[Label] = Field(default_factory=list, max_length=20)


class ContactUpdate(ContactFields):
    kind: ContactKind | None = None  # type: ignore[assignment]
    tags: list[Label] | None = Field(default=None, max_length=50)
    categories: list[Label] | None = Field(default=None, max_length=20)

    @field_validator("kind")
    @classmethod
    def _kind_cannot_be_cleared(cls, value: ContactKind | None) -> ContactKind:
        # Omitted keeps the kind; an explicit null would leave a contact of no kind.
        if value is None:
            raise ValueError("a contact is a person or a company; it cannot be cleared")
        return value

    @field_validator("tags", "categories")
    @classmethod
    def _labels_cleared(cls, value: list[str] | None) -> list[str]:
        # Omitted keeps them; null clears them, as it clears any other field of a contact.
        return value or []

    @field_validator("language")
    @classmethod
    def _language_cleared_to_the_default(cls, value: str | None) -> str:
        # Omitted keeps the language; null restores the one a contact is created with.
        return value or DEFAULT_LANGUAGE


class AddressTypeIn(Strict):
    name: Slug
    mandatory: JsonBool = False


class ContactSettingsIn(Strict):
    person_rule: str | None = Field(default=None, examples=["(last_name AND id_number) OR ssn"])
    company_rule: str | None = None
    default_region: Country = DEFAULT_REGION
    address_types: list[AddressTypeIn] = Field(
        default_factory=lambda: [AddressTypeIn(name=n) for n in
                                 ("home", "business", "billing", "po_box")], max_length=20)
    anonymise_inactive_after_days: int | None = Field(default=None, ge=1, le=36500)

    @property
    def entered_address_type(self) -> str | None:
        """The type of an address a customer enters for a contact without one: home, or, where
        the client's types do without it (billing and shipping, say), the first of them; None
        where the client keeps no addresses."""
        names = [t.name for t in self.address_types]
        return "home" if "home" in names else next(iter(names), None)

    @field_validator("person_rule", "company_rule")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return parse(value).text
        except RuleError as err:
            raise ValueError(f"invalid rule: {err}") from err

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        # Every phone number of the client is read in it: an unknown one would refuse them all.
        return check_region(value)

    @field_validator("address_types")
    @classmethod
    def _unique_types(cls, value: list[AddressTypeIn]) -> list[AddressTypeIn]:
        names = [t.name for t in value]
        if len(names) != len(set(names)):
            raise ValueError("address type names must be unique")
        return value


class ContactSettingsChangeOut(ChangeOut):
    changes: dict[str, dict[str, Any]] = Field(description=(
        "each contact setting it changed (`person_rule`, `company_rule`, `default_region`, "
        "`address_types`, `anonymise_inactive_after_days`) with its `old` and `new` value"))


class ContactSettingsChangePage(BaseModel):
    items: list[ContactSettingsChangeOut]
    next_cursor: str | None


class SuppressedOut(BaseModel):
    """The value was on the suppression list: it belonged to a contact erased before. Marketing
    to it waits for the customer's own opt-in."""

    reason: str
    since: datetime


class UndeliverableOut(BaseModel):
    """A hard bounce refused this value: messages skip it until it is confirmed or given
    again."""

    reason: str
    since: datetime


class ContactPointOut(BaseModel):
    id: uuid.UUID
    kind: str
    value: str
    label: str | None
    verification_state: str
    verified_at: datetime | None
    verified_via: str | None
    suppressed: SuppressedOut | None = None
    undeliverable: UndeliverableOut | None = None
    # Its recipient reported our message as spam: only mandatory and financial messages go.
    complained_since: datetime | None = None
    # Removed by the client (listed with include_removed_points=true): written to no more.
    removed_at: datetime | None = None


class AddressOut(BaseModel):
    id: uuid.UUID
    type: str
    active: bool
    primary: bool
    line1: str
    line2: str | None
    postal_code: str | None
    city: str
    region: str | None
    country: str
    created_at: datetime
    deactivated_at: datetime | None
    undeliverable: UndeliverableOut | None = None
    # Confirmed or entered by the customer in a journey they verified.
    confirmed_at: datetime | None = None


class MediumOut(BaseModel):
    id: uuid.UUID
    kind: str
    display: str = Field(description="Card numbers only by their last four digits")


class ContactOut(BaseModel):
    id: uuid.UUID
    external_id: str
    kind: str
    first_name: str | None
    last_name: str | None
    company_name: str | None
    language: str
    date_of_birth: date | None
    id_number: str | None
    id_expires_on: date | None
    passport_number: str | None
    passport_expires_on: date | None
    ssn: str | None
    industry: str | None
    industry_sector: str | None
    engagement_state: str
    engaged_at: datetime | None
    anonymised_at: datetime | None
    created_at: datetime
    updated_at: datetime
    tags: list[str]
    categories: list[str]
    contact_points: list[ContactPointOut]
    addresses: list[AddressOut]
    identification_media: list[MediumOut]


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_type: str
    actor_id: str
    action: str
    contact_id: uuid.UUID | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class ActivityOut(BaseModel):
    at: datetime
    type: str
    detail: dict[str, Any]


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    next_cursor: str | None


class ConflictBody(BaseModel):
    """409: the request describes a contact that already exists."""

    class Error(BaseModel):
        code: str
        message: str
        fields: list[FieldError] = []
        existing_contact_id: uuid.UUID | None = None
        existing_external_id: str | None = None

    error: Error
