"""KYC for clients: definitions, a contact's profile (assign, change, verify, refute), documents,
and the segment of profiles that expire soon with a batch notification to them."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Response, UploadFile, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api import kyc_profiles
from api.deps import (
    ActorDep,
    ClientDep,
    IdempotencyKeyHeader,
    NoBody,
    Reads,
    ReadsDep,
    SessionDep,
    StateDep,
)
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems, error_response
from api.kyc_profiles import ContactAnonymised, DocumentRejected
from api.routes.consents import attachment
from api.kyc_schemas import (
    KycAssignRequest,
    KycDefinitionCreate,
    KycDefinitionOut,
    KycDefinitionRef,
    KycDocumentOut,
    KycDocumentPatch,
    KycEventOut,
    KycExpiringPage,
    KycNotifyRequest,
    KycNotifyResponse,
    KycProfileOut,
    KycRefuteRequest,
)
from api.schemas import FieldError
from core.kyc_contracts import NotifyExpiringInput, RefuteKycInput, VerifyKycInput
from core.kyc_rules import level_conflicts, rules_of
from core.storage import LocalDirectoryStorage
from core.vocabulary import KYC_LIVE_STATES, DocumentType, ErrorType
from db import crud, kyc_crud
from db.kyc_models import KycDefinition, KycDocument, KycEvent, KycProfile
from db.models import Contact
from workflows.kyc import KycWorkflow

router = APIRouter(prefix="/v1/kyc", tags=["kyc"], responses={
    **ERROR_RESPONSES, 409: {"model": ErrorBody, "description": "Not allowed in this state"}})
UPLOAD_RESPONSES = {
    413: {"model": ErrorBody, "description": "The file is larger than KYC_MAX_DOCUMENT_BYTES"},
    415: {"model": ErrorBody, "description": "The file is not a PDF, PNG or JPEG"},
}


# --- definitions ---------------------------------------------------------------------------

EXISTS = "a definition with this level or name exists"


@router.post("/definitions", status_code=status.HTTP_201_CREATED, response_model=KycDefinitionOut)
async def create_definition(body: KycDefinitionCreate, client: ClientDep, session: SessionDep):
    others = list(await session.scalars(
        select(KycDefinition).where(KycDefinition.client_id == client.id)))
    if any(d.level == body.level or d.name == body.name for d in others):
        raise HTTPException(409, EXISTS)
    rules = body.rules.model_dump(mode="json")
    problems = level_conflicts(
        body.level, {k: rules_of(v) for k, v in rules.items()},
        [(d.level, d.name, {k: rules_of(v) for k, v in d.rules.items()}) for d in others])
    if problems:
        return error_response(422, "validation_error", "levels are inconsistent",
                              [FieldError(field="rules", message=p) for p in problems])
    definition = KycDefinition(
        client_id=client.id, name=body.name, level=body.level,
        requires_verification=body.requires_verification, max_credit_limit=body.max_credit_limit,
        expires_after=body.expires_after, remind_before=body.remind_before, rules=rules)
    session.add(definition)
    try:
        await session.commit()
    except IntegrityError as err:
        # A copy sent at the same time passed the check above too, and stored it first.
        if not crud.collided(err):
            raise
        raise HTTPException(409, EXISTS) from None
    return definition


@router.get("/definitions", response_model=list[KycDefinitionOut])
async def list_definitions(client: ClientDep, session: SessionDep) -> list[KycDefinition]:
    return list(await session.scalars(
        select(KycDefinition).where(KycDefinition.client_id == client.id)
        .order_by(KycDefinition.level)))


@router.get("/definitions/{definition_id}", response_model=KycDefinitionOut)
async def get_definition(definition_id: uuid.UUID, client: ClientDep, session: SessionDep):
    definition = await kyc_crud.definition_of(session, client_id=client.id,
                                              definition_id=definition_id)
    if definition is None:
        raise HTTPException(404, "KYC definition not found")
    return definition


# --- a contact's profile -------------------------------------------------------------------


async def contact_of(session, client_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    contact = await kyc_crud.contact_of(session, client_id=client_id, contact_id=contact_id)
    if contact is None:
        raise HTTPException(404, "contact not found")
    return contact


async def decided_contact(session, client_id: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    """The contact of an operator's decision (assign, verify, refute): an anonymised one takes
    none, as it takes no upload, lest a refutation's reason keep what anonymisation took."""
    contact = await contact_of(session, client_id, contact_id)
    if contact.anonymised_at is not None:
        raise ContactAnonymised(contact)
    return contact


