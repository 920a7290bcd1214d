"""Dev only: every message sent, with clickable links, so a journey can be walked in a browser."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.deps import StateDep
from messaging.dev_mail import read_outbox
from messaging.rendering import render_page

router = APIRouter(prefix="/dev", include_in_schema=False)


@router.get("/outbox", response_class=HTMLResponse)
async def outbox(request: Request, state: StateDep) -> HTMLResponse:
    emails = read_outbox(state.settings.dev_maildir)
    return HTMLResponse(render_page("dev_outbox", "en", {"emails": emails}))
