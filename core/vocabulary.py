"""The words the product uses everywhere: journey stages, event types, channels, search attributes.

Workflows, activities, API, webhooks and the Temporal UI all speak this one vocabulary.
"""

from enum import StrEnum

from temporalio.common import SearchAttributeKey


class Stage(StrEnum):
    # Accepted into the campaign, no invitation sent yet: its first is still to go, or every
    # one so far was kept back (suppressed by the sending rules) or could not reach the contact.
    enrolled = "enrolled"
    invited = "invited"
    opened = "opened"
    data_entered = "data_entered"
    verification_pending = "verification_pending"
    verified = "verified"
    expired = "expired"
    opted_out = "opted_out"
    # Ends of a re-consent journey: the customer's answer to the consent form.
    accepted = "accepted"
    rejected = "rejected"
    # Stopped by the client (it cancelled the campaign launch that started it, or archived the
    # campaign before it reached anyone) or by an operator (Cancel in the Temporal UI); ended
    # too when its workflow is gone (api.lost_journeys).
    cancelled = "cancelled"


class CancelledBy(StrEnum):
    """Who cancelled a journey, as the `by` of its `cancelled` history event says. Journeys
    cancelled before it was recorded say nothing, and are taken as the client's."""
    client = "client"
    operator = "operator"
    # The journey itself, which cannot go on (a campaign's duration past the clock's end).
    system = "system"


FINAL_STAGES = frozenset(
    {Stage.verified, Stage.expired, Stage.opted_out, Stage.accepted, Stage.rejected,
     Stage.cancelled}
)
# The order an open journey moves in: a report that arrives late (a send recorded after the
# customer already opened the page or answered) never moves it back.
PROGRESS = (Stage.enrolled, Stage.invited, Stage.opened, Stage.data_entered,
            Stage.verification_pending)
# Not opened yet: the first visit to the contact page moves these to `opened`.
NOT_OPENED = frozenset({Stage.enrolled, Stage.invited})
# The journey event of a rejection on the page whose anonymisation the rules blocked, and the
# audit action of one the back office recorded; the contact's GDPR state shows its reasons
# while that rejection is the newest answer.
ANONYMISATION_BLOCKED = "anonymisation_blocked"
# Stages in which the customer may (re)submit data from the page. `enrolled` too: the
# invitation is mailed before its activity reports back, and a worker that dies in between
# leaves the journey `enrolled` until the send is retried, while the customer already has it.
ACCEPTS_SUBMISSION = frozenset(
    {Stage.enrolled, Stage.invited, Stage.opened, Stage.data_entered,
     Stage.verification_pending}
)


class JourneyKind(StrEnum):
    data_collection = "data_collection"
    reconsent = "reconsent"


class EventType(StrEnum):
    data_collected = "contact.data_collected"
    data_verified = "contact.data_verified"
    consent_changed = "consent.changed"
    journey_expired = "journey.expired"
    journey_opted_out = "journey.opted_out"
    journey_cancelled = "journey.cancelled"
    journey_payment_completed = "journey.payment_completed"
    message_bounced = "message.bounced"
    # A bounce of the client's own message (POST /v1/messages): no journey, no campaign.
    client_message_bounced = "client_message.bounced"
    # A bounce of a KYC profile's email or SMS to the customer: no journey, no campaign.
    kyc_message_bounced = "kyc.message_bounced"
    campaign_updated = "campaign.updated"
    contact_settings_updated = "contact_settings.updated"
    launch_completed = "launch.completed"
    launch_cancelled = "launch.cancelled"
    kyc_assigned = "kyc.assigned"
    kyc_verified = "kyc.verified"
    kyc_refuted = "kyc.refuted"
    kyc_expiring = "kyc.expiring"
    kyc_expired = "kyc.expired"
    # Sent to a client's other endpoints when one failed for its whole retry schedule.
    endpoint_disabled = "webhook_endpoint.disabled"


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    letter = "letter"
    phone = "phone"
    # Consent that is not about a channel, e.g. to keep and process the data at all (GDPR).
    any = "any"


# What a contact needs for a channel of a campaign's channel plan to reach them.
CHANNEL_NEEDS = {Channel.email: "email address", Channel.sms: "mobile number",
                 Channel.letter: "postal address"}


class BounceKind(StrEnum):
    hard = "hard"  # the address or number does not exist (5xx, provider refusal)
    soft = "soft"  # still undeliverable after retries (mailbox full, 4xx)
    complaint = "complaint"  # the recipient marked it as spam


class ContactPointKind(StrEnum):
    email = "email"
    mobile = "mobile"
    phone = "phone"  # a landline or any number not meant for SMS


class ContactKind(StrEnum):
    person = "person"
    company = "company"


class EngagementState(StrEnum):
    never_engaged = "never_engaged"
    engaged = "engaged"


class MediumKind(StrEnum):
    """Customer identification media: how another system (e.g. a POS) names a contact."""

    card = "card"
    phone = "phone"
    email = "email"
    loyalty_id = "loyalty_id"


class ActorType(StrEnum):
    """Who the audit trail names: an API key, a customer on the page, an import, the system."""

    api_key = "api_key"
    customer = "customer"
    import_ = "import"
    system = "system"