def document_out(document: KycDocument) -> KycDocumentOut:
    return KycDocumentOut.model_validate(document, from_attributes=True)


async def profile_out(session, contact: Contact, profile: KycProfile, *,
                      detail: bool) -> KycProfileOut:
    definition = await session.get_one(KycDefinition, profile.definition_id)
    out = KycProfileOut(
        contact_id=contact.id, external_id=contact.external_id, workflow_id=profile.workflow_id,
        state=profile.state, reason=profile.reason, assigned_at=profile.assigned_at,
        expires_at=profile.expires_at, expiry_cause=profile.expiry_cause,
        verified_at=profile.verified_at, updated_at=profile.updated_at,
        definition=KycDefinitionRef(id=definition.id, name=definition.name,
                                    level=definition.level,
                                    max_credit_limit=definition.max_credit_limit))
    if detail:
        out.documents = [document_out(d) for d in await session.scalars(
            select(KycDocument).where(KycDocument.contact_id == contact.id)
            .order_by(KycDocument.uploaded_at))]
        out.history = [KycEventOut(type=e.type, at=e.at, detail=e.detail) for e in
                       await session.scalars(select(KycEvent).where(
                           KycEvent.contact_id == contact.id).order_by(KycEvent.at, KycEvent.id))]
    return out


async def current_profile(session, contact: Contact) -> KycProfileOut:
    profile = await kyc_crud.profile_of(session, contact_id=contact.id)
    if profile is None:
        raise HTTPException(404, "no KYC profile is assigned to this contact")
    return await profile_out(session, contact, profile, detail=True)


async def changed_profile(session, contact: Contact, reads: Reads) -> KycProfileOut:
    """The profile a change answers with: its documents and history are personal data, read
    as GET's answer is (audited, naming the route)."""
    out = await current_profile(session, contact)
    await reads.of([contact.id])
    return out


def refused(err: Exception) -> JSONResponse:
    if isinstance(err, ContactAnonymised):
        return error_response(409, "contact_anonymised", str(err))
    cause = kyc_profiles.update_error(err)
    if cause is not None and cause.type == ErrorType.kyc_contact_anonymised:
        # Anonymised while the request was on its way: the profile had forgotten already.
        return error_response(409, "contact_anonymised", cause.message)
    if cause is not None and cause.type == ErrorType.kyc_missing_information:
        missing = cause.details[0] if cause.details else []
        return error_response(422, "kyc_missing_information", cause.message,
                              [FieldError(field=m, message="required") for m in missing])
    if cause is not None and cause.type == ErrorType.kyc_wrong_state:
        return error_response(409, "kyc_wrong_state", cause.message)
    # A refused first assignment ended its workflow (one from before that change still runs,
    # unassigned): the contact has no profile, as when nothing was ever tried.
    if (cause is not None and cause.type == ErrorType.kyc_not_assigned) or (
            isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND):
        return error_response(404, "not_found", "no KYC profile is assigned to this contact")
    raise err


@router.get("/contacts/{contact_id}", response_model=KycProfileOut)
async def get_profile(contact_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      reads: ReadsDep):
    contact = await contact_of(session, client.id, contact_id)
    await reads.of([contact_id])
    return await current_profile(session, contact)


@router.post("/contacts/{contact_id}/assign", response_model=KycProfileOut)
async def assign_profile(contact_id: uuid.UUID, body: KycAssignRequest, client: ClientDep,
                         session: SessionDep, state: StateDep, reads: ReadsDep):
    """Assigns a profile, or changes it: to a lower level freely (and verified at once); to a
    higher level for a verified customer only once the required information is present."""
    try:
        contact = await decided_contact(session, client.id, contact_id)
        if body.definition_id is not None:
            definition = await kyc_crud.definition_of(session, client_id=client.id,
                                                      definition_id=body.definition_id)
            if definition is None:
                raise FieldProblems([FieldError(field="definition_id",
                                                message="no KYC definition with this id")])
            if not kyc_crud.applies_to(definition, contact):
                raise FieldProblems([FieldError(field="definition_id", message=(
                    f"the definition has no rules for a {contact.kind}: it is not one for "
                    "this contact"))])
        await kyc_profiles.assign(
            state.temporal, state.settings, contact=contact,
            row=await kyc_crud.profile_of(session, contact_id=contact.id),
            definition_id=body.definition_id, source="api")
    except (ContactAnonymised, WorkflowUpdateFailedError, RPCError) as err:
        return refused(err)
    return await changed_profile(session, contact, reads)


