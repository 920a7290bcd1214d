"""SQLAlchemy models. Every row that belongs to a client carries client_id for tenant isolation."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Interval,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware on every backend (SQLite forgets the zone; we store and return UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# None is stored as SQL NULL, not as the JSON text 'null', so that `IS NULL` finds it: a journey
# whose collected data was erased stored 'null', passed `collected IS NOT NULL`, and broke the
# campaign report.
JSON_OR_NULL = JSON(none_as_null=True)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON_OR_NULL,
                           list[Any]: JSON_OR_NULL}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=uuid.uuid4)


def _client_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200))
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    # When a second person claims a verified email/phone: "reject" it or "move" it to them.
    household_rule: Mapped[str] = mapped_column(String(10), default="reject")
    # Applies to contacts who rejected or withdrew the consent to keep their data.
    gdpr_consequence: Mapped[str] = mapped_column(String(20), default="full_functionality")
    # Data entered but never verified is deleted from journeys after this many days.
    unverified_retention_days: Mapped[int] = mapped_column(Integer, default=30)
    # The client's look and senders on pages and messages (api.branding.BrandingIn as JSON);
    # a campaign's spec may override any of it.
    branding: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BrandLogo(Base):
    """A logo a client uploaded: a small PNG we serve ourselves, so the pages' content security
    policy stays 'self' and letters can print it."""

    __tablename__ = "brand_logos"
    __table_args__ = (UniqueConstraint("client_id", "sha256"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    sha256: Mapped[str] = mapped_column(String(64))
    png: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    # The non-secret head of the key, to find the row without scanning hashes.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # To the minute (`api.deps.LAST_USE_PRECISION`): a write a minute per key, not per request.
    last_used_at: Mapped[datetime | None]


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[Any]]
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # During a secret rotation the old secret signs too, until it expires.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set when the endpoint failed for the whole retry schedule; it is then disabled too.
    failing_since: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    # The sequence number of the newest delivery queued for this endpoint.
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    # The validated campaign definition (api.schemas.CampaignSpec) as JSON.
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Any change of name, status or settings (PATCH, branding, recurrence).
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotentRequest(Base):
    """A request sent with an Idempotency-Key, and the answer it was given: the request sent
    again (a client retrying a lost answer) is given that answer and does nothing twice;
    another request with the key is refused. Keys are the client's own, per route."""

    __tablename__ = "idempotent_requests"
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"),
                                                 primary_key=True)
    # Method and path template: `POST /v1/campaigns/{campaign_id}/launch`.
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    # Written in the transaction that claimed the key, so a committed row always has them.
    status_code: Mapped[int | None] = mapped_column(Integer)
    answer: Mapped[dict[str, Any] | None]
    # The contact a create answered with (its personal data): the contact's erasure takes it.
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    # Kept `idempotency_key_retention` from here: older, the key is new again.
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SettingsChange:
    """A change of a client's settings: who made it, when, and the old and new value of each
    top-level setting it changed (`{"name": {"old": ..., "new": ...}}`)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(100))
    changes: Mapped[dict[str, Any]]


class CampaignChange(SettingsChange, Base):
    """A change of a campaign's name, status or settings (`reminders`, ...)."""

    __tablename__ = "campaign_changes"
    __table_args__ = (Index("ix_campaign_changes_campaign", "campaign_id", "id"),)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("client_id", "external_id"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    external_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10), default="person")
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(300))
    language: Mapped[str] = mapped_column(String(8), default="en")
    # GDPR consent to keep the data; the decisions behind it are in the consent ledger.
    gdpr_consent_state: Mapped[str] = mapped_column(String(12), default="pending")
    gdpr_consent_updated_at: Mapped[datetime | None]
    date_of_birth: Mapped[date | None]
    id_number: Mapped[str | None] = mapped_column(String(100))
    id_expires_on: Mapped[date | None]
    passport_number: Mapped[str | None] = mapped_column(String(100))
    passport_expires_on: Mapped[date | None]
    ssn: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    industry_sector: Mapped[str | None] = mapped_column(String(100))
    # never_engaged until the first business event (e.g. data collected in a journey).
    engagement_state: Mapped[str] = mapped_column(
        String(20), default="never_engaged", server_default="never_engaged")
    engaged_at: Mapped[datetime | None]
    # Set once and for all: an anonymised contact keeps its id and non-personal records only.
    anonymised_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class ContactSettings(Base):
    """A client's contact registry rules: uniqueness, phone region, address types, retention."""

    __tablename__ = "contact_settings"
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    # Boolean expressions over contact fields, e.g. "(last_name AND id_number) OR ssn".
    person_rule: Mapped[str | None] = mapped_column(String(500))
    company_rule: Mapped[str | None] = mapped_column(String(500))
    # Region for phone numbers given without a country code (ISO 3166 alpha-2).
    default_region: Mapped[str] = mapped_column(String(2), default="NL")
    # [{"name": "home", "mandatory": false}, ...]
    address_types: Mapped[list[Any]]
    anonymise_inactive_after_days: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactSettingsChange(SettingsChange, Base):
    """A change of a client's contact settings: uniqueness rules, phone region, address types,
    retention (switching anonymisation on or off is a GDPR decision someone must answer for)."""

    __tablename__ = "contact_settings_changes"


