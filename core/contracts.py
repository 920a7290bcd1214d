"""Inputs and results passed between the API, workflows and activities.

One dataclass per workflow, update, signal and activity, so fields can be added without
breaking recorded histories. Everything here must stay serialisable by Temporal's converter.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class LegalText:
    language: str
    version: str
    text: str
    sha256: str


@dataclass
class ConsentCheckbox:
    key: str
    purpose: str
    channel: str
    mandatory: bool
    texts: dict[str, LegalText]


@dataclass
class JourneyTimings:
    reminder_interval: timedelta
    max_reminders: int
    expires_after: timedelta
    verification_link_ttl: timedelta
    max_submissions: int = 5
    # Mobile verification by one-time code (campaign settings).
    code_ttl: timedelta = timedelta(minutes=10)
    code_max_wrong_tries: int = 5
    code_resend_cooldown: timedelta = timedelta(seconds=60)
    code_max_resends: int = 3
    # How often the opening message is tried within the journey's first workflow task before
    # it goes on as an ordinary activity (settings: opening_message_local_tries).
    opening_message_local_tries: int = 3
    # Used only by journeys recorded before webhooks moved to per-endpoint delivery.
    webhook_retry_for: timedelta = timedelta(days=3)
    webhook_max_retry_interval: timedelta = timedelta(hours=1)


@dataclass
class ChannelStep:
    """One step of a campaign's channel plan: up to `max` messages on `channel`, each `after`
    the message before it (the first of the journey goes at once)."""

    channel: str
    after: timedelta = timedelta(0)
    max: int = 1
    # Tried only when the step before it could not reach the contact (SMS, else letter).
    fallback_only: bool = False


@dataclass
class JourneyInput:
    journey_id: str
    client_id: str
    campaign_id: str
    contact_id: str
    language: str
    timings: JourneyTimings
    # data_collection: collect and verify data; reconsent: ask to accept the consent form.
    kind: str = "data_collection"
    # Empty: the invitation and reminders by email of journeys started before channel plans.
    plan: list[ChannelStep] = field(default_factory=list)
    # Thank the customer once verified (campaign setting).
    send_confirmation: bool = False
    # Started for the link the client prints on its own message (an enrichment link): that
    # message is the invitation, and the journey's own messages follow it as reminders.
    invited_by_client: bool = False


@dataclass
class BounceInput:
    """A message of the journey bounced: rejected at send time or reported afterwards."""

    step: str
    channel: str
    kind: str  # hard | soft | complaint
    # The bounced message's template: a verification email bouncing changes no channel.
    template: str = ""


@dataclass
class ConsentDecision:
    key: str
    granted: bool
    # The display of the text the customer answered (as the page sent it back).
    display_id: str | None = None
    # Whether the page showed the box ticked (the contact's standing decision); None from a
    # form of a page served before the page said so, and in older histories.
    shown: bool | None = None


@dataclass
class SubmitDataInput:
    email: str | None
    consents: list[ConsentDecision]
    # When the customer pressed submit, stamped by the API (not when the workflow saw it).
    given_at: datetime
    ip: str | None
    user_agent: str | None
    language: str
    # E.164; verified by a one-time code sent by SMS.
    mobile: str | None = None
    # A postal address (type, line1, postal_code, city, country) the customer confirmed or
    # corrected; written to the registry when the journey's email/mobile is verified.
    address: dict[str, str | None] | None = None
    # The step of the message whose link the customer followed to the page (None: a printed
    # or enrichment link): only that message's address can be proven by the visit.
    link_step: str | None = None


@dataclass
class SubmitDataResult:
    stage: str
    verification_sent_to: str | None
    # The email address whose verification mail the server refused: the page asks again.
    undeliverable: str | None = None
    # The number entered is the one whose code is out: no new code was sent for it.
    code_kept: bool = False
    # What was kept unchanged on the address the invitation reached (email, mobile) but is
    # verified for another contact of the client, whose household rule rejects it: the page
    # says so where it was typed, as the verification link's page does.
    refused: list[str] = field(default_factory=list)


@dataclass
class SubmitCodeInput:
    code: str
    at: datetime
    ip: str | None
    user_agent: str | None


@dataclass
class SubmitCodeResult:
    # right | wrong | malformed (not six digits: no try spent) | expired | locked | refused |
    # ended (outside the workflow: EmittedEvents.ended)
    outcome: str
    stage: str
    tries_left: int = 0
    # New codes the customer may still ask for (None from journeys that did not say).
    resends_left: int | None = None


@dataclass
class ResendCodeResult:
    sent: bool
    # When not sent: seconds until a new code may be asked, or None when no more are allowed.
    retry_after_seconds: int | None = None
    # A new code was asked for, sent or held back by the number's daily cap: the page answers
    # the same either way, so nobody learns how many codes a number got today.
    asked: bool = False


@dataclass
class SendCodeInput:
    journey_id: str
    step: str
    expires_at: datetime


@dataclass
class SendCodeResult:
    sent: bool
    reason: str | None = None
    # As EmittedEvents.ended: the journey had ended outside the workflow, so no code went out
    # (or, ended while it went, the journey was left as it ended).
    ended: str | None = None


@dataclass
class CheckCodeInput:
    journey_id: str
    step: str
    code: str
    max_wrong_tries: int
    at: datetime


@dataclass
class CheckCodeResult:
    outcome: str
    tries_left: int


@dataclass
class ConsentAnswerInput:
    """The customer's answer to a client's consent form (re-consent journey)."""

    accepted: bool
    given_at: datetime
    ip: str | None
    user_agent: str | None
    language: str
    display_id: str | None = None


@dataclass
class RecordConsentAnswerInput:
    journey_id: str
    step: str
    answer: ConsentAnswerInput


@dataclass
class ConfirmInput:
    # The step of the verification link that was used; only the newest one confirms.
    step: str
    confirmed_at: datetime
    ip: str | None
    user_agent: str | None


@dataclass
class ConfirmResult:
    stage: str
    refused: str | None = None


@dataclass
class PageOpenedInput:
    opened_at: datetime


@dataclass
class WithdrawInput:
    """The client withdraws the journey, which is cancelled next; `reason` says how (e.g.
    `launch_cancelled`). A cancellation without it is an operator's (the Temporal UI)."""
    reason: str


