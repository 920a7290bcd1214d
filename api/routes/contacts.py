"""The contact registry API: settings, CRUD, search, addresses, contact points, identification
media and their lookup, activity feed, audit trail and the GDPR actions."""

import re
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import delete, exists, func, insert, not_, or_, select
from sqlalchemy.exc import IntegrityError

from api import kyc_profiles, withdrawals
from api.changes import commit_settings_change
from api.deps import (
    ActorDep,
    AppState,
    ChangingRegistryDep,
    ClientDep,
    NoBody,
    ReadsDep,
    RegistryDep,
    SessionDep,
    StateDep,
)
from api.errors import ERROR_RESPONSES, FieldProblems, error_response
from api.idempotency import REPLAYED, IdempotencyDep
from api.lost_journeys import end_lost_journeys_of
from api.routes.purposes import named_purpose
from api.schemas import MAX_INT4, FieldError, Instant
from contacts import audit, feed, gdpr, histories, registry
from contacts.audit import Actor
from contacts.registry import Registry
from contacts.schemas import (
    ActivityPage,
    AddressIn,
    AddressOut,
    AuditEntryOut,
    AuditPage,
    ConflictBody,
    ContactCreate,
    ContactOut,
    ContactPage,
    ContactPointIn,
    ContactSettingsChangeOut,
    ContactSettingsChangePage,
    ContactSettingsIn,
    ContactUpdate,
    MediumIn,
)
from core.vocabulary import (
    MARKETING_KINDS,
    ActorType,
    AuditAction,
    Channel,
    EventType,
    MediumKind,
    VerificationState,
)
from db import consents, crud
from db.models import (
    POINT_IN_USE,
    AuditEntry,
    Contact,
    ContactAddress,
    ContactIdentityKey,
    ContactLabel,
    ContactPoint,
    ContactSettings,
    ContactSettingsChange,
    Purpose,
)
from messaging.phone import PhoneNumberError, parse_phone

CONFLICT = {409: {"model": ConflictBody,
                  "description": "Same contact exists, or refused by a rule"}}
# Audit entries have 32-bit integer ids; a larger cursor is a 422, not a database error.
AUDIT_ID_MAX = 2**31 - 1

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], responses=ERROR_RESPONSES | CONFLICT)
settings_router = APIRouter(prefix="/v1/contact-settings", tags=["contacts"],
                            responses=ERROR_RESPONSES | CONFLICT)
audit_router = APIRouter(prefix="/v1/audit", tags=["contacts"], responses=ERROR_RESPONSES)



M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def validated(model: type[M], raw: Any, reg: Registry) -> M:
    """Validates with the client's settings (phone region), reporting fields like FastAPI does."""
    try:
        return model.model_validate(raw, context=reg.context)
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from err


def documented(model: type[BaseModel], *, whole: bool = False) -> dict[str, Any]:
    """OpenAPI of a body validated by hand (with the client's phone region): the model's own
    schema, its definitions inlined; `whole` when every field must be given (a PUT)."""
    schema = model.model_json_schema()
    if whole:
        schema["required"] = list(schema["properties"])
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": inline(schema)}}}}


def duplicate_response(dup: registry.Duplicate) -> JSONResponse:
    body = ConflictBody(error=ConflictBody.Error(
        code="duplicate_contact", message=f"contact {dup.contact.id} already exists ({dup.reason})",
        existing_contact_id=dup.contact.id, existing_external_id=dup.contact.external_id))
    return JSONResponse(body.model_dump(mode="json"), status_code=409)


def refusal(code: str, message: str, fields: list[FieldError] | None = None) -> JSONResponse:
    return error_response(409, code, message, fields)


async def applied(session: SessionDep, change: Awaitable[T]
                  ) -> tuple[T | None, JSONResponse | None]:
    """Runs a registry change and commits it; the registry's refusals become 422/409 bodies."""
    try:
        result = await change
        await session.commit()
    except registry.Invalid as err:
        return None, error_response(422, "validation_error", "not acceptable", err.fields)
    except registry.Duplicate as dup:
        return None, duplicate_response(dup)
    except IntegrityError as err:
        if not crud.collided(err):
            raise
        await session.rollback()
        return None, refusal("conflict", "a concurrent change conflicts with this one; retry")
    return result, None


