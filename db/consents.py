"""The consent ledger: append-only events per contact, and what they add up to.

Current preferences are derived from the ledger (the newest decision per purpose and channel by
the time the customer gave it), never stored apart from it; `governing` says which decision rules
a channel, where a withdrawal on `any` counts too.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from contacts import suppression
from core.security import sha256_hex
from core.vocabulary import (
    Channel,
    ConsentSource,
    EventType,
    GdprConsentState,
    GdprConsequence,
    MessageCategory,
)
from db.crud import bulk_insert, contact_ref, insert_ignoring_conflicts, record_webhook_event
from db.models import (
    Client,
    ConsentDisplay,
    ConsentEvent,
    Contact,
    ContactPoint,
    LegalText,
    MessagePolicy,
    Purpose,
    utcnow,
)

# Journey messages are not marketing unless the client's policy says so.
BUILT_IN_POLICIES = {
    "invitation": MessageCategory.service,
    "reminder": MessageCategory.service,
    "verification": MessageCategory.mandatory,
    "verification_reminder": MessageCategory.mandatory,
    "confirmation": MessageCategory.service,
    "reconsent_invitation": MessageCategory.mandatory,
    "reconsent_reminder": MessageCategory.mandatory,
}


class LegalTextConflict(ValueError):
    """A stored version of a legal text was given again with other words."""


async def purposes_by_key(session: AsyncSession, *, client_id: uuid.UUID) -> dict[str, Purpose]:
    rows = await session.scalars(select(Purpose).where(Purpose.client_id == client_id))
    return {p.key: p for p in rows}


async def register_legal_text(
    session: AsyncSession, *, client_id: uuid.UUID, purpose_key: str, language: str,
    version: str, text: str,
) -> LegalText:
    """Stores a version once; the same version with different words is refused."""
    digest = sha256_hex(text)
    await insert_ignoring_conflicts(session, LegalText, [{
        "id": uuid.uuid4(), "client_id": client_id, "purpose_key": purpose_key,
        "language": language, "version": version, "text": text, "sha256": digest}])
    stored = (await session.scalars(select(LegalText).where(
        LegalText.client_id == client_id, LegalText.purpose_key == purpose_key,
        LegalText.language == language, LegalText.version == version))).one()
    if stored.sha256 != digest:
        raise LegalTextConflict(
            f"version {version!r} of {purpose_key!r} in {language!r} already has another text; "
            "give the new text a new version")
    return stored


async def legal_text(
    session: AsyncSession, *, client_id: uuid.UUID, purpose_key: str, language: str,
    version: str | None = None,
) -> LegalText | None:
    """The given version, or the newest one, of a purpose's text in a language."""
    query = select(LegalText).where(LegalText.client_id == client_id,
                                    LegalText.purpose_key == purpose_key,
                                    LegalText.language == language)
    if version is not None:
        query = query.where(LegalText.version == version)
    return (await session.scalars(query.order_by(LegalText.created_at.desc()).limit(1))).first()


async def texts_for_purposes(
    session: AsyncSession, *, client_id: uuid.UUID, language: str, fallback: str,
    decided: dict[tuple[str, str], ConsentEvent],
) -> dict[str, LegalText]:
    """Newest text per purpose in the language, else in the fallback language. A purpose the
    contact has decided on (`decided`, as `preferences()` has it) with a text in neither gets
    the text of its newest decision: a withdrawal must always be recordable, and a standing
    opt-in shown to be withdrawn, whatever language its text is in."""
    rows = (await session.scalars(select(LegalText).where(
        LegalText.client_id == client_id, LegalText.language.in_({language, fallback}))
        .order_by(LegalText.created_at))).all()
    best: dict[str, LegalText] = {}
    for row in rows:  # oldest first: later rows overwrite, the wanted language wins
        current = best.get(row.purpose_key)
        if current is None or row.language == language or current.language != language:
            best[row.purpose_key] = row
    for event in sorted(decided.values(), key=lambda e: e.given_at, reverse=True):
        best.setdefault(event.purpose, text_of(event))
    return best


