"""A contact's consents through the client API: the ledger, current preferences, a receipt,
back-office changes, import of historical decisions, and inbound SMS STOP/START."""

import hashlib
import re
import unicodedata
import uuid
from urllib.parse import quote
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select

from api.consent_schemas import (
    MAX_DOCUMENT_BYTES,
    ConsentChange,
    ConsentDocumentOut,
    ConsentChanges,
    ConsentEventOut,
    ConsentImport,
    ConsentImportItem,
    GdprConsentChange,
    GdprConsentOut,
    InboundSms,
    Preference,
)
from api.deps import ClientDep, ReadsDep, RegistryDep, SessionDep, StateDep
from api.errors import (
    ERROR_RESPONSES,
    EnrolRefused,
    ErrorBody,
    FieldProblems,
    error_response,
    item_errors,
    none_acceptable,
)
from api.schemas import EnrolItemResult, EnrolResponse, FieldError
from contacts import gdpr, suppression
from core.vocabulary import (
    MARKETING_KINDS,
    Channel,
    ConsentSource,
    GdprConsentState,
    PurposeKind,
)
from db import consents
from db.models import Client, ConsentDocument, Contact, ContactPoint
from messaging.phone import PhoneNumberError, provider_number

router = APIRouter(prefix="/v1", tags=["consent"], responses=ERROR_RESPONSES)


async def contact_of(session, client_id: uuid.UUID, contact_id: uuid.UUID, *,
                     to_decide: bool = False) -> Contact:
    """`to_decide`: the contact as it stands once its other decisions and its erasure are done,
    locked until this one commits (consents.append takes the same lock): what is decided from
    it (anonymised? is this answer the newest?) must not be read before they commit."""
    contact = await session.get(Contact, contact_id, populate_existing=to_decide,
                                with_for_update=consents.DECIDING if to_decide else None)
    if contact is None or contact.client_id != client_id:
        raise HTTPException(404, "contact not found")
    return contact


# Nothing of the person is kept to consent about: a decision recorded for it would be nobody's.
ANONYMISED = ("the contact is anonymised, so no consent can be recorded for it; a person who "
              "comes back is a new contact")


def event_out(e) -> ConsentEventOut:
    d = consents.event_as_dict(e)
    return ConsentEventOut(**{k: d[k] for k in ConsentEventOut.model_fields})


@router.get("/contacts/{contact_id}/consents", response_model=list[ConsentEventOut])
async def read_ledger(contact_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      reads: ReadsDep):
    """Every consent decision of the contact, in the order the customer made them."""
    await contact_of(session, client.id, contact_id)
    await reads.of([contact_id])
    return [event_out(e) for e in await consents.ledger(session, contact_id=contact_id)]


@router.get("/contacts/{contact_id}/preferences", response_model=list[Preference])
async def read_preferences(contact_id: uuid.UUID, client: ClientDep, session: SessionDep,
                           reads: ReadsDep):
    await contact_of(session, client.id, contact_id)
    await reads.of([contact_id])
    ruling = consents.ruling(await consents.preferences(session, contact_id=contact_id))
    return [Preference(purpose=p, channel=c, granted=e.granted, since=e.given_at, source=e.source)
            for (p, c), e in sorted(ruling.items())]


@router.get("/contacts/{contact_id}/consent-receipt")
async def consent_receipt(contact_id: uuid.UUID, client: ClientDep,
                          session: SessionDep, reads: ReadsDep) -> dict[str, Any]:
    """A self-contained record: for each purpose and channel the decision that rules it (as
    `/preferences`: a withdrawal on `any` may rule a channel, `decision_channel` then says
    `any`) with the exact text, its hash, the times, source, IP and user agent, plus the full
    history behind it."""
    contact = await contact_of(session, client.id, contact_id)
    await reads.of([contact_id])
    events = await consents.ledger(session, contact_id=contact_id)
    ruling = consents.ruling(consents.current(events))
    return {
        "receipt_issued_at": datetime.now(UTC).isoformat(),
        "controller": {"id": str(client.id), "name": client.name},
        "contact": {"id": str(contact.id), "external_id": contact.external_id},
        "current": [{**consents.event_as_dict(e), "channel": c, "decision_channel": e.channel}
                    for (_, c), e in sorted(ruling.items())],
        "history": [consents.event_as_dict(e) for e in events],
    }


