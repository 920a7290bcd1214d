"""GDPR duties for one contact: export everything as one document, anonymise irreversibly
(refused while rules block it), terminate; and the batch anonymisation of inactive contacts."""

import uuid
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contacts import audit, histories, registry, suppression
from contacts.audit import Actor
from core.settings import Settings
from core.storage import LocalDirectoryStorage
from core.vocabulary import (
    ANONYMISATION_BLOCKED,
    FINAL_STAGES,
    AuditAction,
    EventType,
    GdprConsentState,
    GdprConsequence,
    KycState,
    Stage,
    SuppressionReason,
)
from db import consents as consents_db, crud
from db.kyc_models import KycDocument, KycEvent, KycProfile
from db.models import (
    Client,
    AuditEntry,
    ClientMessage,
    ConsentDisplay,
    ConsentDocument,
    ConsentEvent,
    Contact,
    ContactAddress,
    ContactIdentityKey,
    ContactLabel,
    ContactPoint,
    IdempotentRequest,
    IdentificationMedium,
    Journey,
    JourneyEvent,
    LinkToken,
    Message,
    MessageBounce,
    OneTimeCode,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    utcnow,
)
from db.session import on_commit
from messaging import letters, sms
from messaging.local_outbox import journey_message_key, kyc_message_key

PERSONAL_FIELDS = ("first_name", "last_name", "company_name", "date_of_birth", "id_number",
                   "id_expires_on", "passport_number", "passport_expires_on", "ssn")
# Who or what ended a journey (the client and why, an operator, a complaint on a channel, a
# lost workflow) names nobody: its history keeps that through the contact's anonymisation.
JOURNEY_ENDINGS = (Stage.cancelled, Stage.expired, Stage.opted_out)
ENDING_DETAIL = frozenset({"by", "reason", "channel", "step", "workflow"})
OPEN_JOURNEY = Journey.finished_at.is_(None) & Journey.stage.not_in(
    [s.value for s in FINAL_STAGES])


class Blocked(Exception):
    def __init__(self, blocking: list[tuple[str, str]]) -> None:
        self.reasons = [reason for _, reason in blocking]
        super().__init__("; ".join(self.reasons))
        # What blocks, by field of the contact: "journeys", "claims" or "kyc".
        self.blocking = blocking


def _under_review(contact_id: Any) -> ColumnElement[bool]:
    """The back office is reviewing KYC documents the contact submitted."""
    return exists().where(
        KycProfile.contact_id == contact_id, KycProfile.state == KycState.pending_verification,
        exists().where(KycDocument.contact_id == KycProfile.contact_id))


def _owes(contact_id: Any) -> ColumnElement[bool]:
    """A journey of the contact carries a claim neither reported paid nor withdrawn by the
    client: the contact still owes it, and the client needs to know who."""
    return ((Journey.contact_id == contact_id) & Journey.claim.is_not(None)
            & Journey.paid_at.is_(None)
            & ~exists().where(JourneyEvent.journey_id == Journey.id,
                              JourneyEvent.step == crud.CLAIM_WITHDRAWN_STEP))


async def blockers(session: AsyncSession, contact: Contact) -> list[tuple[str, str]]:
    """Why the contact's personal data cannot go yet: a journey still running needs it, a claim
    is still owed by them, or the back office is reviewing KYC documents they submitted."""
    open_journeys = await session.scalars(select(Journey).where(
        Journey.contact_id == contact.id, OPEN_JOURNEY).order_by(Journey.created_at))
    reasons = [("journeys", f"journey {j.id} in campaign {j.campaign_id} is still open "
                            f"(stage {j.stage}): end it with POST /v1/journeys/{j.id}/cancel")
               for j in open_journeys]
    # A claim by its newest journey: any of them takes the payment or the withdrawal.
    owed = {(campaign_id, reference): journey_id
            for journey_id, campaign_id, reference in await session.execute(
                select(Journey.id, Journey.campaign_id, Journey.claim["reference"].as_string())
                .where(_owes(contact.id)).order_by(Journey.created_at))}
    reasons += [("claims", f"claim {reference} in campaign {campaign_id} is unpaid: report it "
                           f"paid with POST /v1/journeys/{journey_id}/payment-completed, or, "
                           f"once its journey has ended, withdraw it with POST /v1/journeys/"
                           f"{journey_id}/claim-withdrawn (ending or cancelling a journey, "
                           "?cancel_journeys=true too, leaves its claim owed: it is money)")
                for (campaign_id, reference), journey_id in owed.items()]
    if await session.scalar(select(_under_review(contact.id))):
        reasons.append(("kyc", "the contact's KYC profile is under review (documents "
                               "submitted, no decision yet: verify or refute it)"))
    return reasons


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: audit.jsonable(getattr(obj, c.key)) if not isinstance(
        getattr(obj, c.key), uuid.UUID) else str(getattr(obj, c.key))
        for c in obj.__table__.columns if c.key not in skip}