def text_of(event: ConsentEvent) -> LegalText:
    """The text a ledger entry was decided under, to record another decision under it."""
    return LegalText(language=event.legal_text_language, version=event.legal_text_version,
                     text=event.legal_text, sha256=event.legal_text_sha256)


@dataclass
class Decision:
    """One consent decision to append to the ledger."""

    purpose: str
    channel: str
    granted: bool
    given_at: datetime
    source: str
    text: LegalText
    ip: str | None = None
    user_agent: str | None = None
    actor: str | None = None
    shown_in: str | None = None
    display_id: uuid.UUID | None = None


def decision_row(*, client_id: uuid.UUID, contact_id: uuid.UUID, d: Decision,
                 journey_id: uuid.UUID | None = None, step: str | None = None,
                 checkbox_key: str | None = None) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(), "client_id": client_id, "contact_id": contact_id,
        "journey_id": journey_id, "step": step, "checkbox_key": checkbox_key,
        "purpose": d.purpose, "channel": d.channel, "granted": d.granted,
        "given_at": d.given_at, "recorded_at": utcnow(), "source": d.source,
        "actor": d.actor, "shown_in": d.shown_in, "display_id": d.display_id,
        "legal_text": d.text.text, "legal_text_language": d.text.language,
        "legal_text_version": d.text.version, "legal_text_sha256": d.text.sha256,
        "ip": d.ip, "user_agent": d.user_agent,
    }


# The lock on the contact's row under which its decisions are written (FOR NO KEY UPDATE: rows
# that merely point at the contact are not held up): one contact's decisions are written one
# at a time, each seeing those before it, and an erasure (FOR UPDATE) waits for them.
DECIDING = {"key_share": True}


# What makes two ledger entries the same decision (as decision_row names the columns).
SAME_DECISION = ("purpose", "channel", "granted", "source", "given_at", "legal_text_language",
                 "legal_text_version")


async def append(session: AsyncSession, *, client_id: uuid.UUID, contact_id: uuid.UUID,
                 decisions: list[Decision], **journey_step: Any) -> list[ConsentEvent]:
    """Appends the decisions; one the ledger already holds, the same in every respect down to
    the moment it was given (a retried request, an import sent again), is that entry rather
    than a second one. Returns the entries, in the order of the decisions. `journey_step`:
    the journey, step and checkbox of decisions given on a journey's page (`decision_row`)."""
    if not decisions:
        return []
    # A retry sent at once is then the same entry, and `announce` says which decision is
    # current knowing every decision committed before.
    await session.execute(select(Contact.id).where(Contact.id == contact_id)
                          .with_for_update(**DECIDING))
    known = {tuple(getattr(e, c) for c in SAME_DECISION): e
             for e in await session.scalars(select(ConsentEvent).where(
                 ConsentEvent.contact_id == contact_id,
                 ConsentEvent.given_at.in_({d.given_at for d in decisions})))}
    events = []
    for d in decisions:
        row = decision_row(client_id=client_id, contact_id=contact_id, d=d, **journey_step)
        key = tuple(row[c] for c in SAME_DECISION)
        if key not in known:
            known[key] = ConsentEvent(**row)
            session.add(known[key])
        events.append(known[key])
    await session.flush()
    return events


async def record(session: AsyncSession, *, contact: Contact, decisions: list[Decision],
                 **journey_step: Any) -> tuple[list[ConsentEvent], list[str]]:
    """Appends decisions and raises `consent.changed` for each in the same transaction.
    Returns the new events and the webhook endpoints to wake after commit."""
    events = await append(session, client_id=contact.client_id, contact_id=contact.id,
                          decisions=decisions, **journey_step) if decisions else []
    return events, await announce(session, contact=contact, events=events)