class ContactIdentityKey(Base):
    """One keyed digest per alternative of the client's uniqueness rule: the unique index here
    is what makes two concurrent creates of the same person end in one contact."""

    __tablename__ = "contact_identity_keys"
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True)


class ContactLabel(Base):
    """A tag or category of a contact."""

    __tablename__ = "contact_labels"
    __table_args__ = (
        UniqueConstraint("contact_id", "kind", "value"),
        Index("ix_contact_labels_lookup", "client_id", "kind", "value"),
    )
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(100))


class ContactAddress(Base):
    """Typed address; at most one active per type and one primary per contact. Deactivated
    addresses are kept so they can be reactivated."""

    __tablename__ = "contact_addresses"
    __table_args__ = (
        Index("uq_contact_addresses_active_type", "contact_id", "type", unique=True,
              postgresql_where=text("active"), sqlite_where=text("active")),
        Index("uq_contact_addresses_primary", "contact_id", unique=True,
              postgresql_where=text("is_primary"), sqlite_where=text("is_primary")),
    )
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(30))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    line1: Mapped[str] = mapped_column(String(300))
    line2: Mapped[str | None] = mapped_column(String(300))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None]
    # Returned to sender for good (a hard bounce): letters skip it until the client activates
    # it again.
    undeliverable_since: Mapped[datetime | None]
    undeliverable_reason: Mapped[str | None] = mapped_column(Text)
    # The customer confirmed (or entered) it in a journey they verified: an address campaign
    # has nothing more to ask for.
    confirmed_at: Mapped[datetime | None]