async def decisions_for(session, client: Client, contact: Contact, changes: list[ConsentChange],
                        secret_key: str, *, prefix: str | None, gdpr_form: bool = False
                        ) -> list[consents.Decision]:
    """The changes as ledger decisions; field errors name `prefix[i].field`, or the bare field
    without a prefix (an import reports each item's errors by its own index, a GDPR consent
    has its fields at the top). No default: each caller names its request's own fields. A
    data_processing purpose is the GDPR consent form's, answered only as `gdpr_form`."""
    purposes = await consents.purposes_by_key(session, client_id=client.id)
    problems, decisions = [], []
    for i, change in enumerate(changes):
        def field(name: str, i: int = i) -> str:
            return f"{prefix}[{i}].{name}" if prefix else name
        if change.purpose not in purposes:
            problems.append(FieldError(field=field("purpose"),
                                       message=f"unknown purpose {change.purpose!r}"))
            continue
        if purposes[change.purpose].kind == PurposeKind.data_processing and not gdpr_form:
            # In the ledger alone it would leave the contact's GDPR state, and what follows
            # from it (anonymisation, no messages), as if nothing had been answered.
            problems.append(FieldError(field=field("purpose"), message=(
                f"{change.purpose!r} is the GDPR consent form's: record its answer with "
                "POST /v1/contacts/{id}/gdpr-consent")))
            continue
        text = await consents.legal_text(
            session, client_id=client.id, purpose_key=change.purpose,
            language=change.legal_text.language, version=change.legal_text.version)
        if text is None:
            problems.append(FieldError(
                field=field("legal_text"),
                message=f"no legal text for {change.purpose!r} in {change.legal_text.language!r}"
                        + (f" version {change.legal_text.version!r}"
                           if change.legal_text.version else "")))
            continue
        if change.granted and purposes[change.purpose].kind in MARKETING_KINDS:
            erased = await suppression.of_contact(
                session, secret_key=secret_key, client_id=client.id, contact_id=contact.id,
                channel=change.channel)
            # The client's word cannot bring an erased person back into marketing; the
            # customer's own opt-in on our page can.
            if erased is not None:
                problems.append(FieldError(field=field("granted"),
                                           message=suppression.describe(erased)))
                continue
        decisions.append(consents.Decision(
            purpose=change.purpose, channel=change.channel, granted=change.granted,
            given_at=change.given_at, source=change.source, text=text, ip=change.ip,
            user_agent=change.user_agent, actor=change.actor, shown_in=change.source))
    if problems:
        raise FieldProblems(problems)
    return decisions


@router.post("/contacts/{contact_id}/consents", status_code=status.HTTP_201_CREATED,
             response_model=list[ConsentEventOut],
             responses={409: {"model": ErrorBody,
                              "description": "The contact is anonymised (contact_anonymised)"}})
async def record_changes(contact_id: uuid.UUID, body: ConsentChanges, client: ClientDep,
                         session: SessionDep, state: StateDep):
    """Decisions the customer made with the client (back office, call centre, own systems).
    `given_at` is when the customer decided; it may be earlier than now, never later."""
    contact = await contact_of(session, client.id, contact_id, to_decide=True)
    if contact.anonymised_at is not None:
        return error_response(409, "contact_anonymised", ANONYMISED)
    decisions = await decisions_for(session, client, contact, body.changes,
                                    state.settings.secret_key.get_secret_value(),
                                    prefix="changes")
    events, endpoints = await consents.record(session, contact=contact,
                                                      decisions=decisions)
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "consent changed")
    return [event_out(e) for e in events]