async def announce(session: AsyncSession, *, contact: Contact, events: list[ConsentEvent],
                   only_current: bool = False) -> list[str]:
    """One `consent.changed` per ledger event, keyed by the event so a retry adds none.
    `current` says whether the event now decides its purpose and channel: one given before a
    decision already in the ledger (arriving late) is history, and a receiver applying events
    in order must not act on it. `only_current`: announce only the events that now decide
    (an import's history is not news, its newest decisions are). Returns the webhook
    endpoints to wake after commit."""
    if not events:
        return []
    now = await preferences(session, contact_id=contact.id)
    endpoints: list[str] = []
    for event in events:
        if only_current and not governs(now, event):
            continue
        endpoints += await record_webhook_event(
            session, client_id=contact.client_id, key=f"consent/{event.id}",
            type=EventType.consent_changed,
            data={"contact": contact_ref(contact), "consent": event_as_dict(event),
                  "current": governs(now, event)})
    return endpoints


def without_the_person(data: dict[str, Any], contact: Contact) -> dict[str, Any]:
    """A `consent.changed` of an anonymised contact as it goes out from then on (delivered late,
    resent, replayed): its usual shape, so a receiver can still apply the decision (a
    withdrawal above all), without what named the person, as the ledger keeps it: the
    contact's reference as anonymised, no IP or user agent."""
    return {**data, "anonymised": True, "contact": contact_ref(contact),
            "consent": {**data["consent"], "ip": None, "user_agent": None}}


async def lapse_email_opt_ins(session: AsyncSession, *, contact: Contact, at: datetime,
                              shown_in: str, actor: str, only_purposes: set[str] | None = None
                              ) -> list[str]:
    """Withdraws the contact's granted opt-ins by email (of `only_purposes`, if given) in their
    ledger, each with the text it was granted under. Returns the endpoints to wake."""
    current = await preferences(session, contact_id=contact.id)
    lapsed = [Decision(
        purpose=e.purpose, channel=e.channel, granted=False, given_at=at, source=ConsentSource.system,
        shown_in=shown_in, actor=actor, text=text_of(e))
        for (purpose, channel), e in current.items()
        if channel == Channel.email and governing(current, purpose, channel).granted
        and (only_purposes is None or purpose in only_purposes)]
    _, endpoints = await record(session, contact=contact, decisions=lapsed)
    return endpoints


def changed(current: dict[tuple[str, str], ConsentEvent], purpose: str, channel: str,
            granted: bool) -> bool:
    """Whether a decision changes anything: repeating the current state adds no ledger entry."""
    decision = governing(current, purpose, channel)
    return decision is None or decision.granted != granted


# The channels a message goes by; `any` is a decision about all of them at once.
SENDING_CHANNELS = (Channel.email, Channel.sms, Channel.letter, Channel.phone)


def governing(current: dict[tuple[str, Any], Any], purpose: str, channel: str) -> Any:
    """The decision that rules a purpose on a channel: the channel's own newest one, unless
    the newest decision on `any` is a withdrawal given after it, which stops every channel (a
    customer who says "no more, however you reach me" means it). A later grant on the channel
    itself is the customer's newer, specific word and allows it again; on the same moment
    (one form) the channel's own decision wins. A grant on `any` permits no channel by itself:
    consent to marketing is given for a channel, with its own text, so it only stops an
    earlier `any` withdrawal from standing. `current` is `current()`'s mapping; a `Decision`
    about to be appended may stand in it (the preference centre reasons before it saves)."""
    own = current.get((purpose, channel))
    blanket = current.get((purpose, Channel.any))
    if channel == Channel.any or blanket is None or blanket.granted:
        return own
    return blanket if own is None or own.given_at < blanket.given_at else own


def ruling(current: dict[tuple[str, str], ConsentEvent]
           ) -> dict[tuple[str, str], ConsentEvent]:
    """(purpose, channel) -> the decision that rules it (`governing`), for each purpose and
    channel the contact has decided on."""
    return {(p, c): governing(current, p, c) for p, c in current}


