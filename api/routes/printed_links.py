"""`/l/<code>`: a personal link as paper prints it (letters, and the enrichment links clients
print on their own mail), for those who type it instead of scanning the QR code."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from api.deps import SessionDep, StateDep
from api.errors import browser_language
from api.public_forms import count_code_miss, limit_code_guesses
from api.routes.customer_page import html
from core.security import paper_code_sha256
from core.vocabulary import TokenPurpose
from db.models import LinkToken
from messaging.links import PATHS, link_token

router = APIRouter(include_in_schema=False)


# The path as printed, and as people type it: a phone capitalises it, or the l reads as a 1
# or, in the letter's sans-serif type where both are a plain bar, as a capital I.
PATH_AS_TYPED = ("l", "L", "1", "I", "i")


async def printed_link(code: str, request: Request, session: SessionDep, state: StateDep):
    return await _follow(code, request, session, state)


async def code_form(request: Request, session: SessionDep, state: StateDep,
                    code: Annotated[str, Query()] = ""):
    """The form for a code typed without its path; it sends the code here again. The form
    itself is free of the guessing limit."""
    if not code:
        return _form(request, state, code, status.HTTP_200_OK)
    await limit_code_guesses(request)
    return await _follow(code, request, session, state)


for path in PATH_AS_TYPED:
    router.get(f"/{path}/{{code}}", dependencies=[Depends(limit_code_guesses)])(printed_link)
    router.get(f"/{path}")(code_form)


async def _follow(code: str, request: Request, session, state):
    """On to the link the code stands for, where its page tells whether it is still valid;
    an unknown code gets the form back, to be checked against the paper. The whole printed
    link pasted into the form, or a full stop after it, still finds the code."""
    digest = paper_code_sha256(code[:100].rsplit("/", 1)[-1].strip(" .,;:"))
    link = digest and (await session.scalars(
        select(LinkToken).where(LinkToken.paper_code_sha256 == digest))).first()
    if not link:
        await count_code_miss(request)
        return _form(request, state, code, status.HTTP_404_NOT_FOUND)
    token = link_token(state.settings, purpose=TokenPurpose(link.purpose), step=link.step,
                       owner=link.journey_id or link.contact_id)
    return RedirectResponse(f"{PATHS[link.purpose]}{token}", status.HTTP_303_SEE_OTHER)


def _form(request: Request, state, code: str, status_code: int) -> HTMLResponse:
    return html(request, state, "printed_code", browser_language(request),
                {"code": code[:40], "unknown": bool(code)}, status_code)
