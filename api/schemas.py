"""Request and response bodies of the client API."""

import logging
import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

from babel import localedata
from babel.core import get_global
from babel.numbers import get_currency_precision, get_territory_currencies
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    StringConstraints,
    UrlConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from core.settings import SMS_SENDER, Settings, get_settings
from core.vocabulary import CampaignMode, Channel, JourneyKind
from core.webhook_rules import refused_address
from db.models import SettingsChange
from messaging.branding import FONT_STACKS, contrast_problems
from messaging.letter_pdf import LetterFontError, return_line_problem, unprintable
from messaging.rendering import supported_languages
from messaging.wording import KINDS, placeholder_problem

log = logging.getLogger("api")

# What each pattern a field must match means, as its 422 says it: pydantic would quote the
# regular expression.
PATTERN_MEANINGS: dict[str, str] = {}


def meaning(pattern: str, text: str) -> str:
    """The pattern, its meaning kept for the field errors of values that do not match it."""
    PATTERN_MEANINGS[pattern] = text
    return pattern


Slug = Annotated[str, StringConstraints(pattern=meaning(
    r"^[a-z0-9][a-z0-9_\-]{0,62}$", "lower-case letters, digits, - and _ only, beginning with a "
    "letter or digit, at most 63 characters, e.g. newsletter or service-mail"))]


# An Idempotency-Key, as a header or in a body, is printable text: PostgreSQL cannot store a
# NUL, and a 422 that names the key tells the client what to put right.
IDEMPOTENCY_KEY_PATTERN = meaning(r"^[^\x00-\x1f\x7f-\x9f]*$", (
    "must not contain control characters (NUL, tab, DEL and the like): a key is printable text"))


def in_utc(value: datetime) -> datetime:
    """The time in UTC, as it is stored and compared; one off the calendar there (year 1 at
    +01:00, 9999-12-31T23:59-05:00) is a field error, where it was a 500 from the database."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range: in UTC it falls outside the years 1 to 9999") from None


_SECONDS = re.compile(r"\s*[-+]?\d+(\.\d*)?\s*")


def written_out(value: Any) -> Any:
    """For a date or time: pydantic reads a number, or text of digits alone, as seconds since
    1970, so 0 was stored as 1970-01-01 and a year typed alone (2031) as 00:33 that day."""
    if isinstance(value, int | float) or (isinstance(value, str) and _SECONDS.fullmatch(value)):
        raise ValueError("must be written out as a date (2031-12-31) or a date and time "
                         "(2031-12-31T10:00:00Z), not as a number")
    return value


def _iso_date(value: Any) -> Any:
    written_out(value)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            # Pydantic would say "invalid character in year" of 31/01/1980.
            raise ValueError("must be a date written YYYY-MM-DD, e.g. 1980-01-31") from None
    return value


# A calendar date as ISO 8601 writes it; an object of the date type is taken as it is.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def with_time_zone(value: datetime) -> datetime:
    # Without one a time names no instant.
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-05-01T10:00:00Z")
    return value


def _an_instant(value: datetime) -> datetime:
    in_utc(with_time_zone(value))
    return value


Instant = Annotated[datetime, BeforeValidator(written_out), AfterValidator(_an_instant)]


def _language_of_tag(value: Any) -> Any:
    """A locale's language: clients and their CSV files send `NL`, `nl-BE` or `nl_BE`."""
    if isinstance(value, str):
        return re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower()
    return value


def _a_language(code: str) -> str:
    if not (re.fullmatch(r"[a-z]{2}", code) and localedata.exists(code)):
        raise ValueError(f"{code!r} is not a language code (ISO 639-1, e.g. en, nl, de)")
    return code


Language = Annotated[str, BeforeValidator(_language_of_tag), AfterValidator(_a_language),
                     WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}([-_].*)?$",
                                     "examples": ["nl", "nl-BE"]})]


def _supported(code: str) -> str:
    if code not in supported_languages():
        raise ValueError(f"unsupported language {code!r}; supported: {supported_languages()}")
    return code


# A language our pages and messages speak: what a customer is shown must be one of them.
SupportedLanguage = Annotated[Language, AfterValidator(_supported)]
# Invisible marks that reorder text as it is displayed: U+202E shows "Ann\u202eredlaV" as
# "AnnValder" (and a file name "txt.exe" as "exe.txt"), so a name could pass for another.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")


def one_line(value: str) -> str:
    """A name as letters, emails and pages print it: no line break (a forged mail header or
    CSV row), tab or other control character, no direction mark."""
    if any(ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must be one line of text: line breaks, tabs and other control "
                         "characters, and invisible direction marks (U+202A to U+202E, U+2066 "
                         "to U+2069, U+200E, U+200F, U+061C), are not allowed")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                 AfterValidator(one_line)]


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# A legal text is kept byte for byte (its hash is the proof), but one of only blanks would
# show the customer a box with no words and prove consent to nothing.
LegalTextBody = Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(not_blank)]
LegalTextVersion = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(not_blank),
                             AfterValidator(one_line)]


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(has_nul(v) for v in value)
    return False


