"""One contact's KYC profile over the years: assigned → Pending Verification → Verified or
Refuted → reminded before expiry → Expired → renewed by a new upload → Pending Verification.

The workflow decides; activities judge the contact's information and do the writes and sends.
Each renewal (and any run whose history grows long) continues as new, so history stays bounded.
"""

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.kyc import KycActivities
    from core.kyc_contracts import (
        AssignKycInput,
        DocumentsChangedInput,
        EvaluateKycInput,
        KycEvaluation,
        KycInput,
        KycProfile,
        NotifyExpiringInput,
        RecordKycInput,
        RefuteKycInput,
        SendKycEmailInput,
        VerifyKycInput,
    )
    from core.kyc_rules import KycRefused, profile_expiry, state_after_assignment
    from core.vocabulary import KYC_LIVE_STATES, KYC_STATE, ErrorType, EventType, KycState
    from workflows.webhook_delivery import PER_ENDPOINT_WEBHOOKS, deliver

DB = {"start_to_close_timeout": timedelta(seconds=30)}
SEND = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=10), maximum_attempts=50),
}
# Renewal needs something new from the customer.
RENEWABLE = frozenset({KycState.refuted, KycState.expired})
# Profiles before it: the client's assignment of the definition an expired or refuted profile
# already has changed nothing, and any change of the contact (a name) renewed it.
RENEWAL_IS_DELIBERATE = "kyc-renewal-is-deliberate"
# Profiles before it: a refused first assignment left the workflow running, unassigned, for ever.
REFUSED_FIRST_ENDS = "kyc-refused-first-assignment-ends"
# Profiles before it: an anonymised contact's profile took a verify or refute sent to it
# directly (the Temporal UI), which the API refuses.
ANONYMISED_TAKES_NO_DECISION = "kyc-anonymised-takes-no-decision"


