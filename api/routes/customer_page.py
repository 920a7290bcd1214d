"""The pages a customer reaches from a personal link: enter data, confirm, opt out.

Server-rendered and working without JavaScript. Personal data never appears in URLs; only the
opaque token does, and the database knows only its hash.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import exists, or_, select
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.codes import CODE_DIGITS
from api.deps import SessionDep, StateDep
from api.errors import UpdateLost, browser_language, raise_if_unavailable
from api.lost_journeys import LOST, end_if_lost
from api.public_forms import is_bot, limit_form_posts
from api.routes.campaigns import consent_form
from api.schemas import CodeSettings
from api.withdrawals import SUPERSEDED_BY_RECONSENT
from contacts import audit, registry
from contacts.audit import customer_actor
from contacts.schemas import AddressIn
from core.contracts import (
    ConfirmInput,
    ConsentAnswerInput,
    ConsentDecision,
    OptOutInput,
    SubmitCodeInput,
    SubmitDataInput,
)
from core.security import Csrf, sha256_hex
from core.vocabulary import (
    FINAL_STAGES,
    NOT_OPENED,
    PAGE_ADDRESS_FIELDS,
    REGION_COUNTRIES,
    AuditAction,
    CampaignMode,
    CancelledBy,
    ErrorType,
    JourneyKind,
    Stage,
    TokenPurpose,
)
from db import consents, crud
from db.models import (
    Campaign,
    CampaignClaim,
    Client,
    Contact,
    ContactAddress,
    ContactPoint,
    ContactSettings,
    Journey,
    JourneyEvent,
    LinkToken,
    OneTimeCode,
)
from messaging.branding import Brand, brand_for
from messaging.phone import (
    NotMobile,
    PhoneNumberError,
    display_phone,
    mobile_example,
    parse_phone,
)
from messaging.rendering import claim_view, language_names, render_page
from workflows.journey import JourneyWorkflow

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_form_posts)])
_email = TypeAdapter(EmailStr)


class Visit:
    """A resolved personal link: the token row, its journey and what the page needs to show."""

    def __init__(self, token: str, link: LinkToken, journey: Journey, campaign: Campaign,
                 client: Client, contact: Contact, region: str | None, not_withdrawn: bool,
                 claim_paid_at: datetime | None) -> None:
        self.token, self.link, self.journey = token, link, journey
        # Paid on this journey or on another of the claim's (an earlier link shows it paid).
        self.paid_at = journey.paid_at or claim_paid_at
        # Cancelled, but not by the client: by an operator, or ended because its workflow is
        # gone (api.lost_journeys). The page must not say the client withdrew it.
        self.not_withdrawn = not_withdrawn
        # How the finished page tells the journey's end, when not by its stage alone.
        self.ended_as: str | None = None
        # The client withdrew the claim (written off, settled otherwise): not asked of anyone.
        self.claim_withdrawn = False
        # The claim as it stands: a later round's amount, due date and payment link, once the
        # contact was enrolled with it again.
        self.claim = journey.claim
        # A real link past its time: its page says how things stand, not "not valid".
        self.expired = link.expires_at <= datetime.now(UTC)
        self.campaign, self.client, self.contact = campaign, client, contact
        # The client's phone region: numbers typed without a country code are read in it.
        self.region = region

    @property
    def language(self) -> str:
        """A verification link's pages speak the language chosen on them, if any: that
        mailbox may be a stranger's (a typo), whose choice is not the journey's."""
        return (self.link.scope or {}).get("language") or self.journey.language

    def brand(self, settings) -> Brand:
        return brand_for(self.client.name, self.client.branding,
                         self.campaign.spec.get("branding"), settings)

    @property
    def languages(self) -> list[str]:
        """What the customer may switch to: the campaign's languages."""
        return [code for code in self.campaign.spec.get("languages", []) if code in LANGUAGES]


def phone_region(visit: Visit, state) -> str:
    return visit.region or state.settings.default_phone_region