@dataclass
class OptOutInput:
    at: datetime
    ip: str | None
    user_agent: str | None


@dataclass
class ValueVerifiedInput:
    """Another of the contact's journeys verified a value ("email", "mobile") this journey may
    be awaiting too: the database says whether it is, and since when."""

    kind: str


@dataclass
class JourneyState:
    """What the `state` query returns to the API and to operators."""

    stage: str
    reminders_sent: int
    submissions: int
    deadline: datetime | None
    pending_email: str | None = None
    history: list[str] = field(default_factory=list)
    awaiting: list[str] = field(default_factory=list)
    paid: bool = False
    # Channels given up on after a bounce, and the channels the plan still has to try.
    bounced_channels: list[str] = field(default_factory=list)
    channels_ahead: list[str] = field(default_factory=list)
    # An invitation or reminder waits for its paused campaign to be resumed.
    held: bool = False
    # New codes the customer may still ask for by SMS while one is awaited (else None): the
    # page reopened after a code died must not offer a "send me a new code" that cannot.
    code_resends_left: int | None = None


# --- activities --------------------------------------------------------------------------


@dataclass
class SendMessageInput:
    journey_id: str
    # Unique per journey; a retried activity with the same step never sends twice.
    step: str
    template: str  # invitation | reminder | verification
    link_purpose: str
    link_expires_at: datetime
    # Sets the journey's stage in the database together with the send.
    stage_after: str | None = None
    to_pending_email: bool = False
    channel: str = "email"
    # The campaign's own messages (invitations, reminders) wait while it is paused and are not
    # sent once it is archived; what the customer asked for (a verification link) always goes.
    only_while_campaign_active: bool = False


@dataclass
class SendMessageResult:
    sent: bool
    recipient: str | None
    # Not sent: why this channel cannot reach the contact (no address, suppressed, ...) ...
    skipped: str | None = None
    # Skipped as the contact has what the channel needs, but a hard bounce refused it before.
    undeliverable: bool = False
    # ... or the kind of bounce when the server or provider refused it.
    bounced: str | None = None
    # ... or the campaign's status (paused, archived) that held it back.
    held: str | None = None
    # A reminder to confirm a value the contact has verified meanwhile (in another journey) is
    # not sent: the journey's entered values ("email", "mobile") the contact has verified.
    verified: list[str] = field(default_factory=list)
    # As EmittedEvents.ended: not sent, as the journey was cancelled outside the workflow.
    ended: str | None = None


@dataclass
class RecordSubmissionInput:
    journey_id: str
    step: str
    submission: SubmitDataInput
    # The number's code is still out: the journey goes on waiting for it.
    code_kept: bool = False


@dataclass
class RecordVerificationInput:
    journey_id: str
    step: str
    confirm: ConfirmInput
    # Which contact point this verifies; `final` when nothing else awaits verification.
    kind: str = "email"
    final: bool = True
    # Not confirmed here: the contact has verified the value already (another journey); the
    # journey takes it as it stands in the registry, whose verification it leaves as it was.
    verified_before: bool = False


@dataclass
class MessageCategoryInput:
    journey_id: str
    message_type: str