async def contact_or_404(session: SessionDep, reg: Registry, contact_id: uuid.UUID,
                         for_update: bool = False) -> Contact:
    contact = await registry.contact_of(session, client_id=reg.client_id, contact_id=contact_id,
                                        for_update=for_update)
    if contact is None:
        raise HTTPException(404, "contact not found")
    return contact


async def writable(session: SessionDep, reg: Registry, contact_id: uuid.UUID) -> Contact:
    contact = await contact_or_404(session, reg, contact_id, for_update=True)
    if contact.anonymised_at is not None:
        raise HTTPException(409, "contact is anonymised; it can no longer be changed")
    return contact


async def one_out(session: SessionDep, reg: Registry, contact: Contact) -> ContactOut:
    [out] = await registry.outputs(session, reg, [contact])
    return out


# --- settings ----------------------------------------------------------------------------------


@settings_router.get("", response_model=ContactSettingsIn)
async def get_settings(reg: RegistryDep) -> ContactSettingsIn:
    return reg.settings


@settings_router.put("", response_model=ContactSettingsIn,
                    openapi_extra=documented(ContactSettingsIn, whole=True))
async def put_settings(
    reg: ChangingRegistryDep, session: SessionDep, state: StateDep, actor: ActorDep,
    body: Annotated[dict[str, Any], Body(description="Every field of ContactSettingsIn")],
) -> ContactSettingsIn | JSONResponse:
    """Replaces the whole document, so every field must be given (null leaves a rule unset or
    retention off): a field left out is a 422, never a reset to its default. PATCH changes
    only the fields it names."""
    missing = [field for field in ContactSettingsIn.model_fields if field not in body]
    if missing:
        raise FieldProblems([FieldError(
            field=field, message="required: PUT replaces all contact settings; give this field "
            "(its current value is in GET /v1/contact-settings), or use PATCH to change only "
            "some") for field in missing])
    return await save_settings(session, state, reg, validated(ContactSettingsIn, body, reg),
                               actor)


@settings_router.patch("", response_model=ContactSettingsIn,
                      openapi_extra=documented(ContactSettingsIn))
async def patch_settings(
    reg: ChangingRegistryDep, session: SessionDep, state: StateDep, actor: ActorDep,
    body: Annotated[dict[str, Any], Body(description="Some fields of ContactSettingsIn")],
) -> ContactSettingsIn | JSONResponse:
    """Changes the fields given and keeps the others; null clears a rule or retention."""
    merged = {**reg.settings.model_dump(mode="json"), **body}
    return await save_settings(session, state, reg, validated(ContactSettingsIn, merged, reg),
                               actor)


async def save_settings(session: SessionDep, state: AppState, reg: Registry,
                        settings: ContactSettingsIn, actor: Actor
                        ) -> ContactSettingsIn | JSONResponse:
    """Changing a uniqueness rule re-keys every contact; refused if existing contacts would then
    be duplicates of each other. A change is kept with who made it and announced as
    `contact_settings.updated` (a change that changes nothing leaves no trace)."""
    new = Registry(client_id=reg.client_id, settings=settings, secret_key=reg.secret_key)
    row = await session.get(ContactSettings, reg.client_id)  # read, and locked, by `reg`
    values = settings.model_dump(mode="json")
    if row is None:
        session.add(ContactSettings(client_id=reg.client_id, **values))
    else:
        for field, value in values.items():
            setattr(row, field, value)
    if new.rules != reg.rules:
        clash = await rekey(session, new)
        if clash:
            await session.rollback()
            return refusal("rule_conflict", "existing contacts are duplicates under this rule",
                           [FieldError(field=f"{kind}_rule", message=f"contacts {a} and {b} match")
                            for kind, a, b in clash[:20]])
    await commit_settings_change(
        session, state, ContactSettingsChange(
            client_id=reg.client_id, actor_type=actor.type, actor_id=actor.id,
            changes=crud.changed_settings(reg.settings.model_dump(mode="json"), values)),
        type=EventType.contact_settings_updated, data={})
    return settings