class IdentificationMedium(Base):
    """Identifies a contact in another system (POS card, phone, email, loyalty id). Only a keyed
    digest of the value is searchable; a card number is never stored, only its last digits."""

    __tablename__ = "identification_media"
    __table_args__ = (UniqueConstraint("client_id", "kind", "lookup_sha256"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    lookup_sha256: Mapped[str] = mapped_column(String(64))
    display: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Suppression(Base):
    """What stays of an erased contact's email or phone: a keyed digest, so a later import or
    API call that brings the same value back is recognised without the list revealing it."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("client_id", "digest"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    # email or phone (mobile and landline numbers share E.164, so one family).
    kind: Mapped[str] = mapped_column(String(10))
    digest: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HistoryErasure(Base):
    """A contact erased (anonymised or deleted) whose workflows' histories in Temporal are still
    to be deleted: what customers typed, where their messages went and an operator's reasons
    would otherwise outlive the erasure there until the namespace's retention. Written with the
    erasure, so that it commits with it; the sweep deletes the row once the histories are gone.

    No foreign key to contacts: a deleted contact's histories go after it."""

    __tablename__ = "history_erasures"
    contact_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    erased_at: Mapped[datetime] = mapped_column(index=True)
    # A deleted contact's running workflows (its KYC profile's) go too; an anonymised
    # contact's profile lasts, as the contact does.
    deleted: Mapped[bool] = mapped_column(Boolean)


class AuditEntry(Base):
    """Who read or changed which contact, when, with old and new values of a change.

    No foreign key to contacts: the trail outlives a terminated contact (values scrubbed)."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_contact", "client_id", "contact_id", "id"),
        Index("ix_audit_entries_actor", "client_id", "actor_type", "actor_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(30))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # {"changes": {field: {"old": ..., "new": ...}}} or other non-secret context.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)


class ContactImport(Base):
    """One uploaded CSV file and its progress; the file is dropped once it has been processed."""

    __tablename__ = "contact_imports"
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Deferred: the file (up to tens of MB) is read in slices by the batches, never with the row.
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    delimiter: Mapped[str] = mapped_column(String(1))
    columns: Mapped[list[Any]]
    total_rows: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"))
    actor_id: Mapped[str] = mapped_column(String(100))
    enrolled: Mapped[int | None]
    not_enrolled: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ContactImportBatch(Base):
    """The outcome of one batch, written with its rows: a retried batch returns this instead."""

    __tablename__ = "contact_import_batches"
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE"), primary_key=True)
    batch_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    contact_ids: Mapped[list[Any]]
    # The file's line of each of contact_ids, to report a row the campaign did not enrol.
    lines: Mapped[list[Any] | None]


class ContactImportError(Base):
    """A bad row of an import, by line number and field; never the rejected value itself."""

    __tablename__ = "contact_import_errors"
    __table_args__ = (UniqueConstraint("import_id", "line", "field"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(String(500))


class ContactPoint(Base):
    """An email address or mobile number of a contact, with its verification state."""

    __tablename__ = "contact_points"
    __table_args__ = (UniqueConstraint("contact_id", "kind", "value"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(320))
    # The client's type of this email/phone, e.g. personal, work.
    label: Mapped[str | None] = mapped_column(String(30))
    verification_state: Mapped[str] = mapped_column(String(20), default="unverified")
    verified_at: Mapped[datetime | None]
    verified_via: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Refused for good (a hard bounce): messages skip it until the customer confirms it again
    # or the client gives it again.
    undeliverable_since: Mapped[datetime | None]
    undeliverable_reason: Mapped[str | None] = mapped_column(Text)
    # Its recipient reported one of our messages as spam (a feedback-loop complaint): only
    # mandatory and financial messages go to it until the customer confirms it again.
    complained_since: Mapped[datetime | None]
    # Removed by the client: kept for the audit trail and history, written to no more.
    removed_at: Mapped[datetime | None]


# Mail providers read an address's local part in any letter case: one point in use per mailbox.
Index("uq_contact_points_email", ContactPoint.contact_id, func.lower(ContactPoint.value),
      unique=True, postgresql_where=text("kind = 'email' AND removed_at IS NULL"),
      sqlite_where=text("kind = 'email' AND removed_at IS NULL"))

# A value looked up among all of a client's contacts (the household rule), in any letter case.
Index("ix_contact_points_value", ContactPoint.client_id, func.lower(ContactPoint.value))

# A point the household rule moved to another person ("released") is theirs now, and one the
# client removed is no one's: the contact is neither written to nor reached there, nor counted
# as reachable.
POINT_IN_USE = (ContactPoint.verification_state != "released") & ContactPoint.removed_at.is_(None)


class ConsentDisplay(Base):
    """A consent text as it was shown to a customer: which words, where, when, to whom."""

    __tablename__ = "consent_displays"
    __table_args__ = (Index("ix_consent_displays_notice", "client_id", "purpose",
                            "legal_text_version", "legal_text_language"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    # Indexed, as every column a contact's or journey's erasure looks up or cascades through.
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"),
                                                  index=True)
    journey_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("journeys.id",
                                                                    ondelete="CASCADE"),
                                                         index=True)
    purpose: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    shown_in: Mapped[str] = mapped_column(String(200))
    legal_text_language: Mapped[str] = mapped_column(String(8))
    legal_text_version: Mapped[str] = mapped_column(String(50))
    legal_text_sha256: Mapped[str] = mapped_column(String(64))
    shown_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))


class ConsentEvent(Base):
    """Append-only consent ledger: rows are inserted, never updated."""

    __tablename__ = "consent_events"
    __table_args__ = (
        UniqueConstraint("journey_id", "step", "checkbox_key"),
        Index("ix_consent_events_contact", "contact_id", "given_at"),
    )
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    journey_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("journeys.id"))
    # Which submission of the journey recorded it, so a retried activity adds nothing.
    step: Mapped[str | None] = mapped_column(String(100))
    checkbox_key: Mapped[str | None] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    granted: Mapped[bool] = mapped_column(Boolean)
    given_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(30))
    # Who acted for the customer (back-office user, call-centre agent), if not the customer.
    actor: Mapped[str | None] = mapped_column(String(200))
    # Where the text was shown: "contact_page", "preference_centre", "email:newsletter", ...
    shown_in: Mapped[str | None] = mapped_column(String(200))
    # The display the customer answered, when we showed the text ourselves.
    display_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("consent_displays.id", ondelete="SET NULL"), index=True)
    legal_text: Mapped[str] = mapped_column(Text)
    legal_text_language: Mapped[str] = mapped_column(String(8))
    legal_text_version: Mapped[str] = mapped_column(String(50))
    legal_text_sha256: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))


LIVE_JOURNEY = "stage NOT IN ('expired', 'cancelled')"


class Journey(Base):
    """Read model of one contact's journey in one campaign; the workflow is the source of truth.

    One live journey per contact and campaign; a later launch may invite a contact again once
    every earlier journey of theirs in the campaign has expired, and a launch or enrolment once
    their journey was lost with its workflow (api.lost_journeys). The index leaves out every
    cancelled journey; the code keeps out of the campaign a contact the client cancelled."""

    __tablename__ = "journeys"
    __table_args__ = (
        Index("uq_journeys_campaign_contact_live", "campaign_id", "contact_id", unique=True,
              postgresql_where=text(LIVE_JOURNEY), sqlite_where=text(LIVE_JOURNEY)),
    )
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    # Indexed: a contact's journeys are looked up across campaigns (feed, GDPR, data entry).
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"),
                                                  index=True)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    stage: Mapped[str] = mapped_column(String(30), default="enrolled", index=True)
    language: Mapped[str] = mapped_column(String(8))
    # Data entered but not verified yet stays here, apart from the contact's verified data.
    collected: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)
    # In a payment-reminder campaign: what the contact owes (reference, payment_url, amount,
    # currency, due_on), and when the client reported it paid.
    claim: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)
    paid_at: Mapped[datetime | None]
    # The campaign launch that started it (its workflow id); null when enrolled by the API.
    launch_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # Since when one of the campaign's own messages waits for the paused campaign to resume.
    held_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


class CampaignClaim(Base):
    """A claim reference of a payment-reminder campaign and the one contact it is owed by: the
    same invoice cannot be dunned from two people. The contact may be enrolled with it again
    (a repeat, or a new round after their journey expired) until it is reported paid."""

    __tablename__ = "campaign_claims"
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"),
                                                  index=True)
    # When payment-completed was first reported for it, on whichever of its journeys: the
    # payment is the claim's, so no later journey asks for it again.
    paid_at: Mapped[datetime | None]


class CampaignLaunch(Base):
    """One fan-out of a campaign to a selection of the client's contacts, by the API or the
    campaign's schedule. The launch workflow is the source of truth while it runs; its final
    counts are written here when it ends."""

    __tablename__ = "campaign_launches"
    __table_args__ = (UniqueConstraint("campaign_id", "number"),)
    # The launch workflow's id.
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(20))
    selection: Mapped[dict[str, Any]]
    # Invitations spread evenly over this time (an API launch's choice; None: at once).
    spread_over: Mapped[timedelta | None] = mapped_column(Interval)
    state: Mapped[str] = mapped_column(String(20), default="running")
    # A scheduled launch due while its campaign was paused or archived starts nothing.
    cancelled_because: Mapped[str | None] = mapped_column(String(40))
    selected: Mapped[int | None]
    started: Mapped[int | None]
    skipped: Mapped[int | None]
    # Written with finished_at, so a finished launch's count is its final one.
    journeys_cancelled: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class JourneyEvent(Base):
    """A journey's history as the API shows it; `step` makes each write idempotent."""

    __tablename__ = "journey_events"
    __table_args__ = (UniqueConstraint("journey_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journey_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("journeys.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)


class LinkToken(Base):
    """Personal links in messages. Only the SHA-256 of the token is stored.

    Journey links belong to a journey; preference and unsubscribe links to a contact."""

    __tablename__ = "link_tokens"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    journey_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("journeys.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    # What an unsubscribe link withdraws: {"purpose": ..., "channel": ...}; a preference or
    # verification link's page language: {"language": ...}.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)
    purpose: Mapped[str] = mapped_column(String(30))
    # The journey step that issued it: a newer verification link supersedes older ones.
    step: Mapped[str] = mapped_column(String(100))
    # A printed link's short code (`security.paper_code`), hashed as the token is.
    paper_code_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OneTimeCode(Base):
    """A code sent by SMS. Only its HMAC is stored; wrong tries are counted here, atomically."""

    __tablename__ = "one_time_codes"
    __table_args__ = (UniqueConstraint("journey_id", "step"),)
    id: Mapped[uuid.UUID] = _id()
    journey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(32), index=True)
    code_hmac: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    wrong_tries: Mapped[int] = mapped_column(Integer, default=0)
    # The wrong tries the journey allows, kept by its checks: the campaign's setting may have
    # changed since the journey started (which keeps its own), and the page tells the code
    # locked as the journey does. None until a check, when no try has been wrong.
    max_wrong_tries: Mapped[int | None]
    sent_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]


class Message(Base):
    """Every message a journey sent, keyed by (journey, step) so a retry never sends twice."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("journey_id", "step"),
                      Index("ix_messages_provider_message_id", "client_id",
                            "provider_message_id"))
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    journey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    template: Mapped[str] = mapped_column(String(50))
    recipient: Mapped[str] = mapped_column(String(320))
    # The mailbox the recipient reaches (`db.crud.mailbox`: victim+1@ and Victim@ are victim@),
    # by which the daily cap of verification messages counts, through its index; cleared with
    # the recipient when the contact is anonymised.
    mailbox: Mapped[str | None] = mapped_column(String(320), index=True)
    subject: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="sending")
    provider_message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class MessageBounce(Base):
    """A message that did not reach its recipient, as the mail server or provider said: at send
    time (SMTP 5xx, a deferral past its retries) or reported later through the bounce API."""

    __tablename__ = "message_bounces"
    # One row per message and kind: a provider reporting the same bounce twice adds nothing.
    __table_args__ = (UniqueConstraint("message_id", "kind"),
                      Index("ix_message_bounces_campaign", "campaign_id", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    journey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"),
                                                  index=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(20))
    # The server's or provider's own words, e.g. "550 5.1.1 user unknown".
    reason: Mapped[str] = mapped_column(Text)
    # smtp (refused at send time), sms_provider, letter_provider, api (reported by the client).
    source: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """An event as first recorded; its payload never changes and its id is the webhook-id."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_client_created", "client_id", "created_at"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    # Idempotency key of the business fact (e.g. journey id + step).
    key: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event queued for one endpoint; the endpoint's delivery workflow works through them."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_due", "endpoint_id", "status", "next_attempt_at"),
    )
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    # Per endpoint, in the order the events were recorded (null only for pre-0200 rows).
    sequence: Mapped[int | None]
    # When the current round of attempts began (creation, resend or replay): the retry
    # schedule gives up a fixed time after it.
    round_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP request made (or refused) for a delivery."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None]
    latency_ms: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))


