"""One contact's journey in one campaign: invite → (opened) → data entered → verification
pending → verified; reminders on the campaign's cadence; expired or opted out otherwise.

The workflow decides; activities do the I/O. Durations come from the input, so a test can run
a journey of weeks in seconds.
"""

import asyncio
from datetime import datetime, timedelta
from math import ceil

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.codes import CodeSender
    from activities.journey_records import JourneyRecords
    from activities.messages import MessageSender
    from core.contracts import (
        CheckCodeInput,
        ResendCodeResult,
        SendCodeInput,
        SubmitCodeInput,
        SubmitCodeResult,
        ConfirmInput,
        ConfirmResult,
        ConsentAnswerInput,
        EmittedEvents,
        FinishJourneyInput,
        JourneyInput,
        JourneyState,
        OptOutInput,
        PageOpenedInput,
        RecordConsentAnswerInput,
        RecordStageInput,
        RecordSubmissionInput,
        RecordVerificationInput,
        SendMessageInput,
        SubmitDataInput,
        SubmitDataResult,
    )
    from core.vocabulary import (
        ACCEPTS_SUBMISSION,
        FINAL_STAGES,
        JOURNEY_STAGE,
        ErrorType,
        JourneyKind,
        Stage,
        TokenPurpose,
    )
    from workflows.webhook_delivery import PER_ENDPOINT_WEBHOOKS, deliver

DB_WRITE = {"start_to_close_timeout": timedelta(seconds=30)}
SEND = {
    # A worker that dies mid-send is noticed only at this timeout, while a customer may be
    # waiting on the page for the verification mail: a slow SMTP server gets
    # `smtp_timeout_seconds` per operation, and the rest is a retry.
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=10)),
}


