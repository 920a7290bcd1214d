"""CSV imports of contacts: the template, the upload (processed by a workflow), its progress and
the downloadable CSV of rejected rows."""

import codecs
import hashlib
import uuid

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from api.deps import ActorDep, ClientDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody, error_response
from api.lost_workflows import how_lost
from api.schemas import FieldError
from api.routes.campaigns import enrolling_campaign
from contacts import csv_import
from core.contracts import ContactImportInput
from core.vocabulary import CLIENT_ID, ImportStatus
from db.models import ContactImport, ContactImportBatch, ContactImportError, utcnow
from workflows.contact_import import ContactImportWorkflow, import_workflow_id

router = APIRouter(prefix="/v1/contact-imports", tags=["contacts"], responses=ERROR_RESPONSES)
CSV = "text/csv; charset=utf-8"
# An import fails only when its workflow is gone before it finished (see get_import).
LOST_WORKFLOW = ("the import's workflow ended before the import did (terminated, failed or "
                 "timed out in Temporal): the rows counted here are in, the rest are not. "
                 "Uploading the same file again imports the rest; rows that name an "
                 "external_id or match the uniqueness rule are not imported twice")


class ImportOut(BaseModel):
    id: uuid.UUID
    status: str
    total_rows: int
    processed_rows: int
    created: int
    updated: int
    unchanged: int
    failed: int
    campaign_id: uuid.UUID | None
    enrolled: int | None
    not_enrolled: int | None
    errors_url: str
    reason: str | None = Field(None, description="why a `failed` import stopped")


async def import_out(session: SessionDep, job: ContactImport) -> ImportOut:
    sums = (await session.execute(select(
        func.coalesce(func.sum(ContactImportBatch.created), 0),
        func.coalesce(func.sum(ContactImportBatch.updated), 0),
        func.coalesce(func.sum(ContactImportBatch.unchanged), 0),
        func.coalesce(func.sum(ContactImportBatch.failed), 0)).where(
        ContactImportBatch.import_id == job.id))).one()
    created, updated, unchanged, failed = (int(v) for v in sums)
    return ImportOut(
        id=job.id, status=job.status, total_rows=job.total_rows,
        processed_rows=created + updated + unchanged + failed, created=created, updated=updated,
        unchanged=unchanged, failed=failed, campaign_id=job.campaign_id, enrolled=job.enrolled,
        not_enrolled=job.not_enrolled, errors_url=f"/v1/contact-imports/{job.id}/errors",
        reason=LOST_WORKFLOW if job.status == ImportStatus.failed else None)


async def import_of(session: SessionDep, client_id: uuid.UUID, import_id: uuid.UUID
                    ) -> ContactImport:
    job = await session.get(ContactImport, import_id)
    if job is None or job.client_id != client_id:
        raise HTTPException(404, "import not found")
    return job


@router.get("/template",
            responses={200: {"content": {"text/csv": {}}}})
async def import_template(client: ClientDep) -> PlainTextResponse:
    """The columns an import understands, with one example row. Lists (tags, categories) are
    separated by `|`; `;` works as the delimiter as well as `,`."""
    return PlainTextResponse(csv_import.template(), media_type=CSV, headers={
        "Content-Disposition": 'attachment; filename="contacts-template.csv"'})


CSV_BODY = {"requestBody": {"required": True,
                            "content": {"text/csv": {"schema": {"type": "string"}}}}}
ACCEPTED_TYPE = "text/csv"


NOT_CHARSETS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}


NOT_NAMED = ""


