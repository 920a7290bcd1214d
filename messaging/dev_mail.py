"""The local SMTP sink for dev and tests: a real SMTP server (aiosmtpd) that files every message
into a Maildir, which /dev/outbox and the tests read back.

Like a real server it refuses some recipients, so bounces can be tried out: any address at
hard-bounce.example.com gets a permanent 550, any at soft-bounce.example.com a temporary 452
(example.com is reserved for examples, RFC 2606, so no real mail is affected). Some refuse only
once the message has come, as content filters and quotas do: data-reject.example.com with a
permanent 554 at the end of DATA, data-defer.example.com with a temporary 452. Mail to
slow-ack.example.com is filed at once but answered late, like a server whose checks after
receipt are slow: the customer may read it before the sender knows it went. Mail to
hang-up.example.com is filed, and the connection closed without a reply to it.
"""

import asyncio
import mailbox
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from pathlib import Path

import idna
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


REFUSED_DOMAINS = {
    "hard-bounce.example.com": "550 5.1.1 <{address}>: Recipient address rejected: User unknown",
    "soft-bounce.example.com": "452 4.2.2 <{address}>: Mailbox full, try again later",
}


REFUSED_AT_DATA = {
    "data-reject.example.com": "554 5.7.1 Message rejected: content policy",
    "data-defer.example.com": "452 4.2.2 Mailbox full, try again later",
}


SLOW_ACK_DOMAIN = "slow-ack.example.com"
SLOW_ACK_SECONDS = 5.0
HANG_UP_DOMAIN = "hang-up.example.com"


class RefusingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = REFUSED_DOMAINS.get(address.rpartition("@")[2].lower())
        if refusal:
            return refusal.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        domains = {r.rpartition("@")[2].lower() for r in envelope.rcpt_tos}
        for domain in sorted(domains & REFUSED_AT_DATA.keys()):
            return REFUSED_AT_DATA[domain]
        answer = await super().handle_DATA(server, session, envelope)
        if HANG_UP_DOMAIN in domains:
            server.transport.close()
        elif SLOW_ACK_DOMAIN in domains:
            await asyncio.sleep(SLOW_ACK_SECONDS)
        return answer


def start_smtp_sink(maildir: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    ensure_maildir(maildir)
    controller = Controller(RefusingMailbox(str(maildir)), hostname=host, port=port)
    controller.start()
    return controller


def ensure_maildir(maildir: Path) -> None:
    # mailbox.Maildir only lays out cur/new/tmp when the folder itself is missing.
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)


@dataclass
class OutboxEmail:
    key: str
    to: str
    sender: str
    subject: str
    date: datetime | None
    text: str
    html: str | None
    headers: dict[str, str]


def outbox_email(key: str, msg: mailbox.Message) -> OutboxEmail:
    text = html = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and text is None:
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        elif ctype == "text/html" and html is None:
            html = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return OutboxEmail(
        key=key, to=_recipient(msg["To"]), sender=_readable(msg["From"]),
        subject=_readable(msg["Subject"]),
        date=parsedate_to_datetime(msg["Date"]) if msg["Date"] else None,
        text=text or "", html=html, headers={k: str(v) for k, v in msg.items()},
    )


def _readable(header: str | None) -> str:
    """A header as people read it: a non-ASCII subject or name travels as RFC 2047 encoded
    words (=?utf-8?q?...?=), folded over lines."""
    if not header:
        return ""
    # A header in UTF-8 itself (RFC 6532, a mail sent with SMTPUTF8) reads back as 8-bit bytes.
    return str(make_header([(value.decode("utf-8", "replace"), None)
                            if charset == "unknown-8bit" else (value, charset)
                            for value, charset in decode_header(header)]))


def _recipient(header: str | None) -> str:
    """The To address as it was given: an internationalised domain, which travels as its
    A-label (xn--bcher-kva.example), as written (bücher.example)."""
    local, at, domain = _readable(header).rpartition("@")
    if at and "xn--" in domain.lower():
        try:
            domain = idna.decode(domain)
        except idna.IDNAError:
            pass
    return f"{local}{at}{domain}"


def outbox(maildir: Path) -> mailbox.Maildir:
    ensure_maildir(maildir)
    return mailbox.Maildir(str(maildir), create=False)


def read_outbox(maildir: Path) -> list[OutboxEmail]:
    """Every message the sink received, newest first."""
    out = [outbox_email(key, msg) for key, msg in outbox(maildir).items()]
    return sorted(out, key=lambda m: m.date.timestamp() if m.date else 0, reverse=True)