class Strict(BaseModel):
    """Every request body: unknown fields are errors, and so is a NUL character in any text
    (PostgreSQL cannot store one; found by fuzzing as a 500)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if has_nul(value):
            raise ValueError("must not contain the NUL character")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Read laxly, `true` would be 1, "1_0" ten and " 2 " two: a number is written as one,
        # as a boolean is written true or false.
        if isinstance(value, bool | str) and info.field_name is not None and \
                whole_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a whole number, written as a JSON number")
        return value


def whole_number(annotation: Any) -> bool:
    """Whether a field takes an integer (or nothing)."""
    return annotation is int or (get_origin(annotation) in (Union, UnionType) and int in
                                 get_args(annotation) and bool not in get_args(annotation))


def _true_or_false(value: Any) -> bool:
    # Read laxly, "no", "false", 0 or "0" would be taken as whatever pydantic makes of them.
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


# A boolean of a JSON request body: true or false, nothing that reads like one (query
# parameters and the pages' form fields, which are text, stay lax).
JsonBool = Annotated[bool, BeforeValidator(_true_or_false)]


DURATION = "an ISO-8601 duration such as PT30S, PT10M or P7D"
# The longest duration the API takes (a year counts 365 days): longer ones mean "never", and a
# journey's clock could not hold the date they end on.
MAX_DURATION = timedelta(days=3650)
# The largest number an integer column holds: a cursor past it is a 422, not a database error.
MAX_INT4 = 2**31 - 1


def _a_duration(value: Any, parse: ValidatorFunctionWrapHandler) -> timedelta:
    # JSON has no duration type, and pydantic reads a number as seconds: `"expires_after": 30`
    # meant as days would end every journey half a minute after it started.
    if isinstance(value, int | float):
        raise ValueError(f"must be {DURATION}, not a number")
    try:
        duration = parse(value)
    except ValidationError:
        raise ValueError(f"must be {DURATION}") from None
    if duration > MAX_DURATION:
        raise ValueError(f"must be at most P{MAX_DURATION.days}D (ten years)")
    return duration


Duration = Annotated[timedelta, WrapValidator(_a_duration)]


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive ISO-8601 duration, e.g. P3D or PT30S")
    return value


def never_null(value: Any, info: ValidationInfo) -> Any:
    """For a change of a setting that always has a value: left out, it is kept; null was taken
    as left out, silently, where the client meant to clear or reset it."""
    if value is None:
        raise ValueError(f"{info.field_name} always has a value: give one, or leave it out to "
                         "keep it")
    return value


# --- webhook endpoints ---------------------------------------------------------------------

WebhookEventName = Literal[
    "*",
    "contact.data_collected",
    "contact.data_verified",
    "consent.changed",
    "journey.expired",
    "journey.opted_out",
    "journey.cancelled",
    "journey.payment_completed",
    "message.bounced",
    "client_message.bounced",
    "campaign.updated",
    "contact_settings.updated",
    "launch.completed",
    "launch.cancelled",
    "kyc.assigned",
    "kyc.verified",
    "kyc.refuted",
    "kyc.expiring",
    "kyc.expired",
    "kyc.message_bounced",
    "webhook_endpoint.disabled",
]
DeliveryStatusName = Literal["pending", "delivered", "failed"]


# As long as the column that stores it: a URL may be longer (2,083 characters).
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]


class WebhookEndpointCreate(Strict):
    url: WebhookUrl
    events: list[WebhookEventName] = Field(min_length=1)
    description: str | None = Field(default=None, max_length=500)


class WebhookEndpointUpdate(Strict):
    url: WebhookUrl | None = None
    events: list[WebhookEventName] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)
    enabled: JsonBool | None = Field(
        default=None, description="Enabling a failing endpoint clears `failing` and resumes "
        "its pending deliveries; replay the time it was off to get what it missed.")

    _not_cleared = field_validator("url", "events", "enabled")(never_null)


class SecretRotation(Strict):
    overlap: Duration = Field(
        default=timedelta(hours=24),
        description="How long the old secret keeps signing too (ISO-8601 duration, max P7D).")

    @field_validator("overlap")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if value < timedelta(0) or value > timedelta(days=7):
            raise ValueError("must be between PT0S and P7D")
        return value


class WebhookEndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None = None
    events: list[str]
    enabled: bool
    failing: bool = Field(description="Failed for its whole retry schedule and was disabled.")
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then, deliveries carry a signature with the previous secret too.")
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="Signing secret (Standard Webhooks). Shown only once.")


class WebhookAttemptOut(BaseModel):
    at: datetime
    event_id: uuid.UUID
    event_type: str
    sequence: int | None
    delivery_status: str
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


class WebhookAttemptPage(BaseModel):
    items: list[WebhookAttemptOut]
    next_cursor: str | None


class WebhookDeliveryOut(BaseModel):
    event_id: uuid.UUID
    event_type: str
    event_created_at: datetime
    sequence: int | None
    status: str
    attempts: int = Field(description="Attempts in the current round (since queued or resent).")
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class ReplayRequest(Strict):
    since: Instant
    until: Instant

    @field_validator("until")
    @classmethod
    def _after_since(cls, value: datetime, info: ValidationInfo) -> datetime:
        since = info.data.get("since")
        if since is not None and value <= since:
            raise ValueError("must be after since")
        return value


class ReplayResult(BaseModel):
    queued: int


# --- branding ------------------------------------------------------------------------------

HexColour = Annotated[str, StringConstraints(pattern=meaning(
    r"^#[0-9a-fA-F]{6}$", "a colour written #RRGGBB, e.g. #1d4ed8"))]
FontName = Literal[tuple(FONT_STACKS)]  # type: ignore[valid-type]
# One line: a CR or LF in a display name would start a new mail header, and a direction mark
# would show "Acme\u202eknaB" in the inbox as "AcmeBank".
SenderName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=100), AfterValidator(one_line)]


def https_only(value: HttpUrl | None) -> HttpUrl | None:
    if value is not None and value.scheme != "https":
        raise ValueError("must be an https:// URL")
    return value


def with_letter_or_digit(value: str) -> str:
    if not any(ch.isascii() and ch.isalnum() for ch in value):
        raise ValueError("needs a letter or digit")
    return value


def letter_font_check(field: str, setting: str,
                      check: Callable[[Settings], str | None]) -> None:
    """Raises check's problem (given the settings) as the field's error. A letter font the
    installation cannot read is its fault, not the request's: a 500 in the one error shape (an
    exception other than ValueError passes through validation to the handlers)."""
    try:
        problem = check(get_settings())
    except LetterFontError as err:
        log.error("%s not checked: %s", field, err)
        raise HTTPException(500, f"letters cannot be printed on this installation, so {field} "
                            "cannot be checked: its letter font is missing or unreadable "
                            f"({setting}; the operator's log names the file)") from err
    if problem:
        raise ValueError(problem)


class BrandingIn(Strict):
    """Every field is optional: unset ones fall back (campaign → client → installation)."""

    logo_id: uuid.UUID | None = Field(
        default=None, description="A logo uploaded with POST /v1/branding/logos")
    primary_colour: HexColour | None = Field(
        default=None, description="Header and buttons, #RRGGBB; needs 3:1 contrast with white")
    on_primary_colour: HexColour | None = Field(
        default=None, description="Text on primary_colour; needs 4.5:1 contrast with it. "
        "Unset: white or near-black, whichever reads better")
    font: FontName | None = Field(default=None, description=(
        "A system font stack (nothing is downloaded): " + ", ".join(FONT_STACKS)))
    email_from_name: SenderName | None = Field(
        default=None, description="Display name in the From of emails (default: client name)")
    # Trimmed, and with a letter or digit: blanks, dots or dashes alone would send every SMS
    # from nobody a customer recognises, and a leading blank shows on the phone.
    sms_sender: Annotated[str, StringConstraints(strip_whitespace=True),
                          AfterValidator(with_letter_or_digit)] | None = Field(
        default=None, description="SMS sender id: alphanumeric, at most 11 characters, or +E.164",
        pattern=meaning(SMS_SENDER, "at most 11 letters, digits, spaces, dots and dashes, or a "
                                    "number written +E.164"))
    letter_sender: Annotated[str, StringConstraints(
        strip_whitespace=True, min_length=1, max_length=120), AfterValidator(one_line)] | None = (
        Field(default=None, description="Return line printed above the address on letters, "
              "e.g. 'Acme BV · Postbus 1 · 1000 AA Amsterdam'"))
    privacy_url: HttpUrl | None = None
    imprint_url: HttpUrl | None = None
    terms_url: HttpUrl | None = None
    custom_domain: str | None = Field(default=None, max_length=200, description=(
        "Base URL on the client's host name, e.g. https://contact.acme.example: links in "
        "messages use it; point the host name at this installation"))

    _https = field_validator("privacy_url", "imprint_url", "terms_url")(https_only)

    @field_validator("on_primary_colour")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        problem = contrast_problems({"primary_colour": info.data.get("primary_colour"),
                                     "on_primary_colour": value}).get("on_primary_colour")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("primary_colour")
    @classmethod
    def _visible(cls, value: str | None) -> str | None:
        problem = contrast_problems({"primary_colour": value}).get("primary_colour")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("letter_sender")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # Measured as letters print it: within the envelope window at the smallest type, in
        # the letter font's glyphs (as address lines are), never cut or left blank.
        if value is not None:
            letter_font_check("letter_sender", "LETTER_FONT_REGULAR",
                              lambda settings: return_line_problem(
                                  value, settings.letter_font_regular))
        return value

    def stored(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


class BrandingOut(BaseModel):
    branding: dict = Field(description="What is set (unset fields are absent)")
    logo_url: str | None = Field(description="Where the logo is served, if one is set")
    theme_url: str = Field(description="The stylesheet the pages use")


class LogoOut(BaseModel):
    id: uuid.UUID
    url: str
    width: int
    height: int


# --- campaigns -----------------------------------------------------------------------------


class LegalTextIn(Strict):
    version: LegalTextVersion
    text: LegalTextBody | None = Field(
        default=None, description="registers this version; omit to use the stored one")


class ConsentCheckboxIn(Strict):
    key: Slug
    purpose: Slug
    channel: Channel
    mandatory: JsonBool = False
    texts: dict[SupportedLanguage, LegalTextIn] = Field(min_length=1)


class Reminders(Strict):
    interval: Duration = timedelta(days=3)
    max_count: int = Field(default=2, ge=0, le=20)

    _positive = field_validator("interval")(positive)


class CodeSettings(Strict):
    """How mobile numbers are verified: a 6-digit code by SMS."""

    code_ttl: Duration = timedelta(minutes=10)
    code_max_wrong_tries: int = Field(default=5, ge=1, le=10)
    code_resend_cooldown: Duration = timedelta(seconds=60)
    code_max_resends: int = Field(default=3, ge=0, le=10)

    _positive = field_validator("code_ttl")(positive)

    @field_validator("code_ttl")
    @classmethod
    def _short_lived(cls, value: timedelta) -> timedelta:
        # A code is read off a phone now, not kept: one valid for days is one to guess at.
        if value > timedelta(days=1):
            raise ValueError("at most P1D; a code is typed minutes after it is sent")
        return value

    @field_validator("code_resend_cooldown")
    @classmethod
    def _cooldown(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(hours=1):
            raise ValueError("must be an ISO-8601 duration from PT0S to PT1H")
        return value


class PlanStepIn(Strict):
    """A step of the channel plan: up to `max` messages on `channel`, each sent `after` the
    message before it (the journey's first message goes at once)."""

    channel: Literal["email", "sms", "letter"]
    after: Duration = Field(default=timedelta(0), description="ISO-8601 duration, e.g. P7D")
    max: int = Field(default=1, ge=1, le=20)

    @field_validator("after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must be an ISO-8601 duration of zero or more, e.g. P7D or PT0S")
        return value


LABEL = re.compile(r"[a-z0-9][a-z0-9 _\-]{0,49}")


def _label(value: str) -> str:
    # Checked once lower-cased (VIP is vip), which a pattern of StringConstraints is not.
    if not LABEL.fullmatch(value):
        raise ValueError("a tag or category is 1 to 50 letters a-z, digits, spaces, _ or -, "
                         "beginning with a letter or digit")
    return value


# A tag or category as the registry keeps them: a launch selecting another would select no one.
Label = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True),
                  AfterValidator(_label)]