@router.post("/consents/import", status_code=status.HTTP_202_ACCEPTED,
             response_model=EnrolResponse,
             responses={422: {"model": EnrolRefused | ErrorBody,
                              "description": "Validation failed, or no item was acceptable"}})
async def import_consents(body: ConsentImport, client: ClientDep, session: SessionDep,
                          state: StateDep) -> EnrolResponse | JSONResponse:
    """Historical decisions with their original times, by the contact's external id. Bad items
    are reported by index; good ones are kept. An imported decision that becomes the one
    deciding its purpose and channel raises `consent.changed`; older ones are history."""
    results: list[EnrolItemResult] = []
    imported: dict[uuid.UUID, tuple[Contact, list]] = {}
    for index, raw in enumerate(body.items):
        try:
            item = ConsentImportItem.model_validate(raw)
            contact = (await session.scalars(select(Contact).where(
                Contact.client_id == client.id, Contact.external_id == item.external_id)
                .with_for_update(**consents.DECIDING)
                .execution_options(populate_existing=True))).one_or_none()
            if contact is None or contact.anonymised_at is not None:
                raise FieldProblems([FieldError(field="external_id", message=ANONYMISED
                                                if contact else "unknown contact")])
            decisions = await decisions_for(session, client, contact, [item],
                                            state.settings.secret_key.get_secret_value(),
                                            prefix=None)
        except ValidationError as err:
            given = raw.get("external_id") if isinstance(raw, dict) else None
            results.append(EnrolItemResult(
                index=index, status="rejected", errors=item_errors(err),
                external_id=given if isinstance(given, str) else None))
            continue
        except FieldProblems as err:
            results.append(EnrolItemResult(index=index, status="rejected",
                                           external_id=item.external_id, errors=err.fields))
            continue
        imported.setdefault(contact.id, (contact, []))[1].extend(await consents.append(
            session, client_id=client.id, contact_id=contact.id, decisions=decisions))
        results.append(EnrolItemResult(index=index, status="accepted",
                                       external_id=item.external_id, contact_id=contact.id))
    rejected = sum(r.status == "rejected" for r in results)
    response = EnrolResponse(accepted=len(results) - rejected, rejected=rejected, results=results)
    if not imported:
        return none_acceptable(response, items="items", code="no_acceptable_item",
                               message="no item of this import was acceptable; fix the items "
                                       "the fields name and send them again")
    endpoints: list[str] = []
    for contact, events in imported.values():
        endpoints += await consents.announce(session, contact=contact, events=events,
                                             only_current=True)
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "consent changed")
    return response


STOP_WORDS = {"STOP", "STOPP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "AFMELDEN",
              "ABMELDEN", "ABBESTELLEN"}
START_WORDS = {"START", "UNSTOP", "SUBSCRIBE", "AANMELDEN", "ANMELDEN"}


def sms_keyword(text: str) -> str | None:
    """The STOP or START word a reply says, as handsets send it: autocorrected ("Stop."),
    quoted, full-width, with an invisible character or an emoji after it.

    A STOP word counts as the reply's first word too ("Stop please"): a withdrawal read into a
    reply errs on the customer's side. START must be the whole reply, so that no sentence
    ("Start date?") grants anything back."""
    normal = "".join(ch for ch in unicodedata.normalize("NFKC", text)
                     if unicodedata.category(ch) != "Cf")
    words = re.sub(r"[\W_]+", " ", normal).upper().split()
    whole = "".join(words)
    if whole in STOP_WORDS | START_WORDS:
        return whole
    if words and words[0] in STOP_WORDS:
        return words[0]
    return None


