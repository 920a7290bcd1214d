"""Bot protection for the customer pages without friction: per-IP and per-link rate limits on
every form post (counted in the database, shared by all API instances), and a honeypot field
that people never see. No third-party captcha calls."""

import ipaddress
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


async def limit_code_guesses(request: Request) -> None:
    """Before a printed code is looked up: refused once its IP missed too often this minute.
    Only misses count (`count_code_miss`), so people behind one address who type their right
    codes never lock each other out."""
    state: AppState = request.app.state.journeys
    now = datetime.now(UTC)
    async with transaction(state.counters) as session:
        missed = await crud.hits(session, key=_code_key(request), window_start=_window(now))
    if missed >= state.settings.printed_code_misses_per_ip_per_minute:
        raise RateLimited(retry_after=60 - now.second)


async def count_code_miss(request: Request) -> None:
    await _count(request, {_code_key(request): 0})


def _code_key(request: Request) -> str:
    return f"code:ip:{_ip(request)}"


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
    """The client's address; for IPv6 its /64, which one subscriber gets whole."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


def _window(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


async def _count(request: Request, limits: dict[str, int]) -> None:
    """Counts the request against each key; refuses it past a key's limit (0: count only)."""
    state: AppState = request.app.state.journeys
    now = datetime.now(UTC)
    async with transaction(state.counters) as session:
        hits = await crud.count_hits(session, keys=list(limits), window_start=_window(now))
    if any(limit and hits[key] > limit for key, limit in limits.items()):
        raise RateLimited(retry_after=60 - now.second)


async def is_bot(request: Request) -> bool:
    """A filled honeypot: the form was posted by something that fills every field."""
    return bool((await request.form()).get(HONEYPOT))
