"""Bot protection for the customer pages without friction: per-IP and per-link rate limits on
every form post (counted in the database, shared by all API instances), and a honeypot field
that people never see. No third-party captcha calls."""

from datetime import UTC, datetime

from fastapi import Request

from api.deps import AppState
from core.security import sha256_hex
from db import crud
from db.session import transaction

HONEYPOT = "website"


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many form posts")
        self.retry_after = retry_after


async def limit_form_posts(request: Request) -> None:
    """Router dependency: counts a POST against its IP and its link, refusing past the limits."""
    await _limit(request, per_link=True)


async def limit_posts_per_ip(request: Request) -> None:
    """For a form on a shared address (the dashboard's login): its IP only, or one busy client
    would lock every other out."""
    await _limit(request, per_link=False)


async def limit_code_lookups(request: Request) -> None:
    """For the short codes of printed links: every lookup counts against its IP, as each guess
    of a code is one."""
    state: AppState = request.app.state.journeys
    await _count(request, {f"code:ip:{_ip(request)}":
                           state.settings.printed_code_lookups_per_ip_per_minute})


async def _limit(request: Request, *, per_link: bool) -> None:
    if request.method != "POST":
        return
    state: AppState = request.app.state.journeys
    limits = {f"form:ip:{_ip(request)}": state.settings.form_posts_per_ip_per_minute}
    if per_link:
        # Hashed: the link token itself never lands in a table.
        link = "/".join(request.url.path.split("/")[:3])
        limits[f"form:link:{sha256_hex(link)}"] = state.settings.form_posts_per_link_per_minute
    await _count(request, limits)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _count(request: Request, limits: dict[str, int]) -> None:
    state: AppState = request.app.state.journeys
    now = datetime.now(UTC)
    window = now.replace(second=0, microsecond=0)
    async with transaction(state.counters) as session:
        hits = await crud.count_hits(session, keys=list(limits), window_start=window)
    if any(hits[key] > limit for key, limit in limits.items()):
        raise RateLimited(retry_after=60 - now.second)


async def is_bot(request: Request) -> bool:
    """A filled honeypot: the form was posted by something that fills every field."""
    return bool((await request.form()).get(HONEYPOT))
