"""The customer's KYC page, reached from the link in a refute, reminder or expiry message: shows
the profile's state and takes the documents to renew it. Server-rendered; works without
JavaScript; the personal link is the only credential and the database knows only its hash."""

import secrets
import uuid
from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from api import kyc_profiles
from api.deps import SessionDep, StateDep
from api.kyc_profiles import ContactAnonymised, DocumentRejected
from api.public_forms import limit_form_posts
from api.routes.customer_page import (
    LANGUAGES,
    SUBMISSION_ID,
    client_languages,
    csrf_ok,
    forbidden,
    html,
    invalid_link,
    language_switch,
)
from contacts import registry
from contacts.audit import Actor
from core.kyc_rules import last_valid_day
from core.security import sha256_hex
from core.vocabulary import ActorType, DocumentType, TokenPurpose
from db import crud, kyc_crud
from db.kyc_models import KycDocument, KycProfile
from db.models import Client, Contact, LinkToken
from messaging.branding import client_brand

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_form_posts)])
MESSAGE_OF_FIELD = {"document_type": "type_invalid", "number": "number_invalid",
                    "expires_at": "date_invalid", "file": "file_required"}
# A refusal that is not about the form of a field: the file's size or type, or a number the
# uniqueness rule gives to another contact (the page never says which one).
MESSAGE_OF_STATUS = {409: "number_taken", 413: "too_large", 415: "wrong_type"}


def customer_actor(contact: Contact) -> Actor:
    """The customer acting on the KYC page (the link is all that identifies them)."""
    return Actor(ActorType.customer, f"kyc:{contact.id}")


class KycVisit:
    def __init__(self, contact: Contact, client: Client, profile: KycProfile | None) -> None:
        self.contact, self.client, self.profile = contact, client, profile

    @property
    def language(self) -> str:
        return self.contact.language


async def resolve(session: AsyncSession, token: str) -> KycVisit | None:
    if len(token) > 100:
        return None
    link = await session.get(LinkToken, sha256_hex(token))
    if link is None or link.purpose != TokenPurpose.kyc_documents or link.contact_id is None \
            or link.expires_at <= datetime.now(UTC):
        return None
    contact = await session.get_one(Contact, link.contact_id)
    # A mail to an address the client has since removed: that mailbox is often a stranger's.
    if await session.scalar(select(crud.taken_away(contact.id, crud.sent_to(link.step,
                                                                             contact.id)))):
        return None
    return KycVisit(contact, await session.get_one(Client, contact.client_id),
                    await kyc_crud.profile_of(session, contact_id=contact.id))


async def page(request: Request, state, session: AsyncSession, visit: KycVisit, *,
               errors: dict[str, str], values: dict[str, str],
               status_code: int = 200) -> HTMLResponse:
    uploaded = list(await session.scalars(
        select(KycDocument).where(KycDocument.contact_id == visit.contact.id)
        .order_by(KycDocument.uploaded_at)))
    now = datetime.now(UTC)
    # Shown as the date printed on the document, its last valid day.
    expired_on = {doc.id: last_valid_day(doc.expires_at) for doc in uploaded
                  if doc.expires_at is not None and doc.expires_at <= now}
    return html(request, state, "kyc_documents", visit.contact.language, {
        "client_name": visit.client.name, "brand": client_brand(visit.client, state.settings),
        "languages": language_switch(client_languages(visit.client)),
        "first_name": visit.contact.first_name,
        "last_name": visit.contact.last_name,
        "profile": visit.profile, "uploaded": uploaded, "document_types": list(DocumentType),
        "expired_on": expired_on, "errors": errors, "values": values,
        "submission": secrets.token_urlsafe(16)}, status_code)


async def posted_again(document: KycDocument, contact: Contact,
                       details: kyc_profiles.DocumentDetails, upload: UploadFile | None) -> bool:
    """Whether a post is the one `document` was stored from, sent again (a double click, a
    reload): the same file, kind, number and date."""
    return upload is not None and await kyc_profiles.same_upload(
        document, contact_id=contact.id, details=details, upload=upload) and (
        document.number, document.expires_at) == (details.number, details.expires_at)


def ended(request: Request, state, visit: KycVisit) -> HTMLResponse:
    """The page of a link whose contact was anonymised (issued just before, or opened then):
    the request has ended, and questions go to the client."""
    return html(request, state, "finished", visit.language, {
        "stage": "lost", "client_name": visit.client.name,
        "brand": client_brand(visit.client, state.settings)}, status.HTTP_410_GONE)


@router.get("/k/{token}", response_class=HTMLResponse)
async def kyc_page(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await resolve(session, token)
    if visit is None:
        return invalid_link(request, state)
    if visit.contact.anonymised_at is not None:
        return ended(request, state, visit)
    return await page(request, state, session, visit, errors={}, values={})


@router.post("/k/{token}", response_class=HTMLResponse)
async def upload(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await resolve(session, token)
    if visit is None:
        return invalid_link(request, state)
    if visit.contact.anonymised_at is not None:
        return ended(request, state, visit)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    form = await request.form()
    values = {k: str(form.get(k) or "") for k in ("document_type", "number", "expires_at")}
    file = form.get("file")
    try:
        details = kyc_profiles.document_details(
            values["document_type"], values["number"], values["expires_at"])
        if details.expires_at is not None and details.expires_at <= datetime.now(UTC):
            # It could renew nothing: the profile would expire again at once.
            return await page(request, state, session, visit, values=values,
                              errors={"expires_at": "document_expired"},
                              status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
        submission = str(form.get("submission", ""))
        upload = file if not isinstance(file, str) else None
        accept = partial(kyc_profiles.accept_document, session, state.settings,
                         contact=visit.contact, details=details, upload=upload,
                         source="customer_page", actor=customer_actor(visit.contact))
        # Derived from the form's submission id: the form's second post is the same row.
        document, new = await accept(upload_id=uuid.uuid5(
            visit.contact.id, f"upload/{submission}") if SUBMISSION_ID.fullmatch(submission)
            else None)
        if not new and not await posted_again(document, visit.contact, details, upload):
            # The form posted again with another file, kind, number or date in it (Back, then
            # corrected): a double click posts the same, so the customer means a new upload
            # (and one without a file is told so).
            document, new = await accept()
    except ContactAnonymised:
        return ended(request, state, visit)
    except DocumentRejected as err:
        errors = {f.field: MESSAGE_OF_STATUS.get(err.status) or MESSAGE_OF_FIELD[f.field]
                  for f in err.fields}
        return await page(request, state, session, visit, errors=errors, values=values,
                          status_code=err.status)
    if new:
        # Judged once: a second judgment of the same upload would renew the profile again.
        await kyc_profiles.judge_upload(session, state.temporal, state.settings,
                                        contact=visit.contact, document=document)
    # Post/redirect/get: a reload never uploads twice.
    return RedirectResponse(request.url.path, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/k/{token}/language", response_class=HTMLResponse)
async def switch_language(token: str, request: Request, session: SessionDep, state: StateDep):
    """Shows the page in another language and keeps it as the contact's, so the profile's
    later messages speak it too. Only the token is in the URL; the choice is posted."""
    visit = await resolve(session, token)
    if visit is None:
        return invalid_link(request, state)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    language = (await request.form()).get("language")
    if language in LANGUAGES:
        await registry.keep_language(session, state.settings.secret_key.get_secret_value(),
                                     visit.contact, language, customer_actor(visit.contact))
        await session.commit()
    return RedirectResponse(f"/k/{token}", status_code=status.HTTP_303_SEE_OTHER)