@router.post("/inbound/sms", status_code=status.HTTP_200_OK)
async def inbound_sms(body: InboundSms, client: ClientDep, session: SessionDep,
                      state: StateDep, reg: RegistryDep) -> dict[str, Any]:
    """Called by the client's SMS provider for replies. STOP withdraws every marketing consent
    by SMS of whoever verified that number; START grants those STOP withdrew back."""
    word = sms_keyword(body.text)
    if word is None:
        return {"action": "ignored", "contacts": 0}
    try:
        number = provider_number(body.sender, reg.settings.default_region)
    except PhoneNumberError:
        raise FieldProblems([FieldError(field="from", message="not a phone number")]) from None
    # A provider whose clock runs ahead must neither lose a STOP nor date it in the future,
    # where it would outrank every later decision.
    now = datetime.now(UTC)
    at = min(body.received_at or now, now)
    contacts = (await session.scalars(select(Contact).join(
        ContactPoint, ContactPoint.contact_id == Contact.id).where(
        Contact.client_id == client.id, ContactPoint.kind == "mobile",
        ContactPoint.value == number))).unique().all()
    purposes = await consents.purposes_by_key(session, client_id=client.id)
    marketing = [k for k, p in purposes.items() if p.kind in MARKETING_KINDS]
    endpoints: list[str] = []
    for contact in contacts:
        current = await consents.preferences(session, contact_id=contact.id)
        texts = await consents.texts_for_purposes(
            session, client_id=client.id, language=contact.language,
            fallback=client.default_language, decided=current)
        granted = word in START_WORDS
        decisions = [
            consents.Decision(purpose=p, channel=Channel.sms, granted=granted, given_at=at,
                              source=ConsentSource.sms_keyword, text=texts[p],
                              shown_in=f"sms:{word}")
            for p in marketing if p in texts and consents.changed(
                current, p, Channel.sms, granted)
            # START restores only what a STOP took (not a withdrawal on every channel since);
            # it never opts anyone into something new.
            and (not granted or getattr(consents.governing(current, p, Channel.sms), "source",
                                        None) == ConsentSource.sms_keyword)]
        endpoints += (await consents.record(session, contact=contact,
                                                    decisions=decisions))[1]
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "consent changed")
    return {"action": "stop" if word in STOP_WORDS else "start", "contacts": len(contacts)}




async def gdpr_out(session, contact: Contact) -> GdprConsentOut:
    blocked = await gdpr.blocked_anonymisation(session, contact)
    documents = await session.scalars(select(ConsentDocument).where(
        ConsentDocument.contact_id == contact.id).order_by(ConsentDocument.created_at))
    return GdprConsentOut(state=contact.gdpr_consent_state,
                          updated_at=contact.gdpr_consent_updated_at,
                          anonymised=contact.anonymised_at is not None,
                          anonymisation_blocked=blocked,
                          documents=[ConsentDocumentOut.model_validate(d, from_attributes=True)
                                     for d in documents])


@router.get("/contacts/{contact_id}/gdpr-consent", response_model=GdprConsentOut)
async def read_gdpr_consent(contact_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            reads: ReadsDep):
    contact = await contact_of(session, client.id, contact_id)
    await reads.of([contact_id])
    return await gdpr_out(session, contact)


@router.post("/contacts/{contact_id}/gdpr-consent", response_model=GdprConsentOut,
             responses={409: {"model": ErrorBody, "description": "Nothing to withdraw, or the "
                              "contact is anonymised (contact_anonymised)"}})