async def resolve(session, token: str, purpose: TokenPurpose) -> Visit | None:
    if len(token) > 100:
        return None
    # One round trip: every page of a link needs all of it.
    found = (await session.execute(
        select(LinkToken, Journey, Campaign, Client, Contact, ContactSettings.default_region,
               crud.taken_away(Journey.contact_id, crud.journey_message_recipient(
                   Journey.id, LinkToken.step).correlate(Journey, LinkToken)),
               exists().where(JourneyEvent.journey_id == Journey.id,
                              JourneyEvent.step == crud.CLAIM_WITHDRAWN_STEP)
               .correlate(Journey))
        .join(Journey, Journey.id == LinkToken.journey_id)
        .join(Campaign, Campaign.id == Journey.campaign_id)
        .join(Client, Client.id == Journey.client_id)
        .join(Contact, Contact.id == Journey.contact_id)
        .outerjoin(ContactSettings, ContactSettings.client_id == Journey.client_id)
        .where(LinkToken.token_sha256 == sha256_hex(token)))).first()
    if found is None:
        return None
    (link, journey, campaign, client, contact, region, sent_to_a_point_taken_away,
     claim_withdrawn) = found
    if link.purpose != purpose or sent_to_a_point_taken_away:
        return None
    # Asked only of the few journeys they concern, not on every visit of every page.
    not_withdrawn = journey.stage == Stage.cancelled and bool(await session.scalar(select(
        exists().where(JourneyEvent.journey_id == journey.id, or_(
            JourneyEvent.step == LOST,
            JourneyEvent.detail["by"].as_string().in_([CancelledBy.operator,
                                                       CancelledBy.system]))))))
    ended_as = None
    if journey.stage == Stage.cancelled and await session.scalar(select(exists().where(
            JourneyEvent.journey_id == journey.id,
            JourneyEvent.detail["reason"].as_string() == SUPERSEDED_BY_RECONSENT))):
        ended_as = "superseded_request"
    elif journey.stage == Stage.expired and not journey.collected and not await session.scalar(
            select(exists().where(JourneyEvent.journey_id == journey.id,
                                  JourneyEvent.type == "unverified_data_purged"))):
        # Its page must not speak of details entered: the customer entered none.
        ended_as = "expired_unanswered"
    claim_paid_at = await session.scalar(select(CampaignClaim.paid_at).where(
        crud.claim_of_journey(), Journey.id == journey.id)
    ) if journey.claim is not None and journey.paid_at is None else None
    visit = Visit(token, link, journey, campaign, client, contact, region, not_withdrawn,
                  claim_paid_at)
    visit.ended_as = ended_as
    if journey.claim is not None and visit.paid_at is None and journey.stage in FINAL_STAGES:
        # Enrolled again once this journey ended, the contact may owe it at another amount, by
        # another day, at another payment link, and owes it anew after a withdrawal: this
        # page must not send the customer to pay what no longer stands.
        visit.claim, claim_withdrawn = (await session.execute(
            select(Journey.claim, exists().where(
                JourneyEvent.journey_id == Journey.id,
                JourneyEvent.step == crud.CLAIM_WITHDRAWN_STEP).correlate(Journey))
            .where(Journey.campaign_id == journey.campaign_id,
                   Journey.contact_id == journey.contact_id,
                   Journey.claim["reference"].as_string() == journey.claim["reference"])
            .order_by(Journey.created_at.desc()).limit(1))).one()
    visit.claim_withdrawn = journey.claim is not None and visit.paid_at is None and claim_withdrawn
    return visit


LANGUAGES = language_names()


def language_switch(codes: list[str]) -> list[tuple[str, str]]:
    """The languages a page's switch offers, in the order given, each named in itself."""
    return [(code, LANGUAGES[code]) for code in codes]


def client_languages(client: Client) -> list[str]:
    """What a client's own pages (KYC, preferences) offer: every language, the client's
    default first, as a campaign's pages list the campaign's languages in its order."""
    return list(dict.fromkeys(
        code for code in (client.default_language, *LANGUAGES) if code in LANGUAGES))
# A fresh id in every rendered form: a form posted twice (a double click) is one Temporal
# update, so the second post gets the first one's answer instead of a second submission.
SUBMISSION_ID = re.compile(r"[A-Za-z0-9_\-]{16,64}")
PURPOSE_OF_PATH = {"c": TokenPurpose.contact_page, "v": TokenPurpose.verify_email}
# How long a page view waits on its journey's workflow (a worker busy or down) before it shows
# without what the workflow would have told.
RESENDS_QUERY_TIMEOUT = timedelta(seconds=3)


def csrf_scope(request: Request) -> str:
    """A form token is good for every form of one personal link (/c/<token>, /v/<token>)."""
    return "/".join(request.url.path.split("/")[:3])