def governs(current: dict[tuple[str, str], ConsentEvent], event: ConsentEvent) -> bool:
    """Whether the ledger event now rules its purpose and channel: one given before a newer
    decision (its channel's own, or a withdrawal on `any`) is history."""
    decision = governing(current, event.purpose, event.channel)
    return decision is not None and decision.id == event.id


def decided(purpose: str, granted: bool, channels: list[str]) -> ColumnElement[bool]:
    """`governing` as SQL, for contact searches: the contact's decision that rules `purpose` on
    one of `channels` is `granted`."""
    # Only a subquery directly under the contacts query names `Contact`: one deeper would not be
    # correlated to it but cross-join every contact (another client's withdrawal would count).
    def newest(e: Any, channel: str, contact_id: Any) -> ColumnElement[bool]:
        later = aliased(ConsentEvent)
        return and_(e.contact_id == contact_id, e.purpose == purpose, e.channel == channel,
                    ~exists().where(later.contact_id == e.contact_id, later.purpose == purpose,
                                    later.channel == channel, later.given_at > e.given_at))

    def rules(channel: str) -> ColumnElement[bool]:
        own, blanket = aliased(ConsentEvent), aliased(ConsentEvent)
        if channel == Channel.any:
            return exists().where(newest(own, channel, Contact.id), own.granted.is_(granted))
        if granted:
            return exists().where(
                newest(own, channel, Contact.id), own.granted.is_(True),
                ~exists().where(newest(blanket, Channel.any, own.contact_id),
                                blanket.granted.is_(False), blanket.given_at > own.given_at))
        return or_(exists().where(newest(own, channel, Contact.id), own.granted.is_(False)),
                   exists().where(newest(blanket, Channel.any, Contact.id),
                                  blanket.granted.is_(False), ~exists().where(
                                      own.contact_id == blanket.contact_id,
                                      own.purpose == purpose, own.channel == channel,
                                      own.given_at >= blanket.given_at)))
    return or_(*(rules(c) for c in channels))


async def ledger(session: AsyncSession, *, contact_id: uuid.UUID) -> list[ConsentEvent]:
    return list(await session.scalars(
        select(ConsentEvent).where(ConsentEvent.contact_id == contact_id)
        .order_by(ConsentEvent.given_at, ConsentEvent.recorded_at)))


def current(events: list[ConsentEvent]) -> dict[tuple[str, str], ConsentEvent]:
    """(purpose, channel) -> the deciding event: the one the customer gave last."""
    latest: dict[tuple[str, str], ConsentEvent] = {}
    for e in sorted(events, key=lambda e: (e.given_at, e.recorded_at)):
        latest[(e.purpose, e.channel)] = e
    return latest


async def preferences(session: AsyncSession, *, contact_id: uuid.UUID
                      ) -> dict[tuple[str, str], ConsentEvent]:
    return current(await ledger(session, contact_id=contact_id))


@dataclass
class SendDecision:
    allowed: bool
    category: str
    purpose: str | None
    reason: str


async def message_policy(session: AsyncSession, *, client_id: uuid.UUID,
                         message_type: str) -> MessagePolicy | None:
    return (await session.scalars(select(MessagePolicy).where(
        MessagePolicy.client_id == client_id, MessagePolicy.message_type == message_type))
    ).one_or_none()


async def category_of(session: AsyncSession, *, client_id: uuid.UUID,
                      message_type: str) -> str | None:
    """The message type's category by the client's policy, else the built-in one."""
    return policy_category(
        await message_policy(session, client_id=client_id, message_type=message_type),
        message_type)


def policy_category(policy: MessagePolicy | None, message_type: str) -> str | None:
    return policy.category if policy else BUILT_IN_POLICIES.get(message_type)


