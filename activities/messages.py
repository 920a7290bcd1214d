"""Sends a journey's messages by email, SMS or letter: renders the template in the customer's
language with a personal link, hands it to the server or provider, and records it. One row per
(journey, step) means a retry never sends twice.

A channel that cannot reach the contact (no address known, suppressed by the sending rules) is
reported as skipped; a refusal by the server or provider as a bounce, recorded with its reason.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.webhooks import EndpointWaker
from core.contracts import BounceInput, SendMessageInput, SendMessageResult
from core.settings import Settings
from core.vocabulary import (
    CHANNEL_NEEDS,
    FINAL_STAGES,
    PROGRESS,
    BounceKind,
    Channel,
    MessageCategory,
    Stage,
    TokenPurpose,
)
from db import bounces, consents, crud
from db.models import (
    BrandLogo,
    Campaign,
    Client,
    Contact,
    ContactAddress,
    ContactPoint,
    ContactSettings,
    Journey,
    Message,
    MessageBounce,
    utcnow,
)
from db.session import transaction
from messaging import links
from messaging.address import AddressError, PostalAddress
from messaging.branding import Brand, brand_for, letter_branding
from messaging.email import (
    EmailDeferred,
    EmailRejected,
    EmailUnsendable,
    OutgoingEmail,
    SmtpSender,
    deferred_long_enough,
    message_id,
)
from messaging.letters import LetterRequest, LetterSender, OutgoingLetter, compose_letter
from messaging.local_outbox import journey_message_key
from messaging.provider_http import PermanentDeliveryFailure
from messaging.rendering import (
    RenderedEmail,
    claim_view,
    pick_language,
    render_email,
    render_sms,
)
from messaging.sms import OutgoingSms, SmsSender, SmsUnsendable, check_text
from messaging.wording import kind_of, wording_for

VERIFICATION_REMINDER = "verification_reminder"
VERIFICATION_TEMPLATES = ("verification", VERIFICATION_REMINDER)
VERIFIED_MEANWHILE = "the contact has verified the address meanwhile"
# One letter text serves the invitation and its reminders: paper is not sent often.
LETTER_TEMPLATE = "invitation"
BOUNCE_SOURCE = {Channel.email: "smtp", Channel.sms: "sms_provider",
                 Channel.letter: "letter_provider"}
# A bounce an operator signalled to the journey (Temporal CLI or UI) comes without the
# provider's words.
SIGNALLED_SOURCE = "operator"
SIGNALLED_REASON = "signalled to the journey by an operator (message_bounced)"


@dataclass
class Outgoing:
    """A rendered message waiting to be handed over, outside the database transaction."""

    message_id: uuid.UUID
    channel: str
    recipient: str
    email: OutgoingEmail | None = None
    sms: OutgoingSms | None = None
    letter: OutgoingLetter | None = None


class Skip(Exception):
    """This channel cannot reach the contact (`skipped`) or may not (`suppressed`, by the
    sending rules); the journey tries its next one."""

    def __init__(self, reason: str, outcome: str = "skipped", *,
                 undeliverable: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.undeliverable = undeliverable


class Held(Exception):
    """The campaign is not active: its own messages wait (paused) or stop (archived)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"campaign {status}")
        self.status = status


def moved_on(stage: str, stage_after: str | None) -> str:
    """The stage a send moves its journey to. A send still in flight when its journey ended
    does not reopen it, and one reported after the customer moved on does not move it back."""
    if stage_after is None or stage in FINAL_STAGES:
        return stage
    if stage in PROGRESS and PROGRESS.index(Stage(stage_after)) < PROGRESS.index(Stage(stage)):
        return stage
    return stage_after


