"""The pages a customer reaches from a personal link: enter data, confirm, opt out.

Server-rendered and working without JavaScript. Personal data never appears in URLs; only the
opaque token does, and the database knows only its hash.
"""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import EmailStr, TypeAdapter, ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.deps import SessionDep, StateDep
from core.contracts import (
    ConfirmInput,
    ConsentAnswerInput,
    ConsentDecision,
    OptOutInput,
    PageOpenedInput,
    SubmitDataInput,
)
from core.security import Csrf, sha256_hex
from core.vocabulary import FINAL_STAGES, ErrorType, JourneyKind, Stage, TokenPurpose
from db import crud
from db.models import Campaign, Client, Contact, Journey, LinkToken
from messaging.rendering import render_page
from workflows.journey import JourneyWorkflow

router = APIRouter(include_in_schema=False)
_email = TypeAdapter(EmailStr)


class Visit:
    """A resolved personal link: the token row, its journey and what the page needs to show."""

    def __init__(self, token: str, link: LinkToken, journey: Journey, campaign: Campaign,
                 client: Client, contact: Contact) -> None:
        self.token, self.link, self.journey = token, link, journey
        self.campaign, self.client, self.contact = campaign, client, contact

    @property
    def language(self) -> str:
        return self.journey.language


async def resolve(session, token: str, purpose: TokenPurpose) -> Visit | None:
    if len(token) > 100:
        return None
    link = await session.get(LinkToken, sha256_hex(token))
    if link is None or link.purpose != purpose or link.expires_at <= datetime.now(UTC):
        return None
    journey = await session.get_one(Journey, link.journey_id)
    return Visit(token, link, journey, await session.get_one(Campaign, journey.campaign_id),
                 await session.get_one(Client, journey.client_id),
                 await session.get_one(Contact, journey.contact_id))


def csrf_scope(request: Request) -> str:
    """A form token is good for every form of one personal link (/c/<token>, /v/<token>)."""
    return "/".join(request.url.path.split("/")[:3])


