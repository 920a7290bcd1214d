"""Inputs and results of the KYC workflow, its messages and its activities (one dataclass each,
so fields can be added without breaking running profiles)."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import TypeAdapter


@dataclass
class KycTimings:
    link_ttl: timedelta
    # Used only by profiles recorded before webhooks moved to per-endpoint delivery.
    webhook_retry_for: timedelta = timedelta(days=3)
    webhook_max_retry_interval: timedelta = timedelta(hours=1)


@dataclass
class KycProfile:
    """The workflow's entity state: carried over continue-as-new, returned by the `state` query."""

    state: str | None = None
    definition_id: str | None = None
    definition_name: str | None = None
    level: int | None = None
    requires_verification: bool = True
    # Document types the definition relies on; a new one of these starts a renewal.
    document_types: list[str] = field(default_factory=list)
    assigned_at: datetime | None = None
    expires_after: timedelta | None = None
    expires_at: datetime | None = None
    expiry_cause: str | None = None
    remind_before: timedelta | None = None
    # The expiry date the customer was last reminded of; a moved date earns a new reminder.
    reminded_for: datetime | None = None
    reason: str | None = None
    # Numbers every recorded step, across runs, so each activity is keyed uniquely.
    seq: int = 0
    run: int = 1
    # The contact was anonymised: no decision is taken for the person any more, also none
    # an operator sends in the Temporal UI, where the API's refusal does not stand between.
    anonymised: bool = False


# As the database keeps it (kyc_profiles.workflow_profile), to start a stopped workflow again.
KYC_PROFILE_JSON = TypeAdapter(KycProfile)


@dataclass
class KycInput:
    client_id: str
    contact_id: str
    timings: KycTimings
    profile: KycProfile | None = None


@dataclass
class AssignKycInput:
    # None: the highest-level definition whose required information is present.
    definition_id: str | None
    at: datetime
    source: str = "api"


@dataclass
class VerifyKycInput:
    at: datetime


@dataclass
class RefuteKycInput:
    reason: str
    at: datetime


@dataclass
class DocumentsChangedInput:
    document_type: str
    # True for a newly uploaded document, False for corrected details of a known one.
    uploaded: bool
    at: datetime


@dataclass
class NotifyExpiringInput:
    batch_id: str
    at: datetime


# --- activities --------------------------------------------------------------------------


@dataclass
class EvaluateKycInput:
    client_id: str
    contact_id: str
    definition_id: str | None
    at: datetime


@dataclass
class KycEvaluation:
    """A definition judged against what is known of the contact now."""

    definition_id: str | None
    name: str = ""
    level: int = 0
    requires_verification: bool = True
    expires_after: timedelta | None = None
    remind_before: timedelta = timedelta(days=30)
    document_types: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    renewal_expires_at: datetime | None = None


@dataclass
class RecordKycInput:
    client_id: str
    contact_id: str
    step: str
    at: datetime
    profile: KycProfile
    # The history entry: a state, or what happened (reminded, rescheduled).
    type: str
    # The webhook event type to raise, if any.
    event: str | None = None


@dataclass
class SendKycEmailInput:
    client_id: str
    contact_id: str
    step: str
    template: str
    profile: KycProfile
    # Set when the message carries a personal link to the upload page.
    link_expires_at: datetime | None = None
