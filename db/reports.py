"""Campaign reports: funnel counts per channel, and the collected/verified contacts streamed
row by row in constant memory (a server-side cursor read in partitions)."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import FINAL_STAGES, PAGE_ADDRESS_FIELDS, BounceKind, JourneyKind, Stage
from db.crud import CLAIM_WITHDRAWN_STEP, PAYMENT_STEP
from db.models import ConsentEvent, Contact, Journey, JourneyEvent, Message, MessageBounce

FUNNEL_STEPS = ("invited", "opened", "entered", "verified", "expired", "opted_out", "cancelled")
# Counted for every campaign, shown for payment-reminder ones: the claim was reported paid.
PAYMENT_STEPS = ("paid",)
# Counted for every campaign, shown for re-consent ones: the customer's answer to the form.
RECONSENT_STEPS = ("accepted", "rejected")
BOUNCE_STEPS = ("bounced_hard", "bounced_soft", "complaints")
# A journey counts in a step once its history holds one of these event types.
_STEP_EVENTS = {
    "invited": ("invitation_sent", "reconsent_invitation_sent"),
    # Entering data or answering the consent form needs the page open, even where the open
    # itself was not recorded.
    "opened": ("opened", Stage.data_entered, Stage.accepted, Stage.rejected),
    "entered": (Stage.data_entered,),
    "verified": (Stage.verified,),
    "expired": (Stage.expired,),
    "opted_out": (Stage.opted_out,),
    "cancelled": (Stage.cancelled,),
    "paid": ("payment_completed",),
    "accepted": (Stage.accepted,),
    "rejected": (Stage.rejected,),
}
_BOUNCE_KINDS = {"bounced_hard": BounceKind.hard, "bounced_soft": BounceKind.soft,
                 "complaints": BounceKind.complaint}
# The messages that ask the contact to come to the page (not verification links); a re-consent
# journey's carry the `reconsent_` prefix.
INVITING = ("invitation", "reminder", "reconsent_invitation", "reconsent_reminder")
PARTITION_ROWS = 500


def shown_steps(campaign_spec: dict) -> tuple[str, ...]:
    """The funnel's steps as a campaign shows them: paid only where it reminds of payments,
    accepted and rejected only where it asks for re-consent."""
    return (FUNNEL_STEPS + (PAYMENT_STEPS if campaign_spec.get("payments") else ())
            + (RECONSENT_STEPS if campaign_spec.get("kind") == JourneyKind.reconsent else ()))


def hidden_steps(campaign_spec: dict) -> set[str]:
    """The steps counted that do not apply to the campaign, left out of what it shows."""
    return set(PAYMENT_STEPS + RECONSENT_STEPS) - set(shown_steps(campaign_spec))


def _counts() -> dict[str, int]:
    return dict.fromkeys(FUNNEL_STEPS + PAYMENT_STEPS + RECONSENT_STEPS + BOUNCE_STEPS, 0)


@dataclass
class Funnel:
    journeys: int = 0
    finished: int = 0
    steps: dict[str, int] = field(default_factory=_counts)
    # (channel, language) -> counts; see `funnels` for what counts where.
    by_channel_language: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return self.journeys - self.finished

    @property
    def by_channel(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (channel, _), counts in sorted(self.by_channel_language.items()):
            total = out.setdefault(channel, _counts())
            for step, value in counts.items():
                total[step] += value
        return out

    def cell(self, channel: str, language: str) -> dict[str, int]:
        return self.by_channel_language.setdefault((channel, language), _counts())


async def funnels(
    session: AsyncSession, *, client_id: uuid.UUID, campaigns: dict[uuid.UUID, str]
) -> dict[uuid.UUID, Funnel]:
    """Funnel per campaign, in total and by channel and language (the dict maps campaign id to
    its first channel, the channel of journeys no message reached yet).

    By channel, `invited` counts the journeys that got at least one invitation or reminder on
    it (a re-consent journey's too), and the bounces the journeys with a bounce of that kind on it; the other steps count
    under the channel that reached the contact: the newest message before the page was first
    opened (or the newest of all, for a page never opened), unless the first visit came by a
    message's own link: then that message's channel (a letter's QR code scanned after an email
    went out counts for the letter)."""
    ids = list(campaigns)
    mine = (Journey.client_id == client_id) & Journey.campaign_id.in_(ids)
    journeys = select(Journey.id).where(mine)
    flags = (
        select(JourneyEvent.journey_id, *(
            func.max(case((JourneyEvent.type.in_(types), 1), else_=0)).label(step)
            for step, types in _STEP_EVENTS.items()))
        .where(JourneyEvent.journey_id.in_(journeys))
        .group_by(JourneyEvent.journey_id).subquery()
    )
    first_open = (select(func.min(JourneyEvent.at))
                  .where(JourneyEvent.journey_id == Journey.id,
                         JourneyEvent.type.in_(_STEP_EVENTS["opened"]))
                  # Of the outer query's journey, though nested one query deeper.
                  .correlate(Journey).scalar_subquery())
    opened_by = (select(JourneyEvent.detail["link"].as_string())
                 .where(JourneyEvent.journey_id == Journey.id, JourneyEvent.step == "opened")
                 .correlate(Journey).scalar_subquery())
    # Whatever became of its send afterwards: the customer came by its link, so it reached them.
    link_channel = (select(Message.channel)
                    .where(Message.journey_id == Journey.id, Message.step == opened_by)
                    .correlate(Journey).scalar_subquery())
    newest_before = (select(Message.channel)
                     .where(Message.journey_id == Journey.id, Message.status == "sent",
                            Message.template.in_(INVITING),
                            Message.sent_at <= func.coalesce(first_open, Message.sent_at))
                     .order_by(Message.sent_at.desc()).limit(1)
                     .correlate(Journey).scalar_subquery())
    reached_by = func.coalesce(link_channel, newest_before).label("channel")
    result = {campaign_id: Funnel() for campaign_id in ids}
    rows = (await session.execute(
        select(
            Journey.campaign_id, reached_by, Journey.language, func.count(Journey.id),
            func.sum(case((Journey.stage.in_(FINAL_STAGES), 1), else_=0)),
            *(func.coalesce(func.sum(flags.c[step]), 0) for step in _STEP_EVENTS))
        .select_from(Journey)
        .outerjoin(flags, flags.c.journey_id == Journey.id)
        .where(mine)
        .group_by(Journey.campaign_id, reached_by, Journey.language)
    )).all()
    for campaign_id, channel, language, count, finished, *steps in rows:
        funnel = result[campaign_id]
        funnel.journeys += count
        funnel.finished += finished or 0
        cell = funnel.cell(channel or campaigns[campaign_id], language)
        for step, value in zip(_STEP_EVENTS, steps):
            funnel.steps[step] += int(value)
            if step != "invited":
                cell[step] += int(value)
    invited = await session.execute(
        select(Journey.campaign_id, Message.channel, Journey.language,
               func.count(func.distinct(Journey.id)))
        .join(Message, Message.journey_id == Journey.id)
        # Handed over, even if it bounced afterwards; a refusal at send time invited nobody.
        .where(mine, (Message.status == "sent") | Message.provider_message_id.is_not(None),
               Message.template.in_(INVITING))
        .group_by(Journey.campaign_id, Message.channel, Journey.language))
    for campaign_id, channel, language, count in invited:
        result[campaign_id].cell(channel, language)["invited"] = count
    bounced = await session.execute(
        select(Journey.campaign_id, MessageBounce.channel, Journey.language, MessageBounce.kind,
               func.count(func.distinct(Journey.id)))
        .join(MessageBounce, MessageBounce.journey_id == Journey.id)
        .where(mine).group_by(Journey.campaign_id, MessageBounce.channel, Journey.language,
                              MessageBounce.kind))
    step_of = {kind: step for step, kind in _BOUNCE_KINDS.items()}
    for campaign_id, channel, language, kind, count in bounced:
        result[campaign_id].cell(channel, language)[step_of[kind]] = count
    totals = await session.execute(
        select(Journey.campaign_id, MessageBounce.kind, func.count(func.distinct(Journey.id)))
        .join(MessageBounce, MessageBounce.journey_id == Journey.id)
        .where(mine).group_by(Journey.campaign_id, MessageBounce.kind))
    for campaign_id, kind, count in totals:
        result[campaign_id].steps[step_of[kind]] = count
    return result


# Per consent checkbox, after granted or declined: the proof of what was agreed to, and when.
CONSENT_PROOF = {"language": "legal_text_language", "version": "legal_text_version",
                 "sha256": "legal_text_sha256", "given_at": "given_at"}


# The address as the contact page collects it, one CSV column per part.
ADDRESS_PARTS = ("type", *PAGE_ADDRESS_FIELDS)


# A payment-reminder campaign's rows name the claim, and say whether it was reported paid,
# when, and the amount (in the claim's currency) the payment-completed call recorded; then
# what the claim asks (its amount and due date) and whether the client withdrew it.
PAYMENT_COLUMNS = ("reference", "currency", "paid", "paid_at", "amount", "claim_amount",
                   "due_on", "withdrawn", "withdrawn_at")


def report_columns(consent_keys: list[str], *, payments: bool = False) -> list[str]:
    columns = ["journey_id", "contact_id", "external_id", "first_name", "last_name", "language",
               "stage", "enrolled_at", "email", "email_state", "mobile", "mobile_state",
               *(f"address.{part}" for part in ADDRESS_PARTS),
               "submitted_at", "verified_at", "ip", "user_agent",
               *(PAYMENT_COLUMNS if payments else ())]
    for key in consent_keys:
        columns += [f"consent.{key}", *(f"consent.{key}.{part}" for part in CONSENT_PROOF)]
    return columns


async def consent_keys(session: AsyncSession, *, client_id: uuid.UUID,
                       campaign_id: uuid.UUID, current: list[str]) -> list[str]:
    """The consent checkboxes a report has columns for: the campaign's `current` ones, then,
    by key, the others its journeys recorded (a checkbox taken off the campaign since), whose
    answers stay in the report."""
    recorded = await session.scalars(
        select(ConsentEvent.checkbox_key).distinct()
        .join(Journey, Journey.id == ConsentEvent.journey_id)
        .where(Journey.client_id == client_id, Journey.campaign_id == campaign_id,
               ConsentEvent.checkbox_key.is_not(None))
        .order_by(ConsentEvent.checkbox_key))
    return current + [key for key in recorded if key not in current]


async def collected_rows(
    session: AsyncSession, *, client_id: uuid.UUID, campaign_id: uuid.UUID,
    payments: bool = False,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The journeys that collected data (in a payment-reminder campaign, every journey with a
    claim), oldest id first, a partition at a time, each row with the consents of the
    submission that collected it. A row is a journey: a contact enrolled again has a row per
    round, told apart by `enrolled_at`."""
    shown = Journey.collected.is_not(None)
    claimed: tuple[Any, ...] = ()
    if payments:
        # A claim nobody answered is still owed: the debt collector needs its row most.
        shown |= Journey.claim.is_not(None)
        # The payment is the claim's, recorded once on whichever of its rounds it was reported
        # on: every round shows it. Looked up for paid journeys only.
        recorded = (select(JourneyEvent.detail).where(JourneyEvent.journey_id == Journey.id,
                                                      JourneyEvent.step == PAYMENT_STEP)
                    .scalar_subquery())
        withdrawn = (select(JourneyEvent.at).where(JourneyEvent.journey_id == Journey.id,
                                                   JourneyEvent.step == CLAIM_WITHDRAWN_STEP)
                     .scalar_subquery())
        # The claim as it stands is its newest round's, as the pages of its journeys show it:
        # enrolled again, it may ask another amount by another day, and a round enrolled
        # after a withdrawal owes it anew. Every round of a claim is among the rows, so a
        # window over them finds it, and its payment, with no lookup of the contact's other
        # rounds for each row.
        rounds = {"partition_by": (Journey.contact_id, Journey.claim["reference"].as_string()),
                  "order_by": (Journey.created_at, Journey.id), "rows": (None, None)}
        payment = func.first_value(recorded, type_=JourneyEvent.detail.type).over(
            **{**rounds, "order_by": (recorded.is_(None), Journey.created_at, Journey.id)})
        claimed = (case((Journey.paid_at.is_not(None), payment)).label("payment"),
                   func.last_value(Journey.claim, type_=Journey.claim.type)
                   .over(**rounds).label("current_claim"),
                   func.last_value(withdrawn, type_=JourneyEvent.at.type)
                   .over(**rounds).label("withdrawn_at"))
    result = await session.stream(
        select(Journey.id, Journey.contact_id, Journey.stage, Journey.language,
               Journey.created_at, Journey.collected, Journey.finished_at, Journey.paid_at,
               *claimed, Contact.external_id, Contact.first_name, Contact.last_name)
        .join(Contact, Contact.id == Journey.contact_id)
        .where(Journey.client_id == client_id, Journey.campaign_id == campaign_id, shown)
        .order_by(Journey.id)
        .execution_options(yield_per=PARTITION_ROWS))
    async for partition in result.partitions():
        consents: dict[tuple[uuid.UUID, str], list[ConsentEvent]] = {}
        for consent in await session.scalars(
                select(ConsentEvent).where(ConsentEvent.journey_id.in_([r.id for r in partition]))
                .order_by(ConsentEvent.checkbox_key)):
            consents.setdefault((consent.journey_id, consent.step or ""), []).append(consent)
        session.expunge_all()
        yield [_row(r, consents.get((r.id, (r.collected or {}).get("submission_step", "")), []),
                    payments=payments)
               for r in partition]


def point_state(r: Any, kind: str) -> str | None:
    """What became of one entered email or mobile: verified, still pending while the journey
    runs, else unverified (it expired, the customer opted out, ...)."""
    if not (r.collected or {}).get(kind):
        return None
    if r.collected.get(f"{kind}_verified_at"):
        return "verified"
    # Journeys verified before each kind kept its own time verified all they had collected.
    if r.stage == Stage.verified and not any(k.endswith("_verified_at") for k in r.collected):
        return "verified"
    return "unverified" if r.stage in FINAL_STAGES else "pending"


def _row(r: Any, consents: list[ConsentEvent], *, payments: bool) -> dict[str, Any]:
    verified = r.stage == Stage.verified
    collected = r.collected or {}  # a payment reported by a customer who left no data
    paid = {} if not payments else {
        "reference": (claim := r.current_claim or {}).get("reference"),
        "currency": claim.get("currency"), "paid": r.paid_at is not None,
        "paid_at": r.paid_at.isoformat() if r.paid_at else None,
        "amount": (r.payment or {}).get("amount"), "claim_amount": claim.get("amount"),
        "due_on": claim.get("due_on"), "withdrawn": r.withdrawn_at is not None,
        "withdrawn_at": r.withdrawn_at.isoformat() if r.withdrawn_at else None}
    return {
        "journey_id": str(r.id), "contact_id": str(r.contact_id), "external_id": r.external_id,
        "first_name": r.first_name, "last_name": r.last_name, "language": r.language,
        "stage": r.stage, "enrolled_at": r.created_at.isoformat(),
        "email": collected.get("email"),
        "email_state": point_state(r, "email"), "mobile": collected.get("mobile"),
        "mobile_state": point_state(r, "mobile"), "address": collected.get("address"),
        "submitted_at": collected.get("submitted_at"),
        "verified_at": r.finished_at.isoformat() if verified and r.finished_at else None,
        "ip": collected.get("ip"), "user_agent": collected.get("user_agent"), **paid,
        "consents": [
            {"key": c.checkbox_key, "purpose": c.purpose, "channel": c.channel,
             "granted": c.granted, "given_at": c.given_at.isoformat(), "source": c.source,
             "legal_text_language": c.legal_text_language,
             "legal_text_version": c.legal_text_version, "legal_text_sha256": c.legal_text_sha256}
            for c in consents],
    }


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A report row as CSV cells: per consent checkbox, the answer and its proof; yes/no as
    true/false, as in JSON."""
    cells = {k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()
             if k not in ("consents", "address")}
    cells.update({f"address.{part}": (row["address"] or {}).get(part)
                  for part in ADDRESS_PARTS})
    for c in row["consents"]:
        column = f"consent.{c['key']}"
        cells[column] = "granted" if c["granted"] else "declined"
        cells.update({f"{column}.{part}": c[field] for part, field in CONSENT_PROOF.items()})
    return cells


async def bounce_rows(session: AsyncSession, *, client_id: uuid.UUID, campaign_id: uuid.UUID
                      ) -> AsyncIterator[list[dict[str, Any]]]:
    """The campaign's bounces as report rows, oldest first, a partition at a time."""
    # Columns, not MessageBounce objects: objects streamed in partitions would have to leave
    # the session's identity map to keep memory constant, which ends the stream's next
    # partition (a campaign of more than one partition of bounces got a download cut short).
    result = await session.stream(
        select(MessageBounce.at, MessageBounce.journey_id, Contact.external_id,
               Journey.language, Message.step, MessageBounce.channel, MessageBounce.recipient,
               MessageBounce.kind, MessageBounce.reason, MessageBounce.source)
        .join(Message, Message.id == MessageBounce.message_id)
        .join(Journey, Journey.id == MessageBounce.journey_id)
        .join(Contact, Contact.id == Journey.contact_id)
        .where(MessageBounce.client_id == client_id, MessageBounce.campaign_id == campaign_id)
        .order_by(MessageBounce.id)
        .execution_options(yield_per=PARTITION_ROWS))
    async for partition in result.partitions():
        yield [{**r._asdict(), "at": r.at.isoformat(), "journey_id": str(r.journey_id)}
               for r in partition]