async def export_document(session: AsyncSession, reg: registry.Registry, contact: Contact
                          ) -> dict[str, Any]:
    """Everything held about the contact, as one machine-readable document."""
    [out] = await registry.outputs(session, reg, [contact], include_inactive=True,
                                   include_removed=True)
    journeys = list(await session.scalars(select(Journey).where(
        Journey.contact_id == contact.id).order_by(Journey.created_at)))
    journey_ids = [j.id for j in journeys]
    events = await session.scalars(select(JourneyEvent).where(
        JourneyEvent.journey_id.in_(journey_ids)).order_by(JourneyEvent.at, JourneyEvent.id))
    by_journey: dict[uuid.UUID, list[dict[str, Any]]] = {j: [] for j in journey_ids}
    for e in events:
        by_journey[e.journey_id].append(
            {"type": e.type, "at": e.at.isoformat(), "detail": e.detail})
    messages = await session.scalars(select(Message).where(
        Message.journey_id.in_(journey_ids)).order_by(Message.created_at))
    client_messages = await session.scalars(select(ClientMessage).where(
        ClientMessage.contact_id == contact.id).order_by(ClientMessage.created_at))
    consents = await session.scalars(select(ConsentEvent).where(
        ConsentEvent.contact_id == contact.id).order_by(ConsentEvent.given_at))
    entries = await session.scalars(select(AuditEntry).where(
        AuditEntry.client_id == contact.client_id, AuditEntry.contact_id == contact.id)
        .order_by(AuditEntry.id))
    kyc_profile = await session.scalar(select(KycProfile).where(
        KycProfile.contact_id == contact.id))
    kyc_documents = await session.scalars(select(KycDocument).where(
        KycDocument.contact_id == contact.id).order_by(KycDocument.uploaded_at))
    kyc_events = await session.scalars(select(KycEvent).where(
        KycEvent.contact_id == contact.id).order_by(KycEvent.at, KycEvent.id))
    consent_documents = await session.scalars(select(ConsentDocument).where(
        ConsentDocument.contact_id == contact.id).order_by(ConsentDocument.created_at))
    displays = await session.scalars(select(ConsentDisplay).where(
        ConsentDisplay.contact_id == contact.id).order_by(ConsentDisplay.shown_at))
    return {
        "exported_at": utcnow().isoformat(),
        "contact": out.model_dump(mode="json"),
        "consents": [consents_db.event_as_dict(c) for c in consents],
        # Every consent text shown to the contact, answered or not: what, where, when, from
        # which IP address and browser.
        "consent_displays": [_row(d, skip=("client_id", "contact_id")) for d in displays],
        "gdpr_consent": {
            "state": contact.gdpr_consent_state,
            "updated_at": audit.jsonable(contact.gdpr_consent_updated_at),
            "anonymisation_blocked": await blocked_anonymisation(session, contact),
            # The signed forms by reference: each is a file of its own, not JSON.
            "documents": [{**_row(d, skip=("client_id", "contact_id", "content")),
                           "download": f"/v1/contacts/{contact.id}/gdpr-consent/documents/{d.id}"}
                          for d in consent_documents],
        },
        "journeys": [{**_row(j, skip=("client_id",)), "events": by_journey[j.id]}
                     for j in journeys],
        "messages": [_row(m, skip=("client_id",)) for m in messages],
        "client_messages": [_row(m, skip=("client_id",)) for m in client_messages],
        "audit": [_row(a, skip=("client_id",)) for a in entries],
        "webhook_events": await _webhook_events(session, contact, journey_ids),
        "kyc": {
            "profile": _row(kyc_profile, skip=("client_id",)) if kyc_profile else None,
            # Where a file is stored is ours; what it is and says is theirs.
            "documents": [_row(d, skip=("client_id", "storage_key")) for d in kyc_documents],
            "history": [_row(e, skip=("client_id", "id")) for e in kyc_events],
        },
    }


