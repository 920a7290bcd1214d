"""Personal links in messages: token, URL, and the database row that makes it valid."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import security
from core.settings import Settings
from core.vocabulary import TokenPurpose
from db.crud import insert_ignoring_conflicts
from db.models import LinkToken, utcnow

PATHS = {TokenPurpose.contact_page: "/c/", TokenPurpose.verify_email: "/v/",
         TokenPurpose.preferences: "/p/", TokenPurpose.unsubscribe: "/u/",
         TokenPurpose.kyc_documents: "/k/"}


def link_token(settings: Settings, *, purpose: TokenPurpose, step: str, owner: uuid.UUID) -> str:
    return security.link_token(settings.secret_key.get_secret_value(), str(owner),
                               f"{purpose}:{step}")


async def issue(
    session: AsyncSession, settings: Settings, *, purpose: TokenPurpose, step: str,
    expires_at: datetime, journey_id: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None, scope: dict[str, Any] | None = None,
    base_url: str | None = None, printed: bool = False,
) -> str:
    """Stores the link's hash and returns its URL, on `base_url` (the client's custom domain)
    if given. The token derives from (owner, step), so a retried send issues the same link
    instead of a second one. A `printed` link also answers to its short code
    (`printed_link`)."""
    owner = journey_id or contact_id
    assert owner is not None
    token = link_token(settings, purpose=purpose, step=step, owner=owner)
    row = {"token_sha256": security.sha256_hex(token), "journey_id": journey_id,
           "contact_id": contact_id, "purpose": purpose, "step": step, "scope": scope,
           "expires_at": expires_at}
    if printed:
        row["paper_code_sha256"] = security.paper_code_sha256(
            _paper_code(settings, purpose=purpose, step=step, owner=owner))
    await insert_ignoring_conflicts(session, LinkToken, [row])
    return f"{_base(settings, base_url)}{PATHS[purpose]}{token}"


async def one_click_unsubscribe(
    session: AsyncSession, settings: Settings, *, step: str, contact_id: uuid.UUID,
    purpose: str | None, channel: str, base_url: str | None, language: str | None = None,
) -> tuple[str, dict[str, str]]:
    """A marketing email's unsubscribe link, and the RFC 8058 headers with which mail clients
    offer a one-click unsubscribe that POSTs to it. `language`: the message's, where it is not
    the contact's (a journey's), which its page then speaks."""
    scope = {"purpose": purpose, "channel": channel} | ({"language": language} if language else {})
    link = await issue(session, settings, purpose=TokenPurpose.unsubscribe, step=step,
                       contact_id=contact_id, expires_at=utcnow() + settings.preference_link_ttl,
                       scope=scope, base_url=base_url)
    return link, {"List-Unsubscribe": f"<{link}>",
                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def printed_link(settings: Settings, *, purpose: TokenPurpose, step: str, owner: uuid.UUID,
                 base_url: str | None = None) -> str:
    """What paper shows of a link issued `printed`, for those who type it: no scheme, and the
    short code in place of the token (`/l/<code>` finds the link)."""
    code = _paper_code(settings, purpose=purpose, step=step, owner=owner)
    return f"{_base(settings, base_url).split('://', 1)[-1]}{PAPER_PATH}{code}"


PAPER_PATH = "/l/"


def _paper_code(settings: Settings, *, purpose: TokenPurpose, step: str, owner: uuid.UUID) -> str:
    return security.paper_code(settings.secret_key.get_secret_value(), str(owner),
                               f"{purpose}:{step}")


def _base(settings: Settings, base_url: str | None) -> str:
    return (base_url or settings.public_base_url).rstrip("/")