@router.post("/contacts/{contact_id}/verify", response_model=KycProfileOut,
             dependencies=[NoBody])
async def verify_profile(contact_id: uuid.UUID, client: ClientDep, session: SessionDep,
                         state: StateDep, reads: ReadsDep):
    try:
        contact = await decided_contact(session, client.id, contact_id)
        await kyc_profiles.update_profile(
            session, state.temporal, state.settings, contact,
            await kyc_crud.profile_of(session, contact_id=contact.id), KycWorkflow.verify,
            VerifyKycInput(at=datetime.now(UTC)))
    except (ContactAnonymised, WorkflowUpdateFailedError, RPCError) as err:
        return refused(err)
    return await changed_profile(session, contact, reads)


@router.post("/contacts/{contact_id}/refute", response_model=KycProfileOut)
async def refute_profile(contact_id: uuid.UUID, body: KycRefuteRequest, client: ClientDep,
                         session: SessionDep, state: StateDep, reads: ReadsDep):
    """Refutes a profile pending verification; the customer gets the reason and a link to
    upload what is needed."""
    try:
        contact = await decided_contact(session, client.id, contact_id)
        await kyc_profiles.update_profile(
            session, state.temporal, state.settings, contact,
            await kyc_crud.profile_of(session, contact_id=contact.id), KycWorkflow.refute,
            RefuteKycInput(reason=body.reason, at=datetime.now(UTC)))
    except (ContactAnonymised, WorkflowUpdateFailedError, RPCError) as err:
        return refused(err)
    return await changed_profile(session, contact, reads)


# --- documents -----------------------------------------------------------------------------


@router.post("/contacts/{contact_id}/documents", status_code=status.HTTP_201_CREATED,
             response_model=KycDocumentOut, responses=UPLOAD_RESPONSES)
async def upload_document(
    contact_id: uuid.UUID, client: ClientDep, session: SessionDep, state: StateDep,
    actor: ActorDep, response: Response,
    file: Annotated[UploadFile, Form(description="PDF, PNG or JPEG")],
    document_type: Annotated[DocumentType, Form()],
    number: Annotated[str | None, Form(description="Required for id_card and passport")] = None,
    expires_at: Annotated[str | None, Form(description="Date (2031-12-31) or date-time")] = None,
    idempotency_key: IdempotencyKeyHeader = None,
):
    """Answers once the profile has judged the document. Sent again with its Idempotency-Key,
    the same upload (contact, kind and file) is stored and judged once and answered with the
    first one's document; while the first still waits for its judgment, a 409 `in_progress`
    with Retry-After."""
    contact = await contact_of(session, client.id, contact_id)
    try:
        details = kyc_profiles.document_details(document_type, number, expires_at)
        document, new = await kyc_profiles.accept_document(
            session, state.settings, contact=contact, details=details, upload=file, source="api",
            actor=actor, upload_id=uuid.uuid5(client.id, f"idempotency-key/{idempotency_key}")
            if idempotency_key else None)
    except DocumentRejected as err:
        return error_response(err.status, "document_rejected", str(err), err.fields)
    except ContactAnonymised as err:
        return error_response(409, "contact_anonymised", str(err))
    if not new:
        if not await kyc_profiles.same_upload(document, contact_id=contact_id, details=details,
                                              upload=file):
            # A key reused for another upload is a client's bug: storing nothing would hide it.
            return error_response(409, "conflict", "Idempotency-Key was used for another upload")
        if kyc_profiles.upload_in_progress(document, state.settings):
            # Answering now would answer before the profile's judgment the first one waits for.
            return error_response(
                409, "in_progress", "the request with this Idempotency-Key is still in "
                "progress; send it again after Retry-After seconds", headers={"Retry-After": "1"})
        response.headers["Idempotent-Replayed"] = "true"
        return document_out(document)
    await kyc_profiles.judge_upload(session, state.temporal, state.settings, contact=contact,
                                    document=document)
    return document_out(document)


async def document_of(session, client_id: uuid.UUID, document_id: uuid.UUID) -> KycDocument:
    document = await session.get(KycDocument, document_id)
    if document is None or document.client_id != client_id:
        raise HTTPException(404, "document not found")
    return document