@settings_router.get("/changes", response_model=ContactSettingsChangePage)
async def settings_changes(
    client: ClientDep, session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: int | None = Query(None, ge=0, le=MAX_INT4,
                               description="next_cursor of the previous page"),
) -> ContactSettingsChangePage:
    """Every change of the contact settings, oldest first: when, by whom (the API key), and the
    old and new value of each setting it changed (e.g. retention switched on or off)."""
    changes, next_cursor = await crud.settings_changes(
        session, ContactSettingsChange, ContactSettingsChange.client_id == client.id,
        after=cursor, limit=limit)
    return ContactSettingsChangePage(items=[ContactSettingsChangeOut.of(c) for c in changes],
                                     next_cursor=next_cursor)


async def rekey(session: SessionDep, reg: Registry) -> list[tuple[str, uuid.UUID, uuid.UUID]]:
    """Recomputes every contact's identity keys; returns pairs of contacts that would clash,
    with the kind (person, company) whose rule makes them clash."""
    owners: dict[str, uuid.UUID] = {}
    clash: list[tuple[str, uuid.UUID, uuid.UUID]] = []
    points: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for cid, kind, value in await session.execute(
            select(ContactPoint.contact_id, ContactPoint.kind, ContactPoint.value)
            .where(ContactPoint.client_id == reg.client_id, crud.POINT_IN_USE)
            .order_by(ContactPoint.created_at)):
        points.setdefault(cid, []).append((kind, value))
    rows = []
    for contact in await session.scalars(select(Contact).where(
            Contact.client_id == reg.client_id, Contact.anonymised_at.is_(None))):
        values = registry.rule_values(registry.contact_scalars(contact),
                                      points.get(contact.id, []), contact.external_id)
        for key in reg.identity_keys(contact.kind, values):
            if key in owners:
                clash.append((contact.kind, owners[key], contact.id))
            owners[key] = contact.id
            rows.append({"client_id": reg.client_id, "key": key, "contact_id": contact.id})
    if not clash:
        await session.execute(delete(ContactIdentityKey).where(
            ContactIdentityKey.client_id == reg.client_id))
        if rows:
            await session.execute(insert(ContactIdentityKey), rows)
    return clash


# --- contacts ----------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContactOut,
             openapi_extra=documented(ContactCreate), responses={201: REPLAYED})
async def create_contact(
    reg: RegistryDep, session: SessionDep, actor: ActorDep, state: StateDep,
    response: Response, idempotency: IdempotencyDep,
    body: Annotated[dict[str, Any], Body(description="A ContactCreate object")],
) -> ContactOut | JSONResponse | dict[str, Any]:
    """Creates a person or company. The client's uniqueness rule decides whether it already
    exists: then 409 names the existing contact. Safe under concurrent creates. Sent again
    with its Idempotency-Key, it is answered as the first time, not with that 409 (within
    IDEMPOTENCY_KEY_RETENTION, a day by default, and until the contact is erased)."""
    data = validated(ContactCreate, body, reg)
    # As read, so a retry that spells the same contact otherwise still matches.
    if (first := await idempotency.replay(data.model_dump(mode="json"), response)) is not None:
        return first
    try:
        contact_id = await registry.create(session, reg, data, actor)
        contact = await session.get_one(Contact, contact_id)
        answer = await one_out(session, reg, contact)
        await idempotency.answered(answer, status.HTTP_201_CREATED, contact_id=contact_id)
        await session.commit()
    except registry.Invalid as err:
        return error_response(422, "validation_error", "contact is not acceptable", err.fields)
    except registry.Duplicate as dup:
        return duplicate_response(dup)
    except IntegrityError as err:
        if not crud.collided(err):
            raise
        # Lost a race with a concurrent create of the same contact: name the winner.
        await session.rollback()
        dup = await registry.find_duplicate(
            session, reg, keys=reg.identity_keys(data.kind, registry.rule_values(
                registry.scalars_of(data), [(p.kind, p.value) for p in data.contact_points],
                data.external_id)),
            external_id=data.external_id, media=data.identification_media)
        if dup is None:
            raise
        return duplicate_response(dup)
    # CRM.COM assigns a KYC profile as soon as a contact qualifies for one.
    await kyc_profiles.contact_changed(session, state.temporal, state.settings, contact=contact)
    return answer