class MessageSender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, email: SmtpSender,
        sms: SmsSender, letters: LetterSender, waker: EndpointWaker,
    ) -> None:
        self._sessions = sessions
        self._waker = waker
        self._settings = settings
        self._email = email
        self._sms = sms
        self._letters = letters

    @activity.defn
    async def send_message(self, input: SendMessageInput) -> SendMessageResult:
        async with transaction(self._sessions) as session:
            locked = await crud.locked_journey(session, uuid.UUID(input.journey_id))
            journey = locked[0]
            if journey.stage == Stage.cancelled:
                # Cancelled (with its launch, by an operator) while this send waited for its
                # turn: the customer's link would only say the request has ended. A workflow
                # that outlived a cancellation in the database only ends as it.
                return SendMessageResult(sent=False, recipient=None,
                                         skipped="the journey was cancelled",
                                         ended=journey.stage)
            already = (
                await session.scalars(
                    select(Message).where(
                        Message.journey_id == journey.id, Message.step == input.step
                    )
                )
            ).one_or_none()
            if already is not None and already.status == "sent":
                return SendMessageResult(sent=True, recipient=already.recipient)
            if already is not None and already.status == "bounced":
                kind = (await session.scalars(select(MessageBounce.kind).where(
                    MessageBounce.message_id == already.id).limit(1))).first()
                return SendMessageResult(sent=False, recipient=already.recipient, bounced=kind)
            if input.template == VERIFICATION_REMINDER:
                collected = journey.collected or {}
                verified = await crud.verified_points(
                    session, contact_id=journey.contact_id,
                    values={kind: collected.get(kind) for kind in ("email", "mobile")})
                if "email" in verified:
                    # Confirmed meanwhile in another of the contact's journeys: nothing to
                    # remind them of. The journey records what the contact has verified (its
                    # history shows that, with when).
                    return SendMessageResult(sent=False, recipient=None,
                                             skipped=VERIFIED_MEANWHILE, verified=list(verified))
            try:
                outgoing = await self._prepare(session, locked, already, input)
            except Held as held:
                if journey.held_since is None:
                    # A step of its own: the message's step records the send once it goes.
                    await crud.add_journey_event(
                        session, journey=journey, step=f"{input.step}/held",
                        type=f"{input.template}_held", at=utcnow(),
                        detail={"channel": input.channel, "reason": str(held)})
                # Marked so that resuming the campaign finds this journey to wake; an archived
                # campaign never sends it, so nothing waits.
                journey.held_since = (None if held.status == "archived"
                                      else journey.held_since or utcnow())
                return SendMessageResult(sent=False, recipient=None, held=held.status)
            except Skip as skip:
                await crud.add_journey_event(
                    session, journey=journey, step=input.step,
                    type=f"{input.template}_{skip.outcome}", at=utcnow(),
                    detail={"channel": input.channel, "reason": str(skip)})
                if skip.outcome == "suppressed" and input.stage_after != Stage.invited:
                    # The journey moves on all the same (waits for a code or link the daily cap
                    # kept back); the read model follows it. An invitation kept back invited
                    # nobody: the journey stays `enrolled`.
                    journey.stage = moved_on(journey.stage, input.stage_after)
                return SendMessageResult(sent=False, recipient=None, skipped=str(skip),
                                         undeliverable=skip.undeliverable)
        recipient = outgoing.recipient
        # Sent when the hand-over began: the customer may act on the message before the
        # server's answer is recorded, and the journey's history must not show them first.
        sent_at = utcnow()
        try:
            provider_id, unconfirmed = await self._hand_over(outgoing)
        except Refused as refusal:
            async with transaction(self._sessions) as session:
                message = await session.get_one(Message, outgoing.message_id)
                message.sent_at = sent_at
                _, endpoints = await bounces.record_bounce(
                    session, message=message, kind=refusal.kind, reason=refusal.reason,
                    source=BOUNCE_SOURCE[Channel(outgoing.channel)], at=message.sent_at)
            # Only now, committed, may the endpoints' workflows see the event.
            await self._waker.wake(message.client_id, endpoints, input.step)
            return SendMessageResult(sent=False, recipient=recipient, bounced=refusal.kind)
        await self._mark_sent(outgoing.message_id, provider_id, input, sent_at, unconfirmed)
        return SendMessageResult(sent=True, recipient=recipient)

    @activity.defn
    async def record_signalled_bounce(self, journey_id: str, bounce: BounceInput) -> None:
        """A bounce the journey was told of by a signal: one the bounce API or the send
        recorded already changes nothing; one an operator signalled by hand is recorded as the
        API records a report (journey history, bounces list and funnel, `message.bounced`, the
        address marked undeliverable), so that a switch of channel is never unexplained."""
        async with transaction(self._sessions) as session:
            message = (await session.scalars(select(Message).where(
                Message.journey_id == uuid.UUID(journey_id), Message.step == bounce.step))
            ).one_or_none()
            if (message is None or message.channel != bounce.channel
                    or message.status not in ("sent", "bounced")):
                return
            stored = set(await session.scalars(select(MessageBounce.kind).where(
                MessageBounce.message_id == message.id)))
            if bounce.kind in stored or (bounce.kind == BounceKind.soft
                                         and BounceKind.hard in stored):
                return
            _, endpoints = await bounces.record_bounce(
                session, message=message, kind=BounceKind(bounce.kind), reason=SIGNALLED_REASON,
                source=SIGNALLED_SOURCE, at=utcnow())
        await self._waker.wake(message.client_id, endpoints, f"{bounce.step}/signalled")

    async def _prepare(self, session: AsyncSession,
                       locked: tuple[Journey, Contact, Campaign, Client],
                       already: Message | None, input: SendMessageInput) -> Outgoing:
        """Decides whether and to whom the message goes, and renders it."""
        journey, contact, campaign, client = locked
        if input.only_while_campaign_active:
            if campaign.status != "active":
                # Read again under a share lock: a resume then waits for this hold to commit,
                # so the wake-up it sends afterwards finds this journey.
                await session.refresh(campaign, with_for_update={"read": True})
                if campaign.status != "active":
                    raise Held(campaign.status)
            journey.held_since = None
        channel = Channel(input.channel)
        address: PostalAddress | None = None
        point: ContactPoint | None = None
        if input.to_pending_email:
            recipient = (journey.collected or {}).get("email")
        elif channel == Channel.letter:
            row = await crud.current_address(session, contact_id=contact.id, deliverable=True)
            address = row and self._postal_address(contact, row)
            recipient = row and crud.letter_recipient(row)
        else:
            point = await crud.known_point(session, contact_id=contact.id, deliverable=True,
                                           kind="mobile" if channel == Channel.sms else "email")
            recipient = point.value if point else None
        if recipient is None:
            bounced = await crud.only_undeliverable(session, contact_id=contact.id, channel=channel)
            raise Skip(f"no {CHANNEL_NEEDS[channel]}{' that did not bounce' if bounced else ''}",
                       undeliverable=bounced)
        # Asked now, not when the campaign started: the customer may have opted out since.
        rule = await consents.may_send(
            session, client_id=client.id, contact_id=contact.id, message_type=input.template,
            channel=channel, secret_key=self._settings.secret_key.get_secret_value())
        if rule.allowed and point and not consents.after_complaint(rule, point).allowed:
            # Reported as spam there: the contact's other address (or number), if it has one.
            point = await crud.known_point(session, contact_id=contact.id, kind=point.kind,
                                           deliverable=True, uncomplained=True) or point
            recipient = point.value
        rule = consents.on_verified_point(consents.after_complaint(rule, point), point, channel)
        if rule.allowed and input.to_pending_email:
            # Held until this message's row, written below, is committed: a send at the same
            # time counts it.
            await crud.lock_recipient(session, recipient=recipient)
            # Counted per client (and all clients together up to a higher ceiling): a stranger
            # typing the address at one business does not keep its owner from verifying it at
            # another.
            if crud.over_verification_cap(await crud.messages_to(
                    session, recipient=recipient, client_id=journey.client_id,
                    templates=VERIFICATION_TEMPLATES, since=utcnow() - timedelta(days=1),
                    exclude=already and already.id,
            ), self._settings.verification_messages_per_recipient_per_day):
                rule = consents.SendDecision(False, rule.category, None,
                                             "daily cap of verification messages reached")
        if not rule.allowed:
            raise Skip(rule.reason, "suppressed")

        brand = brand_for(client.name, client.branding, campaign.spec.get("branding"),
                          self._settings)
        link_of_step = {"purpose": TokenPurpose(input.link_purpose), "step": input.step,
                        "base_url": brand.base_url}
        link = await links.issue(
            session, self._settings, expires_at=input.link_expires_at, journey_id=journey.id,
            printed=channel == Channel.letter, **link_of_step)
        context = {
            "client_name": client.name,
            "campaign_name": campaign.name,
            "link": link,
            "expires_at": input.link_expires_at,
            "incentive": campaign.spec.get("incentive_text"),
            # What the page asks for: an invitation speaks of the email address only when
            # that is all it asks.
            "collect": campaign.spec.get("collect", ["email"]),
            "brand": brand,
        }
        if not input.to_pending_email:
            # An address the customer only typed may be a stranger's (a typo): its mail asks
            # to confirm that address and tells nothing of the contact (name, claim).
            context |= {
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "claim": claim_view(journey.claim, journey.paid_at, journey.language),
            }
        context["wording"] = wording_for(campaign.spec.get("messages"),
                                         kind_of(channel, input.template),
                                         pick_language(journey.language), context)
        idempotency_key = journey_message_key(journey.id, input.step)
        outgoing = Outgoing(message_id=already.id if already else uuid.uuid4(), channel=channel,
                            recipient=recipient[:320])
        subject = None
        if channel == Channel.email:
            # An address the customer only typed may be a stranger's (a typo): its mail may
            # confirm that address and nothing else, never change the contact's consents.
            # The page opens in the language of this message: the journey's, which the
            # customer may have chosen on its page, not the contact's.
            context["preferences_link"] = None if input.to_pending_email else await links.issue(
                session, self._settings, purpose=TokenPurpose.preferences,
                step=f"{journey.id}/{input.step}", contact_id=contact.id,
                expires_at=utcnow() + self._settings.preference_link_ttl,
                scope={"language": journey.language}, base_url=brand.base_url)
            headers = {"Auto-Submitted": "auto-generated"}
            if rule.category == MessageCategory.marketing:
                # A client that counts its invitations as marketing: they unsubscribe as such.
                context["unsubscribe_link"], unsubscribe = await links.one_click_unsubscribe(
                    session, self._settings, step=f"{journey.id}/{input.step}",
                    contact_id=contact.id, purpose=rule.purpose, channel=channel,
                    base_url=brand.base_url, language=journey.language)
                headers |= unsubscribe
            content: RenderedEmail = render_email(input.template, journey.language, context)
            subject = content.subject
            outgoing.email = OutgoingEmail(
                to=recipient, content=content,
                message_id=message_id(self._settings, f"{journey.id}.{input.step}"),
                from_name=brand.email_from_name or client.name, headers=headers)
        elif channel == Channel.sms:
            outgoing.sms = OutgoingSms(
                to=recipient, sender=brand.sms_sender or self._settings.sms_sender_name,
                text=render_sms(input.template, journey.language, context),
                idempotency_key=idempotency_key)
            try:
                check_text(outgoing.sms, self._settings.sms_max_segments)
            except SmsUnsendable as err:
                # The journey goes on with its next step, as for a channel that cannot reach
                # the contact; the customer's number is not blamed with a bounce.
                raise Skip(str(err)) from err
        else:
            assert address is not None
            # A letter is the one message that may reach a contact whose email or mobile we
            # know already: it asks to add only what is missing, or, for a campaign that
            # verifies what is known, to confirm it.
            context |= {"mode": campaign.spec.get("mode"),
                        "known": sorted(await crud.known_points(session, contact_id=contact.id))}
            try:
                outgoing.letter = compose_letter(LetterRequest(
                    template=LETTER_TEMPLATE, language=journey.language, context=context,
                    branding=letter_branding(brand, await self._logo(session, brand)),
                    address=address,
                    sender_country=await self._sender_country(session, client.id), link=link,
                    short_link=links.printed_link(self._settings, owner=journey.id,
                                                  **link_of_step),
                    date=utcnow().date(),
                    idempotency_key=idempotency_key), self._settings)
            except AddressError as err:
                raise Skip(f"the postal address cannot be printed: {err}") from err
            subject = outgoing.letter.subject
        if already is None:
            session.add(Message(
                id=outgoing.message_id, client_id=journey.client_id, journey_id=journey.id,
                step=input.step, channel=channel, template=input.template,
                recipient=outgoing.recipient, mailbox=crud.mailbox(outgoing.recipient),
                subject=subject))
            await session.flush()
        else:
            # A retry after a hand-over that failed: the row tells where this one goes (the
            # contact may have changed their address meanwhile).
            already.recipient, already.subject = outgoing.recipient, subject
            already.mailbox = crud.mailbox(outgoing.recipient)
        return outgoing

    @staticmethod
    def _postal_address(contact: Contact, row: ContactAddress) -> PostalAddress:
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        return PostalAddress(
            recipient=name or contact.company_name or "", country=row.country,
            street_lines=[line for line in (row.line1, row.line2) if line],
            postal_code=row.postal_code or "", city=row.city, region=row.region or "",
            extra_lines=[contact.company_name] if name and contact.company_name else [])

    @staticmethod
    async def _logo(session: AsyncSession, brand: Brand) -> bytes | None:
        logo = await session.get(BrandLogo, uuid.UUID(brand.logo_id)) if brand.logo_id else None
        return logo.png if logo else None

    async def _sender_country(self, session: AsyncSession, client_id: uuid.UUID) -> str:
        settings = await session.get(ContactSettings, client_id)
        return settings.default_region if settings else self._settings.default_phone_region

    async def _hand_over(self, outgoing: Outgoing) -> tuple[str, str | None]:
        """Sends; returns the id the server or provider knows the message by, and why its
        acceptance is unconfirmed, if it is (an email whose whole message went without a reply:
        counted as sent, as sending it again would most likely be a second copy). Raises
        Refused when it will not take it; other failures are retried by Temporal."""
        try:
            if outgoing.email is not None:
                handover = await self._email.send(outgoing.email)
                return outgoing.email.message_id, handover.unconfirmed
            if outgoing.sms is not None:
                return (await self._sms.send(outgoing.sms)).provider_message_id, None
            assert outgoing.letter is not None
            return (await self._letters.send(outgoing.letter)).provider_message_id, None
        except (EmailRejected, PermanentDeliveryFailure) as err:
            raise Refused(BounceKind.hard, str(err)) from err
        except EmailUnsendable as err:
            # Our relay's limit, not the address's: soft, so nothing marks the address
            # undeliverable, and at once, as no retry changes it.
            raise Refused(BounceKind.soft, str(err)) from err
        except EmailDeferred as err:
            if deferred_long_enough(self._settings):
                raise Refused(BounceKind.soft, str(err)) from err
            raise

    async def _mark_sent(self, message_id: uuid.UUID, provider_id: str,
                         input: SendMessageInput, sent_at: datetime,
                         unconfirmed: str | None = None) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(update(Message).where(Message.id == message_id).values(
                status="sent", sent_at=sent_at, provider_message_id=provider_id))
            # Locked: a cancellation committed meanwhile is seen, not overwritten.
            journey = await session.get_one(Journey, uuid.UUID(input.journey_id),
                                            with_for_update=True)
            await crud.add_journey_event(
                session, journey=journey, step=input.step, type=f"{input.template}_sent",
                at=sent_at, detail={"channel": input.channel,
                                    **({"unconfirmed": unconfirmed} if unconfirmed else {})},
            )
            journey.stage = moved_on(journey.stage, input.stage_after)


class Refused(Exception):
    def __init__(self, kind: BounceKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