@router.patch("/documents/{document_id}", response_model=KycDocumentOut)
async def correct_document(document_id: uuid.UUID, body: KycDocumentPatch, client: ClientDep,
                           session: SessionDep, state: StateDep, actor: ActorDep):
    """Corrects a document's number or expiry; a new expiry date reschedules the profile's."""
    document = await document_of(session, client.id, document_id)
    changes = {f: getattr(body, f) for f in body.model_fields_set}
    try:
        if "number" in changes:
            kyc_profiles.check_number(document.document_type, changes["number"])
        await kyc_profiles.correct_document(
            session, state.temporal, state.settings, document=document, actor=actor,
            contact=await session.get_one(Contact, document.contact_id), changes=changes)
    except DocumentRejected as err:
        return error_response(err.status, "document_rejected", str(err), err.fields)
    return document_out(document)


@router.get("/documents/{document_id}/file", response_class=Response,
            responses={200: {"content": {t: {} for t in ("application/pdf", "image/png",
                                                          "image/jpeg")}}})
async def download_document(document_id: uuid.UUID, client: ClientDep, session: SessionDep,
                            state: StateDep, reads: ReadsDep) -> Response:
    document = await document_of(session, client.id, document_id)
    await reads.of([document.contact_id])
    data = await LocalDirectoryStorage(state.settings.kyc_storage_dir).get(document.storage_key)
    return Response(data, media_type=document.content_type,
                    headers={"Content-Disposition": attachment(download_name(document))})


# The extensions of the types an upload is judged to be (core.storage.ALLOWED_TYPES).
EXTENSIONS = {"application/pdf": (".pdf",), "image/png": (".png",),
              "image/jpeg": (".jpg", ".jpeg")}


def download_name(document: KycDocument) -> str:
    """The name a download is saved under: the uploaded one, ending in its type's extension.
    Only the first bytes were judged, so 'scan.html' (a PNG) is saved as 'scan.html.png',
    never as a page that a browser would open and run."""
    name = document.filename or f"{document.document_type}-{document.id}"
    extensions = EXTENSIONS.get(document.content_type, ("",))
    return name if name.lower().endswith(extensions) else name + extensions[0]


# --- expiring profiles ---------------------------------------------------------------------


def expiring_query(client_id: uuid.UUID, within_days: int):
    now = datetime.now(UTC)
    # An anonymised contact keeps its profile's state, but no one to renew it or write to.
    return (select(KycProfile, Contact).join(Contact, Contact.id == KycProfile.contact_id)
            .where(KycProfile.client_id == client_id, Contact.anonymised_at.is_(None),
                   KycProfile.state.in_(list(KYC_LIVE_STATES)),
                   KycProfile.expires_at > now,
                   KycProfile.expires_at <= now + timedelta(days=within_days)))


@router.get("/expiring", response_model=KycExpiringPage)
async def list_expiring(
    client: ClientDep, session: SessionDep, reads: ReadsDep,
    within_days: int = Query(ge=0, le=3650, description="Profiles expiring within D days"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
) -> KycExpiringPage:
    query = expiring_query(client.id, within_days).order_by(KycProfile.id).limit(limit + 1)
    if cursor is not None:
        query = query.where(KycProfile.id > cursor)
    rows = (await session.execute(query)).all()
    items = [await profile_out(session, c, p, detail=False) for p, c in rows[:limit]]
    await reads.of(c.id for _, c in rows[:limit])
    return KycExpiringPage(items=items, next_cursor=str(rows[limit - 1][0].id)
                           if len(rows) > limit else None)


@router.post("/expiring/notify", status_code=status.HTTP_202_ACCEPTED,
             response_model=KycNotifyResponse)
async def notify_expiring(body: KycNotifyRequest, client: ClientDep, session: SessionDep,
                          state: StateDep) -> KycNotifyResponse:
    """Emails every customer whose profile expires within D days a link to renew it; each
    profile's workflow sends it once per batch."""
    batch_id = uuid.uuid4().hex
    profiles = (await session.execute(expiring_query(client.id, body.within_days))).all()
    notified = 0
    for profile, contact in profiles:
        try:
            await kyc_profiles.signal_profile(
                session, state.temporal, state.settings, contact, profile,
                KycWorkflow.notify_expiring, NotifyExpiringInput(batch_id, datetime.now(UTC)))
            notified += 1
        except RPCError:
            pass
    return KycNotifyResponse(batch_id=batch_id, notified=notified)