@router.get("", response_model=ContactPage)
async def list_contacts(
    reg: RegistryDep, session: SessionDep, actor: ActorDep,
    tag: str | None = None, category: str | None = None,
    verification_state: VerificationState | None = Query(
        None, description="has an email/phone in this state"),
    consent_purpose: str | None = Query(
        None, max_length=100, description="with consent_granted: the decision that rules this "
        "purpose (a channel's newest, or a newer withdrawal on `any`), in consent_channel or, "
        "without it, in any one channel"),
    consent_granted: bool = True,
    consent_channel: Channel | None = None,
    updated_since: Instant | None = None,
    undeliverable: bool | None = Query(
        None, description="true: has an email, mobile or postal address a hard bounce marked "
        "undeliverable; false: has none"),
    q: str | None = Query(None, max_length=200, description=(
        "name, external id, email or phone number contains (any letter case; a phone number "
        "as written nationally or internationally)")),
    external_id: str | None = Query(None, max_length=200),
    include_anonymised: bool = False,
    limit: int = Query(100, ge=1, le=500),
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
) -> ContactPage:
    query = select(Contact).where(Contact.client_id == reg.client_id)
    for kind, value in (("tag", tag), ("category", category)):
        if value is not None:
            query = query.where(exists().where(
                ContactLabel.contact_id == Contact.id, ContactLabel.kind == kind,
                ContactLabel.value == value.strip().lower()))
    if verification_state is not None:
        query = query.where(exists().where(ContactPoint.contact_id == Contact.id,
                                           ContactPoint.removed_at.is_(None),
                                           ContactPoint.verification_state == verification_state))
    if consent_channel is not None and consent_purpose is None:
        raise FieldProblems([FieldError(field="consent_channel",
                                        message="filters with consent_purpose only: give both")])
    if consent_purpose is not None:
        purpose = await named_purpose(session, reg.client_id, consent_purpose, "consent_purpose")
        query = query.where(consents.decided(
            consent_purpose, consent_granted, [consent_channel] if consent_channel is not None
            else searched_channels(purpose)))
    if updated_since is not None:
        query = query.where(Contact.updated_at >= updated_since)
    if undeliverable is not None:
        bounced = or_(
            exists().where(ContactPoint.contact_id == Contact.id, POINT_IN_USE,
                           ContactPoint.undeliverable_since.is_not(None)),
            exists().where(ContactAddress.contact_id == Contact.id, ContactAddress.active,
                           ContactAddress.undeliverable_since.is_not(None)))
        query = query.where(bounced if undeliverable else not_(bounced))
    if q:
        query = query.where(matches(q, reg))
    if external_id is not None:
        # Kept without the blanks around it, as creation and enrolment keep it.
        query = query.where(Contact.external_id == external_id.strip())
    if not include_anonymised:
        query = query.where(Contact.anonymised_at.is_(None))
    if cursor is not None:
        query = query.where(Contact.id > cursor)
    contacts = list(await session.scalars(query.order_by(Contact.id).limit(limit + 1)))
    page = contacts[:limit]
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.read,
                       contact_ids=[c.id for c in page])
    items = await registry.outputs(session, reg, page)
    await session.commit()
    return ContactPage(items=items, next_cursor=str(page[-1].id) if len(contacts) > limit else None)


def searched_channels(purpose: Purpose) -> list[str]:
    """Where a search without `consent_channel` looks: a marketing consent is given per channel
    (a grant on `any` permits none, as at send time); other purposes, such as keeping the
    data, are decided on `any`."""
    if purpose.kind in MARKETING_KINDS:
        return list(consents.SENDING_CHANNELS)
    return [*consents.SENDING_CHANNELS, Channel.any]


LIKE_ESCAPE = "\\"
# What a phone number may be written with: "+31 (0)6-1234 5678", "06.12.34.56.78".
PHONE_TEXT = re.compile(r"[0-9+()\-./ ]*[0-9][0-9+()\-./ ]*")