class AuditAction(StrEnum):
    read = "read"
    create = "create"
    update = "update"
    export = "export"
    anonymise = "anonymise"
    terminate = "terminate"
    lookup = "lookup"
    anonymisation_blocked = ANONYMISATION_BLOCKED


class CampaignMode(StrEnum):
    # Ask for the data and verify what is entered.
    collect = "collect"
    # Show what the client knows; the customer confirms it or corrects it.
    verify_existing = "verify_existing"


# The messages that bring a customer to the contact page (as opposed to verification links).
INVITING_TEMPLATES = ("invitation", "reminder")


class SuppressionReason(StrEnum):
    anonymised = "anonymised"
    terminated = "terminated"


class ImportStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"


class VerificationState(StrEnum):
    unverified = "unverified"
    pending = "pending"
    verified = "verified"
    # Moved to another person of the same client by the household rule.
    released = "released"


class GdprConsentState(StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"
    withdrawn = "withdrawn"


class GdprConsequence(StrEnum):
    """What a client does with contacts that rejected or withdrew the consent to keep data."""

    full_functionality = "full_functionality"
    no_functionality = "no_functionality"
    anonymise = "anonymise"


class HouseholdRule(StrEnum):
    """What happens when a second person confirms an address another person verified."""

    reject = "reject"
    move = "move"


class ConsentSource(StrEnum):
    contact_page = "contact_page"
    message_link = "message_link"
    back_office = "back_office"
    api = "api"
    import_ = "import"
    call_centre = "call_centre"
    sms_keyword = "sms_keyword"
    # Withdrawn by us, e.g. when the household rule moved the address to another person.
    system = "system"


class TokenPurpose(StrEnum):
    contact_page = "contact_page"
    verify_email = "verify_email"
    preferences = "preferences"
    unsubscribe = "unsubscribe"
    kyc_documents = "kyc_documents"


class PurposeKind(StrEnum):
    direct_marketing = "direct_marketing"
    affiliate_marketing = "affiliate_marketing"
    service = "service"
    financial = "financial"
    # The GDPR consent to keep and process the contact's data (the client's consent form).
    data_processing = "data_processing"


MARKETING_KINDS = frozenset({PurposeKind.direct_marketing, PurposeKind.affiliate_marketing})


class MessageCategory(StrEnum):
    """Marketing obeys the customer's preferences; the others are sent regardless."""

    marketing = "marketing"
    service = "service"
    financial = "financial"
    mandatory = "mandatory"


# What still goes to a recipient who reported our message as spam: what must reach them.
SENT_DESPITE_COMPLAINT = frozenset({MessageCategory.financial, MessageCategory.mandatory})


class ErrorType(StrEnum):
    """ApplicationError types the API branches on."""

    submission_not_accepted = "SubmissionNotAccepted"
    nothing_to_verify = "NothingToVerify"
    too_many_submissions = "TooManySubmissions"
    webhook_rejected = "WebhookRejected"
    kyc_not_assigned = "KycNotAssigned"
    kyc_wrong_state = "KycWrongState"
    kyc_missing_information = "KycMissingInformation"
    kyc_contact_gone = "KycContactGone"
    kyc_contact_anonymised = "KycContactAnonymised"
    launch_ended = "LaunchEnded"


class KycState(StrEnum):
    """Life cycle of a contact's KYC profile (CRM.COM's states)."""

    pending_verification = "pending_verification"
    verified = "verified"
    refuted = "refuted"
    expired = "expired"


# States in which a profile counts down to its expiry and reminds the customer.
KYC_LIVE_STATES = frozenset({KycState.pending_verification, KycState.verified})


class KycField(StrEnum):
    """Contact information a KYC rule can require. Document-backed fields take their value
    from the newest uploaded document of their type."""

    first_name = "first_name"
    last_name = "last_name"
    company_name = "company_name"
    email = "email"
    mobile = "mobile"
    id_number = "id_number"
    passport_number = "passport_number"


class DocumentType(StrEnum):
    """Attachment classification of an uploaded KYC document."""

    id_card = "id_card"
    passport = "passport"
    proof_of_address = "proof_of_address"
    company_registration = "company_registration"


class LaunchState(StrEnum):
    """A campaign launch: fanning out journeys, held, stopped for good, or through its selection."""

    running = "running"
    paused = "paused"
    cancelled = "cancelled"
    completed = "completed"


class LaunchTrigger(StrEnum):
    api = "api"
    schedule = "schedule"


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


CLIENT_ID = SearchAttributeKey.for_keyword("ClientId")
CAMPAIGN_ID = SearchAttributeKey.for_keyword("CampaignId")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("JourneyStage")
KYC_STATE = SearchAttributeKey.for_keyword("KycState")
# Set when a contact's journey or KYC profile starts, so operators find them by contact.
CONTACT_ID = SearchAttributeKey.for_keyword("ContactId")
SEARCH_ATTRIBUTES = (CLIENT_ID, CAMPAIGN_ID, JOURNEY_STAGE, KYC_STATE, CONTACT_ID)


# The parts of an address the contact page asks for, confirms or corrects (and the campaign
# report shows), besides its type.
PAGE_ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "region", "country")
# Countries whose postal addresses name a state, province or prefecture: the page asks for the
# region there (and wherever the contact's address has one).
REGION_COUNTRIES = frozenset({"AR", "AU", "BR", "CA", "CN", "ES", "IN", "IT", "JP", "MX", "US"})
