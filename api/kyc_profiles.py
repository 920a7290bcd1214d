"""What the KYC API and the customer's upload page share: accepting a document (size and type
checked, kept through the storage adapter) and talking to the contact's KYC workflow."""

import asyncio
import hashlib
import logging
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import UploadFile
from temporalio.client import Client as TemporalClient
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.errors import pydantic_fields
from api.kyc_schemas import DocumentExpiry, OptionalNumber
from api.schemas import BIDI_CONTROLS, FieldError
from contacts import registry
from contacts.audit import Actor
from core.kyc_contracts import (
    KYC_PROFILE_JSON,
    AssignKycInput,
    DocumentsChangedInput,
    KycInput,
    KycProfile,
    KycTimings,
)
from core.kyc_rules import DOCUMENT_OF_FIELD, expiry_of_day, last_valid_day
from core.settings import Settings
from core.storage import ALLOWED_TYPES, LocalDirectoryStorage, sniff_content_type
from core.vocabulary import CLIENT_ID, CONTACT_ID, KYC_STATE, DocumentType
from db import crud, kyc_crud
from db.kyc_models import KycDocument
from db.kyc_models import KycProfile as ProfileRow
from db.models import Contact
from workflows.kyc import KycWorkflow

_number = TypeAdapter(OptionalNumber).validate_python
_expiry = TypeAdapter(DocumentExpiry).validate_python
NUMBERED = frozenset(DOCUMENT_OF_FIELD.values())
# The contact registry's fields for the number and expiry printed on a document of this type.
CONTACT_FIELDS = {DocumentType.id_card: ("id_number", "id_expires_on"),
                  DocumentType.passport: ("passport_number", "passport_expires_on")}