def contains(text: str) -> str:
    """A LIKE pattern for text anywhere, its % and _ taken as they are, not as wildcards."""
    escaped = (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
               .replace("_", LIKE_ESCAPE + "_"))
    return f"%{escaped}%"


def matches(q: str, reg: Registry) -> Any:
    """Contacts whose name, external id, email or phone number (an email or mobile in use)
    contains `q`. Phone numbers are stored in E.164: a number written with spaces or dashes, or
    nationally (read in the client's default region), is compared as that."""
    fragments = [q]
    if PHONE_TEXT.fullmatch(q):
        fragments.append(re.sub(r"[^0-9+]", "", q))
        try:
            fragments.append(parse_phone(q, reg.settings.default_region, mobile=False))
        except PhoneNumberError:
            pass  # a part of a number: its digits are matched as they are
    own = (Contact.first_name, Contact.last_name, Contact.company_name, Contact.external_id)
    return or_(*(column.ilike(contains(q), escape=LIKE_ESCAPE) for column in own),
               exists().where(ContactPoint.contact_id == Contact.id, POINT_IN_USE, or_(*(
                   ContactPoint.value.ilike(contains(f), escape=LIKE_ESCAPE)
                   for f in dict.fromkeys(fragments)))))


@router.get("/lookup", response_model=ContactOut)
async def lookup_contact(reg: RegistryDep, session: SessionDep, actor: ActorDep,
                         kind: MediumKind, value: str = Query(min_length=1, max_length=320)
                         ) -> ContactOut:
    """Finds the contact a POS or other system knows by a card number (compared by keyed hash,
    never stored), phone, email or loyalty id."""
    medium = validated(MediumIn, {"kind": kind, "value": value}, reg)
    contact = await registry.lookup(session, reg, medium)
    if contact is None:
        raise HTTPException(404, "no contact with this identification medium")
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.lookup,
                       contact_ids=[contact.id], detail={"kind": kind})
    await session.commit()
    return await one_out(session, reg, contact)


@router.get("/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep,
                      actor: ActorDep, include_inactive_addresses: bool = False,
                      include_removed_points: bool = False) -> ContactOut:
    contact = await contact_or_404(session, reg, contact_id)
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.read,
                       contact_ids=[contact.id])
    await session.commit()
    [out] = await registry.outputs(session, reg, [contact],
                                   include_inactive=include_inactive_addresses,
                                   include_removed=include_removed_points)
    return out


@router.patch("/{contact_id}", response_model=ContactOut,
             openapi_extra=documented(ContactUpdate))
async def update_contact(
    contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep, actor: ActorDep,
    state: StateDep,
    body: Annotated[dict[str, Any], Body(description="A ContactUpdate object; null clears")],
) -> ContactOut | JSONResponse:
    data = validated(ContactUpdate, body, reg)
    contact = await writable(session, reg, contact_id)
    if problems := await kyc_profiles.numbers_kept(
            session, contact=contact, given=data.model_dump(exclude_unset=True)):
        return error_response(422, "validation_error", "not acceptable", problems)
    changed, refused = await applied(session, registry.update(session, reg, contact, data,
                                                               actor))
    if refused:
        return refused
    try:
        await kyc_profiles.registry_changed(session, state.temporal, state.settings,
                                            contact=contact, changed=set(changed or ()),
                                            actor=actor)
    except kyc_profiles.DocumentRejected as err:
        # The document's other field, brought into the registry, clashes with another contact.
        return error_response(err.status, "document_rejected", str(err), err.fields)
    return await one_out(session, reg, contact)


CANCEL_JOURNEYS = Query(False, description=(
    "true: first withdraw the contact's open journeys (each ends as cancelled by the client, "
    "reason `contact_erasure`, as POST /v1/journeys/{id}/cancel does), then erase"))