@workflow.defn(name="Kyc")
class KycWorkflow:
    @workflow.init
    def __init__(self, input: KycInput) -> None:
        self.input = input
        self.profile = input.profile or KycProfile()
        # Handlers and the timer loop take turns, so a verification and an expiry never race.
        self.turn = asyncio.Lock()
        # Set by every recorded change, so the loop sets its timer anew.
        self.rescheduled = False
        self.renewed = False
        # The contact was deleted: the profile ends with it.
        self.gone = False
        # The contact was anonymised: the profile goes on in a run whose history holds nothing
        # of the person, so that this one can be deleted.
        self.forgotten = False
        # The first assignment was refused: there is no profile to keep, so the workflow ends
        # (a later assignment starts a new one) unless another assignment took meanwhile.
        self.refused = False
        self.webhooks: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, input: KycInput) -> None:
        try:
            await self._keep()
        except (asyncio.CancelledError, ActivityError) as err:
            # An operator's Cancel (Temporal UI) does not end the profile, which lasts as long
            # as its contact: stopped, its expiry would never come and the database would show
            # it valid for ever. It goes on in a fresh run, as after a renewal.
            if not is_cancelled_exception(err):
                raise
            workflow.logger.info("KYC profile's run cancelled: it goes on in a new run")
        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self.webhooks)
        if self.gone or (self.refused and self.profile.state is None):
            return
        self.profile.run += 1
        workflow.continue_as_new(KycInput(input.client_id, input.contact_id, input.timings,
                                          self.profile))

    async def _keep(self) -> None:
        """Acts on the profile's dates until it is renewed, its contact is gone, its first
        assignment is refused or the history is long enough to continue as new."""
        while not (self.renewed or self.forgotten or self.refused
                   or workflow.info().is_continue_as_new_suggested()):
            async with self.turn:
                await self._unless_gone(self._act_on_time())
            if self.gone:
                break
            self.rescheduled = False
            wake = self._next_wake()
            try:
                await workflow.wait_condition(
                    lambda: (self.rescheduled or self.renewed or self.gone or self.forgotten
                             or self.refused),
                    timeout=None if wake is None
                    else max(wake - workflow.now(), timedelta(milliseconds=10)),
                    timeout_summary="KYC reminder or expiry",
                )
            except asyncio.TimeoutError:
                pass

    # --- the clock ----------------------------------------------------------------------------

    def _reminder_at(self) -> datetime | None:
        p = self.profile
        if p.expires_at is None or p.remind_before is None or p.reminded_for == p.expires_at:
            return None
        return p.expires_at - p.remind_before

    def _next_wake(self) -> datetime | None:
        p = self.profile
        if p.state not in KYC_LIVE_STATES or p.expires_at is None:
            return None
        return min(d for d in (self._reminder_at(), p.expires_at) if d is not None)

    async def _act_on_time(self) -> None:
        p = self.profile
        if p.state not in KYC_LIVE_STATES or p.expires_at is None:
            return
        now = workflow.now()
        if now >= p.expires_at:
            p.state, p.reason = KycState.expired, p.expiry_cause
            await self._record(KycState.expired, EventType.kyc_expired)
            await self._email("kyc_expired", with_link=True)
        elif (reminder_at := self._reminder_at()) is not None and now >= reminder_at:
            p.reminded_for = p.expires_at
            await self._record("reminded", EventType.kyc_expiring)
            await self._email("kyc_expiring", with_link=True)

    # --- what the client's operators and the customer do -------------------------------------

    @workflow.update(description=(
        'Sent by POST /v1/kyc/contacts/{id}/assign, or as the contact comes to qualify for a '
        'definition: assigns the profile, or changes its level '
        '({"definition_id": "<id>", or null for the highest the contact qualifies for, "at": '
        '"<time>"}).'))
    async def assign(self, input: AssignKycInput) -> KycProfile:
        """Assigns a profile, or changes it to another level by CRM.COM's rules."""
        async with self.turn:
            try:
                return await self._assign(input)
            except FailureError:
                if self.profile.state is None and workflow.patched(REFUSED_FIRST_ENDS):
                    self.refused = True
                raise

    async def _assign(self, input: AssignKycInput) -> KycProfile:
        judged = await self._evaluate(input.definition_id)
        p = self.profile
        if judged.definition_id is None:
            raise ApplicationError(
                "no KYC definition can be assigned: " + "; ".join(judged.missing),
                judged.missing, type=ErrorType.kyc_missing_information)
        if judged.definition_id == p.definition_id:
            if p.state in RENEWABLE and workflow.patched(RENEWAL_IS_DELIBERATE):
                # The client puts the customer through the KYC flow again.
                await self._renew_by_client(judged)
                return self.profile
            return p  # a repeated request changes nothing
        try:
            state = state_after_assignment(p.state, p.level, judged.level,
                                           judged.requires_verification, judged.missing)
        except KycRefused as err:
            raise ApplicationError(str(err), judged.missing,
                                   type=ErrorType.kyc_missing_information) from err
        first = p.state is None
        self._take(judged, state)
        await self._record("assigned" if first else "changed", EventType.kyc_assigned)
        await self._email("kyc_assigned")
        return self.profile

    @workflow.update(description=(
        'An operator\'s decision, which POST /v1/kyc/contacts/{id}/verify sends: {"at": '
        '"<time>"}. Only a profile pending verification, of a contact not anonymised.'))
    async def verify(self, input: VerifyKycInput) -> KycProfile:
        async with self.turn:
            self._check_pending()
            self.profile.state, self.profile.reason = KycState.verified, None
            await self._record(KycState.verified, EventType.kyc_verified)
            await self._email("kyc_verified")
            return self.profile

    @workflow.update(description=(
        'An operator\'s decision, which POST /v1/kyc/contacts/{id}/refute sends: {"reason": '
        '"...", "at": "<time>"}; the customer gets the reason and a link to upload what is '
        'missing. Only a profile pending verification, of a contact not anonymised.'))
    async def refute(self, input: RefuteKycInput) -> KycProfile:
        async with self.turn:
            self._check_pending()
            self.profile.state, self.profile.reason = KycState.refuted, input.reason
            await self._record(KycState.refuted, EventType.kyc_refuted)
            await self._email("kyc_refuted", with_link=True)
            return self.profile

    @verify.validator
    def _validate_verify(self, input: VerifyKycInput) -> None:
        self._check_pending()

    @refute.validator
    def _validate_refute(self, input: RefuteKycInput) -> None:
        self._check_pending()

    def _check_pending(self) -> None:
        # Rejected in the validator, a late click never reaches the history.
        if self.profile.anonymised:
            raise ApplicationError("the contact was anonymised: its KYC profile takes no "
                                   "decisions", type=ErrorType.kyc_contact_anonymised)
        if self.profile.state is None:
            raise ApplicationError("no KYC profile is assigned", type=ErrorType.kyc_not_assigned)
        if self.profile.state != KycState.pending_verification:
            raise ApplicationError(f"the KYC profile is {self.profile.state}, not pending "
                                   "verification", type=ErrorType.kyc_wrong_state)

    @workflow.signal(description="Sent by the API: a document was uploaded or corrected; the "
                     "profile renews, or moves its expiry.")
    async def documents_changed(self, input: DocumentsChangedInput) -> None:
        """A document was uploaded or its details corrected: renew, or move the expiry date."""
        async with self.turn:
            await self._unless_gone(self._judge_documents(input))

    @workflow.update(description="Sent by the API for an upload: as documents_changed, "
                     "answering once the profile has judged it.")
    async def judge_documents(self, input: DocumentsChangedInput) -> None:
        """As documents_changed, answering once the profile's change is recorded: the page
        the customer uploaded from then shows the outcome, not the state before it."""
        await self.documents_changed(input)

    async def _judge_documents(self, input: DocumentsChangedInput) -> None:
        p = self.profile
        if p.state is None or p.definition_id is None:
            return
        judged = await self._evaluate(p.definition_id)
        new_evidence = input.uploaded and input.document_type in judged.document_types
        renewal = p.state in RENEWABLE or (p.state == KycState.verified and new_evidence)
        if (p.state in RENEWABLE and not judged.missing
                and not (input.uploaded or input.document_type in judged.document_types)
                and workflow.patched(RENEWAL_IS_DELIBERATE)):
            # A change of the registry that brings nothing new the definition relies on (a
            # name fixed, an email added) does not vouch for the customer again: an upload,
            # a corrected document or the client's assignment renews.
            renewal = False
        if renewal and not judged.missing:
            await self._renew(judged)
            return
        if p.state not in KYC_LIVE_STATES or p.assigned_at is None:
            return
        expires_at, cause = profile_expiry(p.assigned_at, p.expires_after,
                                           judged.renewal_expires_at)
        if (expires_at, cause) != (p.expires_at, p.expiry_cause):
            p.expires_at, p.expiry_cause = expires_at, cause
            await self._record("rescheduled")

    @workflow.signal(description="Sent by POST /v1/kyc/expiring/notify: tells the customer "
                     "the profile expires soon.")
    async def notify_expiring(self, input: NotifyExpiringInput) -> None:
        """A client's batch notification to the profiles that expire soon."""
        async with self.turn:
            if self.profile.state in KYC_LIVE_STATES:
                await self._email("kyc_expiring", with_link=True, step=f"batch-{input.batch_id}")

    @workflow.update(description="Sent by the contact's anonymisation: the operator's reason "
                     "is forgotten, and the profile goes on in a new run.")
    async def forget_personal_data(self) -> None:
        """The contact was anonymised: the reason an operator wrote goes (the database lost it
        with the erasure), and the profile goes on in a fresh run, as after a renewal. This
        run's history, which holds the reason and the messages' addresses, is then deleted
        (contacts/histories.py)."""
        async with self.turn:
            self.profile.reason = None
            self.forgotten = True
            if workflow.patched(ANONYMISED_TAKES_NO_DECISION):
                self.profile.anonymised = True

    @workflow.query(description="The profile: its state, definition and level, when it was "
                    "assigned and expires, and why, the reason of a refutation.")
    def state(self) -> KycProfile:
        return self.profile

    # --- helpers ------------------------------------------------------------------------------

    async def _unless_gone(self, work: Awaitable[None]) -> None:
        try:
            await work
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError)
                    and cause.type == ErrorType.kyc_contact_gone):
                raise
            self.gone = True

    async def _evaluate(self, definition_id: str | None) -> KycEvaluation:
        return await workflow.execute_activity_method(
            KycActivities.evaluate_kyc,
            EvaluateKycInput(self.input.client_id, self.input.contact_id, definition_id,
                             workflow.now()),
            **DB)

    async def _renew(self, judged: KycEvaluation) -> None:
        self._take(judged, KycState.pending_verification if judged.requires_verification
                   else KycState.verified)
        await self._record("renewed", EventType.kyc_assigned)
        await self._email("kyc_assigned")
        self.renewed = True

    async def _renew_by_client(self, judged: KycEvaluation) -> None:
        if judged.missing:
            raise ApplicationError(
                f"the KYC profile is {self.profile.state}: it is renewed once its required "
                "information is present; missing: " + "; ".join(judged.missing),
                judged.missing, type=ErrorType.kyc_missing_information)
        await self._renew(judged)

    def _take(self, judged: KycEvaluation, state: KycState) -> None:
        """The profile starts anew: its state and expiry reset by the definition."""
        p = self.profile
        p.state, p.reason = state, None
        p.definition_id, p.definition_name, p.level = (
            judged.definition_id, judged.name, judged.level)
        p.requires_verification = judged.requires_verification
        p.document_types = judged.document_types
        p.expires_after, p.remind_before = judged.expires_after, judged.remind_before
        p.assigned_at = workflow.now()
        p.expires_at, p.expiry_cause = profile_expiry(p.assigned_at, p.expires_after,
                                                      judged.renewal_expires_at)
        p.reminded_for = None

    async def _record(self, type: str, event: EventType | None = None) -> None:
        p = self.profile
        p.seq += 1
        emitted = await workflow.execute_activity_method(
            KycActivities.record_kyc,
            RecordKycInput(self.input.client_id, self.input.contact_id, f"{p.seq}-{type}",
                           workflow.now(), p, type, event),
            **DB)
        if not workflow.patched(PER_ENDPOINT_WEBHOOKS):
            timings = self.input.timings
            self.webhooks += [asyncio.create_task(deliver(d, timings.webhook_retry_for,
                                                          timings.webhook_max_retry_interval))
                              for d in emitted.delivery_ids]
        self.rescheduled = True
        workflow.upsert_search_attributes([KYC_STATE.value_set(p.state or "")])

    async def _email(self, template: str, *, with_link: bool = False,
                     step: str | None = None) -> None:
        timings = self.input.timings
        try:
            await workflow.execute_activity_method(
                KycActivities.send_kyc_email,
                SendKycEmailInput(
                    self.input.client_id, self.input.contact_id,
                    step or f"{self.profile.seq}-{template}", template, self.profile,
                    workflow.now() + timings.link_ttl if with_link else None),
                **SEND)
        except ActivityError as err:
            # A message that cannot be sent must not stop a profile that runs for years.
            workflow.logger.warning("KYC email %s not sent: %s", template, err.cause)