async def _webhook_events(session: AsyncSession, contact: Contact,
                          journey_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The events about the contact told to the client's endpoints, as sent (they carry what the
    contact typed, their IP address and browser), and to which endpoint each went and when.
    Not the endpoints' URLs, which may hold the client's secrets, nor what receivers answered."""
    events = list(await session.scalars(select(WebhookEvent).where(
        WebhookEvent.client_id == contact.client_id, _events_of(contact, journey_ids))
        .order_by(WebhookEvent.created_at, WebhookEvent.id)))
    deliveries: dict[uuid.UUID, list[dict[str, Any]]] = {e.id: [] for e in events}
    for d in await session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.event_id.in_(list(deliveries))).order_by(WebhookDelivery.endpoint_id)):
        deliveries[d.event_id].append({
            "endpoint_id": str(d.endpoint_id), "status": d.status, "attempts": d.attempts,
            "last_status_code": d.last_status_code,
            "delivered_at": audit.jsonable(d.delivered_at)})
    return [{"id": str(e.id), "type": e.type, "created_at": audit.jsonable(e.created_at),
             "timestamp": e.payload.get("timestamp"), "data": e.payload.get("data"),
             "deliveries": deliveries[e.id]} for e in events]


async def _journey_ids(session: AsyncSession, contact: Contact) -> list[uuid.UUID]:
    return list(await session.scalars(select(Journey.id).where(Journey.contact_id == contact.id)))


def _events_of(contact: Contact, journey_ids: list[uuid.UUID]):  # noqa: ANN202
    """Webhook events about the contact: those naming it, and those its journeys raised (their
    key starts with the journey id)."""
    return or_(WebhookEvent.payload["data"]["contact"]["id"].as_string() == str(contact.id),
               *(WebhookEvent.key.startswith(f"{j}/") for j in journey_ids))


async def _redact_webhook_events(session: AsyncSession, contact: Contact,
                                 journey_ids: list[uuid.UUID], erased: str) -> None:
    """The webhook events about the contact lose what they said, and their deliveries' logs
    what receivers answered. They are not deleted: one queued for an endpoint has its place
    in the endpoint's sequence, which runs without gaps, and goes out with its envelope
    (`data` is `{<erased>: true, "contact_id"}`, a consent decision's of an anonymised
    contact its usual shape without the person) so receivers read what happened."""
    events = _events_of(contact, journey_ids)
    await session.execute(update(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(
        select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(
            select(WebhookEvent.id).where(events))))).values(response_excerpt=None, error=None))
    for event in await session.scalars(select(WebhookEvent).where(events)):
        data = event.payload.get("data") or {}
        # An anonymised contact's consent decision keeps its shape, so that a withdrawal still
        # reaches receivers (the anonymised contact still stands for someone who withdrew).
        kept = (erased == "anonymised" and event.type == EventType.consent_changed
                and "consent" in data)
        event.payload = {"type": event.type, "timestamp": event.payload.get("timestamp"),
                         "data": consents_db.without_the_person(data, contact) if kept
                         else {erased: True, "contact_id": str(contact.id)}}


async def _scrub_audit(session: AsyncSession, contact: Contact) -> None:
    """Audit entries stay (who did what, when) but lose the values they recorded."""
    entries = await session.scalars(select(AuditEntry).where(
        AuditEntry.client_id == contact.client_id, AuditEntry.contact_id == contact.id,
        AuditEntry.detail.is_not(None)))
    for entry in entries:
        detail = entry.detail or {}
        entry.detail = {"fields": sorted(detail.get("changes", {})) or detail.get("fields", [])}


async def _message_keys(session: AsyncSession, contact: Contact) -> list[str]:
    """The idempotency keys of every message sent to the contact, which name its files in the
    local SMS and letter outboxes."""
    journey_ids = await _journey_ids(session, contact)
    keys = [journey_message_key(journey_id, step) for model in (Message, OneTimeCode)
            for journey_id, step in await session.execute(
                select(model.journey_id, model.step).where(model.journey_id.in_(journey_ids)))]
    # A KYC message is recorded at its step + "/email", whatever its channel.
    kyc_steps = await session.scalars(select(KycEvent.step).where(
        KycEvent.contact_id == contact.id, KycEvent.step.endswith("/email")))
    return keys + [kyc_message_key(contact.id, step.removesuffix("/email"))
                   for step in kyc_steps]


async def _scrub_outboxes_on_commit(session: AsyncSession, contact: Contact,
                                    settings: Settings) -> None:
    """The local outboxes' SMS and letters (dev) no longer say to whom they went or what they
    said, once the erasure is committed: a rollback cannot restore a file. Repeating it is
    harmless, so anonymising again finishes a scrub a crash after the commit left undone."""
    keys = await _message_keys(session, contact)

    def scrub() -> None:
        sms.anonymise_outbox(settings.sms_outbox_dir, keys)
        letters.anonymise_outbox(settings.letter_outbox_dir, keys)
    on_commit(session, scrub)


async def _erase_contact_points_and_documents(session: AsyncSession, contact: Contact,
                                              settings: Settings, reason: str) -> None:
    """What both erasures share: emails and phones go on the suppression list, the identity
    documents go, their files once that has committed (a rollback cannot restore a file; the
    profile keeps its non-personal state), the local outboxes' messages are scrubbed and the
    workflow histories in Temporal filed for deletion."""
    await _scrub_outboxes_on_commit(session, contact, settings)
    await histories.erasure_pending(session, contact,
                                    deleted=reason == SuppressionReason.terminated)
    await suppression.suppress(session, secret_key=settings.secret_key.get_secret_value(),
                               client_id=contact.client_id, contact_id=contact.id, reason=reason)
    keys = list(await session.scalars(select(KycDocument.storage_key).where(
        KycDocument.contact_id == contact.id)))
    await session.execute(delete(KycDocument).where(KycDocument.contact_id == contact.id))
    on_commit(session, partial(LocalDirectoryStorage(settings.kyc_storage_dir).remove, keys))


async def _delete_left_documents_on_commit(session: AsyncSession, contact: Contact,
                                           settings: Settings) -> None:
    """The document files of an anonymised contact that no row names and that were written
    before its anonymisation: those a crash between its commit and their deletion left. A
    document uploaded since is written later, and kept."""
    assert contact.anonymised_at is not None
    storage = LocalDirectoryStorage(settings.kyc_storage_dir)
    named = set(await session.scalars(select(KycDocument.storage_key).where(
        KycDocument.contact_id == contact.id)))
    left = [key for key in storage.written_before(f"{contact.client_id}/{contact.id}",
                                                  contact.anonymised_at) if key not in named]
    on_commit(session, partial(storage.remove, left))


async def anonymise(session: AsyncSession, contact: Contact, actor: Actor, *,
                    settings: Settings) -> None:
    """Irreversibly replaces the personal data; ids, stages, consent decisions and legal texts
    (non-personal records) are kept, and the emails and phones go on the suppression list.
    Raises Blocked with the reasons while rules forbid it. For a contact anonymised already it
    only scrubs the outboxes, deletes its document files and files its workflow histories for
    deletion again, in case a crash after the commit kept that from happening."""
    if contact.anonymised_at is not None:
        await _scrub_outboxes_on_commit(session, contact, settings)
        await histories.erasure_pending(session, contact, deleted=False)
        await _delete_left_documents_on_commit(session, contact, settings)
        return
    reasons = await blockers(session, contact)
    if reasons:
        raise Blocked(reasons)
    await _erase_contact_points_and_documents(session, contact, settings,
                                              SuppressionReason.anonymised)
    for field in PERSONAL_FIELDS:
        setattr(contact, field, None)
    contact.external_id = f"anonymised-{contact.id}"
    contact.anonymised_at = contact.updated_at = utcnow()
    # The answer kept for a retry of the contact's create is the contact as it was: a retry
    # of that create after this is a new request (terminate's deletion cascades to it too).
    for model in (ContactPoint, ContactAddress, IdentificationMedium, ContactLabel,
                  ContactIdentityKey, IdempotentRequest):
        await session.execute(delete(model).where(model.contact_id == contact.id))
    # Proof of consent keeps what was shown and answered, when, and the text's version and
    # hash; where from (IP, browser) is the person's, and so is their signed form.
    for model in (ConsentEvent, ConsentDisplay):
        await session.execute(update(model).where(model.contact_id == contact.id)
                              .values(ip=None, user_agent=None))
    await session.execute(delete(ConsentDocument).where(ConsentDocument.contact_id == contact.id))
    journey_ids = await _journey_ids(session, contact)
    if journey_ids:
        await session.execute(update(Journey).where(Journey.id.in_(journey_ids))
                              .values(collected=None))
        ending = JourneyEvent.type.in_(JOURNEY_ENDINGS)
        await session.execute(update(JourneyEvent).where(
            JourneyEvent.journey_id.in_(journey_ids), ~ending).values(detail=None))
        for event in await session.scalars(select(JourneyEvent).where(
                JourneyEvent.journey_id.in_(journey_ids), ending,
                JourneyEvent.detail.is_not(None))):
            event.detail = {k: v for k, v in (event.detail or {}).items()
                            if k in ENDING_DETAIL} or None
        await session.execute(update(Message).where(Message.journey_id.in_(journey_ids))
                              .values(recipient="anonymised", mailbox=None))
        # A server's refusal quotes the address it refused.
        await session.execute(update(MessageBounce).where(
            MessageBounce.journey_id.in_(journey_ids)).values(recipient="anonymised",
                                                               reason="anonymised"))
        await session.execute(update(OneTimeCode).where(OneTimeCode.journey_id.in_(journey_ids))
                              .values(recipient="anonymised"))
    # The KYC profile keeps its state; its history loses where messages went and the reason
    # an operator wrote, and the contact's personal links (its journeys', preferences, KYC
    # upload) die.
    await session.execute(update(KycEvent).where(KycEvent.contact_id == contact.id)
                          .values(detail=None))
    for profile in await session.scalars(select(KycProfile).where(
            KycProfile.contact_id == contact.id)):
        profile.reason = None
        if profile.workflow_profile:
            profile.workflow_profile = {**profile.workflow_profile, "reason": None}
    await session.execute(delete(LinkToken).where(or_(
        LinkToken.contact_id == contact.id, LinkToken.journey_id.in_(journey_ids))))
    # What the client wrote to the contact may name them; type, channel and status stay.
    await session.execute(update(ClientMessage).where(ClientMessage.contact_id == contact.id)
                          .values(recipient="anonymised", subject="anonymised", body=""))
    await _redact_webhook_events(session, contact, journey_ids, "anonymised")
    await _scrub_audit(session, contact)
    await audit.record(session, client_id=contact.client_id, actor=actor,
                       action=AuditAction.anonymise, contact_ids=[contact.id])


async def terminate(session: AsyncSession, contact: Contact, actor: Actor, *,
                    settings: Settings) -> None:
    """Deletes the contact and all that belongs to it; the audit trail keeps a scrubbed record
    and the suppression list a keyed digest of its emails and phones."""
    reasons = await blockers(session, contact)
    if reasons:
        raise Blocked(reasons)
    await _erase_contact_points_and_documents(session, contact, settings,
                                              SuppressionReason.terminated)
    journey_ids = await _journey_ids(session, contact)
    await _redact_webhook_events(session, contact, journey_ids, "deleted")
    if journey_ids:
        await session.execute(delete(ConsentEvent).where(ConsentEvent.journey_id.in_(journey_ids)))
    await _scrub_audit(session, contact)
    await session.delete(contact)
    await audit.record(session, client_id=contact.client_id, actor=actor,
                       action=AuditAction.terminate, contact_ids=[contact.id])


async def inactive_contacts(session: AsyncSession, *, client_id: uuid.UUID, cutoff: datetime,
                            limit: int, after: uuid.UUID | None = None) -> list[Contact]:
    """Not anonymised, no activity since the cutoff, and nothing a rule protects (as `blockers`
    says), by id from `after`. Activity is: a change of the contact's record, a journey active
    since then or still open, a consent decision recorded (by any source: API, import,
    preference centre, page, SMS STOP), a KYC document uploaded or KYC step taken, a message
    the client sent it."""
    def since(model: Any, at: Any) -> ColumnElement[bool]:
        return exists().where(model.contact_id == Contact.id, at >= cutoff)
    active = or_(
        exists().where(Journey.contact_id == Contact.id,
                       or_(Journey.updated_at >= cutoff, OPEN_JOURNEY)),
        since(ConsentEvent, ConsentEvent.recorded_at),
        since(KycDocument, KycDocument.uploaded_at),
        since(KycEvent, KycEvent.at),
        since(ClientMessage, ClientMessage.created_at))
    protected = or_(exists().where(_owes(Contact.id)), _under_review(Contact.id))
    return list(await session.scalars(select(Contact).where(
        Contact.client_id == client_id, Contact.anonymised_at.is_(None),
        Contact.updated_at < cutoff, ~active, ~protected,
        *([Contact.id > after] if after else [])).order_by(Contact.id).limit(limit)
        .with_for_update(skip_locked=True)))


async def apply_consent_consequence(session: AsyncSession, client: Client, contact: Contact,
                                    actor: Actor, *, settings: Settings) -> list[str] | None:
    """The client's consequence of a rejected or withdrawn consent to keep the data: with
    `anonymise`, the contact is anonymised now. Returns the reasons when rules block it (the
    contact then stays as it is, for the client to resolve), else None."""
    if (client.gdpr_consequence != GdprConsequence.anonymise or contact.gdpr_consent_state
            not in (GdprConsentState.rejected, GdprConsentState.withdrawn)):
        return None
    try:
        await anonymise(session, contact, actor, settings=settings)
    except Blocked as err:
        return err.reasons
    return None


async def unapplied_consequences(session: AsyncSession, *, after: uuid.UUID | None, limit: int
                                 ) -> list[tuple[Contact, Client]]:
    """Contacts whose rejection or withdrawal their client's policy anonymises and that are not
    anonymised yet: a rule (an open journey, a KYC review) blocked it when they answered. By id,
    from `after`."""
    return [(contact, client) for contact, client in await session.execute(
        select(Contact, Client).join(Client, Client.id == Contact.client_id).where(
            Client.gdpr_consequence == GdprConsequence.anonymise,
            Contact.gdpr_consent_state.in_((GdprConsentState.rejected,
                                            GdprConsentState.withdrawn)),
            Contact.anonymised_at.is_(None),
            *([Contact.id > after] if after else []))
        .order_by(Contact.id).limit(limit).with_for_update(of=Contact, skip_locked=True))]


async def record_blocked(session: AsyncSession, contact: Contact, actor: Actor, *,
                         reasons: list[str], given_at: datetime) -> None:
    """Keeps why the anonymisation after an answer recorded by the back office was blocked,
    for the contact's GDPR state to show, as a rejection on the page keeps it in its journey."""
    await audit.record(session, client_id=contact.client_id, actor=actor,
                       action=AuditAction.anonymisation_blocked, contact_ids=[contact.id],
                       detail={"reasons": reasons, "given_at": given_at.isoformat()})