async def erasable(session: SessionDep, reg: Registry, state: StateDep, contact_id: uuid.UUID,
                   cancel_journeys: bool) -> Contact:
    """The contact, locked for its erasure, its lost journeys ended and, if asked, its open
    ones withdrawn; those are withdrawn before the lock, as a journey's end writes rows that
    wait for it. Raises gdpr.Blocked, withdrawing nothing, if another rule blocks."""
    if cancel_journeys:
        contact = await contact_or_404(session, reg, contact_id)
        # A withdrawn journey cannot be taken back: none is while another rule (a claim owed,
        # KYC documents under review) would refuse the erasure all the same.
        others = [(f, r) for f, r in await gdpr.blockers(session, contact) if f != "journeys"]
        if others:
            raise gdpr.Blocked(others)
        await withdrawals.cancel_open_journeys(session, state.temporal, state.endpoints,
                                               contact.id, withdrawals.FOR_ERASURE)
        await session.commit()
    contact = await contact_or_404(session, reg, contact_id, for_update=True)
    await end_lost_journeys_of(session, state.temporal, state.endpoints, contact.id)
    return contact


def blocked(code: str, err: gdpr.Blocked) -> JSONResponse:
    hint = (" (each open journey ends with POST /v1/journeys/{id}/cancel, or all of them with "
            "this call's ?cancel_journeys=true)"
            if any(field == "journeys" for field, _ in err.blocking) else "")
    return refusal(code, f"{err}{hint}",
                   [FieldError(field=field, message=r) for field, r in err.blocking])


@router.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, dependencies=[NoBody])
async def terminate_contact(contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep,
                            actor: ActorDep, state: StateDep,
                            cancel_journeys: bool = CANCEL_JOURNEYS) -> Response:
    """Terminates the contact: deletes it with everything that belongs to it (GDPR erasure).
    Refused while a journey of the contact is open, unless `cancel_journeys` withdraws them."""
    try:
        contact = await erasable(session, reg, state, contact_id, cancel_journeys)
        await gdpr.terminate(session, contact, actor, settings=state.settings)
    except gdpr.Blocked as err:
        return blocked("terminate_blocked", err)
    await session.commit()
    await histories.delete_at_once(state.temporal, contact_id, deleted=True)
    return Response(status_code=204)


@router.post("/{contact_id}/anonymise", response_model=ContactOut,
             dependencies=[NoBody])
async def anonymise_contact(contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep,
                            actor: ActorDep, state: StateDep,
                            cancel_journeys: bool = CANCEL_JOURNEYS) -> ContactOut | JSONResponse:
    """Irreversibly replaces the contact's personal data everywhere; refused with the reasons
    while a rule blocks it (an open journey, unless `cancel_journeys` withdraws them; KYC
    documents under review)."""
    try:
        contact = await erasable(session, reg, state, contact_id, cancel_journeys)
        await gdpr.anonymise(session, contact, actor, settings=state.settings)
    except gdpr.Blocked as err:
        return blocked("anonymisation_blocked", err)
    await session.commit()
    await histories.delete_at_once(state.temporal, contact.id, deleted=False)
    return await one_out(session, reg, contact)


Rows = list[dict[str, Any]]


class ContactExport(BaseModel):
    """The GDPR export: everything held about the contact, as one document. The sections whose
    rows are the stored records themselves are described by what they hold."""

    exported_at: Instant
    contact: ContactOut = Field(description="As GET shows it, with inactive addresses and "
                                            "removed contact points")
    consents: Rows = Field(description="The consent ledger, oldest first: each decision with "
                                       "its purpose, channel, legal text (language, version, "
                                       "hash), source, when given, IP address and user agent")
    consent_displays: Rows = Field(description="Every consent text shown to the contact: what, "
                                               "where, when, IP address and user agent")
    gdpr_consent: dict[str, Any] = Field(description="The GDPR consent state, what blocks the "
                                                     "contact's anonymisation, and the signed "
                                                     "forms by reference (`download`)")
    journeys: Rows = Field(description="Each journey with its history (`events`)")
    messages: Rows = Field(description="The journeys' messages: channel, template, recipient, "
                                       "status, when")
    client_messages: Rows = Field(description="The client's own messages to the contact")
    audit: Rows = Field(description="Who read or changed the contact's data, and when")
    webhook_events: Rows = Field(description="The webhook events about the contact, as sent, "
                                             "with their deliveries")
    kyc: dict[str, Any] = Field(description="The KYC profile, its documents (never their "
                                            "files) and its history")