class DocumentRejected(Exception):
    """An upload that is not accepted; nothing of it is stored."""

    def __init__(self, status: int, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.status = status
        self.fields = fields


class ContactAnonymised(Exception):
    """An upload or an operator's decision for an anonymised contact: nothing of the person is
    kept, so no identity document or reason is taken for them either."""

    def __init__(self, contact: Contact) -> None:
        assert contact.anonymised_at is not None
        super().__init__(f"the contact was anonymised on {contact.anonymised_at.date()}: its KYC "
                         "profile takes no documents or decisions; enrol the person as a new "
                         "contact if they return")


@dataclass
class DocumentDetails:
    document_type: DocumentType
    number: str | None
    expires_at: datetime | None


def _said(err: ValidationError, otherwise: str | None = None) -> str:
    """A form field's problem in our validators' words; pydantic's own parsers speak of
    Python's types, so theirs is said `otherwise`."""
    [problem] = err.errors()
    if problem["type"] in ("value_error", "string_pattern_mismatch"):
        return pydantic_fields([problem])[0].message
    return otherwise or problem["msg"]


def shown_name(filename: str | None) -> str | None:
    """An upload's file name as kept, to show: without control characters (a NUL cannot be
    stored: the upload failed after its file was written) or direction marks ('exe.txt')."""
    name = "".join(ch for ch in filename or ""
                   if ch not in BIDI_CONTROLS and unicodedata.category(ch) != "Cc")
    return name.strip()[:300] or None


def check_number(kind: str | None, number: str | None) -> None:
    """An ID card or passport is refused without its number, uploaded or corrected: the
    registry's number and the profile's expiry rest on it."""
    if number is None and kind in NUMBERED:
        raise DocumentRejected(422, [FieldError(
            field="number", message=f"required for document kind {kind}")])


def document_details(document_type: str, number: str | None,
                     expires_at: str | None) -> DocumentDetails:
    """Checks the form fields of an upload; every problem is named by its field."""
    errors: list[FieldError] = []
    kind = None
    try:
        kind = DocumentType(document_type)
    except ValueError:
        errors.append(FieldError(field="document_type",
                                 message=f"must be one of {[d.value for d in DocumentType]}"))
    try:
        number = _number(number)
        check_number(kind, number)
    except ValidationError as err:
        errors.append(FieldError(field="number", message=_said(err)))
    except DocumentRejected as err:
        errors += err.fields
    expiry = None
    if (expires_at or "").strip():
        try:
            expiry = _expiry(expires_at.strip())
        except ValidationError as err:
            errors.append(FieldError(field="expires_at", message=_said(
                err, "a date (2031-12-31) or date and time")))
    if errors:
        raise DocumentRejected(422, errors)
    assert kind is not None
    return DocumentDetails(kind, number, expiry)


async def contact_follows(session: AsyncSession, settings: Settings, *, contact: Contact,
                          details: DocumentDetails, actor: Actor) -> None:
    """The registry's number and expiry of an ID card or passport are those of the document
    the profile rests on, the newest of its type: set (audited, re-keyed) when one is uploaded
    or corrected, in the caller's transaction."""
    fields = CONTACT_FIELDS.get(details.document_type)
    if fields is None or contact.anonymised_at is not None:
        return
    reg = await registry.registry_for(session, client_id=contact.client_id,
                                      secret_key=settings.secret_key.get_secret_value())
    # The date printed on the document, the last day it is valid.
    expires_on = (last_valid_day(details.expires_at) if details.expires_at is not None
                  else None)
    try:
        changed = await registry.apply_scalars(session, reg, contact,
                                               dict(zip(fields, (details.number, expires_on))))
    except registry.Duplicate as dup:
        raise DocumentRejected(409, [FieldError(
            field="number", message=f"the uniqueness rule gives this number to contact "
            f"{dup.contact.id}")]) from dup
    except registry.Invalid:
        # The contact lacks a field the client's uniqueness rule names, so the registry takes
        # no change of it until the client fills that in; the document counts all the same.
        return
    if changed:
        await registry.touch(session, reg, contact, actor, changed)


async def accept_document(
    session: AsyncSession, settings: Settings, *, contact: Contact, details: DocumentDetails,
    upload: UploadFile | None, source: str, actor: Actor, upload_id: uuid.UUID | None = None,
) -> tuple[KycDocument, bool]:
    """Stores the file, then its row; size and type are judged on the bytes themselves.
    Returns the document and whether it is new. `upload_id` names one upload however often
    it is posted (derived from the page form's submission id or the API's Idempotency-Key):
    posted twice (a double click, a retry), it stores one document, and the second post is
    given the first one's."""
    # Held until this commits: an anonymisation (FOR UPDATE) waits for the upload and deletes
    # its document, or the upload sees the anonymisation. A key share, as two uploads at once
    # each go on to update the contact, which under a share lock would deadlock.
    await session.refresh(contact, ["anonymised_at"],
                          with_for_update={"read": True, "key_share": True})
    if contact.anonymised_at is not None:
        raise ContactAnonymised(contact)
    doc_id = upload_id or uuid.uuid4()
    if upload_id and (earlier := await session.get(KycDocument, doc_id)) is not None:
        return earlier, False
    limit = settings.kyc_max_document_bytes
    data = await upload.read(limit + 1) if upload is not None else b""
    if not data:
        raise DocumentRejected(422, [FieldError(field="file", message="a file is required")])
    if len(data) > limit:
        raise DocumentRejected(413, [FieldError(
            field="file", message=f"the file is larger than {limit} bytes")])
    content_type = sniff_content_type(data[:16])
    if content_type is None:
        raise DocumentRejected(415, [FieldError(
            field="file", message=f"the file must be one of {ALLOWED_TYPES} (judged by content)")])
    await contact_follows(session, settings, contact=contact, details=details, actor=actor)
    # A file of its own for each post: the one of two racing posts that stores no row
    # removes its file, never the one the stored row names.
    key = f"{contact.client_id}/{contact.id}/{uuid.uuid4()}"
    storage = LocalDirectoryStorage(settings.kyc_storage_dir)
    await storage.put(key, data)
    assert upload is not None
    filename = shown_name(upload.filename)
    document = KycDocument(
        id=doc_id, client_id=contact.client_id, contact_id=contact.id,
        document_type=details.document_type, number=details.number,
        expires_at=details.expires_at, storage_key=key, content_type=content_type,
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), filename=filename,
        source=source, uploaded_at=datetime.now(UTC))
    session.add(document)
    try:
        await session.commit()
    except IntegrityError as err:
        if not crud.collided(err):
            raise
        await session.rollback()
        # The rollback expired the contact, which the caller may go on with.
        await session.refresh(contact)
        earlier = await session.get(KycDocument, doc_id) if upload_id else None
        if earlier is None:
            raise
        await storage.delete(key)
        return earlier, False
    return document, True


