"""One-time codes for mobile verification: sent by SMS, checked with a limit on wrong tries.

A code is stored only as an HMAC; a retried send of the same step sends nothing twice, and what
it sends is the same code (a new code asked for is a new step, and a new code)."""

import hmac
import math
import unicodedata
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import security
from core.contracts import CheckCodeInput, CheckCodeResult, SendCodeInput, SendCodeResult
from core.settings import Settings
from core.vocabulary import Channel, Stage
from db import crud
from db.models import Journey, OneTimeCode, utcnow
from db.session import transaction
from messaging.branding import brand_for
from messaging.local_outbox import journey_message_key
from messaging.provider_http import PermanentDeliveryFailure
from messaging.rendering import pick_language, render_sms
from messaging.sms import OutgoingSms, SmsSender
from messaging.wording import kind_of, wording_for


CODE_DIGITS = 6
CODE_TEMPLATE = "verification_code"


class CodeSender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 sms: SmsSender) -> None:
        self._sessions = sessions
        self._settings = settings
        self._sms = sms

    def _hmac(self, journey_id: str, step: str, code: str) -> str:
        return security.code_hmac(self._settings.secret_key.get_secret_value(), journey_id,
                                  step, code)

    @activity.defn
    async def send_code(self, input: SendCodeInput) -> SendCodeResult:
        async with transaction(self._sessions) as session:
            journey, _, campaign, client = await crud.locked_journey(
                session, uuid.UUID(input.journey_id))
            if ended := crud.ended_outside(journey):
                # "Send again" on a page left open: the request has ended, and no code would
                # help anyone.
                return SendCodeResult(sent=False, ended=ended)
            row = (await session.scalars(select(OneTimeCode).where(
                OneTimeCode.journey_id == journey.id, OneTimeCode.step == input.step))
            ).one_or_none()
            if row is not None and row.sent_at is not None:
                return SendCodeResult(sent=True)
            mobile = (journey.collected or {})["mobile"]
            # Held until this code's row, written below, is committed: a send at the same time
            # counts it.
            await crud.lock_recipient(session, recipient=mobile)
            # Counted per client (and all clients together up to a higher ceiling), as mails.
            sent_today = await crud.codes_to(
                session, recipient=mobile, client_id=journey.client_id,
                since=utcnow() - timedelta(days=1), exclude=row and row.id)
            if crud.over_verification_cap(
                    sent_today, self._settings.verification_messages_per_recipient_per_day):
                # The journey waits for a code all the same, and its page says so, as after a
                # code sent: nobody learns how many codes the number got today.
                journey.stage = Stage.verification_pending
                await crud.add_journey_event(session, journey=journey, step=input.step,
                                             type="code_suppressed", at=utcnow(),
                                             detail={"reason": "daily cap of codes reached"})
                return SendCodeResult(sent=False, reason="daily cap of codes reached")
            code = security.one_time_code(self._settings.secret_key.get_secret_value(),
                                             input.journey_id, input.step, CODE_DIGITS)
            if row is None:
                row = OneTimeCode(journey_id=journey.id, step=input.step, recipient=mobile,
                                  code_hmac="", expires_at=input.expires_at)
                session.add(row)
            row.code_hmac = self._hmac(input.journey_id, input.step, code)
            brand = brand_for(client.name, client.branding, campaign.spec.get("branding"),
                              self._settings)
            minutes = max(1, math.ceil((input.expires_at - utcnow()).total_seconds() / 60))
            context = {"code": code, "client_name": client.name,
                       "campaign_name": campaign.name, "valid_minutes": minutes}
            context["wording"] = wording_for(campaign.spec.get("messages"),
                                             kind_of(Channel.sms, CODE_TEMPLATE),
                                             pick_language(journey.language), context)
            text = render_sms(CODE_TEMPLATE, journey.language, context)
        try:
            await self._sms.send(OutgoingSms(
                to=mobile, sender=brand.sms_sender or self._settings.sms_sender_name, text=text,
                idempotency_key=journey_message_key(journey.id, input.step)))
        except PermanentDeliveryFailure as err:
            raise ApplicationError(str(err), type="SmsRejected", non_retryable=True) from err
        async with transaction(self._sessions) as session:
            row = (await session.scalars(select(OneTimeCode).where(
                OneTimeCode.journey_id == journey.id, OneTimeCode.step == input.step))).one()
            row.sent_at = utcnow()
            # Locked: a cancellation committed while the code went out is seen, not reopened.
            journey = await session.get_one(Journey, journey.id, with_for_update=True)
            await crud.add_journey_event(session, journey=journey, step=input.step,
                                         type="code_sent", at=row.sent_at,
                                         detail={"channel": "sms"})
            if ended := crud.ended_outside(journey):
                return SendCodeResult(sent=True, ended=ended)
            journey.stage = Stage.verification_pending
        return SendCodeResult(sent=True)

    @activity.defn
    async def check_code(self, input: CheckCodeInput) -> CheckCodeResult:
        async with transaction(self._sessions) as session:
            row = (await session.scalars(select(OneTimeCode).where(
                OneTimeCode.journey_id == uuid.UUID(input.journey_id),
                OneTimeCode.step == input.step).with_for_update())).one_or_none()
            if row is None:
                # No code went out for this step (the number had its daily cap of codes):
                # nothing typed can match, and the page offers a new one. Failing here would
                # retry for ever while the customer's page waits.
                return CheckCodeResult("expired", input.max_wrong_tries)
            row.max_wrong_tries = input.max_wrong_tries
            left = input.max_wrong_tries - row.wrong_tries
            if row.used_at is not None:
                return CheckCodeResult("right", left)
            if left <= 0:
                return CheckCodeResult("locked", 0)
            if row.expires_at <= input.at:
                return CheckCodeResult("expired", left)
            # Any script's digits, as a phone's keyboard types them (Arabic-Indic, Persian,
            # full-width), are the code's digits.
            given = "".join(str(unicodedata.decimal(ch)) for ch in input.code if ch.isdecimal())
            if len(given) != CODE_DIGITS:
                # A typing slip (too few digits, letters) cannot be a guess at the code: it
                # costs no try.
                return CheckCodeResult("malformed", left)
            if hmac.compare_digest(
                    self._hmac(input.journey_id, input.step, given), row.code_hmac):
                row.used_at = input.at
                return CheckCodeResult("right", left)
            row.wrong_tries += 1
            left -= 1
            return CheckCodeResult("locked" if left <= 0 else "wrong", left)