CRON = re.compile(r"^\S+( \S+){4}$")


class LaunchSelectionIn(Strict):
    """Which of your registry contacts a launch invites: those the campaign's channels reach
    (an email, a mobile for SMS, a postal address for a letter) that match every filter given. Contacts with a live journey in the campaign are skipped; those
    whose earlier journeys in it all expired are invited again."""

    missing_verified_only: JsonBool = Field(default=True, description=(
        "only contacts still missing verified data of a kind the campaign collects"))
    tags: list[Label] = Field(default_factory=list, max_length=20,
                              description="contacts carrying every one of these tags")
    categories: list[Label] = Field(default_factory=list, max_length=20)
    import_id: uuid.UUID | None = Field(default=None, description=(
        "only the contacts this CSV import created or matched"))


MAX_RECURRENCE = timedelta(days=366)


class Recurrence(Strict):
    """Launches the campaign periodically (a Temporal Schedule): give `every` or `cron`."""

    every: Duration | None = Field(default=None, description="ISO-8601 duration, e.g. P30D")
    cron: str | None = Field(default=None, max_length=100, description=(
        "five cron fields in UTC, e.g. `0 9 1 * *` (09:00 on the first of every month)"))
    selection: LaunchSelectionIn = Field(default_factory=LaunchSelectionIn)

    @field_validator("every")
    @classmethod
    def _between_a_second_and_a_year(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=1):
            raise ValueError("must be at least PT1S")
        if value is not None and value > MAX_RECURRENCE:
            raise ValueError("must be at most P366D: a campaign recurs at least once a year")
        return value

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        if value is not None and not CRON.match(value.strip()):
            raise ValueError("must be five cron fields separated by spaces, e.g. '0 9 1 * *'")
        return value.strip() if value else value

    @model_validator(mode="after")
    def _one_of(self) -> "Recurrence":
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every and cron")
        return self