def html(request: Request, state, name: str, language: str, context: dict[str, Any],
         status_code: int = 200) -> HTMLResponse:
    cookie = request.cookies.get(Csrf.COOKIE) or Csrf.new_cookie()
    scope = csrf_scope(request)
    body = render_page(name, language, {
        **context, "csrf_token": state.csrf.token(cookie, scope), "action": scope})
    response = HTMLResponse(body, status_code=status_code)
    response.set_cookie(Csrf.COOKIE, cookie, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


def invalid_link(request: Request, state) -> HTMLResponse:
    language = request.headers.get("accept-language", "en")[:2]
    return html(request, state, "link_invalid", language, {}, status.HTTP_404_NOT_FOUND)


def finished(request: Request, state, visit: Visit, stage: str | None = None) -> HTMLResponse:
    return html(request, state, "finished", visit.language,
                {"stage": stage or visit.journey.stage, "client_name": visit.client.name})


async def csrf_ok(request: Request, state) -> bool:
    form = await request.form()
    return state.csrf.valid(form.get("csrf_token"), request.cookies.get(Csrf.COOKIE),
                            csrf_scope(request))


def forbidden_page(request: Request, state, language: str) -> HTMLResponse:
    return html(request, state, "form_expired", language,
                {"retry_url": csrf_scope(request)}, status.HTTP_403_FORBIDDEN)


def forbidden(request: Request, state, visit: Visit) -> HTMLResponse:
    return forbidden_page(request, state, visit.language)


def consent_boxes(visit: Visit) -> list[dict[str, Any]]:
    boxes = []
    for box in visit.campaign.spec.get("consents", []):
        text = box["texts"].get(visit.language) or next(iter(box["texts"].values()))
        boxes.append({"key": box["key"], "mandatory": box["mandatory"], "text": text["text"]})
    return boxes


def update_error_type(err: Exception) -> str | None:
    cause = err.cause if isinstance(err, WorkflowUpdateFailedError) else None
    return cause.type if isinstance(cause, ApplicationError) else None


def who(request: Request) -> dict[str, Any]:
    return {"ip": request.client.host if request.client else None,
            "user_agent": (request.headers.get("user-agent") or "")[:500] or None}


# --- the contact page ----------------------------------------------------------------------


async def _form(request: Request, state, visit: Visit, *, values: dict[str, Any],
                errors: dict[str, str], status_code: int = 200) -> HTMLResponse:
    journey = visit.journey
    return html(request, state, "contact_form", visit.language, {
        "client_name": visit.client.name,
        "first_name": visit.contact.first_name,
        "incentive": visit.campaign.spec.get("incentive_text"),
        "consents": consent_boxes(visit),
        "values": values,
        "errors": errors,
        "sent_to": (journey.collected or {}).get("email")
        if journey.stage == Stage.verification_pending else None,
        "opt_out_action": f"{csrf_scope(request)}/opt-out",
    }, status_code)


@router.get("/c/{token}", response_class=HTMLResponse)
async def contact_page(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await resolve(session, token, TokenPurpose.contact_page)
    if visit is None:
        return invalid_link(request, state)
    if visit.journey.stage in FINAL_STAGES:
        return finished(request, state, visit)
    if visit.journey.stage == Stage.invited:
        handle = state.temporal.get_workflow_handle(visit.journey.workflow_id)
        try:
            await handle.signal(JourneyWorkflow.page_opened,
                                PageOpenedInput(opened_at=datetime.now(UTC)))
        except RPCError:
            pass  # a journey that just finished cannot be opened; the page still shows
    if visit.campaign.spec.get("kind") == JourneyKind.reconsent:
        [box] = consent_boxes(visit)
        return html(request, state, "reconsent_form", visit.language,
                    {"client_name": visit.client.name, "text": box["text"]})
    known = (visit.journey.collected or {}).get("email")
    if known is None:
        point = await crud.known_email(session, contact_id=visit.contact.id)
        known = point.value if point else ""
    return await _form(request, state, visit,
                       values={"email": known, "consents": set()}, errors={})


@router.post("/c/{token}", response_class=HTMLResponse)
async def submit_contact_page(token: str, request: Request, session: SessionDep, state: StateDep):
    given_at = datetime.now(UTC)
    visit = await resolve(session, token, TokenPurpose.contact_page)
    if visit is None:
        return invalid_link(request, state)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    form = await request.form()
    if visit.campaign.spec.get("kind") == JourneyKind.reconsent:
        return await _answer(request, state, session, visit, form.get("answer"), given_at)
    email_raw = str(form.get("email", "")).strip()
    ticked = set(form.getlist("consent"))
    errors: dict[str, str] = {}
    try:
        email = str(_email.validate_python(email_raw))
    except ValidationError:
        errors["email"] = "invalid_email"
    boxes = consent_boxes(visit)
    for box in boxes:
        if box["mandatory"] and box["key"] not in ticked:
            errors[f"consent-{box['key']}"] = "consent_required"
    if errors:
        return await _form(request, state, visit,
                           values={"email": email_raw, "consents": ticked}, errors=errors,
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    handle = state.temporal.get_workflow_handle(visit.journey.workflow_id)
    try:
        await handle.execute_update(JourneyWorkflow.submit_data, SubmitDataInput(
            email=email,
            consents=[ConsentDecision(key=b["key"], granted=b["key"] in ticked) for b in boxes],
            given_at=given_at, language=visit.language, **who(request)))
    except (WorkflowUpdateFailedError, RPCError) as err:
        if update_error_type(err) == ErrorType.too_many_submissions:
            return html(request, state, "finished", visit.language,
                        {"stage": "too_many_submissions", "client_name": visit.client.name},
                        status.HTTP_429_TOO_MANY_REQUESTS)
        await session.refresh(visit.journey)
        return finished(request, state, visit)
    # Post/redirect/get: a reload or the back button never submits twice.
    return RedirectResponse(request.url.path, status_code=status.HTTP_303_SEE_OTHER)


async def _answer(request: Request, state, session, visit: Visit, answer, given_at: datetime):
    if answer not in ("accept", "reject"):
        return html(request, state, "reconsent_form", visit.language, {
            "client_name": visit.client.name, "text": consent_boxes(visit)[0]["text"]},
            status.HTTP_422_UNPROCESSABLE_CONTENT)
    handle = state.temporal.get_workflow_handle(visit.journey.workflow_id)
    try:
        result = await handle.execute_update(JourneyWorkflow.answer_consent, ConsentAnswerInput(
            accepted=answer == "accept", given_at=given_at, language=visit.language,
            **who(request)))
    except (WorkflowUpdateFailedError, RPCError):
        await session.refresh(visit.journey)
        return finished(request, state, visit)
    return finished(request, state, visit, result.stage)


@router.post("/c/{token}/opt-out", response_class=HTMLResponse)
async def opt_out(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await resolve(session, token, TokenPurpose.contact_page)
    if visit is None:
        return invalid_link(request, state)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    if visit.journey.stage not in (Stage.verified, Stage.expired):
        try:
            await state.temporal.get_workflow_handle(visit.journey.workflow_id).signal(
                JourneyWorkflow.opt_out, OptOutInput(at=datetime.now(UTC), **who(request)))
        except RPCError:
            pass
    return finished(request, state, visit, Stage.opted_out)


# --- the verification link -----------------------------------------------------------------


@router.get("/v/{token}", response_class=HTMLResponse)
async def verification_page(token: str, request: Request, session: SessionDep, state: StateDep):
    # Only shows a button: mail scanners that fetch every link must not verify anyone.
    visit = await resolve(session, token, TokenPurpose.verify_email)
    if visit is None:
        return invalid_link(request, state)
    if visit.journey.stage != Stage.verification_pending:
        return finished(request, state, visit)
    return html(request, state, "confirm", visit.language, {
        "client_name": visit.client.name, "email": (visit.journey.collected or {}).get("email")})


@router.post("/v/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request, session: SessionDep, state: StateDep):
    confirmed_at = datetime.now(UTC)
    visit = await resolve(session, token, TokenPurpose.verify_email)
    if visit is None:
        return invalid_link(request, state)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    handle = state.temporal.get_workflow_handle(visit.journey.workflow_id)
    try:
        result = await handle.execute_update(JourneyWorkflow.confirm_email, ConfirmInput(
            step=visit.link.step, confirmed_at=confirmed_at, **who(request)))
    except (WorkflowUpdateFailedError, RPCError) as err:
        if update_error_type(err) == ErrorType.nothing_to_verify:
            await session.refresh(visit.journey)
            stage = visit.journey.stage
            return finished(request, state, visit,
                            stage if stage != Stage.verification_pending else "superseded")
        await session.refresh(visit.journey)
        return finished(request, state, visit)
    if result.refused:
        # Only the owner of the address sees this page (the link went to that mailbox).
        return finished(request, state, visit, "address_claimed")
    return finished(request, state, visit, result.stage)


