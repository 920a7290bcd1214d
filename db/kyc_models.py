"""KYC tables: definitions per client, the profile assigned to a contact (a read model of its
workflow), uploaded documents and the profile's history. Links to the upload page are
db.models.LinkToken rows of purpose kyc_documents."""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Interval,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import JSON_OR_NULL, Base, _client_fk, _id, utcnow


def _contact_fk(**kwargs: Any) -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), **kwargs)


class KycDefinition(Base):
    __tablename__ = "kyc_definitions"
    __table_args__ = (UniqueConstraint("client_id", "level"), UniqueConstraint("client_id", "name"))
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    name: Mapped[str] = mapped_column(String(200))
    # Higher levels ask for more; a change of level follows the rules in core.kyc_rules.
    level: Mapped[int] = mapped_column(Integer)
    requires_verification: Mapped[bool] = mapped_column(Boolean, default=True)
    max_credit_limit: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    # None: the profile never expires by time (documents may still expire it).
    expires_after: Mapped[timedelta | None] = mapped_column(Interval)
    remind_before: Mapped[timedelta | None] = mapped_column(Interval)
    # {"person": [rule, ...], "company": [rule, ...]}, see api.kyc_schemas.KycRuleIn.
    rules: Mapped[dict[str, Any]] = mapped_column(JSON_OR_NULL)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KycProfile(Base):
    """The contact's current KYC profile as last recorded by its workflow."""

    __tablename__ = "kyc_profiles"
    __table_args__ = (Index("ix_kyc_profiles_expiry", "client_id", "expires_at"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = _contact_fk(unique=True)
    definition_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kyc_definitions.id"))
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(30), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    assigned_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    expiry_cause: Mapped[str | None] = mapped_column(String(30))
    verified_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The workflow's own record of the profile (core.kyc_contracts.KycProfile), from which a
    # workflow that no longer runs (terminated by an operator) is started again.
    workflow_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)


class KycDocument(Base):
    """An uploaded document; the newest of a type is the one that counts."""

    __tablename__ = "kyc_documents"
    __table_args__ = (Index("ix_kyc_documents_contact", "contact_id", "document_type"),)
    id: Mapped[uuid.UUID] = _id()
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = _contact_fk()
    document_type: Mapped[str] = mapped_column(String(40))
    number: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None]
    storage_key: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(30))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When its upload was answered, the profile's judgment of it waited for: until then a
    # retry of the upload is told it is in progress.
    answered_at: Mapped[datetime | None]


class KycEvent(Base):
    """A profile's history (transitions, messages); `step` makes each write idempotent."""

    __tablename__ = "kyc_events"
    __table_args__ = (UniqueConstraint("contact_id", "step"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[uuid.UUID] = _client_fk()
    contact_id: Mapped[uuid.UUID] = _contact_fk(index=True)
    step: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(50))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON_OR_NULL)