def declared_charset(parameters: str) -> str | None:
    """The text encoding a Content-Type's parameters name (Python's name for it; NOT_NAMED when
    none is named), or None for a name that is no text encoding."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            try:
                codec = codecs.lookup(value.strip().strip('"'))
            except LookupError:
                return None
            # Codecs such as base64 or rot13 turn bytes into bytes, not text; Python's own
            # text codecs (escapes, IDNA) are no character set a file is written in.
            text = codec._is_text_encoding and codec.name not in NOT_CHARSETS
            return codec.name if text else None
    return NOT_NAMED


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImportOut,
             openapi_extra=CSV_BODY,
             responses={409: {"model": ErrorBody, "description": (
                 "The campaign is archived, or reminds of payments (its contacts need claims)")},
                 415: {"model": ErrorBody, "description": "The body is not sent as text/csv, or "
                       "in a charset that is no known text encoding"}})
async def start_import(
    request: Request, client: ClientDep, session: SessionDep, state: StateDep, actor: ActorDep,
    campaign_id: uuid.UUID | None = Query(None, description="enrol the imported contacts"),
):
    """Uploads a CSV (UTF-8, with or without BOM, or the charset its Content-Type names; UTF-16
    when it starts with a UTF-16 BOM and names none; `,` or `;`) of up to 100,000 rows and
    MAX_IMPORT_BYTES as sent. A workflow
    creates or updates a contact per row by the uniqueness rules; bad rows are reported by line
    and field; good rows are kept. Importing the same file again changes nothing."""
    # Anything else (a JSON body, a form) would be read as CSV: refused row by row or, worse,
    # imported as rows nobody meant. A charset parameter says how to read the file.
    sent, _, parameters = request.headers.get("content-type", "").partition(";")
    sent = sent.strip().lower()
    if sent != ACCEPTED_TYPE:
        message = f"the file must be sent as {ACCEPTED_TYPE}, not {sent[:100] or 'untyped'}"
        return error_response(415, "unsupported_media_type", message,
                              [FieldError(field="content-type", message=message)])
    charset = declared_charset(parameters)
    if charset is None:
        message = ("unknown charset in the content-type; send the file as UTF-8 or name a "
                   "text encoding such as utf-8, windows-1252, iso-8859-1 or utf-16")
        return error_response(415, "unsupported_media_type", message,
                              [FieldError(field="content-type", message=message)])
    limit = state.settings.max_import_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        raise HTTPException(413, f"at most {limit} bytes per file")
    content = await request.body()
    # The bytes sent are what the limit counts: its UTF-8 form below may be larger (é is one
    # byte in windows-1252, two in UTF-8), which the client neither sees nor can shrink.
    if len(content) > limit:
        raise HTTPException(413, f"at most {limit} bytes per file")
    if charset == NOT_NAMED:
        # Excel's "Unicode text" is UTF-16 with a BOM that says so, sent without a charset.
        utf16 = content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        charset = "utf-16" if utf16 else "utf-8"
    if charset != "utf-8":
        # Stored and read as UTF-8 from here on, whatever the client's spreadsheet wrote.
        try:
            content = content.decode(charset).encode()
        except UnicodeError as err:
            # UnicodeDecodeError names the byte; codecs such as "undefined" refuse any bytes.
            where = (f"byte {err.start} cannot be read" if isinstance(err, UnicodeDecodeError)
                     else "it cannot be read so")
            return error_response(422, "invalid_csv", f"the file is not {charset} as its "
                                  f"content-type says: {where}")
    content = csv_import.with_newlines(content)
    if campaign_id is not None:
        campaign = await enrolling_campaign(session, client.id, campaign_id)
        if campaign.spec.get("payments"):
            # A file has no claims, and each contact of such a campaign needs its own.
            raise HTTPException(409, "a payment-reminder campaign takes its contacts with "
                                     "their claims through POST /v1/campaigns/{id}/contacts")
    try:
        delimiter, columns, _, total = csv_import.plan(content, state.settings.import_batch_size)
    except csv_import.CsvRejected as err:
        return error_response(422, "invalid_csv", str(err))
    job = ContactImport(client_id=client.id, content=content, content_sha256=hashlib.sha256(
        content).hexdigest(), delimiter=delimiter, columns=columns, total_rows=total,
        campaign_id=campaign_id, actor_id=actor.id)
    session.add(job)
    await session.commit()
    await start_workflow(state, job)
    return await import_out(session, job)


async def start_workflow(state: StateDep, job: ContactImport) -> None:
    """Starts the import's workflow; once started, again is a no-op (the upload and a later
    GET may both start it)."""
    await state.temporal.start_workflow(
        ContactImportWorkflow.run,
        ContactImportInput(import_id=str(job.id), client_id=str(job.client_id),
                           batch_size=state.settings.import_batch_size,
                           campaign_id=str(job.campaign_id) if job.campaign_id else None),
        id=import_workflow_id(str(job.id)), task_queue=state.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(
            CLIENT_ID, str(job.client_id))]),
        static_summary=f"Import of {job.total_rows} contacts",
    )


async def fail_if_lost(session: SessionDep, state: StateDep, job: ContactImport) -> None:
    """Marks the unfinished import failed if its workflow is gone (an operator terminated it in
    the Temporal UI, ...): nothing would ever finish it, and it would read as running for ever.
    Its file is dropped as a finished import's is; the client uploads it again for the rest.
    A pending import whose workflow never started (Temporal was unreachable at the upload)
    has its file still: its workflow is started now."""
    if job.status not in (ImportStatus.pending, ImportStatus.running):
        return
    how = await how_lost(state.temporal, import_workflow_id(str(job.id)))
    if how == "not_found" and job.status == ImportStatus.pending:
        await start_workflow(state, job)
        return
    if how is None:
        return
    await session.execute(update(ContactImport).where(
        ContactImport.id == job.id,
        ContactImport.status.in_((ImportStatus.pending, ImportStatus.running))).values(
        status=ImportStatus.failed, content=None, finished_at=utcnow()))
    await session.commit()
    await session.refresh(job)


@router.get("/{import_id}", response_model=ImportOut)
async def get_import(import_id: uuid.UUID, client: ClientDep, session: SessionDep,
                     state: StateDep) -> ImportOut:
    """The import's progress. One whose workflow ended before it did (terminated in the
    Temporal UI, failed or timed out) is `failed`, with the `reason`; uploading the same file
    again imports the rest. One whose workflow never started (Temporal unreachable at the
    upload) starts here."""
    job = await import_of(session, client.id, import_id)
    await fail_if_lost(session, state, job)
    return await import_out(session, job)


@router.get("/{import_id}/errors",
            responses={200: {"content": {"text/csv": {}}}})
async def import_errors(import_id: uuid.UUID, client: ClientDep, session: SessionDep
                        ) -> PlainTextResponse:
    """The rejected rows as CSV: line (1 is the header), field (the column), message."""
    job = await import_of(session, client.id, import_id)
    rows = await session.execute(select(
        ContactImportError.line, ContactImportError.field, ContactImportError.message).where(
        ContactImportError.import_id == job.id).order_by(
        ContactImportError.line, ContactImportError.field))
    return PlainTextResponse(csv_import.errors_csv([tuple(r) for r in rows]), media_type=CSV,
                             headers={"Content-Disposition":
                                      f'attachment; filename="import-{job.id}-errors.csv"'})
