"""One contact's journey in one campaign: invite → data entered → verification pending →
verified; reminders on the campaign's cadence; expired or opted out otherwise. (That the
customer opened the page is a fact the page records in the database; nothing here waits on it.)

A campaign with a channel plan invites and reminds through its steps (letter, email, SMS, each
with its cadence and maximum); a bounce makes the journey give up that channel and go on with
the next one, or with SMS (else a letter) when the plan has none left, at the cadence of what
bounced. A spam complaint ends it instead (opted out), unless the campaign's messages must
reach the contact (financial).

The workflow decides; activities do the I/O. Durations come from the input, so a test can run
a journey of weeks in seconds.
"""

import asyncio
import dataclasses
from datetime import datetime, timedelta
from math import ceil
from typing import Any, Awaitable, Callable, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.codes import CodeSender
    from activities.journey_records import JourneyRecords
    from activities.messages import VERIFICATION_TEMPLATES, MessageSender
    from core.contracts import (
        BounceInput,
        ChannelStep,
        CheckCodeInput,
        ResendCodeResult,
        SendCodeInput,
        SendCodeResult,
        SubmitCodeInput,
        SubmitCodeResult,
        ConfirmInput,
        ConfirmResult,
        ConsentAnswerInput,
        EmittedEvents,
        FinishJourneyInput,
        JourneyInput,
        JourneyState,
        MessageCategoryInput,
        OptOutInput,
        PageOpenedInput,
        RecordConsentAnswerInput,
        RecordStageInput,
        RecordSubmissionInput,
        RecordVerificationInput,
        SendMessageInput,
        SendMessageResult,
        SubmitDataInput,
        SubmitDataResult,
        ValueVerifiedInput,
        WithdrawInput,
    )
    from core.vocabulary import (
        ACCEPTS_SUBMISSION,
        CHANNEL_NEEDS,
        BounceKind,
        CancelledBy,
        Channel,
        FINAL_STAGES,
        JOURNEY_STAGE,
        SENT_DESPITE_COMPLAINT,
        ErrorType,
        JourneyKind,
        Stage,
        TokenPurpose,
    )
    from workflows.webhook_delivery import PER_ENDPOINT_WEBHOOKS, deliver

Arg = TypeVar("Arg")
Ret = TypeVar("Ret")
DB_WRITE = {"start_to_close_timeout": timedelta(seconds=30)}
SEND = {
    # A worker that dies mid-send is noticed only at this timeout, while a customer may be
    # waiting on the page for the verification mail: a slow SMTP server gets
    # `smtp_timeout_seconds` per operation, and the rest is a retry.
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=10)),
}
# Journeys started before bounces switched channels never took this branch.
BOUNCE_ESCALATION = "bounce-escalation"
# Confirmations and codes are recorded by local activities; earlier journeys used activities.
ANSWERS_RECORDED_LOCALLY = "answers-recorded-locally"
# Where a journey turns when a bounce leaves its plan without another channel.
FALLBACK = (ChannelStep(Channel.sms), ChannelStep(Channel.letter, fallback_only=True))
# Journeys that gave up a channel before the fallback also followed the plan's other channels
# (which may reach nobody: a letter without an address) never took this branch.
FALLBACK_AFTER_PLAN = "fallback-after-plan"
# Journeys cancelled before ended without telling the database.
CANCEL_RECORDED = "cancel-recorded"
# Journeys before waited for a verification email that had bounced, and reminded it.
UNDELIVERABLE_EMAIL_ASKED_AGAIN = "undeliverable-email-asked-again"
# Journeys before were `invited` when the sending rules kept their invitation back.
UNSENT_INVITATION_INVITES_NOBODY = "unsent-invitation-invites-nobody"
# Journeys before sent a new code for a re-submission of the number whose code was out (round
# the resend cooldown and cap), and recorded a submission that changed nothing as a new one
# (an email awaiting its link is sent a new one, as before).
RESUBMISSION_KEEPS_CODE = "resubmission-keeps-code"
# Journeys before recorded every cancellation alike, without who cancelled it: the customer's
# page then says the client withdrew it, also after an operator's Cancel.
CANCELLED_BY_RECORDED = "cancelled-by-recorded"
# Journeys before kept awaiting a value the contact had verified meanwhile in another journey
# (their reminder to confirm it was sent all the same).
VERIFIED_ELSEWHERE = "verified-elsewhere"
# Journeys before learnt of a value verified in another journey only when their reminder to
# confirm it fell due (none for a code, none with no reminders left): now that journey tells
# them at once (signal value_verified).
VERIFIED_ELSEWHERE_SIGNALLED = "verified-elsewhere-signalled"
# Journeys before sent a link or code for a value the contact had verified already (another
# journey) that the customer entered, and awaited it.
VERIFIED_VALUES_TAKEN = "verified-values-taken"
# Journeys before took any channel and kind a message_bounced signal named.
BOUNCE_SIGNALS_CHECKED = "bounce-signals-checked"
# Journeys an enrichment link started before sent the campaign's invitation at once, as enrolled
# ones do, besides the client's own message that carried the link (a letter the client had
# already paid for, to a contact who may have nothing missing).
INVITED_BY_CLIENT = "invited-by-client"
# Journeys before ended the code out, still valid, when the number's daily cap refused the
# resend asked for: the customer was left with no code that could be typed.
CAPPED_RESEND_KEEPS_CODE = "capped-resend-keeps-code"
# Journeys before skipped a channel whose email, mobile or address a hard bounce had refused
# (in another journey, or earlier in this one) as one not known: without a plan they stayed
# enrolled, reaching nobody, instead of falling back as on the bounce itself.
UNDELIVERABLE_AS_BOUNCED = "undeliverable-as-bounced"
# Journeys before took a message_bounced signal naming a step they never sent on that channel
# (one sent by hand) as a bounce, and switched channels for it.
BOUNCE_STEPS_CHECKED = "bounce-steps-checked"
# Journeys before took a spam complaint as a bounce: they gave the channel up and went on by
# SMS, then a letter, pursuing the contact who had reported the campaign's message as spam.
COMPLAINT_ENDS_JOURNEY = "complaint-ends-journey"
# Journeys before, without a plan, stayed `enrolled` when their email invitation could not go
# (kept back by the sending rules, no address), until an email reminder reached the contact:
# with reminders kept back too (a complaint), until they expired.
UNSENT_INVITATION_FALLS_BACK = "unsent-invitation-falls-back"
# Journeys before failed their task for ever on a duration ending past the clock's last date (a
# campaign stored before the API bounded durations): an expiry there now ends the journey as
# cancelled, saying why, and a reminder or plan step there never falls due.
DURATIONS_BEYOND_THE_CLOCK = "durations-beyond-the-clock"
# Journeys before recorded the customer's answers over an end the database held from outside
# them (cancelled there only, while their workflow had not started or was lost, and ran on), and
# kept their own end as their state when they ended in turn: now, told of that end, they take it
# as theirs and go no further.
ENDED_OUTSIDE_THE_WORKFLOW = "ended-outside-the-workflow"
# Journeys before sent a code (the customer's "send again" on a page left open) to a journey
# ended there, and reopened it: now the code goes nowhere and the workflow ends as that stage.
CODES_HONOUR_AN_OUTSIDE_END = "codes-honour-an-outside-end"
# Journeys before went on after a message skipped as their journey was cancelled there, until
# their expiry: now they end as cancelled at once.
MESSAGES_HONOUR_AN_OUTSIDE_END = "messages-honour-an-outside-end"
# Journeys before sent their opening message (the invitation, or a plan's first step) by an
# activity: two workflow tasks and an activity task each, the most of a launch's work.
OPENING_MESSAGE_SENT_LOCALLY = "opening-message-sent-locally"
# Journeys before fell back after a bounce to one SMS (else one letter) and then sent nothing:
# the fallback now keeps the cadence of what bounced (the campaign's reminders, or the plan's
# step), sending what that had left.
FALLBACK_KEEPS_CADENCE = "fallback-keeps-cadence"
# Journeys before sent their invitation when the customer had answered before it (an enrichment
# link opening a journey whose start a launch's `spread_over` delayed), and were `invited`
# again, so that the link the customer confirmed with was refused.
ANSWERED_BEFORE_INVITED = "answered-before-invited"
# Journeys before took a verification reminder's link as the one to confirm with even when the
# reminder did not go (the daily cap, the sending rules), refusing the link the customer held.
UNSENT_REMINDER_KEEPS_LINK = "unsent-reminder-keeps-link"
# Journeys before switched channels for a message_bounced signal sent by hand (Temporal CLI or
# UI) without recording the bounce, as the bounce API does.
SIGNALLED_BOUNCES_RECORDED = "signalled-bounces-recorded"
# Journeys before whose own first send met their campaign archived (before the archive's
# wake-up withdrew them) ended cancelled with no word of who ended them.
ARCHIVED_HOLD_WITHDRAWN = "archived-hold-withdrawn"
BEYOND_THE_CLOCK = {"by": CancelledBy.system, "reason": "the campaign's expires_after ends "
                    "past the last date the clock holds"}
