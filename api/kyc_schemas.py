"""Request and response bodies of the KYC API."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.schemas import (
    Duration,
    JsonBool,
    Name,
    Strict,
    in_utc,
    meaning,
    positive,
    written_out,
)
from core.kyc_rules import DOCUMENT_OF_FIELD, Rule, documents_of, expiry_of_day
from core.vocabulary import DocumentType, KycField


def as_utc(value: datetime) -> datetime:
    # A naive time from a form or a client means UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else in_utc(value)


def _through_the_day(value: Any) -> Any:
    """A document's expiry given as a date (as printed on it, as the page's date field and the
    registry's `id_expires_on` have it) is the last day the document is valid: it expires when
    the next day begins. A date and time is taken as the moment it expires."""
    written_out(value)
    day = value if isinstance(value, date) and not isinstance(value, datetime) else None
    if isinstance(value, str) and "T" not in value.upper() and " " not in value.strip():
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            return value  # pydantic names the problem
    return value if day is None else expiry_of_day(day)


DocumentExpiry = Annotated[datetime, BeforeValidator(_through_the_day), AfterValidator(as_utc)]
DocumentNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=meaning(
    r"^[A-Za-z0-9 \-/.]{1,100}$", "letters, digits, spaces and - / . only, at most 100"))]


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# As on the upload form, a blank number is none: an ID card or passport is refused without one.
OptionalNumber = Annotated[DocumentNumber | None, BeforeValidator(_blank_is_none)]


class KycRuleIn(Strict):
    field: KycField
    semi_optional: JsonBool = False
    attachment: DocumentType | None = Field(
        default=None, description="Classification of the document that must prove the field")
    requires_renewal: JsonBool = Field(
        default=False, description="The profile expires when that document expires")

    @model_validator(mode="after")
    def _renewal_needs_a_document(self) -> "KycRuleIn":
        if self.requires_renewal and not documents_of(Rule(**self.model_dump(mode="json"))):
            raise ValueError("requires_renewal needs a document: set an attachment or use "
                             f"one of {sorted(DOCUMENT_OF_FIELD)}")
        return self


def _check_rule_set(rules: list[KycRuleIn]) -> list[KycRuleIn]:
    fields = [r.field for r in rules]
    if len(fields) != len(set(fields)):
        raise ValueError("each field appears once")
    if sum(r.semi_optional for r in rules) == 1:
        raise ValueError("mark at least two fields semi-optional (any one of them suffices), "
                         "or none")
    return rules


class KycRulesIn(Strict):
    person: list[KycRuleIn] = Field(default_factory=list, max_length=20)
    company: list[KycRuleIn] = Field(default_factory=list, max_length=20)

    _valid = field_validator("person", "company")(_check_rule_set)

    @model_validator(mode="after")
    def _not_empty(self) -> "KycRulesIn":
        if not self.person and not self.company:
            raise ValueError("give the rules for persons, companies or both")
        return self


class KycDefinitionCreate(Strict):
    name: Name
    level: int = Field(ge=1, le=1000, description="Higher levels ask for more information")
    requires_verification: JsonBool = True
    max_credit_limit: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    expires_after: Duration | None = Field(
        default=None, description="Period since assignment (ISO-8601); null: never by time")
    remind_before: Duration | None = Field(
        default=None, description="Reminder lead time; null: the KYC_REMIND_BEFORE setting")
    rules: KycRulesIn

    @field_validator("expires_after", "remind_before")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else positive(value)

    @field_validator("remind_before")
    @classmethod
    def _within_the_period(cls, value: timedelta | None, info: ValidationInfo
                           ) -> timedelta | None:
        # Longer, the reminder would go out at assignment, telling of an expiry far away.
        period = info.data.get("expires_after")
        if value is not None and period is not None and value >= period:
            raise ValueError("must be shorter than expires_after")
        return value


class KycDefinitionOut(BaseModel):
    id: uuid.UUID
    name: str
    level: int
    requires_verification: bool
    max_credit_limit: Decimal | None
    expires_after: timedelta | None
    remind_before: timedelta | None
    rules: dict[str, Any]
    created_at: datetime


class KycAssignRequest(Strict):
    definition_id: uuid.UUID | None = Field(
        default=None, description="Omit to assign the highest level whose information is present")


class KycRefuteRequest(Strict):
    # The customer is emailed it: blank, it would tell them nothing.
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=1000)]


class KycDocumentPatch(Strict):
    number: OptionalNumber = None
    expires_at: DocumentExpiry | None = None

    @model_validator(mode="after")
    def _something(self) -> "KycDocumentPatch":
        if not self.model_fields_set:
            raise ValueError("give number, expires_at or both")
        return self


class KycDocumentOut(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    document_type: str
    number: str | None
    expires_at: datetime | None
    content_type: str
    size: int
    sha256: str
    filename: str | None
    source: str
    uploaded_at: datetime


class KycDefinitionRef(BaseModel):
    id: uuid.UUID
    name: str
    level: int
    # The credit a customer of this profile may be given at most.
    max_credit_limit: Decimal | None


class KycEventOut(BaseModel):
    type: str
    at: datetime
    detail: dict[str, Any] | None = None


class KycProfileOut(BaseModel):
    contact_id: uuid.UUID
    external_id: str
    workflow_id: str
    state: str
    definition: KycDefinitionRef
    reason: str | None
    assigned_at: datetime
    expires_at: datetime | None
    expiry_cause: str | None
    verified_at: datetime | None
    updated_at: datetime
    documents: list[KycDocumentOut] | None = None
    history: list[KycEventOut] | None = None


class KycExpiringPage(BaseModel):
    items: list[KycProfileOut]
    next_cursor: str | None


class KycNotifyRequest(Strict):
    within_days: int = Field(ge=0, le=3650)


class KycNotifyResponse(BaseModel):
    batch_id: str
    notified: int
