"""Personal links in messages: token, URL, and the database row that makes it valid."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import security
from core.settings import Settings
from core.vocabulary import TokenPurpose
from db.crud import insert_ignoring_conflicts
from db.models import LinkToken

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
    base_url: str | None = None,
) -> str:
    """Stores the link's hash and returns its URL, on `base_url` (the client's custom domain)
    if given. The token derives from (owner, step), so a retried send issues the same link
    instead of a second one."""
    token = link_token(settings, purpose=purpose, step=step, owner=journey_id or contact_id)
    await insert_ignoring_conflicts(session, LinkToken, [{
        "token_sha256": security.sha256_hex(token), "journey_id": journey_id,
        "contact_id": contact_id, "purpose": purpose, "step": step, "scope": scope,
        "expires_at": expires_at}])
    return f"{(base_url or settings.public_base_url).rstrip('/')}{PATHS[purpose]}{token}"