async def judge_upload(session: AsyncSession, temporal: TemporalClient, settings: Settings, *,
                       contact: Contact, document: KycDocument) -> None:
    """Has the profile judge a new document, waiting for it as contact_changed does, then marks
    its upload answered: a retry of it gets the answer from then on."""
    await contact_changed(session, temporal, settings, contact=contact,
                          document_type=document.document_type, uploaded=True)
    document.answered_at = datetime.now(UTC)
    await session.commit()


def upload_in_progress(document: KycDocument, settings: Settings) -> bool:
    """Whether the request that uploaded `document` is still waiting for its judgment. Past
    twice the longest wait it is taken for lost (its process died), not in progress."""
    return document.answered_at is None and datetime.now(UTC) < (
        document.uploaded_at + 2 * settings.kyc_judgment_wait)


async def same_upload(document: KycDocument, *, contact_id: uuid.UUID,
                      details: DocumentDetails, upload: UploadFile) -> bool:
    """Whether a post is the upload `document` was stored from: the same contact, kind and
    file. Not its number or expiry, which a correction may have changed since. The file is
    left to be read again."""
    await upload.seek(0)
    digest = hashlib.sha256(await upload.read()).hexdigest()
    await upload.seek(0)
    return (document.contact_id, document.document_type, document.sha256) == (
        contact_id, details.document_type, digest)


async def correct_document(
    session: AsyncSession, temporal: TemporalClient, settings: Settings, *, contact: Contact,
    document: KycDocument, changes: dict[str, Any], actor: Actor,
) -> None:
    """Corrects a document's number or expiry; the registry follows the newest of its type,
    and the profile is judged again (a new expiry date reschedules it)."""
    for field, value in changes.items():
        setattr(document, field, value)
    newest = await kyc_crud.newest_document(session, contact_id=contact.id,
                                            document_type=document.document_type)
    if newest is document:
        await contact_follows(session, settings, contact=contact, actor=actor,
                              details=DocumentDetails(DocumentType(document.document_type),
                                                      document.number, document.expires_at))
    await session.commit()
    await contact_changed(session, temporal, settings, contact=contact,
                          document_type=document.document_type, uploaded=False)


async def numbers_kept(session: AsyncSession, *, contact: Contact,
                       given: dict[str, Any]) -> list[FieldError]:
    """What a change of the registry (`given`: the fields it sets) may not do: clear the
    number of an ID card or passport the profile rests on. Corrected through the registry, the
    document would lose it too, and the profile the expiry that rests on it."""
    problems = []
    for document_type, (number_field, _) in CONTACT_FIELDS.items():
        if number_field not in given or given[number_field] is not None:
            continue
        document = await kyc_crud.newest_document(session, contact_id=contact.id,
                                                  document_type=document_type)
        if document is not None:
            problems.append(FieldError(field=number_field, message=(
                f"the {document_type.value} of the contact's KYC profile carries it: correct "
                f"it with PATCH /v1/kyc/documents/{document.id}")))
    return problems