async def may_send(session: AsyncSession, *, client_id: uuid.UUID, contact_id: uuid.UUID,
                   message_type: str, channel: str, secret_key: str) -> SendDecision:
    """The sending rule, asked at send time: marketing needs a granted consent, and to an
    erased (suppressed) address the customer's own opt-in since; financial, service and
    mandatory messages (bills, verification codes) ignore marketing preferences."""
    policy = await message_policy(session, client_id=client_id, message_type=message_type)
    category = policy_category(policy, message_type)
    if category is None:
        return SendDecision(False, "unknown", None, f"no policy for message type {message_type!r}")
    if category != MessageCategory.mandatory:
        client = await session.get_one(Client, client_id)
        contact = await session.get_one(Contact, contact_id)
        if (client.gdpr_consequence != GdprConsequence.full_functionality
                and contact.gdpr_consent_state in (GdprConsentState.rejected,
                                                   GdprConsentState.withdrawn)):
            return SendDecision(False, category, None, f"the contact {contact.gdpr_consent_state}"
                                " consent to keep their data; only mandatory messages go")
    if category != MessageCategory.marketing:
        return SendDecision(True, category, None, f"{category} message")
    purpose = policy.purpose_key
    decision = governing(await preferences(session, contact_id=contact_id), purpose, channel)
    if decision is None:
        return SendDecision(False, category, purpose, f"no consent for {purpose} by {channel}")
    if not decision.granted:
        return SendDecision(False, category, purpose, f"{purpose} by {channel} not granted "
                            f"(customer's decision of {decision.given_at.isoformat()}"
                            + (", on every channel)" if decision.channel == Channel.any else ")"))
    erased = await suppression.of_contact(session, secret_key=secret_key, client_id=client_id,
                                          contact_id=contact_id, channel=channel)
    if erased is not None and not suppression.lifted_by(erased, decision.source,
                                                          decision.given_at):
        return SendDecision(False, category, purpose, suppression.describe(erased))
    return SendDecision(True, category, purpose, f"{purpose} by {channel} granted")


def after_complaint(rule: SendDecision, point: ContactPoint | None) -> SendDecision:
    """A recipient who reported our message as spam gets no more service messages there, as
    large mail providers expect; mandatory and financial ones still go. (Marketing follows the
    ledger: the complaint withdrew its opt-ins, the customer's own opt-in since counts.)"""
    if (rule.allowed and rule.category == MessageCategory.service and point is not None
            and point.complained_since is not None):
        return SendDecision(False, rule.category, rule.purpose,
                            complaint_reason(point.complained_since))
    return rule


def on_verified_point(rule: SendDecision, point: ContactPoint | None,
                      channel: str) -> SendDecision:
    """Marketing by email or SMS reaches only an address or number its owner confirmed (double
    opt-in): an opt-in recorded for one nobody confirmed proves nothing of who reads it. The
    client's own messages and the journey's, whatever the policy makes marketing, alike; a
    letter needs none."""
    if (rule.allowed and rule.category == MessageCategory.marketing
            and channel != Channel.letter
            and (point is None or point.verification_state != "verified")):
        needs = "mobile number" if channel == Channel.sms else "email address"
        return SendDecision(False, rule.category, rule.purpose, f"no verified {needs}")
    return rule


def complaint_reason(since: datetime) -> str:
    return f"the recipient reported a message as spam on {since.date().isoformat()}"


def event_as_dict(e: ConsentEvent) -> dict[str, Any]:
    return {
        "id": str(e.id), "purpose": e.purpose, "channel": e.channel, "granted": e.granted,
        "given_at": e.given_at.isoformat(), "recorded_at": e.recorded_at.isoformat(),
        "source": e.source, "actor": e.actor, "shown_in": e.shown_in,
        "display_id": str(e.display_id) if e.display_id else None,
        "journey_id": str(e.journey_id) if e.journey_id else None, "key": e.checkbox_key,
        "legal_text": {"language": e.legal_text_language, "version": e.legal_text_version,
                       "sha256": e.legal_text_sha256, "text": e.legal_text},
        "ip": e.ip, "user_agent": e.user_agent,
    }