@router.get("/{contact_id}/export", responses={200: {
    "model": ContactExport, "description": "The contact's data, as an attachment"}})
async def export_contact(contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep,
                         actor: ActorDep) -> JSONResponse:
    """Everything about the contact as one JSON document (GDPR access and portability)."""
    contact = await contact_or_404(session, reg, contact_id)
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.export,
                       contact_ids=[contact.id])
    await session.commit()
    document = await gdpr.export_document(session, reg, contact)
    return JSONResponse(document, headers={
        "Content-Disposition": f'attachment; filename="contact-{contact.id}.json"'})


@router.get("/{contact_id}/activity", response_model=ActivityPage)
async def contact_activity(
    contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep, actor: ActorDep,
    type: list[Literal["journey", "message", "consent", "data", "kyc"]] | None = Query(None),
    since: Instant | None = None, limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=200,
                               description="next_cursor of the previous page"),
) -> ActivityPage:
    """The contact's business events, oldest first, a page at a time."""
    try:
        after = feed.decode_cursor(cursor) if cursor is not None else None
    except feed.BadCursor as err:
        raise FieldProblems([FieldError(field="cursor", message=str(err))]) from err
    contact = await contact_or_404(session, reg, contact_id)
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.read,
                       contact_ids=[contact.id], detail={"view": "activity"})
    await session.commit()
    items, last = await feed.feed(session, contact, types=type, since=since, after=after,
                                  limit=limit)
    return ActivityPage(items=items, next_cursor=last and feed.encode_cursor(last))


# A trail's page is `<last id>` or, read on from a first page, `<last id>.<newest id then>`.
AUDIT_CURSOR = Query(None, max_length=30, pattern=r"^[0-9]+(\.[0-9]+)?$",
                     description="next_cursor of the previous page")


@router.get("/{contact_id}/audit", response_model=AuditPage)
async def contact_audit(
    contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep, reads: ReadsDep,
    limit: int = Query(100, ge=1, le=1000), cursor: str | None = AUDIT_CURSOR,
) -> AuditPage:
    """The contact's audit trail, oldest first. Reading it is itself a read of the contact
    (old and new values): recorded after the page is taken, so a page never lists its own
    read; read on with `next_cursor`, the trail is listed as it stood at the first page, and
    the walk's own reads come in the next one."""
    after, until = audit_cursor(cursor)
    await contact_or_404(session, reg, contact_id)
    page = await audit_page(session, reg, AuditEntry.contact_id == contact_id, limit, after,
                            until)
    await reads.of([contact_id])
    return page


def audit_cursor(cursor: str | None) -> tuple[int | None, int | None]:
    if cursor is None:
        return None, None
    after, _, until = cursor.partition(".")
    bounds = int(after), int(until) if until else None
    if any(b is not None and b > AUDIT_ID_MAX for b in bounds):
        raise FieldProblems([FieldError(field="cursor", message="not a next_cursor of this "
                                        "trail; start again without a cursor")])
    return bounds


async def audit_page(session: SessionDep, reg: Registry, condition: Any, limit: int,
                     after: int | None, until: int | None) -> AuditPage:
    """A page of the trail after `after`, up to entry `until` (on a first page, the newest
    there is: its own read, recorded after it, comes later)."""
    if until is None:
        until = await session.scalar(select(func.max(AuditEntry.id))) or 0
    query = select(AuditEntry).where(AuditEntry.client_id == reg.client_id, condition,
                                     AuditEntry.id <= until)
    if after is not None:
        query = query.where(AuditEntry.id > after)
    entries = list(await session.scalars(query.order_by(AuditEntry.id).limit(limit + 1)))
    page = entries[:limit]
    return AuditPage(items=[AuditEntryOut.model_validate(e, from_attributes=True) for e in page],
                     next_cursor=f"{page[-1].id}.{until}" if len(entries) > limit
                     else None)