async def blocked_anonymisation(session: AsyncSession, contact: Contact) -> list[str] | None:
    """Why the anonymisation after the contact's rejection or withdrawal was blocked, while
    that answer (on the page or recorded by the back office) is still the contact's newest
    and the contact is not anonymised."""
    if (contact.anonymised_at is not None or contact.gdpr_consent_updated_at is None
            or contact.gdpr_consent_state not in (GdprConsentState.rejected,
                                                  GdprConsentState.withdrawn)):
        return None
    on_page = await session.scalar(
        select(JourneyEvent.detail).join(Journey, Journey.id == JourneyEvent.journey_id)
        .where(Journey.contact_id == contact.id, JourneyEvent.type == ANONYMISATION_BLOCKED,
               JourneyEvent.at >= contact.gdpr_consent_updated_at)
        .order_by(JourneyEvent.at.desc()).limit(1))
    if on_page:
        return on_page["reasons"]
    # Only the newest answer is applied, so the newest block is that of the latest answer.
    recorded = await session.scalar(
        select(AuditEntry.detail).where(
            AuditEntry.client_id == contact.client_id, AuditEntry.contact_id == contact.id,
            AuditEntry.action == AuditAction.anonymisation_blocked)
        .order_by(AuditEntry.id.desc()).limit(1))
    if recorded and datetime.fromisoformat(
            recorded["given_at"]) >= contact.gdpr_consent_updated_at:
        return recorded["reasons"]
    return None