@dataclass
class FinishJourneyInput:
    journey_id: str
    step: str
    stage: str
    at: datetime
    # The history event's detail (who cancelled it, the complaint that ended it); an opt-out's
    # webhook carries it too.
    detail: dict[str, str] | None = None


@dataclass
class RecordStageInput:
    journey_id: str
    step: str
    stage: str
    at: datetime


@dataclass
class DeliverWebhookInput:
    delivery_id: str


@dataclass
class EmittedEvents:
    """Webhook deliveries a recording activity created for the journey to deliver itself.

    Empty since the per-endpoint delivery workflows took over; old histories still carry ids.
    """

    delivery_ids: list[str] = field(default_factory=list)
    # Set when the confirmation was refused (the address is another person's, by the
    # client's household rule); nothing was changed then.
    refused: str | None = None
    # Verify-existing campaigns: the submitted contact points ("email", "mobile") the customer
    # kept as they were, on the very address our invitation reached: proven already.
    proven: list[str] = field(default_factory=list)
    # The submitted contact points ("email", "mobile") the contact has verified already
    # (another journey): taken as they stand in the registry, nothing sent to prove them.
    verified: list[str] = field(default_factory=list)
    # The final stage the journey's record held already, written outside the workflow (a
    # cancellation in the database only, its workflow not started or lost meanwhile): the
    # first end wins, nothing was changed, and the workflow ends as that stage.
    ended: str | None = None


@dataclass
class ClientMessageInput:
    message_id: str


@dataclass
class ClientMessageResult:
    status: str  # sent | suppressed
    reason: str


@dataclass
class ReconsentProgress:
    contacts_reset: int = 0
    journeys_started: int = 0
    # Contacts with no email to reach them, or who withdrew consent and so stay withdrawn.
    skipped: int = 0
    done: bool = False
    # Set by the API, not the run: how the run ended without finishing (an operator
    # terminated it, ...); posting again starts a new one.
    stopped: str | None = None


@dataclass
class ReconsentRunInput:
    campaign_id: str
    batch_size: int = 200
    # Where a continued-as-new run picks up.
    after_contact_id: str | None = None
    progress: ReconsentProgress = field(default_factory=ReconsentProgress)


@dataclass
class ReconsentBatchInput:
    campaign_id: str
    after_contact_id: str | None
    batch_size: int


@dataclass
class ReconsentBatchResult:
    contacts_seen: int
    last_contact_id: str | None
    contacts_reset: int
    journeys_started: int
    skipped: int


@dataclass
class PurgeInput:
    # The schedule's fire time, so a retried purge judges ages the same way.
    now: datetime


@dataclass
class PurgeResult:
    journeys_purged: int
    idempotency_keys_purged: int = 0


@dataclass
class EndLostJourneysResult:
    ended: int
    # KYC profiles started again, their workflow gone.
    profiles_restarted: int = 0
    # Webhook endpoints whose overdue deliveries were woken (their workflow may be gone).
    endpoints_woken: int = 0


# --- webhook delivery, one workflow per endpoint -------------------------------------------


@dataclass
class RetrySchedule:
    """When to try a failing delivery again: after each of `delays`, then every `then_every`,
    giving up once the next attempt would fall later than `give_up_after` the first one."""

    delays: list[timedelta]
    then_every: timedelta
    give_up_after: timedelta


@dataclass
class DeliveryPolicy:
    schedule: RetrySchedule
    attempt_timeout: timedelta
    # Deliveries sent per activity call, and how many of them at once.
    batch_size: int
    parallel: int


@dataclass
class EndpointDeliveryInput:
    endpoint_id: str
    policy: DeliveryPolicy


@dataclass
class WakeEndpointInput:
    """New or re-queued deliveries are waiting in the database (the database is the queue)."""

    reason: str
    # The settings' delivery policy when the event was recorded: a long-running endpoint
    # workflow takes it up, so changed settings apply without restarting it.
    policy: DeliveryPolicy | None = None


@dataclass
class DeliverDueInput:
    endpoint_id: str
    policy: DeliveryPolicy


@dataclass
class DeliverDueResult:
    # active | disabled | deleted: the workflow idles while disabled and ends once deleted.
    endpoint_state: str
    attempted: int
    delivered: int
    # Earliest next attempt of a delivery still pending, and whether one is due already.
    next_due_at: datetime | None
    more_due: bool


# --- contact registry ----------------------------------------------------------------------


@dataclass
class ContactImportInput:
    import_id: str
    client_id: str
    batch_size: int = 1000
    campaign_id: str | None = None


@dataclass
class PlanImportInput:
    import_id: str
    batch_size: int


@dataclass
class ImportBatchSpec:
    """A slice of the stored file: bytes [start, end) holding `rows` records from `first_line`."""

    batch_no: int
    start: int
    end: int
    first_line: int
    rows: int