# As the archive's wake-up withdraws the journeys that reached nobody (api.withdrawals).
WITHDRAWN_BY_ARCHIVE = {"by": CancelledBy.client, "reason": "campaign_archived"}


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
        # What the last recorded submission said: the same again is no new submission.
        self.last_submission: SubmitDataInput | None = None
        self.pending_email: str | None = None
        self.verification_step: str | None = None
        # Contact points entered and not verified yet: "email" (by link), "mobile" (by code).
        self.awaiting: set[str] = set()
        self.code_step: str | None = None
        self.code_sent_at: datetime | None = None
        self.code_resends = 0
        # The number the code out went to, and whether too many wrong tries locked it.
        self.code_to: str | None = None
        self.code_sent = False
        self.code_locked = False
        self.opted_out: OptOutInput | None = None
        # Set when the client withdraws the journey just before cancelling it.
        self.withdrawn: WithdrawInput | None = None
        # Payment-reminder journeys: once the client reports the claim paid, reminders stop.
        self.paid = False
        # The channel plan: the step that sends next, and how many it has sent. A journey
        # without a plan follows it only once a bounce made it switch channels.
        self.planned = bool(input.plan)
        self.plan: list[ChannelStep] = list(input.plan)
        self.plan_pos = 0
        self.sent_in_step = 0
        self.plan_messages = 0
        # The channels an invitation or reminder reached the contact on: the next message is a
        # reminder, unless each of them bounced since (that message is the contact's first).
        self.reached_on: list[str] = []
        # Bounces reported by signal, or at send time before the plan, not handled yet.
        self.bounces: list[BounceInput] = []
        self.bounced_channels: list[str] = []
        # The channel of each step that went out (or bounced as it went): a bounce names one.
        self.sent_steps: dict[str, str] = {}
        # The steps whose bounce the send itself recorded (the server or provider refused them).
        self.bounced_at_send: set[str] = set()
        self.history: list[str] = []
        # A message of the campaign's own (invitation, reminder) that its paused campaign held
        # back waits for a resume. Resumes are counted, so one that arrives before the hold is
        # reported still wakes the journey.
        self.held = False
        self.resumes = 0
        self.resumes_before_hold = 0
        # Archived: the campaign sends nothing more on its own.
        self.campaign_closed = False
        # The client's message invited the contact: ours are reminders of it.
        self.invited_by_client = False
        # The journey's first turn, which sends its opening message as a local activity.
        self.opening = False
        # Handlers and the reminder loop take turns, so a confirmation and an expiry never race.
        self.turn = asyncio.Lock()
        self.webhooks: list[asyncio.Task[None]] = []

    # --- the journey ------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: JourneyInput) -> JourneyState:
        try:
            return await self._walk(input)
        except (asyncio.CancelledError, FailureError) as err:
            # Cancelled by an operator (Temporal UI) or with its launch (withdrawn first), seen
            # as an activity's cancellation when one was running (a local one's, too): the read
            # model, the progress counts and the customer's page say so, and who did it, instead
            # of an open journey.
            if (is_cancelled_exception(err) and self.stage not in FINAL_STAGES
                    and workflow.patched(CANCEL_RECORDED)):
                async with self.turn:
                    await self._finish(Stage.cancelled, "cancelled", self._cancelled_by())
            raise

    def _cancelled_by(self) -> dict[str, str] | None:
        """The cancellation's history detail: the page tells the customer the client withdrew
        the request only when the client did."""
        if not workflow.patched(CANCELLED_BY_RECORDED):
            return None
        if self.withdrawn is None:
            return {"by": CancelledBy.operator}
        return {"by": CancelledBy.client, "reason": self.withdrawn.reason}

    async def _walk(self, input: JourneyInput) -> JourneyState:
        self.deadline = self._after(workflow.now(), input.timings.expires_after)
        async with self.turn:
            self.opening = True
            if self.deadline is None:
                self.deadline = workflow.now()
                await self._finish(Stage.cancelled, "cancelled", BEYOND_THE_CLOCK)
            elif input.invited_by_client and workflow.patched(INVITED_BY_CLIENT):
                self._take_clients_invitation()
            elif (self.stage != Stage.enrolled
                  and workflow.patched(ANSWERED_BEFORE_INVITED)):
                # The customer answered before the journey's delayed start (a launch's
                # `spread_over`), through a link the client gave them: that message stood for
                # the invitation, as for a journey the link started.
                self._take_clients_invitation()
            elif self.planned:
                await self._send_plan()
            else:
                await self._invite()
            self.opening = False

        while self.stage not in FINAL_STAGES:
            if workflow.now() >= self.deadline:
                async with self.turn:
                    if self.stage not in FINAL_STAGES:
                        await self._finish(Stage.expired, "expired")
                break
            wake_at = min(self.deadline, self._next_reminder_at() or self.deadline)
            try:
                await workflow.wait_condition(
                    lambda: self.stage in FINAL_STAGES or self.opted_out is not None
                    or bool(self.bounces) or self._released(),
                    timeout=max(wake_at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary="next reminder or expiry",
                )
            except asyncio.TimeoutError:
                pass
            async with self.turn:
                if self._released():
                    self.held = False
                    workflow.set_current_details("")
                if self.opted_out is not None and self.stage not in FINAL_STAGES:
                    await self._finish(Stage.opted_out, "opted-out")
                elif self.bounces and self.stage not in FINAL_STAGES:
                    await self._escalate()
                elif self.stage not in FINAL_STAGES and self._reminder_due():
                    await self._remind()

        if self.stage == Stage.verified and self.input.send_confirmation:
            async with self.turn:
                await self._send("confirmation", "confirmation", TokenPurpose.contact_page,
                                 channel=Channel.email if self.pending_email else Channel.sms)

        await workflow.wait_condition(workflow.all_handlers_finished)
        await asyncio.gather(*self.webhooks)
        return self.state()

    def _next_reminder_at(self) -> datetime | None:
        if self.held or self.campaign_closed:
            return None
        if self.planned:
            if self.plan_pos >= len(self.plan) or self.paid:
                return None
            if self.last_message_at is None:
                return workflow.now()
            return self._after(self.last_message_at, self.plan[self.plan_pos].after)
        if self.stage == Stage.enrolled and self.last_message_at is None:
            return workflow.now()  # the invitation, held back until now
        t = self.input.timings
        if self.reminders_sent >= t.max_reminders or self.last_message_at is None or self.paid:
            return None
        return self._after(self.last_message_at, t.reminder_interval)

    @staticmethod
    def _after(at: datetime, wait: timedelta) -> datetime | None:
        """When `wait` after `at` is, or None (never) past the clock's last date."""
        try:
            return at + wait
        except OverflowError:
            if not workflow.patched(DURATIONS_BEYOND_THE_CLOCK):
                raise
            return None

    def _reminder_due(self) -> bool:
        at = self._next_reminder_at()
        return at is not None and workflow.now() >= at

    async def _invite(self) -> None:
        result = await self._send(self._template("invitation"), "invitation",
                                  TokenPurpose.contact_page, Stage.invited, own=True)
        if self.stage in FINAL_STAGES:
            return  # ended outside the workflow, or archived before it reached anyone
        if (result.skipped and not result.bounced
                and self.input.kind == JourneyKind.data_collection
                and workflow.patched(UNSENT_INVITATION_FALLS_BACK)):
            result = await self._invite_elsewhere()
        if result.held or (result.skipped and workflow.patched(UNSENT_INVITATION_INVITES_NOBODY)):
            # Nobody was invited: the journey stays `enrolled` until a reminder reaches them.
            return
        if self.stage != Stage.enrolled and workflow.patched(ANSWERED_BEFORE_INVITED):
            return  # the customer has answered: an invitation moves no journey back
        self._enter(Stage.invited)

    async def _invite_elsewhere(self) -> SendMessageResult:
        """As a plan's step that reaches nobody: the invitation goes by the fallback's channels
        at once (SMS, else a letter). The email reminders keep the campaign's cadence."""
        for step in FALLBACK:
            result = await self._send(self._template("invitation"), f"invitation-{step.channel}",
                                      TokenPurpose.contact_page, Stage.invited,
                                      channel=step.channel, own=True)
            if not result.skipped or result.bounced:
                break
        return result

    async def _remind(self) -> None:
        if self.planned:
            await self._send_plan()
            return
        if self.last_message_at is None:
            await self._invite()
            return
        step = f"reminder-{self.reminders_sent + 1}"
        if self.stage == Stage.verification_pending and "email" in self.awaiting:
            result = await self._send("verification_reminder", step, TokenPurpose.verify_email,
                                      to_pending_email=True, own=True)
            if self._takes_the_link(result, before=not result.held):
                self.verification_step = step
            await self._verified_elsewhere(result, step)
        else:
            # Only a journey whose invitation went nowhere is still `enrolled` here.
            first = self.stage == Stage.enrolled
            result = await self._send(self._template("reminder"), step, TokenPurpose.contact_page,
                                      Stage.invited if first else None, own=True)
            if first and result.sent:
                self._enter(Stage.invited)
        if not result.held:
            self.reminders_sent += 1

    def _takes_the_link(self, reminder: SendMessageResult, *, before: bool) -> bool:
        """Whether the verification reminder's link is now the one to confirm with: only if it
        went out. One kept back (the daily cap, the sending rules), skipped or bounced leaves
        the link the customer holds valid. `before`: the answer of journeys before that."""
        if workflow.patched(UNSENT_REMINDER_KEEPS_LINK):
            return reminder.sent
        return before

    def _take_clients_invitation(self) -> None:
        """The client's message stands for the invitation, or the plan's first message: the
        journey's first message goes when a reminder after it would, worded as one."""
        self.invited_by_client = True
        self.last_message_at = workflow.now()
        if self.planned:
            self._count_plan_message(self.plan[0])

    def _template(self, name: str) -> str:
        return f"reconsent_{name}" if self.input.kind == JourneyKind.reconsent else name

    # --- the channel plan -------------------------------------------------------------------

    async def _send_plan(self) -> None:
        """Sends the plan's next message. A channel that cannot reach the contact (no address,
        suppressed) is skipped for the next step at once; one that bounces is given up."""
        while self.plan_pos < len(self.plan):
            step = self.plan[self.plan_pos]
            name = f"message-{self.plan_messages + 1}"
            reminding = self.stage == Stage.verification_pending and "email" in self.awaiting
            first = all(c in self.bounced_channels for c in self.reached_on)
            if reminding:
                # The customer is one click away: remind them of that, where they typed it.
                result = await self._send("verification_reminder", name,
                                          TokenPurpose.verify_email, to_pending_email=True,
                                          own=True)
            else:
                result = await self._send(
                    "invitation" if first and not self.invited_by_client else "reminder", name,
                    TokenPurpose.contact_page,
                    Stage.invited if first else None, channel=step.channel, own=True)
            if result.held or self.stage in FINAL_STAGES:
                return  # held: the same message goes once the campaign is resumed
            self.plan_messages += 1
            if reminding:
                if self._takes_the_link(result, before=True):
                    self.verification_step = name
                self._count_plan_message(step)
                await self._verified_elsewhere(result, name)
                return
            if result.sent:
                if self.stage == Stage.enrolled:
                    self._enter(Stage.invited)
                self._count_plan_message(step)
                return
            if result.bounced:
                self._give_up(step.channel, counted=False)
            else:
                self._next_step(sent_before=self.sent_in_step > 0)

    def _count_plan_message(self, step: ChannelStep) -> None:
        self.sent_in_step += 1
        if self.sent_in_step >= step.max:
            self._next_step(sent_before=True)

    def _next_step(self, *, sent_before: bool) -> None:
        self.plan_pos += 1
        self.sent_in_step = 0
        # A fallback is for a step that reached nobody.
        while (sent_before and self.plan_pos < len(self.plan)
               and self.plan[self.plan_pos].fallback_only):
            self.plan_pos += 1

    def _give_up(self, channel: str, *, counted: bool = True) -> None:
        """Drops the channel from what is left of the plan; the next step goes at once.
        `counted`: whether the message that bounced counts among its step's."""
        cadence = self._cadence_of(channel, counted)
        if channel not in self.bounced_channels:
            self.bounced_channels.append(channel)
        current = self.plan[self.plan_pos] if self.plan_pos < len(self.plan) else None
        ahead = [s for s in self.plan[self.plan_pos:] if s.channel not in self.bounced_channels]
        if current is None or current.channel in self.bounced_channels:
            self.sent_in_step = 0
        if (ahead and all(s.fallback_only for s in ahead)
                and workflow.patched(FALLBACK_KEEPS_CADENCE)):
            # Only a fallback is left (SMS bounced, a letter behind it): it is built again,
            # with what the channel that bounced now had left.
            ahead = []
        if not ahead:
            ahead = [self._fallback(s, cadence) for s in FALLBACK
                     if s.channel not in self.bounced_channels]
        else:
            # The channels left may not reach the contact either: the fallback then follows
            # them, tried only if they reached nobody.
            fallback = [self._fallback(ChannelStep(s.channel, fallback_only=True), cadence)
                        for s in FALLBACK if s.channel not in self.bounced_channels
                        and s.channel not in {a.channel for a in ahead}]
            if fallback and workflow.patched(FALLBACK_AFTER_PLAN):
                ahead += fallback
        self.planned = True
        self.plan = ahead
        self.plan_pos = 0

    def _cadence_of(self, channel: str, counted: bool) -> tuple[timedelta, int]:
        """What the fallback keeps of the channel that bounced: its wait between messages, and
        how many it had left plus one, the fallback's first message standing for the one that
        bounced. Without a plan, the campaign's `reminders`; with one, the step that sent it."""
        if not self.planned:
            t = self.input.timings
            return t.reminder_interval, 1 + max(0, t.max_reminders - self.reminders_sent)
        current = self.plan[self.plan_pos] if self.plan_pos < len(self.plan) else None
        if current is not None and current.channel == channel:
            went = self.sent_in_step + (0 if counted else 1)
            return current.after, 1 + max(0, current.max - went)
        # The step that sent it has sent all it had to.
        done = next((s for s in reversed(self.plan[:self.plan_pos]) if s.channel == channel),
                    ChannelStep(channel))
        return done.after, 1

    def _fallback(self, step: ChannelStep, cadence: tuple[timedelta, int]) -> ChannelStep:
        if not workflow.patched(FALLBACK_KEEPS_CADENCE):
            return step
        after, most = cadence
        return dataclasses.replace(step, after=after, max=most)

    async def _escalate(self) -> None:
        """Bounces reported after sending: a message inviting the contact did not arrive, so
        the journey switches channel, unless the customer has already answered."""
        reported, self.bounces = self.bounces, []
        await self._record_signalled(reported)
        fresh = [b for b in reported if b.channel not in self.bounced_channels
                 and b.template not in VERIFICATION_TEMPLATES and self._sent(b)]
        if await self._ended_by_complaint(fresh):
            return
        if (not fresh or self.input.kind != JourneyKind.data_collection
                or self.stage not in (Stage.enrolled, Stage.invited, Stage.opened)
                or not workflow.patched(BOUNCE_ESCALATION)):
            return
        for bounce in fresh:
            self._give_up(bounce.channel)
        await self._send_plan()

    async def _ended_by_complaint(self, bounces: list[BounceInput]) -> bool:
        """The contact reported an invitation or reminder as spam: the campaign asks them no
        more, on any channel, unless its messages are ones that must reach them (financial,
        mandatory), which go on as after a bounce. A journey that already has the customer's
        answer only records it."""
        complaint = next((b for b in bounces if b.kind == BounceKind.complaint), None)
        if (complaint is None
                or self.stage not in (Stage.enrolled, Stage.invited, Stage.opened)
                or not workflow.patched(COMPLAINT_ENDS_JOURNEY)):
            return False
        category = await workflow.execute_activity_method(
            JourneyRecords.message_category,
            MessageCategoryInput(self.input.journey_id, self._template("reminder")),
            **DB_WRITE,
        )
        if category in SENT_DESPITE_COMPLAINT:
            return False
        await self._finish(Stage.opted_out, "complaint", {
            "by": "complaint", "channel": complaint.channel, "step": complaint.step})
        return True

    async def _record_signalled(self, reported: list[BounceInput]) -> None:
        """Records a bounce signalled by hand as the bounce API would have (a reported one the
        API recorded already, and the activity finds it): the switch of channel it makes is
        explained in the journey's history, its bounces and funnel, and by `message.bounced`."""
        signalled = [b for b in reported if b.step not in self.bounced_at_send
                     and self.sent_steps.get(b.step) == b.channel]
        if not signalled or not workflow.patched(SIGNALLED_BOUNCES_RECORDED):
            return
        for bounce in signalled:
            await workflow.execute_activity_method(
                MessageSender.record_signalled_bounce, args=[self.input.journey_id, bounce],
                **DB_WRITE)

    def _sent(self, bounce: BounceInput) -> bool:
        """Whether this journey sent the message the bounce names. Asked when the bounce is
        handled, not when signalled: a report may come before the send's result is in."""
        if (self.sent_steps.get(bounce.step) == bounce.channel
                or not workflow.patched(BOUNCE_STEPS_CHECKED)):
            return True
        workflow.logger.warning("message_bounced ignored: no %s message %r was sent",
                                bounce.channel, bounce.step)
        return False

    @workflow.signal(description=(
        'A message of this journey bounced. An operator may send it by hand: {"step": '
        '"invitation", "channel": "email", "kind": "hard"} (channel email, sms or letter; kind '
        'hard, soft or complaint; the step as the send activity\'s input names it: invitation, '
        'reminder-1, message-2, ...). Recorded as a '
        'report to POST /v1/bounces is, with source "operator"; the journey goes on on its '
        'next channel.'))
    def message_bounced(self, input: BounceInput) -> None:
        # A signal is anyone's with access to Temporal (the CLI, the UI), not only the bounce
        # API's, which checks the message and stores the bounce: a channel no message goes on,
        # or no kind of bounce, would switch channels for nothing.
        if ((input.channel not in CHANNEL_NEEDS or input.kind not in set(BounceKind))
                and workflow.patched(BOUNCE_SIGNALS_CHECKED)):
            workflow.logger.warning("message_bounced ignored: unknown channel %r or kind %r",
                                    input.channel, input.kind)
            return
        self.bounces.append(input)

    # --- what the customer does --------------------------------------------------------------

    @workflow.signal(description="No longer sent: the page records a first visit in the "
                     "database. Kept for the histories that hold it.")
    async def page_opened(self, input: PageOpenedInput) -> None:
        """Kept for journeys whose histories hold it: the page now records a first visit
        itself, in the database, without telling the workflow."""
        async with self.turn:
            if self.stage != Stage.invited:
                return
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_stage,
                RecordStageInput(self.input.journey_id, "opened", Stage.opened, input.opened_at),
                **DB_WRITE,
            )
            if not self._ended_outside(emitted):
                self._enter(Stage.opened)

    @workflow.update(description="The customer's page: the data and consents entered.")
    async def submit_data(self, input: SubmitDataInput) -> SubmitDataResult:
        async with self.turn:
            if self._unchanged(input) and workflow.patched(RESUBMISSION_KEEPS_CODE):
                # Posted again as it stands (the back button, a second try): nothing to record
                # or announce, and the code out is still the one to use.
                return SubmitDataResult(stage=self.stage, verification_sent_to=None,
                                        code_kept=True)
            self._check_submission_allowed()
            code_kept = (self._keeps_code(input.mobile)
                         and workflow.patched(RESUBMISSION_KEEPS_CODE))
            self.submissions += 1
            step = f"submission-{self.submissions}"
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_submission,
                RecordSubmissionInput(self.input.journey_id, step, input, code_kept),
                **DB_WRITE,
            )
            self._deliver(emitted)
            if self._ended_outside(emitted):
                return SubmitDataResult(stage=self.stage, verification_sent_to=None)
            self.last_submission = input
            self.pending_email = input.email
            self.awaiting = set()
            undeliverable: str | None = None
            self._enter(Stage.data_entered)
            known = (emitted.verified
                     if emitted.verified and workflow.patched(VERIFIED_VALUES_TAKEN) else [])
            taken = [*emitted.proven, *known]
            if input.email and "email" in taken:
                self.awaiting.add("email")
            elif input.email:
                # Confirmable as soon as the mail may be out, before its send reports back: a
                # send whose report is held up (a killed worker, Temporal restarting) must not
                # turn the customer's click into "a newer link was sent".
                self.verification_step = f"verification-{self.submissions}"
                self.awaiting.add("email")
                sent = await self._send("verification", self.verification_step,
                                        TokenPurpose.verify_email, Stage.verification_pending,
                                        to_pending_email=True)
                if self.stage in FINAL_STAGES:
                    return SubmitDataResult(stage=self.stage, verification_sent_to=None)
                if sent.bounced and workflow.patched(UNDELIVERABLE_EMAIL_ASKED_AGAIN):
                    # Refused by the mail server: nothing to wait for there, and nothing to
                    # remind it of. The page asks the customer for another address at once.
                    self.awaiting.discard("email")
                    self.verification_step = self.pending_email = None
                    undeliverable = input.email
            if input.mobile and "mobile" in taken:
                self.awaiting.add("mobile")
            elif input.mobile:
                if not code_kept:
                    self.code_resends = 0
                    self.code_to = input.mobile
                    sent = await self._send_code()
                    if self._ended_outside(sent, CODES_HONOUR_AN_OUTSIDE_END):
                        return SubmitDataResult(stage=self.stage, verification_sent_to=None)
                self.awaiting.add("mobile")
            if self.awaiting or not undeliverable:
                self._enter(Stage.verification_pending)
            refused = []
            for kind in emitted.proven:
                if not await self._verify_proven(kind, step, input):
                    refused.append(kind)
            for kind in known:
                await self._take_verified(kind, step)
            return SubmitDataResult(
                stage=self.stage,
                verification_sent_to=None if "email" in taken or undeliverable
                else input.email, undeliverable=undeliverable, code_kept=code_kept,
                refused=refused)

    def _unchanged(self, input: SubmitDataInput) -> bool:
        """The last submission again (same data, same consent decisions) while only the code
        it sent is awaited, and kept. With an email awaiting its link, the same address again
        asks for a new link (the page offers "Send a new link": the first may be lost or timed
        out); with a code that can no longer be used and may not be resent, for a new code."""
        last = self.last_submission
        return (last is not None and self.stage == Stage.verification_pending
                and self.opted_out is None
                and (last.email, last.mobile, last.address) == (input.email, input.mobile,
                                                                 input.address)
                and [(c.key, c.granted) for c in last.consents]
                == [(c.key, c.granted) for c in input.consents]
                # Not an address the mail server refused: that one is sent to again.
                and input.email == self.pending_email
                and "email" not in self.awaiting and self._keeps_code(input.mobile))

    def _keeps_code(self, mobile: str | None) -> bool:
        """Whether the code awaited for this number stays the one to type: a new one is asked
        for with "send again", within its cooldown and cap. Only when the code can no longer be
        used and none may be resent does entering the number again send another."""
        if mobile is None or "mobile" not in self.awaiting or mobile != self.code_to:
            return False
        return self._code_usable() or self.code_resends < self.input.timings.code_max_resends

    def _code_usable(self) -> bool:
        """Whether the code out can still be typed: sent, not locked, not expired."""
        assert self.code_sent_at is not None
        return (self.code_sent and not self.code_locked
                and workflow.now() < self.code_sent_at + self.input.timings.code_ttl)

    async def _verify_proven(self, kind: str, step: str, input: SubmitDataInput) -> bool:
        """Kept unchanged on the address the invitation reached: confirmed by this submission;
        False when the household rule keeps it with another contact."""
        emitted = await workflow.execute_activity_method(
            JourneyRecords.record_verification,
            RecordVerificationInput(
                self.input.journey_id, f"verified-{kind}-{step}",
                ConfirmInput(step, input.given_at, input.ip, input.user_agent),
                kind=kind, final=self.awaiting <= {kind}),
            **DB_WRITE,
        )
        self._deliver(emitted)
        if emitted.refused:
            return False
        if not self._ended_outside(emitted):
            self._verified(kind)
        return True

    @submit_data.validator
    def _validate_submit_data(self, input: SubmitDataInput) -> None:
        # Rejected here, a late or excess submission never reaches the history. The last one
        # again is answered even past the cap: it submits nothing.
        if not self._unchanged(input):
            self._check_submission_allowed()

    def _check_submission_allowed(self) -> None:
        if self.input.kind != JourneyKind.data_collection:
            raise ApplicationError("this journey collects no data",
                                   type=ErrorType.submission_not_accepted)
        if self.stage not in ACCEPTS_SUBMISSION or self.opted_out is not None:
            raise ApplicationError(f"journey is {self.stage}", type=ErrorType.submission_not_accepted)
        if self.submissions >= self.input.timings.max_submissions:
            raise ApplicationError("too many submissions", type=ErrorType.too_many_submissions)

    @workflow.update(description="The customer's page: the verification link confirmed.")
    async def confirm_email(self, input: ConfirmInput) -> ConfirmResult:
        async with self.turn:
            self._check_confirmable(input)
            emitted = await self._record_answer(
                JourneyRecords.record_verification,
                RecordVerificationInput(self.input.journey_id, f"verified-{input.step}", input,
                                        kind="email", final=self.awaiting <= {"email"}))
            self._deliver(emitted)
            if self._ended_outside(emitted):
                return ConfirmResult(stage=self.stage)
            if emitted.refused:
                return ConfirmResult(stage=self.stage, refused=emitted.refused)
            self._verified("email")
            return ConfirmResult(stage=self.stage)

    async def _verified_elsewhere(self, reminder: SendMessageResult, step: str) -> None:
        """The reminder found values the contact has verified meanwhile (in another journey)
        and was not sent: this journey takes them as verified."""
        if not reminder.verified or not workflow.patched(VERIFIED_ELSEWHERE):
            return
        for kind in ("email", "mobile"):
            if kind in reminder.verified and kind in self.awaiting:
                await self._take_verified(kind, step)

    async def _take_verified(self, kind: str, step: str) -> None:
        """Takes the value the contact has verified already as it stands in the registry (a
        value released or withdrawn since is refused, and still awaited)."""
        emitted = await workflow.execute_activity_method(
            JourneyRecords.record_verification,
            RecordVerificationInput(
                self.input.journey_id, f"verified-{kind}-{step}",
                ConfirmInput(step, workflow.now(), None, None),
                kind=kind, final=self.awaiting <= {kind}, verified_before=True),
            **DB_WRITE,
        )
        self._deliver(emitted)
        if not (emitted.refused or self._ended_outside(emitted)):
            self._verified(kind)

    @workflow.signal(description="Sent by another journey of the contact once it verified a "
                     "value (kind email or mobile) this one may be awaiting too.")
    async def value_verified(self, input: ValueVerifiedInput) -> None:
        """Another of the contact's journeys verified a value: this one, awaiting that kind,
        takes it as verified if it is the same value, instead of reminding or expiring."""
        async with self.turn:
            if (input.kind not in self.awaiting or self.stage in FINAL_STAGES
                    or not workflow.patched(VERIFIED_ELSEWHERE_SIGNALLED)):
                return
            await self._take_verified(input.kind, f"elsewhere-{self.submissions}")

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

    @workflow.update(description="The customer's page: the code from the SMS typed.")
    async def submit_code(self, input: SubmitCodeInput) -> SubmitCodeResult:
        """The customer types the code from the SMS; the page learns at once whether it was
        right, wrong (with tries left), expired or locked after too many wrong tries."""
        async with self.turn:
            self._check_code_awaited()
            assert self.code_step is not None
            timings = self.input.timings
            check = await self._record_answer(
                CodeSender.check_code,
                CheckCodeInput(self.input.journey_id, self.code_step, input.code,
                               timings.code_max_wrong_tries, input.at))
            if check.outcome == "locked":
                self.code_locked = True
            if check.outcome != "right":
                return SubmitCodeResult(check.outcome, self.stage, check.tries_left,
                                        timings.code_max_resends - self.code_resends)
            emitted = await self._record_answer(
                JourneyRecords.record_verification,
                RecordVerificationInput(
                    self.input.journey_id, f"verified-{self.code_step}",
                    ConfirmInput(self.code_step, input.at, input.ip, input.user_agent),
                    kind="mobile", final=self.awaiting <= {"mobile"}))
            self._deliver(emitted)
            if self._ended_outside(emitted):
                return SubmitCodeResult("ended", self.stage, check.tries_left)
            if emitted.refused:
                return SubmitCodeResult("refused", self.stage, check.tries_left)
            self._verified("mobile")
            return SubmitCodeResult("right", self.stage, check.tries_left)

    @submit_code.validator
    def _validate_submit_code(self, input: SubmitCodeInput) -> None:
        self._check_code_awaited()

    @workflow.update(description="The customer's page: a new code by SMS asked for.")
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
            out = (self.code_step, self.code_sent_at, self.code_sent, self.code_locked)
            usable = self._code_usable()
            result = await self._send_code()
            if self._ended_outside(result, CODES_HONOUR_AN_OUTSIDE_END):
                return ResendCodeResult(sent=False)
            sent = result.sent
            if not sent and usable and workflow.patched(CAPPED_RESEND_KEEPS_CODE):
                # Refused by the number's daily cap: the code out stays the one to type.
                self.code_step, self.code_sent_at, self.code_sent, self.code_locked = out
            return ResendCodeResult(sent=sent, asked=True)

    @resend_code.validator
    def _validate_resend_code(self) -> None:
        self._check_code_awaited()

    def _check_code_awaited(self) -> None:
        if self.stage != Stage.verification_pending or "mobile" not in self.awaiting:
            raise ApplicationError("no code is awaited", type=ErrorType.nothing_to_verify)

    async def _send_code(self) -> SendCodeResult:
        step = f"code-{self.submissions}-{self.code_resends}"
        result = await workflow.execute_activity_method(
            CodeSender.send_code,
            SendCodeInput(self.input.journey_id, step,
                          workflow.now() + self.input.timings.code_ttl),
            **SEND,
        )
        self.code_step = step
        self.code_sent_at = self.last_message_at = workflow.now()
        self.code_sent, self.code_locked = result.sent, False
        return result

    @workflow.update(description="The customer's page: the answer to a re-consent request.")
    async def answer_consent(self, input: ConsentAnswerInput) -> ConfirmResult:
        async with self.turn:
            self._check_answerable()
            emitted = await workflow.execute_activity_method(
                JourneyRecords.record_consent_answer,
                RecordConsentAnswerInput(self.input.journey_id, "answer", input),
                **DB_WRITE,
            )
            self._deliver(emitted)
            if not self._ended_outside(emitted):
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

    @workflow.signal(description="Sent by the API once POST /v1/journeys/{id}/payment-completed "
                     "recorded the payment: the reminders stop. Sent by hand it records no "
                     "payment; use the API.")
    def payment_completed(self) -> None:
        """The API recorded the payment; the journey itself only stops reminding."""
        self.paid = True

    @workflow.signal(description="Sent by the API just before it cancels the journey for the "
                     "client: that cancellation is then recorded as the client's, with the "
                     "reason. A Cancel without it is recorded as the operator's.")
    def withdraw(self, input: WithdrawInput) -> None:
        """The client's doing: the cancellation it sends next is recorded as theirs."""
        self.withdrawn = input

    @workflow.signal(description="Sent by the customer's page ('do not ask me again'): the "
                     "journey ends opted_out.")
    def opt_out(self, input: OptOutInput) -> None:
        if self.opted_out is None:
            self.opted_out = input

    @workflow.query(description="The journey as the workflow sees it: stage, deadline, "
                    "reminders sent, submissions, channels given up and ahead, whether a "
                    "paused campaign holds its next message, the new codes the customer may still "
                    "ask for, and its stages with their times.")
    def state(self) -> JourneyState:
        return JourneyState(
            stage=self.stage,
            reminders_sent=self.reminders_sent,
            submissions=self.submissions,
            deadline=self.deadline,
            pending_email=self.pending_email,
            awaiting=sorted(self.awaiting),
            history=list(self.history),
            paid=self.paid,
            bounced_channels=list(self.bounced_channels),
            channels_ahead=[s.channel for s in self.plan[self.plan_pos:]] if self.planned else [],
            held=self.held,
            code_resends_left=self.input.timings.code_max_resends - self.code_resends
            if "mobile" in self.awaiting else None,
        )

    # --- helpers ----------------------------------------------------------------------------

    def _enter(self, stage: Stage) -> None:
        self.stage = stage
        self.history.append(f"{workflow.now().isoformat()} {stage}")
        workflow.upsert_search_attributes([JOURNEY_STAGE.value_set(stage)])
        if stage in FINAL_STAGES:
            # Ended, it holds nothing back: neither the state query nor the Temporal UI's
            # current details may go on saying a message waits for the campaign's resume.
            self.held = False
            workflow.set_current_details("")

    async def _send(
        self, template: str, step: str, purpose: TokenPurpose, stage_after: Stage | None = None,
        *, to_pending_email: bool = False, channel: str = Channel.email, own: bool = False,
    ) -> SendMessageResult:
        """Sends one message; `own` for the campaign's own (invitations, reminders), which
        its status may hold back."""
        assert self.deadline is not None
        expires = self.deadline
        if purpose == TokenPurpose.verify_email:
            expires = min(expires, workflow.now() + self.input.timings.verification_link_ttl)
        resumes = self.resumes
        message = SendMessageInput(
            journey_id=self.input.journey_id, step=step, template=template,
            link_purpose=purpose, link_expires_at=expires, stage_after=stage_after,
            to_pending_email=to_pending_email, channel=channel, only_while_campaign_active=own)
        if self.opening and workflow.patched(OPENING_MESSAGE_SENT_LOCALLY):
            result = await self._send_opening(message)
        else:
            result = await workflow.execute_activity_method(
                MessageSender.send_message, message, **SEND)
        if self._ended_outside(result, MESSAGES_HONOUR_AN_OUTSIDE_END):
            return result
        if result.held:
            await self._hold(result.held, resumes)
            return result
        self.last_message_at = workflow.now()
        if result.undeliverable and workflow.patched(UNDELIVERABLE_AS_BOUNCED):
            # What the channel needs bounced before: that bounce again, for this message.
            result = dataclasses.replace(result, bounced=BounceKind.hard)
        if result.sent or result.bounced:
            self.sent_steps[step] = channel
        if result.bounced:
            self.bounced_at_send.add(step)
        if (result.sent and purpose == TokenPurpose.contact_page
                and channel not in self.reached_on):
            self.reached_on.append(channel)
        if result.bounced and not self.planned:
            # Outside a plan the loop handles it, as if the bounce had been reported.
            self.bounces.append(BounceInput(step, channel, result.bounced, template))
        return result

    async def _send_opening(self, message: SendMessageInput) -> SendMessageResult:
        """A launch starts thousands of journeys at once: sent within the journey's first
        workflow task, the opening message costs the server no activity task and no second
        workflow task. Tried there only a few times: one that the server or provider has not
        taken by then goes on as an ordinary activity, as every other message does, so that
        hours of an SMTP outage add nothing to the history."""
        tries = self.input.timings.opening_message_local_tries
        try:
            return await workflow.execute_local_activity_method(
                MessageSender.send_message, message,
                start_to_close_timeout=SEND["start_to_close_timeout"],
                retry_policy=RetryPolicy(maximum_attempts=tries))
        except FailureError as err:  # a local activity's failure comes unwrapped
            if is_cancelled_exception(err):
                raise
            # The failure itself is in the history (the local activity's marker).
            workflow.logger.warning("opening message %s not taken in %d tries: sent by an "
                                    "activity now", message.step, tries)
            return await workflow.execute_activity_method(
                MessageSender.send_message, message, **SEND)

    async def _hold(self, status: str, resumes: int) -> None:
        if status == "paused":
            self.held = True
            self.resumes_before_hold = resumes
            # For operators: the Temporal UI shows why the journey sends nothing.
            workflow.set_current_details(
                "**Held**: its campaign is paused; the next invitation or reminder goes once "
                "the campaign is resumed.")
            return
        self.campaign_closed = True
        if self.stage == Stage.enrolled:
            # Archived before it reached anyone: nobody is waiting for this journey. The client
            # withdrew it, as the archive's wake-up says of the others, and their pages too.
            await self._finish(Stage.cancelled, "cancelled", WITHDRAWN_BY_ARCHIVE
                               if workflow.patched(ARCHIVED_HOLD_WITHDRAWN) else None)

    def _released(self) -> bool:
        return self.held and self.resumes > self.resumes_before_hold

    @workflow.signal(description="No input. Sent to each held journey when its campaign is "
                     "resumed or archived (campaign/<id>/wake-held): a held invitation or "
                     "reminder goes now, unless the campaign is archived. Sent by hand to a "
                     "journey whose campaign is still paused, the message is held again.")
    def campaign_resumed(self) -> None:
        """The campaign is active again (or archived): a held message may go, or not."""
        self.resumes += 1

    async def _record_answer(self, activity: Callable[[Any, Arg], Awaitable[Ret]],
                             input: Arg) -> Ret:
        """Records what the customer answered (a link confirmed, a code typed) while the page
        waits: as a local activity, the update answers within the workflow task that ran it,
        without a round trip through the server's activity queue."""
        if workflow.patched(ANSWERS_RECORDED_LOCALLY):
            return await workflow.execute_local_activity_method(activity, input, **DB_WRITE)
        return await workflow.execute_activity_method(activity, input, **DB_WRITE)

    async def _finish(self, stage: Stage, step: str, detail: dict[str, str] | None = None
                      ) -> None:
        emitted = await workflow.execute_activity_method(
            JourneyRecords.finish_journey,
            FinishJourneyInput(self.input.journey_id, step, stage, workflow.now(), detail),
            **DB_WRITE,
        )
        self._deliver(emitted)
        if not self._ended_outside(emitted):
            self._enter(stage)

    def _ended_outside(self, emitted: EmittedEvents | SendCodeResult | SendMessageResult | None,
                       patch: str = ENDED_OUTSIDE_THE_WORKFLOW) -> bool:
        """Whether the journey had ended outside this workflow, so that the activity changed
        nothing: the workflow then ends as the recorded stage (the first end wins), which its
        state and the customer's page say. `patch` is the change that taught this activity's
        callers so."""
        if emitted is None or emitted.ended is None or not workflow.patched(patch):
            return False
        if self.stage not in FINAL_STAGES:
            # Once: a second write of the same handler (two values proven) is told again.
            self._enter(Stage(emitted.ended))
        return True

    def _deliver(self, emitted: EmittedEvents) -> None:
        if workflow.patched(PER_ENDPOINT_WEBHOOKS):
            return
        for delivery_id in emitted.delivery_ids:
            self.webhooks.append(asyncio.create_task(self._deliver_one(delivery_id)))

    async def _deliver_one(self, delivery_id: str) -> None:
        timings = self.input.timings
        await deliver(delivery_id, timings.webhook_retry_for, timings.webhook_max_retry_interval)
