"""The rules of webhook delivery as pure functions: what an answer means, when to try again,
how a request is signed, and which target addresses are refused (SSRF)."""

import asyncio
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from core.contracts import RetrySchedule

# The documented answer for "never send me this event again", and the only one. Any other
# 4xx is retried on the schedule, as Stripe and Svix do: a receiver refusing everything with
# 400/401/404 is nearly always misconfigured (a secret pasted wrong, a wrong path), and only a
# retried failure makes the endpoint show as retrying, then failing and disabled, so the client
# finds out, fixes it and gets the events still waiting instead of losing them all silently.
STOP_RETRIES_STATUS = 410
# A Retry-After beyond this many seconds (about 31 years) is garbage, read as this; the
# schedule's longest gap caps it further. A bound also keeps timedelta from overflowing.
RETRY_AFTER_MAX_SECONDS = 10**9


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"


def outcome(status_code: int | None) -> Outcome:
    """2xx delivers; 410 Gone stops this event; anything else (no answer, 3xx, 4xx, 5xx) is
    tried again on the schedule."""
    if status_code is not None and 200 <= status_code < 300:
        return Outcome.delivered
    if status_code == STOP_RETRIES_STATUS:
        return Outcome.failed
    return Outcome.retry


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Read without converting a huge number (int() refuses thousands of digits).
        digits = value.lstrip("0") or "0"
        seconds = int(digits) if len(digits) <= 10 else RETRY_AFTER_MAX_SECONDS
        return timedelta(seconds=min(seconds, RETRY_AFTER_MAX_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def next_attempt_delay(
    schedule: RetrySchedule, *, attempts: int, round_started_at: datetime, now: datetime,
    retry_after: timedelta | None = None,
) -> timedelta | None:
    """The wait before the next attempt after `attempts` failed ones, or None to give up.

    A receiver's Retry-After is honoured when it asks for more time than the schedule, but
    never beyond the schedule's longest gap, so one answer cannot park an event for weeks.
    """
    index = attempts - 1
    delay = schedule.delays[index] if index < len(schedule.delays) else schedule.then_every
    if retry_after is not None:
        longest = max([*schedule.delays, schedule.then_every])
        delay = max(delay, min(retry_after, longest))
    if now + delay > round_started_at + schedule.give_up_after:
        return None
    return delay


def signature_header(
    secrets: list[str], *, msg_id: str, timestamp: datetime, body: str
) -> str:
    """Standard Webhooks allows several space-separated signatures: during a secret rotation
    we sign with the new and the old secret, so receivers can switch at their own pace."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


# IPv6 forms that carry an IPv4 address to reach: NAT64's well-known prefix, the old
# IPv4-compatible addresses (::a.b.c.d) and SIIT's IPv4-translated ones (::ffff:0:a.b.c.d).
CARRY_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"),
              ipaddress.ip_network("::ffff:0:0:0/96"))
# Local-use NAT64 (RFC 8215): where it leads is the site's own network; and the deprecated
# site-local addresses, still routed inside some sites, which Python counts as global.
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def refused_address(address: str) -> bool:
    """Whether deliveries may not go to this address: private, loopback, link-local (cloud
    metadata), shared, reserved, unspecified, multicast, or an IPv6 form of one of those."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
        elif ip in LOCAL_NAT64 or ip in SITE_LOCAL:
            return True
        elif any(ip in prefix for prefix in CARRY_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return not ip.is_global or ip.is_multicast


def url_problem(url: str) -> str | None:
    """What is wrong with an endpoint URL regardless of where its host points, if anything."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials; authenticate the signature instead"
    try:
        port = parts.port
    except ValueError:
        return "must name a port from 1 to 65535, or none"
    if port == 0:
        return "must name a port from 1 to 65535, or none"
    return None


async def target_problem(url: str, *, allow_private: bool) -> str | None:
    """Refuses URLs whose host is or resolves to a non-public address (SSRF protection).

    Checked when an endpoint is saved and again before every batch of deliveries, so a host
    re-pointed to an internal address later is refused too.
    """
    problem = url_problem(url)
    if problem or allow_private:
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"host {host!r} cannot be resolved"
    if any(refused_address(str(info[4][0])) for info in infos):
        return f"host {host!r} is a private, loopback or otherwise non-public address"
    return None
