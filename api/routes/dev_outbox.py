"""Dev only: every message sent (emails, SMS, letters), newest first, with clickable links and
each letter's PDF, so a journey can be walked in a browser."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import StateDep
from messaging.dev_mail import read_outbox
from messaging.local_outbox import file_in_outbox, read_records
from messaging.rendering import render_page

router = APIRouter(prefix="/dev", include_in_schema=False)
# Browsers' PDF viewers break under default-src 'none' (they draw with inline styles), so the
# PDF gets a policy of its own: still never framed by another site.
PDF_POLICY = {"Content-Security-Policy": "frame-ancestors 'none'"}


@dataclass
class OutboxItem:
    channel: str
    at: datetime | None
    message: Any


@router.get("/outbox", response_class=HTMLResponse)
async def outbox(request: Request, state: StateDep) -> HTMLResponse:
    settings = state.settings
    items = [OutboxItem("email", mail.date, mail) for mail in read_outbox(settings.dev_maildir)]
    for channel, directory in (("sms", settings.sms_outbox_dir),
                               ("letter", settings.letter_outbox_dir)):
        items += [OutboxItem(channel, datetime.fromisoformat(r["sent_at"]), r)
                  for r in read_records(directory)]
    items.sort(key=lambda item: item.at.timestamp() if item.at else 0, reverse=True)
    return HTMLResponse(render_page("dev_outbox", "en", {"items": items}))


@router.get("/outbox/letters/{letter_id}.pdf")
async def letter_pdf(letter_id: str, state: StateDep) -> FileResponse:
    # Only an outbox id (hex) names a file, so no request can reach outside the outbox.
    path = file_in_outbox(state.settings.letter_outbox_dir, letter_id, ".pdf")
    if path is None:
        raise HTTPException(404, "no such letter")
    return FileResponse(path, media_type="application/pdf", headers=PDF_POLICY,
                        content_disposition_type="inline", filename=f"letter-{letter_id}.pdf")