async def record_gdpr_consent(contact_id: uuid.UUID, body: GdprConsentChange, client: ClientDep,
                              session: SessionDep, state: StateDep, request: Request):
    """Records the contact's answer to the consent form, optionally with their own signed
    form (PDF/PNG/JPEG, at most 5 MB). Withdrawn needs a previous acceptance."""
    contact = await contact_of(session, client.id, contact_id, to_decide=True)
    if contact.anonymised_at is not None:
        # An `accepted` would read as kept, too.
        return error_response(409, "contact_anonymised", ANONYMISED)
    purposes = await consents.purposes_by_key(session, client_id=client.id)
    purpose = purposes.get(body.purpose)
    if purpose is None or purpose.kind != PurposeKind.data_processing:
        raise FieldProblems([FieldError(field="purpose",
                                        message="not a data_processing purpose of yours")])
    content = None
    if body.document is not None:
        try:
            content = body.document.content()
        except ValueError as err:
            raise FieldProblems([FieldError(field="document.content_base64",
                                            message=str(err))]) from None
        if len(content) > MAX_DOCUMENT_BYTES:
            raise FieldProblems([FieldError(field="document.content_base64",
                                            message="larger than 5 MB")])
    # A decision older than the contact's current state (arriving late, e.g. from paper) goes
    # into the ledger as history; it must not undo a newer answer, let alone anonymise.
    newest = (contact.gdpr_consent_updated_at is None
              or body.given_at >= contact.gdpr_consent_updated_at)
    if newest and body.state == GdprConsentState.withdrawn and (
            contact.gdpr_consent_state != GdprConsentState.accepted):
        raise HTTPException(409, f"consent is {contact.gdpr_consent_state}: nothing to withdraw")
    [decision] = await decisions_for(session, client, contact, [ConsentChange(
        purpose=body.purpose, channel=Channel.any, granted=body.state == "accepted",
        given_at=body.given_at, source=body.source, legal_text=body.legal_text,
        actor=body.actor)], state.settings.secret_key.get_secret_value(), prefix=None,
        gdpr_form=True)
    events, endpoints = await consents.record(session, contact=contact, decisions=[decision])
    if newest:
        contact.gdpr_consent_state = body.state
        contact.gdpr_consent_updated_at = body.given_at
    if content is not None:
        digest = hashlib.sha256(content).hexdigest()
        # The same decision posted again is that one ledger entry, with its one form.
        kept = await session.scalar(select(ConsentDocument.sha256).where(
            ConsentDocument.consent_event_id == events[0].id))
        if kept is None:
            session.add(ConsentDocument(
                client_id=client.id, contact_id=contact.id, consent_event_id=events[0].id,
                filename=body.document.filename, content_type=body.document.content_type,
                sha256=digest, content=content))
        elif kept != digest:
            raise HTTPException(409, "this decision is recorded with another signed form")
    blocked = await gdpr.apply_consent_consequence(
        session, client, contact, request.state.actor, settings=state.settings) if newest else None
    if blocked:
        await gdpr.record_blocked(session, contact, request.state.actor, reasons=blocked,
                                  given_at=body.given_at)
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "consent changed")
    return await gdpr_out(session, contact)


@router.get("/contacts/{contact_id}/gdpr-consent/documents/{document_id}",
            response_class=Response, responses={
                200: {"content": {"application/pdf": {}}},
                410: {"model": ErrorBody, "description": "The contact was anonymised: its "
                      "consent documents were deleted"}})
async def read_consent_document(contact_id: uuid.UUID, document_id: uuid.UUID,
                                client: ClientDep, session: SessionDep,
                                reads: ReadsDep) -> Response:
    contact = await contact_of(session, client.id, contact_id)
    document = await session.get(ConsentDocument, document_id)
    if document is None or document.contact_id != contact_id:
        if contact.anonymised_at is not None:
            return error_response(410, "anonymised", "the contact was anonymised on "
                                  f"{contact.anonymised_at.date().isoformat()}: its consent "
                                  "documents were deleted; its consent decisions are kept")
        raise HTTPException(404, "document not found")
    await reads.of([contact_id])
    return Response(document.content, media_type=document.content_type,
                    headers={"Content-Disposition": attachment(document.filename)})


def attachment(filename: str) -> str:
    """A download's Content-Disposition for a name the client chose: an ASCII stand-in, and the
    name itself encoded (RFC 6266), so no character of it can end or extend the header."""
    plain = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