def html(request: Request, state, name: str, language: str, context: dict[str, Any],
         status_code: int = 200, visit: Visit | None = None) -> HTMLResponse:
    """A page; with the visit, in the client's (or campaign's) branding with a language switch."""
    cookie = request.cookies.get(Csrf.COOKIE) or Csrf.new_cookie()
    scope = csrf_scope(request)
    if visit is not None:
        # A verification link went to an address the customer typed, maybe a stranger's (a
        # typo): its pages never show the claim, whatever step the journey is at. Nor does a page
        # show a claim the client withdrew: "Pay now" would ask for what is no longer owed.
        claim = None if visit.link.purpose == TokenPurpose.verify_email \
            or visit.claim_withdrawn else claim_view(visit.claim, visit.paid_at, language)
        context = {"client_name": visit.client.name, "brand": visit.brand(state.settings),
                   "languages": language_switch(visit.languages),
                   "claim": claim,
                   "collect": visit.campaign.spec.get("collect", ["email"]),
                   **context}
    body = render_page(name, language, {
        **context, "csrf_token": state.csrf.token(cookie, scope), "action": scope})
    response = HTMLResponse(body, status_code=status_code)
    response.set_cookie(Csrf.COOKIE, cookie, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


def invalid_link(request: Request, state) -> HTMLResponse:
    return html(request, state, "link_invalid", browser_language(request), {},
                status.HTTP_404_NOT_FOUND)


async def ended(request: Request, session, state, visit: Visit) -> HTMLResponse:
    """An expired link's page: how its journey ended, or, for a verification link that timed
    out while the journey goes on, that a newer link is the one to use, or (none was sent
    since) that the contact page sends one."""
    stage = visit.journey.stage
    if stage not in FINAL_STAGES and visit.link.purpose == TokenPurpose.contact_page:
        stage = "expired"
    elif stage not in FINAL_STAGES:
        # Each verification link lives longer than the ones sent before it.
        newer = await session.scalar(select(exists().where(
            LinkToken.journey_id == visit.journey.id,
            LinkToken.purpose == TokenPurpose.verify_email,
            LinkToken.expires_at > visit.link.expires_at)))
        stage = "superseded" if newer else "link_expired"
    return finished(request, state, visit, stage, status.HTTP_410_GONE)


async def address_replaced(session, visit: Visit) -> bool:
    """A verification link to an address the customer has since replaced (or whose data was
    purged unconfirmed): it confirms nothing, whatever became of the journey."""
    if visit.link.purpose != TokenPurpose.verify_email:
        return False
    sent_to = await session.scalar(select(crud.journey_message_recipient(
        visit.journey.id, visit.link.step)))
    return sent_to is None or sent_to != (visit.journey.collected or {}).get("email")


def no_longer_valid(request: Request, state, visit: Visit) -> HTMLResponse:
    """The page of a replaced address's link. That mailbox is often a stranger's (typed by
    mistake): it learns neither the new address nor how the journey went, and gets no form:
    nothing is left to do there."""
    return html(request, state, "finished", visit.language,
                {"stage": "replaced", "languages": []},
                status.HTTP_410_GONE, visit=visit)


def finished(request: Request, state, visit: Visit, stage: str | None = None,
             status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    stage = stage or visit.journey.stage
    if stage == Stage.cancelled and visit.not_withdrawn:
        stage = "lost"
    elif stage == visit.journey.stage and visit.ended_as:
        # A re-consent request a newer one replaced; an expired one nobody answered.
        stage = visit.ended_as
    return html(request, state, "finished", visit.language, {
        "stage": stage, "reconsent": visit.campaign.spec.get("kind") == JourneyKind.reconsent},
        status_code, visit=visit)


async def csrf_ok(request: Request, state) -> bool:
    form = await request.form()
    return state.csrf.valid(form.get("csrf_token"), request.cookies.get(Csrf.COOKIE),
                            csrf_scope(request))


def forbidden_page(request: Request, state, language: str,
                   visit: Visit | None = None) -> HTMLResponse:
    return html(request, state, "form_expired", language,
                {"retry_url": csrf_scope(request)}, status.HTTP_403_FORBIDDEN, visit=visit)


def forbidden(request: Request, state, visit) -> HTMLResponse:
    """The form-expired page for a journey's visit (branded) or another page's (e.g. KYC)."""
    return forbidden_page(request, state, visit.language,
                          visit if isinstance(visit, Visit) else None)


async def posted_visit(request: Request, session, state, token: str, purpose: TokenPurpose,
                       *, ended_too: bool = False) -> Visit | HTMLResponse:
    """The visit behind a form post, or the page to answer with: an invalid link or a failed
    CSRF check, and, unless `ended_too` (a form of the ended page itself), an expired link's
    page."""
    visit = await resolve(session, token, purpose)
    if visit is None:
        return invalid_link(request, state)
    if await address_replaced(session, visit):
        return no_longer_valid(request, state, visit)
    if visit.expired and not ended_too:
        return await ended(request, session, state, visit)
    if not await csrf_ok(request, state):
        return forbidden(request, state, visit)
    return visit


def consent_boxes(visit: Visit) -> list[dict[str, Any]]:
    boxes = []
    for box in visit.campaign.spec.get("consents", []):
        text = box["texts"].get(visit.language) or next(iter(box["texts"].values()))
        boxes.append({"key": box["key"], "mandatory": box["mandatory"], "text": text["text"],
                      "purpose": box["purpose"], "channel": box["channel"], "legal": text})
    return boxes


async def show_consents(request: Request, session, visit: Visit, shown_in: str) -> dict[str, str]:
    """Records each consent text the page is about to show; the form sends the ids back."""
    displays = await consents.record_displays(
        session, contact=visit.contact, journey_id=visit.journey.id, shown_in=shown_in,
        texts={b["key"]: (b["purpose"], b["channel"], b["legal"]) for b in consent_boxes(visit)},
        **who(request))
    await session.commit()
    return displays


def update_error_type(err: Exception) -> str | None:
    cause = err.cause if isinstance(err, WorkflowUpdateFailedError) else None
    return cause.type if isinstance(cause, ApplicationError) else None


def who(request: Request) -> dict[str, Any]:
    return {"ip": request.client.host if request.client else None,
            "user_agent": (request.headers.get("user-agent") or "")[:500] or None}


# --- the contact page ----------------------------------------------------------------------


def awaiting(journey: Journey, kind: str) -> str | None:
    """The entered email/mobile still awaiting verification, if any."""
    collected = journey.collected or {}
    if journey.stage == Stage.verification_pending and not collected.get(f"{kind}_verified_at"):
        return collected.get(kind)
    return None


def confirmed(journey: Journey) -> list[str]:
    """The entered email/mobile verified while the journey awaits the other."""
    collected = journey.collected or {}
    return [kind for kind in ("email", "mobile") if journey.stage == Stage.verification_pending
            and collected.get(f"{kind}_verified_at")]


async def code_usable(session, visit: Visit, mobile: str) -> bool | None:
    """Whether the code out for the number can still be typed; False once it cannot (expired,
    or locked by wrong tries), and the page says so instead of "we sent a code"; None when
    none went out (the number's daily cap): told as any code."""
    code = await session.scalar(select(OneTimeCode).where(
        OneTimeCode.journey_id == visit.journey.id).order_by(OneTimeCode.expires_at.desc())
        .limit(1))
    if code is None or code.recipient != mobile or code.sent_at is None:
        return None
    # The journey's limit, kept by its checks; before one, no try was wrong.
    limit = code.max_wrong_tries
    if limit is None:
        limit = CodeSettings.model_validate(
            visit.campaign.spec.get("verification", {})).code_max_wrong_tries
    return code.expires_at > datetime.now(UTC) and code.wrong_tries < limit


async def code_resends_left(state, visit: Visit) -> int | None:
    """The new codes the journey still sends on "send me a new code" (its own limit: the
    campaign's may have changed since it started); None when its workflow does not answer."""
    handle = state.temporal.get_workflow_handle(visit.journey.workflow_id)
    try:
        return (await handle.query(JourneyWorkflow.state, rpc_timeout=RESENDS_QUERY_TIMEOUT)
                ).code_resends_left
    except (RPCError, WorkflowQueryFailedError):
        # The page still shows, offering the button as if a new code could be sent.
        return None


@dataclass
class Known:
    """What the registry already holds about the visit's contact, loaded once per page."""
    points: dict[str, ContactPoint]
    address: ContactAddress | None


async def known_data(session, visit: Visit) -> Known:
    return Known(await crud.known_points(session, contact_id=visit.contact.id),
                 await crud.current_address(session, contact_id=visit.contact.id))


def shows_known(visit: Visit, known: Known) -> bool:
    """Whether the page asks to confirm details the client has: in verify-existing mode, where
    the registry holds any the page asks for. With none to show, it asks for them as a
    collecting page does, not whether empty fields are "still right"."""
    collect = visit.campaign.spec.get("collect", ["email"])
    return visit.campaign.spec.get("mode") == CampaignMode.verify_existing and (
        any(kind in known.points for kind in collect)
        or ("address" in collect and known.address is not None))


def profile_complete(visit: Visit, known: Known) -> int:
    """How much of the contact's profile is known, in percent: name, email address, mobile
    number and postal address count equally; what was entered and awaits verification counts.
    In verify-existing mode what the page asks to confirm counts once the customer confirmed
    or corrected it: the known data shown is what is in question."""
    contact, collected = visit.contact, visit.journey.collected or {}
    in_question = set(visit.campaign.spec.get("collect", ["email"])) if (
        visit.campaign.spec.get("mode") == CampaignMode.verify_existing) else set()
    present = {"email": "email" in known.points, "mobile": "mobile" in known.points,
               "address": known.address is not None}
    parts = [bool(contact.first_name or contact.last_name or contact.company_name),
             *(bool(collected.get(kind)) or (has and kind not in in_question)
               for kind, has in present.items())]
    return round(100 * sum(parts) / len(parts))


async def _form(request: Request, state, session, visit: Visit, *, values: dict[str, Any],
                errors: dict[str, str], status_code: int = 200,
                notice: dict[str, Any] | None = None, known: Known | None = None,
                shown: set[str] | None = None) -> HTMLResponse:
    """`shown`: the consent boxes a refused form was first shown ticked, against which its
    changes count (else those of `values`, as shown now)."""
    journey = visit.journey
    mobile = awaiting(journey, "mobile")
    usable = await code_usable(session, visit, mobile) if mobile else None
    notice = notice or {}
    if usable is False and "resends_left" not in notice and "resent" not in notice:
        # A dead code's page tells the way to a new one: "send me a new code" while the
        # journey sends one, else the number entered again.
        notice = {**notice, "resends_left": await code_resends_left(state, visit)}
    known = known or await known_data(session, visit)
    return html(request, state, "contact_form", visit.language, {
        "verify_existing": shows_known(visit, known),
        "displays": await show_consents(request, session, visit, "contact_page"),
        "code_to": display_phone(mobile, phone_region(visit, state)) if mobile else None,
        "confirmed": confirmed(journey),
        "address_fields": address_fields(visit, state, known.address),
        "code_dead": usable is False,
        "code_usable": usable is True,
        "mobile_example": mobile_example(phone_region(visit, state)),
        "notice": notice,
        "first_name": visit.contact.first_name,
        "last_name": visit.contact.last_name,
        "complete": profile_complete(visit, known),
        "incentive": visit.campaign.spec.get("incentive_text"),
        "consents": consent_boxes(visit),
        "values": values,
        "shown": values["consents"] if shown is None else shown,
        "errors": errors,
        "sent_to": awaiting(journey, "email"),
        "opt_out_action": f"{csrf_scope(request)}/opt-out",
        "submission": secrets.token_urlsafe(16),
    }, status_code, visit=visit)


def address_fields(visit: Visit, state, known: ContactAddress | None) -> list[str]:
    """The address parts the page asks for: the region only where the country (the known
    address's, else the client's) uses one, or the known address has one to keep."""
    country = known.country if known else phone_region(visit, state)
    asks_region = bool(known and known.region) or country in REGION_COUNTRIES
    return [f for f in PAGE_ADDRESS_FIELDS if f != "region" or asks_region]


def address_view(address: ContactAddress | None) -> dict[str, Any] | None:
    """The contact's current address as the page shows it."""
    return None if address is None else {
        "type": address.type, **{f: getattr(address, f) or "" for f in PAGE_ADDRESS_FIELDS}}


async def entered_address(session, state, contact: Contact, raw: dict[str, str]
                          ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The address as typed, checked like the registry does; it keeps the type of the address
    it corrects (a new one takes the client's type for it)."""
    known = address_view(await crud.current_address(session, contact_id=contact.id))
    if known is not None:
        kind = known["type"]
    else:
        reg = await registry.registry_for(session, client_id=contact.client_id,
                                          secret_key=state.settings.secret_key.get_secret_value())
        # A client that keeps no addresses still sees the one typed in its report.
        kind = reg.settings.entered_address_type or "home"
    if (known is not None and raw.get("region") and raw["region"] == known["region"]
            and raw.get("country", "").upper() != known["country"]):
        # The known address's state or province, shown filled in, is of its country: sent
        # back as it was beside another country (the customer moved abroad), it is none of the
        # new address's ("IL" in the Netherlands).
        raw = {f: v for f, v in raw.items() if f != "region"}
    try:
        address = AddressIn.model_validate({
            "type": kind,
            **{f: v or None for f, v in raw.items()}})
    except ValidationError as err:
        return None, {f"address_{e['loc'][0]}": "too_long" if e["type"] == "string_too_long"
                      else "invalid" for e in err.errors()}
    # A part the page did not ask for (the region) is not entered: the known one stays.
    return address.model_dump(include={"type", *raw}), {}


async def journey_of(session, state, visit: Visit) -> WorkflowHandle:
    """The visit's journey workflow, to signal or update. The request's transaction ends
    first: customers waiting on their journeys hold no database connections meanwhile."""
    await session.commit()
    return state.temporal.get_workflow_handle(visit.journey.workflow_id)


async def refused(session, state, visit: Visit, err: WorkflowUpdateFailedError | RPCError
                  ) -> None:
    """Brings the visit's journey up to date after its workflow refused the customer's request.
    A journey whose workflow is gone (terminated by an operator, ...) is ended as cancelled, so
    that the page says the request has ended rather than thanking them for nothing."""
    raise_if_unavailable(err)
    await session.refresh(visit.journey)
    if (isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND
            and visit.journey.stage not in FINAL_STAGES):
        if not await end_if_lost(session, state.temporal, state.endpoints, visit.journey):
            # The workflow runs, but the server lost the request (its update registry cleared
            # in a restart): the customer must send it again, not be thanked for it.
            raise UpdateLost() from err
        await session.commit()
        visit.not_withdrawn = True


@router.get("/c/{token}", response_class=HTMLResponse)
async def contact_page(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await resolve(session, token, TokenPurpose.contact_page)
    if visit is None:
        return invalid_link(request, state)
    if visit.expired:
        return await ended(request, session, state, visit)
    if visit.journey.stage in FINAL_STAGES:
        return finished(request, state, visit)
    if visit.journey.stage in NOT_OPENED:
        # The first visit is a fact for the funnel and the activity feed, written with the
        # page's other writes; the journey's course does not depend on it, so a page view
        # costs no workflow task.
        await crud.record_opened(session, journey=visit.journey, at=datetime.now(UTC),
                                 link_step=visit.link.step)
    return await _contact_page(request, session, state, visit)


async def _contact_page(request: Request, session, state, visit: Visit) -> HTMLResponse:
    if visit.campaign.spec.get("kind") == JourneyKind.reconsent:
        return await _reconsent_form(request, session, state, visit)
    # The page shows the contact's data to whoever holds the link: an audited read (committed
    # with the consent texts the form shows).
    await audit.record(session, client_id=visit.journey.client_id, actor=customer_actor(
        visit.journey), action=AuditAction.read, contact_ids=[visit.contact.id],
        detail={"view": "contact_page"})
    known = await known_data(session, visit)
    return await _form(request, state, session, visit, known=known, errors={},
                       values=await _values(session, state, visit, known))


async def standing_consents(session, visit: Visit) -> set[str]:
    """The consent boxes the contact's decisions have granted now (as the preference centre
    ticks them): the answer given in this journey, or before it (through the client, another
    campaign), so that a box the customer does not touch withdraws nothing."""
    current = await consents.preferences(session, contact_id=visit.contact.id)
    return {box["key"] for box in consent_boxes(visit) if getattr(
        consents.governing(current, box["purpose"], box["channel"]), "granted", False)}


async def _values(session, state, visit: Visit, known: Known) -> dict[str, Any]:
    """The form as the customer last left it in this journey (else as the registry knows
    them): an unchanged field or box stays as decided when they correct another."""
    collected = visit.journey.collected or {}
    email = collected.get("email")
    if email is None:
        email = known.points["email"].value if "email" in known.points else ""
    mobile = collected.get("mobile")
    if mobile is None and "mobile" in known.points:
        mobile = known.points["mobile"].value
    address = collected.get("address") or address_view(known.address) or {
        "country": phone_region(visit, state)}
    return {"email": email, "address": address,
            "consents": await standing_consents(session, visit),
            "mobile": display_phone(mobile, phone_region(visit, state)) if mobile else ""}


@router.post("/c/{token}", response_class=HTMLResponse)
async def submit_contact_page(token: str, request: Request, session: SessionDep, state: StateDep):
    given_at = datetime.now(UTC)
    visit = await posted_visit(request, session, state, token, TokenPurpose.contact_page)
    if isinstance(visit, HTMLResponse):
        return visit
    if await is_bot(request):
        # Answered like a success, so the bot learns nothing; nothing is recorded.
        return RedirectResponse(request.url.path, status_code=status.HTTP_303_SEE_OTHER)
    form = await request.form()
    if visit.campaign.spec.get("kind") == JourneyKind.reconsent:
        return await _answer(request, state, session, visit, form, given_at)
    collect = visit.campaign.spec.get("collect", ["email"])
    email_raw = str(form.get("email", "")).strip()
    mobile_raw = str(form.get("mobile", "")).strip()
    ticked = set(form.getlist("consent"))
    # The boxes the form showed ticked: only a box the customer changed from that is their
    # new decision (see `record_submission`). A form of a page served before the page said
    # so counts every box.
    shown = set(filter(None, str(form["shown"]).split(","))) if "shown" in form else None
    errors: dict[str, str] = {}
    email = mobile = None
    if "email" in collect:
        try:
            email = str(_email.validate_python(email_raw))
        except ValidationError:
            errors["email"] = "invalid_email"
    if "mobile" in collect:
        try:
            mobile = parse_phone(mobile_raw, phone_region(visit, state))
        except NotMobile:
            errors["mobile"] = "not_mobile"
        except PhoneNumberError:
            errors["mobile"] = "invalid_mobile"
    address_raw = {f: str(form.get(f"address_{f}", "")).strip() for f in PAGE_ADDRESS_FIELDS
                   if f"address_{f}" in form or f != "region"}
    address = None
    if "address" in collect:
        address, problems = await entered_address(session, state, visit.contact, address_raw)
        errors.update(problems)
    # A box whose key the campaign gave to another consent since the form was shown asks
    # what the customer has not seen: its answer is no answer (unticked, nothing recorded),
    # and a mandatory one is asked again.
    asked = consent_boxes(visit)
    repurposed = await consents.asked_otherwise(session, contact_id=visit.contact.id, boxes={
        b["key"]: (b["purpose"], b["channel"], form.get(f"display-{b['key']}")) for b in asked})
    ticked -= repurposed
    shown = None if shown is None else shown - repurposed
    # A form that says what it showed answers only the boxes it had; one added since is asked
    # on the next page, not declined unseen (a mandatory one before this form is taken).
    boxes = [b for b in asked if b["mandatory"] or (
        b["key"] not in repurposed and (shown is None or f"display-{b['key']}" in form))]
    for box in boxes:
        if box["mandatory"] and box["key"] not in ticked:
            errors[f"consent-{box['key']}"] = "consent_required"
    if errors:
        return await _form(request, state, session, visit, errors=errors,
                           values={"email": email_raw, "mobile": mobile_raw, "consents": ticked,
                                   "address": address_raw}, shown=shown,
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    if email is not None:
        # Kept in another letter case, the known address is no correction to verify anew.
        email = await crud.as_known_email(session, contact_id=visit.contact.id, value=email)
    handle = await journey_of(session, state, visit)
    submission = str(form.get("submission", ""))
    try:
        result = await handle.execute_update(JourneyWorkflow.submit_data, SubmitDataInput(
            email=email, mobile=mobile, address=address,
            consents=[ConsentDecision(key=b["key"], granted=b["key"] in ticked,
                                      display_id=form.get(f"display-{b['key']}"),
                                      shown=None if shown is None else b["key"] in shown)
                      for b in boxes],
            given_at=given_at, language=visit.language, link_step=visit.link.step,
            **who(request)),
            id=f"submit/{submission}" if SUBMISSION_ID.fullmatch(submission) else None)
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise_if_unavailable(err)  # before reading the refusal: unreachable is no refusal
        if update_error_type(err) == ErrorType.too_many_submissions:
            return html(request, state, "finished", visit.language,
                        {"stage": "too_many_submissions"}, status.HTTP_429_TOO_MANY_REQUESTS,
                        visit=visit)
        await refused(session, state, visit, err)
        return finished(request, state, visit)
    if result.undeliverable:
        # The mail server refused the address: asked for another where it was typed.
        await session.refresh(visit.journey)
        return await _form(request, state, session, visit, errors={"email": "undeliverable"},
                           values={"email": email_raw, "mobile": "", "consents": ticked,
                                   "address": address_raw},
                           status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    if result.refused:
        # Opened through the invitation to that very address or number: its owner reads why
        # keeping it confirmed nothing, where they can enter another.
        await session.refresh(visit.journey)
        return await _form(request, state, session, visit,
                           errors={kind: "claimed" for kind in result.refused},
                           values={"email": email_raw, "mobile": mobile_raw, "consents": ticked,
                                   "address": address_raw},
                           status_code=status.HTTP_409_CONFLICT)
    if result.code_kept:
        # Told why no SMS comes; posting this page again changes nothing.
        return await _after_code(request, state, session, visit, {"code_kept": True})
    # Post/redirect/get: a reload or the back button never submits twice.
    return RedirectResponse(request.url.path, status_code=status.HTTP_303_SEE_OTHER)


async def _reconsent_form(request: Request, session, state, visit: Visit,
                          status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    if consent_form(visit.campaign) is None:
        # A campaign stored without its form (before that was refused): nothing to answer.
        return finished(request, state, visit, "lost")
    [box] = consent_boxes(visit)
    displays = await show_consents(request, session, visit, "reconsent_page")
    return html(request, state, "reconsent_form", visit.language, {
        "text": box["text"], "display_id": displays[box["key"]],
        # Marked on the page where it differs from the page's (a screen reader's voice).
        "text_language": box["legal"].get("language", visit.language)}, status_code, visit=visit)


async def _answer(request: Request, state, session, visit: Visit, form, given_at: datetime):
    answer = form.get("answer")
    if answer not in ("accept", "reject") or consent_form(visit.campaign) is None:
        return await _reconsent_form(request, session, state, visit,
                                     status.HTTP_422_UNPROCESSABLE_CONTENT)
    handle = await journey_of(session, state, visit)
    try:
        result = await handle.execute_update(JourneyWorkflow.answer_consent, ConsentAnswerInput(
            accepted=answer == "accept", given_at=given_at, language=visit.language,
            display_id=form.get("display"), **who(request)))
    except (WorkflowUpdateFailedError, RPCError) as err:
        await refused(session, state, visit, err)
        # The other button of a page gone back to: the first answer stands, and the page must
        # not thank the customer for saving this one.
        other = Stage.rejected if answer == "accept" else Stage.accepted
        return finished(request, state, visit,
                        "answered_before" if visit.journey.stage == other else None)
    return finished(request, state, visit, result.stage)


async def _after_code(request: Request, state, session, visit: Visit,
                      notice: dict[str, Any]) -> HTMLResponse:
    await session.refresh(visit.journey)
    if visit.journey.stage in FINAL_STAGES:
        return finished(request, state, visit)
    wrong = notice.get("outcome") in ("wrong", "malformed", "expired", "locked")
    # The right code for a number the household rule keeps with another customer.
    claimed = notice.get("outcome") == "refused"
    known = await known_data(session, visit)
    return await _form(request, state, session, visit, errors={"code": "1"} if wrong else {},
                       values=await _values(session, state, visit, known), known=known,
                       notice=notice,
                       status_code=status.HTTP_422_UNPROCESSABLE_CONTENT if wrong
                       else status.HTTP_409_CONFLICT if claimed else 200)


# A whole SMS pasted into the code field fits (a long client name, the campaign's own wording).
PASTED_SMS_CHARS = 500
# The code in such an SMS: six digits standing alone, in any script a phone's keyboard types.
CODE_IN_TEXT = re.compile(rf"(?<!\d)\d{{{CODE_DIGITS}}}(?!\d)")


def typed_code(text: str) -> str:
    """What the customer typed as the code: its digits where there are six ("123 456"),
    else the one six-digit number in an SMS pasted whole (the campaign's wording may put words
    before the code), else a slip as typed, which costs no try. The journey (and the Temporal
    UI) gets the code, not the message around it."""
    digits = "".join(ch for ch in text if ch.isdecimal())
    if len(digits) == CODE_DIGITS:
        return digits
    found = CODE_IN_TEXT.findall(text)
    return found[0] if len(found) == 1 else text[:20]


@router.post("/c/{token}/code", response_class=HTMLResponse)
async def submit_code(token: str, request: Request, session: SessionDep, state: StateDep):
    at = datetime.now(UTC)
    visit = await posted_visit(request, session, state, token, TokenPurpose.contact_page)
    if isinstance(visit, HTMLResponse):
        return visit
    code = typed_code(str((await request.form()).get("code", ""))[:PASTED_SMS_CHARS])
    try:
        result = await (await journey_of(session, state, visit)).execute_update(
            JourneyWorkflow.submit_code, SubmitCodeInput(code=code, at=at, **who(request)))
    except (WorkflowUpdateFailedError, RPCError) as err:
        await refused(session, state, visit, err)
        return await _after_code(request, state, session, visit, {})
    return await _after_code(request, state, session, visit,
                             {"outcome": result.outcome, "tries_left": result.tries_left,
                              "resends_left": result.resends_left})


@router.post("/c/{token}/resend-code", response_class=HTMLResponse)
async def resend_code(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await posted_visit(request, session, state, token, TokenPurpose.contact_page)
    if isinstance(visit, HTMLResponse):
        return visit
    try:
        result = await (await journey_of(session, state, visit)).execute_update(
            JourneyWorkflow.resend_code)
    except (WorkflowUpdateFailedError, RPCError) as err:
        await refused(session, state, visit, err)
        return await _after_code(request, state, session, visit, {})
    return await _after_code(request, state, session, visit, {
        "resent": result.asked, "retry_after": result.retry_after_seconds,
        # Kept back by the number's daily cap: told where a code went out, dead or still the
        # one to type ("a new code is on its way" would have them wait for nothing); where
        # none did, the page answers as for any number.
        "held_back": result.asked and not result.sent})


@router.post("/c/{token}/opt-out", response_class=HTMLResponse)
async def opt_out(token: str, request: Request, session: SessionDep, state: StateDep):
    visit = await posted_visit(request, session, state, token, TokenPurpose.contact_page)
    if isinstance(visit, HTMLResponse):
        return visit
    if visit.journey.stage not in (Stage.verified, Stage.expired):
        try:
            await (await journey_of(session, state, visit)).signal(
                JourneyWorkflow.opt_out, OptOutInput(at=datetime.now(UTC), **who(request)))
        except RPCError as err:
            # Never "you will not be asked again" for an opt-out that was not recorded.
            await refused(session, state, visit, err)
            return finished(request, state, visit)
    return finished(request, state, visit, Stage.opted_out)


@router.post("/c/{token}/language", response_class=HTMLResponse)
@router.post("/v/{token}/language", response_class=HTMLResponse)
async def switch_language(token: str, request: Request, session: SessionDep, state: StateDep):
    """Shows the link's pages in another of the campaign's languages. Chosen on the contact
    page, it is kept for the rest of the journey (its later emails too); on a verification
    link, whose mailbox may be a stranger's, only for that link's pages. Only the token is in
    the URL; the choice is posted."""
    # The ended page offers the switch too: it must be readable in the customer's language.
    visit = await posted_visit(request, session, state, token,
                               PURPOSE_OF_PATH[request.url.path[1]], ended_too=True)
    if isinstance(visit, HTMLResponse):
        return visit
    language = (await request.form()).get("language")
    if language in visit.languages:
        if visit.link.purpose == TokenPurpose.verify_email:
            visit.link.scope = {**(visit.link.scope or {}), "language": language}
        else:
            visit.journey.language = language
        await session.commit()
    return RedirectResponse(csrf_scope(request), status_code=status.HTTP_303_SEE_OTHER)


# --- the verification link -----------------------------------------------------------------


# Where the page's forms post. Reloaded (the address bar shows one after a code was posted),
# such an address leads back to its page instead of a 405 in JSON.
POSTED_TO = {"c": {"code", "resend-code", "opt-out", "language"}, "v": {"language"},
             "k": {"language"}, "p": {"language"}}


@router.get("/c/{token}/{action}", include_in_schema=False)
@router.get("/v/{token}/{action}", include_in_schema=False)
@router.get("/k/{token}/{action}", include_in_schema=False)
@router.get("/p/{token}/{action}", include_in_schema=False)
async def back_to_the_page(request: Request, token: str, action: str) -> RedirectResponse:
    page = request.url.path.split("/")[1]
    if action not in POSTED_TO[page]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return RedirectResponse(f"/{page}/{token}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/v/{token}", response_class=HTMLResponse)
async def verification_page(token: str, request: Request, session: SessionDep, state: StateDep):
    # Only shows a button: mail scanners that fetch every link must not verify anyone.
    visit = await resolve(session, token, TokenPurpose.verify_email)
    if visit is None:
        return invalid_link(request, state)
    # Before the journey's own outcome: "your address is confirmed" would be false for a
    # mailbox whose address a correction replaced.
    if await address_replaced(session, visit):
        return no_longer_valid(request, state, visit)
    if visit.expired:
        return await ended(request, session, state, visit)
    # `data_entered`: the mail arrived before its send was recorded (a moment, or longer
    # when a worker died in between); the confirmation decides whether the link still counts.
    if visit.journey.stage not in (Stage.data_entered, Stage.verification_pending):
        return finished(request, state, visit)
    return html(request, state, "confirm", visit.language,
                {"email": visit.journey.collected["email"]}, visit=visit)


@router.post("/v/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request, session: SessionDep, state: StateDep):
    confirmed_at = datetime.now(UTC)
    visit = await posted_visit(request, session, state, token, TokenPurpose.verify_email)
    if isinstance(visit, HTMLResponse):
        return visit
    handle = await journey_of(session, state, visit)
    try:
        result = await handle.execute_update(JourneyWorkflow.confirm_email, ConfirmInput(
            step=visit.link.step, confirmed_at=confirmed_at, **who(request)))
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise_if_unavailable(err)
        if update_error_type(err) == ErrorType.nothing_to_verify:
            await session.refresh(visit.journey)
            stage = visit.journey.stage
            return finished(request, state, visit,
                            stage if stage != Stage.verification_pending else "superseded")
        await refused(session, state, visit, err)
        return finished(request, state, visit)
    if result.refused:
        # Only the owner of the address sees this page (the link went to that mailbox).
        return finished(request, state, visit, "address_claimed")
    if result.stage == Stage.verification_pending:
        # The email is confirmed, the number still awaits its code: "thank you, nothing more
        # to do" would leave the journey unverified.
        return finished(request, state, visit, "email_confirmed")
    return finished(request, state, visit, result.stage)