@workflow.defn(name="Journey")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, input: JourneyInput) -> None:
        self.input = input
        self.stage = Stage.enrolled
        self.deadline: datetime | None = None
        self.reminders_sent = 0
        self.last_message_at: datetime | None = None
        self.submissions = 0
        self.pending_email: str | None = None
        self.verification_step: str | None = None
        # Contact points entered and not verified yet: "email" (by link), "mobile" (by code).
        self.awaiting: set[str] = set()
        self.code_step: str | None = None
        self.code_sent_at: datetime | None = None
        self.code_resends = 0
        self.opted_out: OptOutInput | None = None
        self.history: list[str] = []
        # Handlers and the reminder loop take turns, so a confirmation and an expiry never race.
        self.turn = asyncio.Lock()
        self.webhooks: list[asyncio.Task[None]] = []

    # --- the journey ------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyState:
        self.deadline = workflow.now() + input.timings.expires_after
        async with self.turn:
            await self._send(self._template("invitation"), "invitation", TokenPurpose.contact_page,
                             Stage.invited)
            self._enter(Stage.invited)

        while self.stage not in FINAL_STAGES:
            if workflow.now() >= self.deadline:
                async with self.turn:
                    if self.stage not in FINAL_STAGES:
                        await self._finish(Stage.expired, "expired")
                break
            wake_at = min(self.deadline, self._next_reminder_at() or self.deadline)
            try:
                await workflow.wait_condition(
                    lambda: self.stage in FINAL_STAGES or self.opted_out is not None,
                    timeout=max(wake_at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary="next reminder or expiry",
                )
            except asyncio.TimeoutError:
                pass
            async with self.turn:
                if self.opted_out is not None and self.stage not in FINAL_STAGES:
                    await self._finish(Stage.opted_out, "opted-out")
                elif self.stage not in FINAL_STAGES and self._reminder_due():
                    await self._remind()

        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self.webhooks)
        return self.state()

    def _next_reminder_at(self) -> datetime | None:
        t = self.input.timings
        if self.reminders_sent >= t.max_reminders or self.last_message_at is None:
            return None
        return self.last_message_at + t.reminder_interval

    def _reminder_due(self) -> bool:
        at = self._next_reminder_at()
        return at is not None and workflow.now() >= at

    async def _remind(self) -> None:
        self.reminders_sent += 1
        step = f"reminder-{self.reminders_sent}"
        if self.stage == Stage.verification_pending and "email" in self.awaiting:
            await self._send("verification_reminder", step, TokenPurpose.verify_email,
                             to_pending_email=True)
            self.verification_step = step
        else:
            await self._send(self._template("reminder"), step, TokenPurpose.contact_page)

    def _template(self, name: str) -> str:
        return f"reconsent_{name}" if self.input.kind == JourneyKind.reconsent else name

    # --- what the customer does --------------------------------------------------------------

    @workflow.signal
    async def page_opened(self, input: PageOpenedInput) -> None:
        async with self.turn:
            if self.stage != Stage.invited:
                return
            await workflow.execute_activity_method(
                JourneyRecords.record_stage,
                RecordStageInput(self.input.journey_id, "opened", Stage.opened, input.opened_at),
                **DB_WRITE,
            )
            self._enter(Stage.opened)

    @workflow.update
    async def submit_data(self, input: SubmitDataInput) -> SubmitDataResult:
        async with self.turn:
            self._check_submission_allowed()
            self.submissions += 1
            step = f"submission-{self.submissions}"
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_submission,
                RecordSubmissionInput(self.input.journey_id, step, input),
                **DB_WRITE,
            )
            self._deliver(emitted)
            self.pending_email = input.email
            self.awaiting = set()
            self._enter(Stage.data_entered)
            if input.email:
                # Confirmable as soon as the mail may be out, before its send reports back: a
                # send whose report is held up (a killed worker, Temporal restarting) must not
                # turn the customer's click into "a newer link was sent".
                self.verification_step = f"verification-{self.submissions}"
                self.awaiting.add("email")
                await self._send("verification", self.verification_step,
                                 TokenPurpose.verify_email, Stage.verification_pending,
                                 to_pending_email=True)
            if input.mobile:
                self.code_resends = 0
                await self._send_code()
                self.awaiting.add("mobile")
            self._enter(Stage.verification_pending)
            return SubmitDataResult(stage=self.stage, verification_sent_to=input.email)

    @submit_data.validator
    def _validate_submit_data(self, input: SubmitDataInput) -> None:
        # Rejected here, a late or excess submission never reaches the history.
        self._check_submission_allowed()

    def _check_submission_allowed(self) -> None:
        if self.input.kind != JourneyKind.data_collection:
            raise ApplicationError("this journey collects no data",
                                   type=ErrorType.submission_not_accepted)
        if self.stage not in ACCEPTS_SUBMISSION or self.opted_out is not None:
            raise ApplicationError(f"journey is {self.stage}", type=ErrorType.submission_not_accepted)
        if self.submissions >= self.input.timings.max_submissions:
            raise ApplicationError("too many submissions", type=ErrorType.too_many_submissions)

    @workflow.update
    async def confirm_email(self, input: ConfirmInput) -> ConfirmResult:
        async with self.turn:
            self._check_confirmable(input)
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_verification,
                RecordVerificationInput(self.input.journey_id, f"verified-{input.step}", input,
                                        kind="email", final=self.awaiting <= {"email"}),
                **DB_WRITE,
            )
            self._deliver(emitted)
            if emitted.refused:
                return ConfirmResult(stage=self.stage, refused=emitted.refused)
            self._verified("email")
            return ConfirmResult(stage=self.stage)

    def _verified(self, kind: str) -> None:
        self.awaiting.discard(kind)
        if not self.awaiting:
            self._enter(Stage.verified)

    @confirm_email.validator
    def _validate_confirm_email(self, input: ConfirmInput) -> None:
        self._check_confirmable(input)

    def _check_confirmable(self, input: ConfirmInput) -> None:
        # `data_entered`: the verification mail is out but its send has not reported back; the
        # handler then waits its turn until it has.
        if (self.stage not in (Stage.data_entered, Stage.verification_pending)
                or input.step != self.verification_step or "email" not in self.awaiting):
            raise ApplicationError(
                "this link is no longer the one to confirm with", type=ErrorType.nothing_to_verify
            )

    @workflow.update
    async def submit_code(self, input: SubmitCodeInput) -> SubmitCodeResult:
        """The customer types the code from the SMS; the page learns at once whether it was
        right, wrong (with tries left), expired or locked after too many wrong tries."""
        async with self.turn:
            self._check_code_awaited()
            assert self.code_step is not None
            timings = self.input.timings
            check = await workflow.execute_activity_method(
                CodeSender.check_code,
                CheckCodeInput(self.input.journey_id, self.code_step, input.code,
                               timings.code_max_wrong_tries, input.at),
                **DB_WRITE,
            )
            if check.outcome != "right":
                return SubmitCodeResult(check.outcome, self.stage, check.tries_left)
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_verification,
                RecordVerificationInput(
                    self.input.journey_id, f"verified-{self.code_step}",
                    ConfirmInput(self.code_step, input.at, input.ip, input.user_agent),
                    kind="mobile", final=self.awaiting <= {"mobile"}),
                **DB_WRITE,
            )
            self._deliver(emitted)
            if emitted.refused:
                return SubmitCodeResult("refused", self.stage, check.tries_left)
            self._verified("mobile")
            return SubmitCodeResult("right", self.stage, check.tries_left)

    @submit_code.validator
    def _validate_submit_code(self, input: SubmitCodeInput) -> None:
        self._check_code_awaited()

    @workflow.update
    async def resend_code(self) -> ResendCodeResult:
        async with self.turn:
            self._check_code_awaited()
            assert self.code_sent_at is not None
            timings = self.input.timings
            if self.code_resends >= timings.code_max_resends:
                return ResendCodeResult(sent=False)
            wait = self.code_sent_at + timings.code_resend_cooldown - workflow.now()
            if wait > timedelta(0):
                return ResendCodeResult(sent=False, retry_after_seconds=ceil(wait.total_seconds()))
            self.code_resends += 1
            return ResendCodeResult(sent=await self._send_code())

    @resend_code.validator
    def _validate_resend_code(self) -> None:
        self._check_code_awaited()

    def _check_code_awaited(self) -> None:
        if self.stage != Stage.verification_pending or "mobile" not in self.awaiting:
            raise ApplicationError("no code is awaited", type=ErrorType.nothing_to_verify)

    async def _send_code(self) -> bool:
        step = f"code-{self.submissions}-{self.code_resends}"
        result = await workflow.execute_activity_method(
            CodeSender.send_code,
            SendCodeInput(self.input.journey_id, step,
                          workflow.now() + self.input.timings.code_ttl),
            **SEND,
        )
        self.code_step = step
        self.code_sent_at = self.last_message_at = workflow.now()
        return result.sent

    @workflow.update
    async def answer_consent(self, input: ConsentAnswerInput) -> ConfirmResult:
        async with self.turn:
            self._check_answerable()
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_consent_answer,
                RecordConsentAnswerInput(self.input.journey_id, "answer", input),
                **DB_WRITE,
            )
            self._deliver(emitted)
            self._enter(Stage.accepted if input.accepted else Stage.rejected)
            return ConfirmResult(stage=self.stage)

    @answer_consent.validator
    def _validate_answer_consent(self, input: ConsentAnswerInput) -> None:
        self._check_answerable()

    def _check_answerable(self) -> None:
        # `enrolled` as for submissions (ACCEPTS_SUBMISSION): the invitation may be out.
        if self.input.kind != JourneyKind.reconsent or self.stage not in (
                Stage.enrolled, Stage.invited, Stage.opened) or self.opted_out is not None:
            raise ApplicationError(f"journey is {self.stage}",
                                   type=ErrorType.submission_not_accepted)

    @workflow.signal
    def opt_out(self, input: OptOutInput) -> None:
        if self.opted_out is None:
            self.opted_out = input

    @workflow.query
    def state(self) -> JourneyState:
        return JourneyState(
            stage=self.stage,
            reminders_sent=self.reminders_sent,
            submissions=self.submissions,
            deadline=self.deadline,
            pending_email=self.pending_email,
            awaiting=sorted(self.awaiting),
            history=list(self.history),
        )

    # --- helpers ----------------------------------------------------------------------------

    def _enter(self, stage: Stage) -> None:
        self.stage = stage
        self.history.append(f"{workflow.now().isoformat()} {stage}")
        workflow.upsert_search_attributes([JOURNEY_STAGE.value_set(stage)])

    async def _send(
        self, template: str, step: str, purpose: TokenPurpose, stage_after: Stage | None = None,
        *, to_pending_email: bool = False,
    ) -> None:
        assert self.deadline is not None
        expires = self.deadline
        if purpose == TokenPurpose.verify_email:
            expires = min(expires, workflow.now() + self.input.timings.verification_link_ttl)
        await workflow.execute_activity_method(
            MessageSender.send_message,
            SendMessageInput(
                journey_id=self.input.journey_id, step=step, template=template,
                link_purpose=purpose, link_expires_at=expires, stage_after=stage_after,
                to_pending_email=to_pending_email,
            ),
            **SEND,
        )
        self.last_message_at = workflow.now()

    async def _finish(self, stage: Stage, step: str) -> None:
        emitted = await workflow.execute_activity_method(
            JourneyRecords.finish_journey,
            FinishJourneyInput(self.input.journey_id, step, stage, workflow.now()),
            **DB_WRITE,
        )
        self._deliver(emitted)
        self._enter(stage)

    def _deliver(self, emitted: EmittedEvents) -> None:
        if workflow.patched(PER_ENDPOINT_WEBHOOKS):
            return
        for delivery_id in emitted.delivery_ids:
            self.webhooks.append(asyncio.create_task(self._deliver_one(delivery_id)))

    async def _deliver_one(self, delivery_id: str) -> None:
        timings = self.input.timings
        await deliver(delivery_id, timings.webhook_retry_for, timings.webhook_max_retry_interval)