@dataclass
class ImportPlan:
    total_rows: int
    batches: list[ImportBatchSpec]


@dataclass
class ImportBatchInput:
    import_id: str
    batch: ImportBatchSpec


@dataclass
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass
class EnrolImportedInput:
    import_id: str
    campaign_id: str


@dataclass
class EnrolImportedResult:
    enrolled: int
    not_enrolled: int


@dataclass
class FinishImportInput:
    import_id: str
    enrolled: EnrolImportedResult | None = None


@dataclass
class ImportProgress:
    """What the import workflow's `progress` query returns."""

    total_rows: int
    processed_rows: int
    counts: ImportCounts


@dataclass
class AnonymiseInactiveInput:
    batch_size: int = 500


@dataclass
class InactiveClient:
    client_id: str
    inactive_after_days: int


@dataclass
class AnonymiseBatchInput:
    client_id: str
    cutoff: datetime
    batch_size: int


@dataclass
class AnonymiseInactiveResult:
    anonymised: int
    # Of contacts whose rejection the client's policy anonymises, blocked when they answered.
    after_rejection: int = 0


@dataclass
class ConsequencesBatchInput:
    after_contact_id: str | None
    batch_size: int


@dataclass
class ConsequencesBatchResult:
    anonymised: int
    last_contact_id: str | None  # where the next batch starts; None: none left


@dataclass
class ForgetErasedHistoriesInput:
    # Erasures younger than this wait for the next sweep: the journey whose own page erased the
    # contact closes moments later, and Temporal's list of closed workflows may lag a close.
    settle: timedelta = timedelta(minutes=10)
    batch_size: int = 100


@dataclass
class ForgetHistoriesBatchInput:
    erased_before: datetime
    batch_size: int


@dataclass
class ForgetHistoriesResult:
    contacts: int
    workflows: int


@dataclass
class LaunchSelection:
    """Which of the client's registry contacts a campaign launch invites: those reachable by
    email that match every filter given."""

    # Only contacts still missing verified data of a kind the campaign collects.
    missing_verified_only: bool = True
    # Contacts carrying every one of these tags and categories.
    tags: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    # Only the contacts a CSV import created or matched.
    import_id: str | None = None


@dataclass
class LaunchProgress:
    """What the launch workflow's `progress` query (and its result) reports."""

    state: str = "running"
    number: int = 0
    began_at: datetime | None = None
    # Contacts the selection matched when the launch began.
    selected: int = 0
    started: int = 0
    # Selected contacts that already had a live journey in the campaign.
    skipped: int = 0
    batches: int = 0
    journeys_cancelled: int = 0


@dataclass
class LaunchInput:
    campaign_id: str
    selection: LaunchSelection
    batch_size: int
    batches_per_run: int
    trigger: str = "api"
    # Begins paused: counts the selection, starts nothing until resumed.
    paused: bool = False
    # The journeys' first steps (the invitations) are spread evenly over this time after the
    # launch began, rather than all taken as soon as each journey starts.
    spread_over: timedelta | None = None
    # Carried across continue-as-new.
    progress: LaunchProgress | None = None
    after_contact_id: str | None = None
    cancel_journeys: bool = False


@dataclass
class CancelLaunchInput:
    # Also cancel the journeys this launch started that have not finished.
    cancel_journeys: bool = False


@dataclass
class BeginLaunchInput:
    launch_id: str
    campaign_id: str
    trigger: str
    selection: LaunchSelection


@dataclass
class BeginLaunchResult:
    number: int
    selected: int
    # Set for a scheduled launch due while its campaign is not active: it starts nothing.
    cancelled_because: str | None = None


@dataclass
class LaunchBatchInput:
    launch_id: str
    campaign_id: str
    selection: LaunchSelection
    after_contact_id: str | None
    limit: int
    # Where this batch's first contact stands in the selection, to spread first steps over
    # `spread_over` after `began_at`.
    position: int = 0
    selected: int = 0
    began_at: datetime | None = None
    spread_over: timedelta | None = None


@dataclass
class LaunchBatchResult:
    seen: int
    started: int
    skipped: int
    last_contact_id: str | None


@dataclass
class FinishLaunchInput:
    launch_id: str
    progress: LaunchProgress
    cancel_journeys: bool
    # Who stopped it, when the launch itself cannot tell: an operator's Cancel (`operator`).
    cancelled_because: str | None = None


@dataclass
class FinishLaunchResult:
    journeys_cancelled: int


@dataclass
class WithdrawUnreachedInput:
    launch_id: str


@dataclass
class WithdrawUnreachedResult:
    journeys_cancelled: int


@dataclass
class WakeHeldInput:
    campaign_id: str


@dataclass
class WakeHeldResult:
    journeys_woken: int