WordingSubject = Annotated[str, Field(max_length=200), AfterValidator(one_line)]
WordingText = Annotated[str, Field(max_length=1000)]
PART_TYPES = {"subject": WordingSubject, "text": WordingText}
PART_ABOUT = {
    Channel.email: {"text": "the opening paragraph, after the greeting"},
    Channel.sms: {"text": "the SMS text"},
    Channel.letter: {"text": "the opening paragraph"},
}


# The letter prints its subject in the bold face of its font, its text in the regular one.
LETTER_FONTS = {"subject": ("letter_font_bold", "LETTER_FONT_BOLD"),
                "text": ("letter_font_regular", "LETTER_FONT_REGULAR")}


def _wording_of(kind: str) -> type[BaseModel]:
    """The wording a client may give one kind of message: its parts, each plain text with that
    kind's placeholders; a letter's only of characters its font prints, as it would leave the
    others out (an emoji, Japanese) without a word."""
    def placeholders_known(text: str) -> str:
        problem = placeholder_problem(text, kind)
        if problem:
            raise ValueError(problem)
        return text

    def printable_in(part: str) -> Callable[[str], str]:
        font, setting = LETTER_FONTS[part]

        def printable(text: str) -> str:
            letter_font_check(f"the letter's {part}", setting,
                              lambda settings: unprintable(text, getattr(settings, font),
                                                           setting))
            return text
        return printable

    message = KINDS[kind]

    def checked(part: str) -> tuple[Any, ...]:
        return (StringConstraints(strip_whitespace=True, min_length=1),
                AfterValidator(placeholders_known),
                *([AfterValidator(printable_in(part))] if message.channel == Channel.letter
                  else []))

    return create_model(
        f"{kind.title().replace('_', '')}WordingIn", __base__=Strict,
        **{part: (Annotated[PART_TYPES[part], *checked(part)] | None, Field(
            default=None, description=PART_ABOUT[message.channel].get(part)))
           for part in message.parts})


MessageKindName = Literal[tuple(KINDS)]


def _unknown_wording(error: dict[str, Any]) -> dict[str, Any] | None:
    """A message kind, or a part of one, that does not exist, said with those that do."""
    loc = error["loc"]
    if error["type"] != "extra_forbidden" or len(loc) not in (1, 3):
        return None
    if len(loc) == 1:
        problem = PydanticCustomError("unknown_message_kind", "unknown message kind '{kind}'; "
                                      "the kinds are {kinds}",
                                      {"kind": loc[0], "kinds": ", ".join(KINDS)})
    else:
        problem = PydanticCustomError("unknown_message_part", "the {kind} message has no "
                                      "{part}; its parts are {parts}", {
                                          "kind": loc[0], "part": loc[2],
                                          "parts": ", ".join(KINDS[loc[0]].parts)})
    return {"type": problem, "loc": loc, "input": error["input"]}