async def registry_changed(
    session: AsyncSession, temporal: TemporalClient, settings: Settings, *, contact: Contact,
    changed: set[str], actor: Actor,
) -> None:
    """Call after a change of the contact in the registry. A new ID card or passport number or
    expiry there corrects the document the profile rests on, as PATCH /v1/kyc/documents/{id}
    does, so the two stay one and the profile's expiry follows; any other change is judged by
    contact_changed."""
    corrected = False
    for document_type, (number_field, expiry_field) in CONTACT_FIELDS.items():
        if not changed & {number_field, expiry_field}:
            continue
        document = await kyc_crud.newest_document(session, contact_id=contact.id,
                                                  document_type=document_type)
        if document is None:
            continue
        changes: dict[str, Any] = {}
        if number_field in changed:
            changes["number"] = getattr(contact, number_field)
        if expiry_field in changed:
            expires_on = getattr(contact, expiry_field)
            # The date printed on the card, as when uploaded with that date: valid all of it.
            changes["expires_at"] = None if expires_on is None else expiry_of_day(expires_on)
        await correct_document(session, temporal, settings, contact=contact, document=document,
                               changes=changes, actor=actor)
        corrected = True
    if not corrected:
        await contact_changed(session, temporal, settings, contact=contact)


def update_error(err: Exception) -> ApplicationError | None:
    cause = err.cause if isinstance(err, WorkflowUpdateFailedError) else None
    return cause if isinstance(cause, ApplicationError) else None


def _workflow(settings: Settings, contact: Contact, profile: KycProfile | None
              ) -> tuple[KycInput, dict[str, Any]]:
    """The contact's KYC workflow: its input and how it is started."""
    if profile is not None and contact.anonymised_at is not None:
        # Started again after its workflow was lost, it still takes no decision for them.
        profile = replace(profile, anonymised=True)
    return KycInput(client_id=str(contact.client_id), contact_id=str(contact.id),
                    timings=KycTimings(link_ttl=settings.kyc_link_ttl), profile=profile), {
        "id": kyc_crud.workflow_id(contact.client_id, contact.id),
        "task_queue": settings.temporal_task_queue,
        "search_attributes": TypedSearchAttributes([
            SearchAttributePair(CLIENT_ID, str(contact.client_id)),
            SearchAttributePair(CONTACT_ID, str(contact.id)),
            SearchAttributePair(KYC_STATE, profile.state if profile and profile.state
                                else "unassigned"),
        ]),
        "static_summary": f"KYC profile of contact {contact.id}",
    }


def _workflow_start(settings: Settings, contact: Contact, profile: KycProfile | None
                    ) -> WithStartWorkflowOperation:
    input, options = _workflow(settings, contact, profile)
    # One workflow per contact for years: a later request reaches the running one.
    return WithStartWorkflowOperation(
        KycWorkflow.run, input, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **options)


def _kept_profile(row: ProfileRow | None) -> KycProfile | None:
    """The profile as its workflow last recorded it: a workflow an operator terminated (or one
    lost with its Temporal namespace) starts again from there on the next request, its steps
    numbered on and its dates kept, instead of as a contact never assigned."""
    if row is None or row.workflow_profile is None:
        return None
    return KYC_PROFILE_JSON.validate_python(row.workflow_profile)


async def start_again(temporal: TemporalClient, settings: Settings, contact: Contact,
                      row: ProfileRow) -> None:
    """Starts the contact's KYC workflow again from the profile the database keeps, unless it
    runs: one an operator terminated holds the profile's timers no more, so the profile would
    never be reminded of nor expire."""
    kept = _kept_profile(row)
    if kept is None:
        return
    input, options = _workflow(settings, contact, kept)
    await temporal.start_workflow(KycWorkflow.run, input,
                                  id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                  **options)


async def update_profile(session: AsyncSession, temporal: TemporalClient, settings: Settings,
                         contact: Contact, row: ProfileRow | None, update: Any, arg: Any) -> Any:
    """Runs an update on the contact's KYC workflow (`row`: its profile as the database has
    it), starting it again from that profile when it is not running. A contact without a
    profile has no workflow to start."""
    kept = _kept_profile(row)
    # No connection is held while the workflow works.
    await session.commit()
    if kept is None:
        return await temporal.get_workflow_handle(
            kyc_crud.workflow_id(contact.client_id, contact.id)).execute_update(update, arg)
    return await temporal.execute_update_with_start_workflow(
        update, arg, start_workflow_operation=_workflow_start(settings, contact, kept))