# --- consent: purposes, versioned legal texts, sending policies -------------------------------


class Purpose(Base):
    """What a client asks consent for. `kind` decides whether preferences gate a message."""

    __tablename__ = "purposes"
    __table_args__ = (UniqueConstraint("client_id", "key"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    key: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(200))
    # The client's name for the purpose per language ({"nl": "Nieuwsbrief"}), as its legal
    # texts are per language: `name` is written in the client's default language only.
    names: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    kind: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LegalText(Base):
    """One version of the words shown for a purpose in one language; never changed once stored."""

    __tablename__ = "legal_texts"
    __table_args__ = (UniqueConstraint("client_id", "purpose_key", "language", "version"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    purpose_key: Mapped[str] = mapped_column(String(63))
    language: Mapped[str] = mapped_column(String(8))
    version: Mapped[str] = mapped_column(String(50))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessagePolicy(Base):
    """A client's rule for one message type: marketing needs consent, the rest does not."""

    __tablename__ = "message_policies"
    __table_args__ = (UniqueConstraint("client_id", "message_type"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    message_type: Mapped[str] = mapped_column(String(63))
    category: Mapped[str] = mapped_column(String(20))
    purpose_key: Mapped[str | None] = mapped_column(String(63))


class ConsentDocument(Base):
    """A contact's own consent form (e.g. a signed scan) behind a GDPR consent decision."""

    __tablename__ = "consent_documents"
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    consent_event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("consent_events.id", ondelete="CASCADE"), unique=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClientMessage(Base):
    """A message a client sent to a contact through us (invoice, newsletter, ...)."""

    __tablename__ = "client_messages"
    __table_args__ = (UniqueConstraint("client_id", "idempotency_key"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"),
                                                  index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    message_type: Mapped[str] = mapped_column(String(63))
    channel: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    # queued -> sent | suppressed (with the reason) | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    status_reason: Mapped[str | None] = mapped_column(String(300))
    recipient: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class RateLimitCounter(Base):
    """Fixed-window request counters, in the database so every API instance shares them."""

    __tablename__ = "rate_limit_counters"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer)


# --- KYC -----------------------------------------------------------------------------------
# The KYC tables live in db/kyc_models.py; imported here so Base.metadata (and Alembic) has them.
from db import kyc_models  # noqa: E402, F401