class _Messages(Strict):
    @model_validator(mode="wrap")
    @classmethod
    def _known_kinds(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # An unknown kind or part is named with those there are, not as pydantic's "Extra
        # inputs are not permitted"; the other errors stay as they are.
        try:
            return handler(value)
        except ValidationError as err:
            raise ValidationError.from_exception_data(
                cls.__name__, [_unknown_wording(e) or e for e in err.errors()]) from err


# One field per kind of messaging.wording.KINDS, so a kind added there is worded, checked and
# documented here without more.
MessagesIn = create_model(
    "MessagesIn", __base__=_Messages, __doc__=(
        "The campaign's own wording of its messages, per kind and language (of `languages`); "
        "what it leaves out keeps the built-in text in that language. Plain text with the "
        "kind's placeholders (README, Message wording)."),
    **{kind: (dict[SupportedLanguage, _wording_of(kind)] | None,
              Field(default=None, description=message.about))
       for kind, message in KINDS.items()})


# What a reconsent campaign, which asks for no data, is not given (its defaults apply).
NOT_FOR_RECONSENT = ("collect", "mode", "payments")


class CampaignCreate(Strict):
    name: Name
    kind: JourneyKind = Field(default=JourneyKind.data_collection, description=(
        "data_collection: collect and verify an email address; reconsent: ask contacts to "
        "accept the consent form (one consent of a data_processing purpose)"))
    collect: list[Literal["email", "mobile", "address"]] = Field(
        default=["email"], min_length=1, max_length=3, description=(
            "what the page asks: email and mobile are verified (link, code); an address is "
            "taken along with them and lands in the registry once they are verified"))
    mode: CampaignMode = Field(default=CampaignMode.collect, description=(
        "collect: ask for the data; verify_existing: the page shows the email/mobile you know, "
        "the customer confirms or corrects it — kept unchanged on the address our invitation "
        "reached, it is verified at once; a correction is verified like new data"))
    verification: CodeSettings = Field(default_factory=CodeSettings)
    channels: list[Literal["email"]] = Field(default=["email"], min_length=1, description=(
        "without a channel_plan, the channels of the invitation and reminders: email only"))
    channel_plan: list[PlanStepIn] | None = Field(default=None, min_length=1, max_length=10,
                                                  description=(
        "Invitation and reminders by channel, in order, e.g. a letter, two emails a week "
        "apart, then an SMS. Without it: an email invitation and `reminders`. A contact "
        "without an address for a step's channel skips that step."))
    languages: list[Language] = Field(default=["en"], min_length=1)
    default_language: Language = "en"
    # Validated when omitted too: a reconsent campaign without its form would reset every
    # contact's consent to pending and ask them nothing.
    consents: list[ConsentCheckboxIn] = Field(default_factory=list, max_length=20,
                                              validate_default=True)
    reminders: Reminders = Field(default_factory=Reminders)
    expires_after: Duration = timedelta(days=30)
    verification_link_ttl: Duration = timedelta(days=7)
    incentive_text: str | None = Field(default=None, max_length=500)
    payments: JsonBool = Field(default=False, description=(
        "a payment-reminder campaign: each contact comes with a claim (reference, payment URL, "
        "amount); the page offers to pay, before or after leaving data, and reminders stop once "
        "the client reports the payment"))
    send_confirmation: JsonBool = Field(default=False, description=(
        "After verification, thank the customer by email (by SMS when only a mobile number "
        "was verified)."))
    branding: BrandingIn | None = Field(
        default=None, description="Overrides the client's branding (PUT /v1/branding) for "
        "this campaign's pages and messages")
    recurrence: Recurrence | None = Field(default=None, description=(
        "launch the campaign periodically for the contacts the selection matches"))
    messages: MessagesIn | None = Field(default=None, description=(
        "your own wording of the campaign's messages (invitations, reminders, confirmation, "
        "the mail and code that verify, a reconsent campaign's invitation and reminder), per "
        "kind and language (see README, Message wording)"))

    _positive = field_validator("expires_after", "verification_link_ttl")(positive)

    @field_validator("languages")
    @classmethod
    def _languages_supported(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(supported_languages()))
        if unknown:
            raise ValueError(f"unsupported language(s) {unknown}; supported: {supported_languages()}")
        return list(dict.fromkeys(value))

    # Each check is a field's, so its error names that field (one on the model says `body`);
    # a field validator sees the fields declared before it in `info.data`.

    @field_validator("channels", mode="before")
    @classmethod
    def _other_channels_by_plan(cls, value: Any) -> Any:
        if isinstance(value, list) and any(c != "email" for c in value):
            raise ValueError("only email here; to invite or remind by sms or letter, give a "
                             "channel_plan, e.g. [{\"channel\": \"letter\"}, "
                             "{\"channel\": \"sms\", \"after\": \"P7D\"}]")
        return value

    @field_validator(*NOT_FOR_RECONSENT)
    @classmethod
    def _not_for_reconsent(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs only on fields sent: their defaults are what a reconsent campaign does anyway.
        if info.data.get("kind") == JourneyKind.reconsent and (
                info.field_name == "collect" or value not in (CampaignMode.collect, False)):
            raise ValueError(f"a reconsent campaign asks for no data; leave {info.field_name} "
                             "out, or create a data_collection campaign")
        return value

    @field_validator("collect")
    @classmethod
    def _collect_once_and_verified(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists each of email, mobile and address at most once")
        if value == ["address"]:
            raise ValueError("an address is collected along with an email or mobile, whose "
                             "verification confirms the journey")
        return value

    @field_validator("channel_plan")
    @classmethod
    def _no_plan_for_reconsent(cls, value: list[PlanStepIn] | None, info: ValidationInfo
                               ) -> list[PlanStepIn] | None:
        if value and info.data.get("kind") == JourneyKind.reconsent:
            raise ValueError("a reconsent campaign asks by email; it has no channel plan")
        return value

    @field_validator("reminders")
    @classmethod
    def _no_reminders_beside_a_plan(cls, value: Reminders, info: ValidationInfo) -> Reminders:
        # Given, they would be stored and never used: the client would expect their cadence.
        if info.data.get("channel_plan"):
            raise ValueError("a channel_plan's steps set the cadence (each step's `after` and "
                             "`max`): leave reminders out, or drop the channel_plan")
        return value

    @field_validator("default_language")
    @classmethod
    def _among_languages(cls, value: str, info: ValidationInfo) -> str:
        if "languages" in info.data and value not in info.data["languages"]:
            raise ValueError("must be one of languages")
        return value

    @field_validator("consents")
    @classmethod
    def _consents_fit(cls, value: list[ConsentCheckboxIn], info: ValidationInfo
                      ) -> list[ConsentCheckboxIn]:
        if info.data.get("kind") == JourneyKind.reconsent and len(value) != 1:
            raise ValueError("a reconsent campaign asks exactly one consent: the consent form "
                             "(a consent of a data_processing purpose, channel any)")
        keys = [c.key for c in value]
        if len(keys) != len(set(keys)):
            raise ValueError("consent keys must be unique within a campaign")
        # One purpose asked twice on one channel (a "monthly" and a "weekly" newsletter by
        # email) would be granted and declined by one form at once: the ledger has one
        # decision per purpose and channel, so the box order would decide.
        asked: dict[tuple[str, str], str] = {}
        for i, c in enumerate(value):
            if (first := asked.setdefault((c.purpose, c.channel), c.key)) != c.key:
                raise ValidationError.from_exception_data(cls.__name__, [{
                    "type": PydanticCustomError("value_error", (
                        f"purpose {c.purpose} by {c.channel} is asked by box {first!r} "
                        "already: a campaign asks each purpose and channel once")),
                    "loc": (i,), "input": c.model_dump(mode="json")}])
        for c in value:
            missing = [lang for lang in info.data.get("languages", []) if lang not in c.texts]
            if missing:
                raise ValueError(f"consent {c.key!r} has no legal text for language(s) {missing}")
        return value


class MessagePreview(BaseModel):
    kind: MessageKindName
    language: str
    channel: str
    subject: str | None = Field(default=None, description="email and letter")
    text: str = Field(description=(
        "the plain text: the email's text part, the SMS, the letter's paragraphs"))
    html: str | None = Field(default=None, description="the email's HTML part")
    segments: int | None = Field(default=None, description="SMS: how many segments it takes")
    encoding: str | None = Field(default=None, description="SMS: GSM-7 or UCS-2")
    custom: dict[str, bool] = Field(description=(
        "each part (subject, text) the campaign words itself; false: the built-in text"))


class CampaignOut(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    created_at: datetime
    updated_at: datetime = Field(description="its last change (name, status or settings)")
    spec: dict[str, Any] = Field(description=(
        "the campaign as created or last changed; with a `channel_plan`, which replaces them, "
        "no `channels` or `reminders`"))

    @field_validator("spec")
    @classmethod
    def _what_applies(cls, spec: dict[str, Any]) -> dict[str, Any]:
        # Stored beside a plan (with their defaults), they would read as if they applied.
        if spec.get("channel_plan"):
            return {k: v for k, v in spec.items() if k not in ("channels", "reminders")}
        return spec


CampaignStatus = Literal["active", "paused", "archived"]


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None


class ChangeOut(BaseModel):
    id: int
    at: datetime
    actor: dict[str, str] = Field(description="who made it: `{type, id}`, e.g. the API key")
    changes: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, change: SettingsChange) -> Self:
        return cls(id=change.id, at=change.at, changes=change.changes,
                   actor={"type": change.actor_type, "id": change.actor_id})


class CampaignChangeOut(ChangeOut):
    changes: dict[str, dict[str, Any]] = Field(description=(
        "each top-level setting it changed (`name`, `status`, `reminders`, `consents`, ...) "
        "with its `old` and `new` value"))


class CampaignChangePage(BaseModel):
    items: list[CampaignChangeOut]
    next_cursor: str | None


# --- launches ------------------------------------------------------------------------------


class LaunchRequest(Strict):
    selection: LaunchSelectionIn = Field(default_factory=LaunchSelectionIn)
    paused: JsonBool = Field(default=False, description=(
        "count the selection but start nothing until resumed"))
    spread_over: Duration | None = Field(default=None, description=(
        "send the invitations evenly over this time (ISO-8601, at most P7D) instead of as "
        "soon as each journey starts, e.g. to respect a mail provider's sending rate"))

    @field_validator("spread_over")
    @classmethod
    def _within_a_week(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(seconds=1) <= value <= timedelta(days=7):
            raise ValueError("must be between PT1S and P7D")
        return value


class CancelLaunchRequest(Strict):
    cancel_journeys: JsonBool = Field(default=False, description=(
        "also cancel the journeys this launch started that have not finished"))


class LaunchOut(BaseModel):
    id: str = Field(description="the launch workflow's id")
    number: int
    trigger: Literal["api", "schedule"]
    state: Literal["running", "paused", "cancelled", "completed"]
    selection: dict[str, Any]
    spread_over: timedelta | None = Field(description=(
        "the time its invitations are spread over; null: each is sent as its journey starts"))
    selected: int = Field(description="contacts the selection matched when the launch began")
    started: int = Field(description="journeys started so far")
    skipped: int = Field(description="selected contacts that already had a live journey")
    batches: int | None = Field(description="batches fanned out (while the launch is known "
                                "to Temporal)")
    journeys_cancelled: int | None
    cancelled_because: Literal[
        "campaign_paused", "campaign_archived", "launch_running", "workflow_gone", "operator",
    ] | None = Field(
        description="why a scheduled launch started nothing: its campaign was paused or "
                    "archived when it was due, or another launch of it was running (paused, "
                    "say); `workflow_gone`: an operator terminated the launch's workflow in the "
                    "Temporal UI (or it failed) before the launch finished; `operator`: an "
                    "operator cancelled it there")
    created_at: datetime
    finished_at: datetime | None


class LaunchPage(BaseModel):
    items: list[LaunchOut]
    next_cursor: str | None


class CampaignProgress(BaseModel):
    campaign_id: uuid.UUID
    status: str
    launch: LaunchOut | None = Field(description="the newest launch")
    journeys: int
    stages: dict[str, int] = Field(description="journeys per stage, from the database")
    held: int = Field(description=(
        "open journeys whose invitation or reminder waits for the paused campaign to resume"))


class RecurrenceOut(BaseModel):
    schedule_id: str
    recurrence: dict[str, Any]
    paused: bool
    paused_because: Literal["campaign_paused", "schedule_paused"] | None = Field(description=(
        "why it launches nothing now: the campaign is paused, or an operator paused its "
        "schedule in the Temporal UI"))
    next_runs: list[datetime] = Field(description="the next launches (at most 5); none while "
                                      "paused, as a launch then would start nothing")


# --- contacts into a campaign --------------------------------------------------------------


# One line: it stands in messages' subjects, where a line break would start the text with the
# rest (a "Bcc: ..." line, say).
ClaimReference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                  max_length=100), AfterValidator(one_line)]
def _plain_decimal(value: Decimal) -> Decimal:
    # "1e3" would be stored, reported and shown to the customer as "1E+3".
    if value.as_tuple().exponent > 0:
        raise ValueError("must be a plain decimal number such as 1000 or 12.50, not in "
                         "exponent notation")
    return value


Amount = Annotated[Decimal, Field(gt=0, max_digits=12), AfterValidator(_plain_decimal)]
# ISO 4217 currencies some country pays in today: not the codes for gold, test or "no
# currency" (XAU, XTS, XXX), nor withdrawn ones (DEM).
CURRENCIES = frozenset(c for territory in get_global("territory_currencies")
                       for c in get_territory_currencies(territory, tender=True))


def minor_units_problem(amount: Decimal, currency: str) -> str | None:
    """Why the amount cannot be one of the currency (¥1.50, or €1.234), if it cannot."""
    places = get_currency_precision(currency)
    if -amount.normalize().as_tuple().exponent <= places:
        return None
    return (f"{currency} amounts have no decimals" if places == 0
            else f"{currency} amounts have at most {places} decimals")


# Every email and letter of the claim carries its payment URL; browsers and mail programs
# take links of this length.
PAYMENT_URL_MAX_LENGTH = 2048
# The validation context of a ContactIn that allows a payment page on this machine or a private
# network: in dev mode, as a custom domain on http, for a payment page run by the developer.
LOCAL_PAYMENT_PAGES = "local_payment_pages"


def local_host(host: str) -> bool:
    """Whether host is this machine or on a private network wherever it is looked up from:
    localhost (RFC 6761) or a loopback, private, link-local or other non-public IP address."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return refused_address(host)
    except ValueError:  # a host name
        return False


def _https_page(value: Any) -> Any:
    # Before parsing: pydantic's own error for javascript: would offer http, refused here; and
    # it reads "https:///claims/7" (a template's host left empty) as the host "claims".
    if isinstance(value, str):
        if not value.strip().lower().startswith("https://"):
            raise ValueError("must be an https:// URL")
        if not urlsplit(value.strip()).hostname:
            raise ValueError("must name the host of the payment page after https://, e.g. "
                             "https://pay.example.com/...")
    return value


class ClaimIn(Strict):
    """What the contact owes, in a payment-reminder campaign."""

    reference: ClaimReference
    payment_url: Annotated[AnyHttpUrl, BeforeValidator(_https_page)] = Field(
        description="where the customer pays (https)")
    # Before the amount: the amount's decimals are the currency's.
    currency: Annotated[str, StringConstraints(pattern=meaning(
        r"^[A-Z]{3}$", "an ISO 4217 currency code in capitals, e.g. EUR"))] = "EUR"
    amount: Amount | None = Field(default=None, description="in the currency's decimals at most")
    due_on: IsoDate | None = None

    @field_validator("currency")
    @classmethod
    def _a_currency(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"{value!r} is not the ISO 4217 code of a currency in use "
                             "(e.g. EUR, USD)")
        return value

    @field_validator("amount")
    @classmethod
    def _in_minor_units(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        # Without a valid currency its own error says enough.
        if value is not None and "currency" in info.data and (
                problem := minor_units_problem(value, info.data["currency"])):
            raise ValueError(problem)
        return value

    @field_validator("payment_url")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # The link is printed in every email and letter of the claim.
        if value.username or value.password:
            raise ValueError("must not carry a user name or password")
        return value

    @field_validator("payment_url")
    @classmethod
    def _short_enough(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # As parsed, which is how the messages carry it: letters outside ASCII are
        # percent-encoded, three characters each.
        if len(str(value)) > PAYMENT_URL_MAX_LENGTH:
            raise ValueError(f"must be at most {PAYMENT_URL_MAX_LENGTH} characters")
        return value

    @field_validator("payment_url")
    @classmethod
    def _reachable(cls, value: AnyHttpUrl, info: ValidationInfo) -> AnyHttpUrl:
        # The customer's browser opens it: there such a host is the customer's own machine or
        # network, or nothing, never the client's payment page.
        if not (info.context or {}).get(LOCAL_PAYMENT_PAGES) and local_host(
                urlsplit(str(value)).hostname or ""):
            raise ValueError("must be on a host the customer's browser can reach as the "
                             "client's payment page: not localhost nor a loopback, private or "
                             "link-local address (allowed in dev mode)")
        return value


class ContactIn(Strict):
    # As the registry's ExternalId (contacts.schemas): an enrolment creates contacts too.
    external_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                  max_length=200), AfterValidator(one_line)]
    first_name: Annotated[str, AfterValidator(one_line)] | None = Field(default=None,
                                                                         max_length=200)
    last_name: Annotated[str, AfterValidator(one_line)] | None = Field(default=None,
                                                                        max_length=200)
    language: Language | None = None
    email: EmailStr | None = None
    claim: ClaimIn | None = None

    @field_validator("email", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class EnrolRequest(Strict):
    # Items are validated one by one so that one bad contact never rejects the others.
    contacts: list[Any] = Field(min_length=1)


class FieldError(BaseModel):
    field: str
    message: str


class EnrolItemResult(BaseModel):
    index: int
    status: Literal["accepted", "already_enrolled", "rejected"]
    external_id: str | None = None
    contact_id: uuid.UUID | None = None
    journey_id: uuid.UUID | None = None
    errors: list[FieldError] = Field(default_factory=list)


class EnrolResponse(BaseModel):
    accepted: int
    rejected: int
    results: list[EnrolItemResult]


# --- journeys ------------------------------------------------------------------------------


class JourneyEventOut(BaseModel):
    type: str
    at: datetime
    detail: dict[str, Any] | None = None


class JourneyOut(BaseModel):
    id: uuid.UUID
    workflow_id: str
    campaign_id: uuid.UUID
    contact_id: uuid.UUID
    external_id: str
    stage: str
    language: str
    pending_email: str | None = Field(description="entered, awaiting its verification")
    pending_mobile: str | None = Field(
        default=None, description="entered (E.164), awaiting its code")
    pending_address: dict[str, Any] | None = Field(
        default=None, description="entered; kept once the journey is verified")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    claim: dict[str, Any] | None = None
    paid_at: datetime | None = None
    history: list[JourneyEventOut] | None = None


class PaymentCompleted(Strict):
    paid_at: Instant | None = Field(default=None, description="default: now")
    reference: ClaimReference | None = Field(
        default=None, description="if given, must be the journey's claim reference")
    amount: Amount | None = Field(default=None, description="in the claim's currency's "
                                  "decimals at most")

    @field_validator("paid_at")
    @classmethod
    def _past_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + timedelta(minutes=1):
            raise ValueError("must not be in the future")
        # Recorded, announced and answered in UTC, as every later read gives it.
        return None if value is None else value.astimezone(UTC)


class JourneyPage(BaseModel):
    items: list[JourneyOut]
    next_cursor: str | None


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'contacts', 3, 'email') -> 'contacts[3].email'."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        if p == "[key]":  # pydantic's mark of a refused dict key: the path names the key
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return re.sub(r"^\.", "", out) or "body"


# --- reports -------------------------------------------------------------------------------


class FunnelCounts(BaseModel):
    invited: int
    opened: int
    entered: int
    verified: int = Field(description="Confirmed: the data was verified")
    expired: int
    opted_out: int
    cancelled: int = Field(description="Stopped by the client's launch cancel, the campaign's "
                           "archiving before it reached the contact, or an operator")
    bounced_hard: int = Field(description="Journeys with a hard bounce")
    bounced_soft: int = Field(description="Journeys with a soft bounce")
    complaints: int = Field(description="Journeys whose message was marked as spam")
    paid: int | None = Field(default=None, description="Payment-reminder campaigns: journeys "
                             "whose claim the client reported paid (left out for other campaigns)")
    accepted: int | None = Field(default=None, description="Re-consent campaigns: journeys "
                                 "whose customer accepted the form (left out for other campaigns)")
    rejected: int | None = Field(default=None, description="Re-consent campaigns: journeys "
                                 "whose customer rejected the form (left out for other campaigns)")


class FunnelRow(FunnelCounts):
    channel: str
    language: str


class FunnelOut(BaseModel):
    campaign_id: uuid.UUID
    journeys: int
    running: int
    finished: int
    total: FunnelCounts = Field(description="Journeys that reached each step (ever).")
    by_channel: dict[str, FunnelCounts] = Field(description=(
        "By channel: `invited` and the bounces count the journeys invited or bounced on it; the "
        "other steps count under the channel that reached the contact (the newest message "
        "before the page was first opened)."))
    by_channel_language: list[FunnelRow] = Field(description="The same, by channel and the "
                                                 "journey's language.")


class DashboardLink(BaseModel):
    url: str = Field(description="Opens the client's dashboard without a login until it expires.")
    expires_at: datetime