async def record_displays(
    session: AsyncSession, *, contact: Contact, journey_id: uuid.UUID | None, shown_in: str,
    texts: dict[str, tuple[str, str, dict[str, str]]], ip: str | None, user_agent: str | None,
) -> dict[str, str]:
    """Records that texts were shown; `texts` maps a form key to (purpose, channel, text with
    language/version/sha256). Returns the display id per key, for the form to send back."""
    # Plain rows with their ids chosen here: the page needs no objects back, and a flush of
    # new objects costs the unit of work's bookkeeping on every page view.
    shown_at = utcnow()
    rows = {key: {
        "id": uuid.uuid4(), "client_id": contact.client_id, "contact_id": contact.id,
        "journey_id": journey_id, "purpose": purpose, "channel": channel, "shown_in": shown_in,
        "legal_text_language": text["language"], "legal_text_version": text["version"],
        "legal_text_sha256": text["sha256"], "shown_at": shown_at, "ip": ip,
        "user_agent": user_agent} for key, (purpose, channel, text) in texts.items()}
    await bulk_insert(session, ConsentDisplay, list(rows.values()))
    return {key: str(row["id"]) for key, row in rows.items()}


async def _display(session: AsyncSession, *, display_id: str | None, contact_id: uuid.UUID,
                   purpose: str) -> ConsentDisplay | None:
    try:
        display = await session.get(ConsentDisplay, uuid.UUID(display_id or ""))
    except ValueError:
        return None
    if display is None or display.contact_id != contact_id or display.purpose != purpose:
        return None
    return display


async def asked_otherwise(session: AsyncSession, *, contact_id: uuid.UUID,
                          boxes: dict[str, tuple[str, str, str | None]]) -> set[str]:
    """The keys of `boxes` (key -> the purpose and channel the box asks now, and the display
    its form sent back) whose form showed another question: one of the contact's displays of
    another purpose or channel, as when the campaign gave the key to another consent while
    the page was open. An answer to it answers nothing the box asks now."""
    ids = {}
    for key, (_, _, display_id) in boxes.items():
        try:
            ids[uuid.UUID(display_id or "")] = key
        except ValueError:
            continue
    if not ids:
        return set()
    # Whole rows: the answer's recording then finds each display in the session.
    shown = await session.scalars(select(ConsentDisplay).where(
        ConsentDisplay.id.in_(ids), ConsentDisplay.contact_id == contact_id))
    return {ids[d.id] for d in shown if (d.purpose, d.channel) != boxes[ids[d.id]][:2]}


async def verified_display(session: AsyncSession, *, display_id: str | None,
                           contact_id: uuid.UUID, purpose: str) -> uuid.UUID | None:
    """The display a decision answers, if the form sent back one of this contact's displays of
    this purpose; anything else (forged, stale, absent) links to nothing."""
    display = await _display(session, display_id=display_id, contact_id=contact_id,
                             purpose=purpose)
    return display and display.id


async def answered_text(session: AsyncSession, *, display_id: str | None,
                        contact_id: uuid.UUID, purpose: str, current: Any
                        ) -> tuple[Any, uuid.UUID | None]:
    """The words a decision on our page answers, and the display that showed them (as
    `verified_display`): the campaign's `current` text, unless the display showed another
    version, as when the campaign's consent text was changed while the page was open."""
    display = await _display(session, display_id=display_id, contact_id=contact_id,
                             purpose=purpose)
    if display is None:
        return current, None
    if display.legal_text_sha256 != current.sha256:
        shown = await legal_text(session, client_id=display.client_id, purpose_key=purpose,
                                 language=display.legal_text_language,
                                 version=display.legal_text_version)
        if shown is not None and shown.sha256 == display.legal_text_sha256:
            return shown, display.id
    return current, display.id