@audit_router.get("", response_model=AuditPage)
async def audit_by_actor(
    reg: RegistryDep, session: SessionDep, reads: ReadsDep, actor_type: ActorType,
    actor_id: str = Query(max_length=100), limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = AUDIT_CURSOR,
) -> AuditPage:
    """What one actor (an API key, a customer's journey) read or changed. Reading it is a read
    of each contact on the page, recorded as the contact's trail records it."""
    after, until = audit_cursor(cursor)
    page = await audit_page(session, reg, (AuditEntry.actor_type == actor_type)
                            & (AuditEntry.actor_id == actor_id), limit, after, until)
    await reads.of(e.contact_id for e in page.items if e.contact_id is not None)
    return page


# --- addresses, contact points, identification media --------------------------------------------


@router.post("/{contact_id}/addresses", status_code=status.HTTP_201_CREATED,
             response_model=AddressOut)
async def add_address(contact_id: uuid.UUID, body: AddressIn, reg: RegistryDep,
                      session: SessionDep, actor: ActorDep) -> AddressOut | JSONResponse:
    """Adds an address; an active address of the same type is deactivated (and kept)."""
    contact = await writable(session, reg, contact_id)
    address, refused = await applied(session, registry.add_address(session, reg, contact, body,
                                                                   actor))
    return refused or registry.address_out(address)


@router.post("/{contact_id}/addresses/{address_id}/{action}", response_model=AddressOut,
             dependencies=[NoBody])
async def change_address(
    contact_id: uuid.UUID, address_id: uuid.UUID,
    action: Literal["deactivate", "activate", "primary"],
    reg: RegistryDep, session: SessionDep, actor: ActorDep,
) -> AddressOut | JSONResponse:
    """Deactivate (kept for history), activate again (the current one of its type steps down),
    or make primary (must be active)."""
    contact = await writable(session, reg, contact_id)
    address = await session.get(ContactAddress, address_id)
    if address is None or address.contact_id != contact.id:
        raise HTTPException(404, "address not found")
    try:
        await registry.change_address(session, reg, contact, address, action, actor)
    except registry.Invalid as err:
        return refusal("address_rule", err.fields[0].message, err.fields)
    await session.commit()
    return registry.address_out(address)


@router.post("/{contact_id}/contact-points", status_code=status.HTTP_201_CREATED,
             response_model=ContactOut, openapi_extra=documented(ContactPointIn))
async def add_contact_point(
    contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep, actor: ActorDep,
    body: Annotated[dict[str, Any], Body(description="A ContactPointIn object")],
) -> ContactOut | JSONResponse:
    """Adds an email or mobile number. One the contact has (an email in any letter case) is
    the same point: given again after it was removed or bounced, it is written to again."""
    point = validated(ContactPointIn, body, reg)
    contact = await writable(session, reg, contact_id)
    _, refused = await applied(session, registry.add_point(
        session, reg, contact, point.kind, point.value, point.label, actor))
    return refused or await one_out(session, reg, contact)


@router.delete("/{contact_id}/contact-points/{point_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, dependencies=[NoBody])
async def remove_contact_point(contact_id: uuid.UUID, point_id: uuid.UUID, reg: RegistryDep,
                               session: SessionDep, actor: ActorDep) -> Response:
    """Removes an email or mobile number: no message goes there any more. It is kept, with
    when it was removed, in the audit trail and `?include_removed_points=true`."""
    contact = await writable(session, reg, contact_id)
    point = await session.get(ContactPoint, point_id)
    if point is None or point.contact_id != contact.id:
        raise HTTPException(404, "contact point not found")
    _, refused = await applied(session, registry.remove_point(session, reg, contact, point,
                                                              actor))
    return refused or Response(status_code=204)


@router.post("/{contact_id}/identification-media", status_code=status.HTTP_201_CREATED,
             response_model=ContactOut, openapi_extra=documented(MediumIn))
async def add_identification_medium(
    contact_id: uuid.UUID, reg: RegistryDep, session: SessionDep, actor: ActorDep,
    body: Annotated[dict[str, Any], Body(description="A MediumIn object")],
) -> ContactOut | JSONResponse:
    medium = validated(MediumIn, body, reg)
    contact = await writable(session, reg, contact_id)
    _, refused = await applied(session, registry.add_medium(session, reg, contact, medium, actor))
    return refused or await one_out(session, reg, contact)