async def signal_profile(session: AsyncSession, temporal: TemporalClient, settings: Settings,
                         contact: Contact, row: ProfileRow | None, signal: Any, arg: Any) -> None:
    """As update_profile, for a signal (signal-with-start)."""
    kept = _kept_profile(row)
    await session.commit()
    if kept is None:
        await temporal.get_workflow_handle(
            kyc_crud.workflow_id(contact.client_id, contact.id)).signal(signal, arg)
        return
    input, options = _workflow(settings, contact, kept)
    await temporal.start_workflow(KycWorkflow.run, input, start_signal=signal.__name__,
                                  start_signal_args=[arg], **options)


async def rejudge_stale_document_expiries(sessions: async_sessionmaker[AsyncSession],
                                          temporal: TemporalClient, settings: Settings) -> int:
    """Has each running profile still dated by a document under the rule before migration 0900
    (db.kyc_crud.profiles_with_stale_document_expiry) judge its documents again, as a change
    of the registry does: it expires, and reminds, at the end of the printed day. A worker
    does this as it starts, so one it cannot reach now is judged at a later start; a profile
    judged so is no longer found. Returns how many were told."""
    told = 0
    async with sessions() as session:
        stale = await kyc_crud.profiles_with_stale_document_expiry(session)
        found = (await session.execute(select(ProfileRow, Contact).join(
            Contact, Contact.id == ProfileRow.contact_id).where(ProfileRow.id.in_(stale)))).all()
        for row, contact in found:
            try:
                await signal_profile(session, temporal, settings, contact, row,
                                     KycWorkflow.documents_changed,
                                     DocumentsChangedInput("", False, datetime.now(UTC)))
                told += 1
            except RPCError as err:
                logging.getLogger("worker").warning(
                    "KYC profile %s keeps its expiry for now: %s", row.id, err)
    return told


async def assign(
    temporal: TemporalClient, settings: Settings, *, contact: Contact, row: ProfileRow | None,
    definition_id: uuid.UUID | None, source: str,
) -> KycProfile:
    """Assigns or changes the contact's profile, starting its workflow on first use."""
    return await temporal.execute_update_with_start_workflow(
        KycWorkflow.assign,
        AssignKycInput(definition_id=str(definition_id) if definition_id else None,
                       at=datetime.now(UTC), source=source),
        start_workflow_operation=_workflow_start(settings, contact, _kept_profile(row)))


async def contact_changed(
    session: AsyncSession, temporal: TemporalClient, settings: Settings, *, contact: Contact,
    document_type: str = "", uploaded: bool = False,
) -> None:
    """Call after a change to what KYC judges: a document here, names, email or mobile in the
    contact registry. Tells the contact's KYC workflow, and for a document waits for its
    judgment (the answer then shows it); a contact without a profile gets one if it now
    qualifies for a definition (CRM.COM assigns on create/update once the fields are there)."""
    row = await kyc_crud.profile_of(session, contact_id=contact.id)
    if row is not None:
        change = DocumentsChangedInput(document_type, uploaded, datetime.now(UTC))
        try:
            if document_type:
                # Bounded: with no worker running the update would wait for one; it is
                # admitted all the same and judged once a worker is back.
                async with asyncio.timeout(settings.kyc_judgment_wait.total_seconds()):
                    await update_profile(session, temporal, settings, contact, row,
                                         KycWorkflow.judge_documents, change)
            else:
                await signal_profile(session, temporal, settings, contact, row,
                                     KycWorkflow.documents_changed, change)
        except (RPCError, WorkflowUpdateFailedError, RPCTimeoutOrCancelledError, TimeoutError):
            pass  # the document is stored; the next change or assignment judges it
        return
    judged = await kyc_crud.evaluate(session, contact=contact, definition_id=None,
                                     at=datetime.now(UTC),
                                     default_remind_before=settings.kyc_remind_before)
    if judged.definition_id is not None:
        try:
            await assign(temporal, settings, contact=contact, row=None, definition_id=None,
                         source="auto")
        except (WorkflowUpdateFailedError, RPCError):
            pass  # it qualified a moment ago; the client can still assign explicitly
