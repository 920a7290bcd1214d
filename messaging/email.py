"""Sends email over real SMTP (a relay in production, the aiosmtpd sink in dev and tests)."""

import asyncio
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTPUTF8
from email.utils import formataddr, formatdate
from time import monotonic
from typing import TypeVar
from urllib.parse import urlsplit

import aiosmtplib
import idna

from core.settings import Settings
from messaging.rendering import RenderedEmail

M = TypeVar("M", bound=Message)


class EmailRejected(Exception):
    """The server refused the recipient for good (a hard bounce at send time)."""


class EmailDeferred(Exception):
    """The server refused the recipient for now (4xx); after some retries a soft bounce."""


def message_id(settings: Settings, local: str) -> str:
    """A Message-ID on the installation's own host (PUBLIC_BASE_URL's, whatever domain the
    client's links use): a bounce report quotes it back."""
    return f"<{local}@{urlsplit(settings.public_base_url).hostname or 'contact-journeys.local'}>"


def ascii_address(address: str) -> str:
    """The address as plain ASCII headers and SMTP carry it where it can be: an internationalised
    domain (bücher.example) as its A-label (xn--bcher-kva.example, IDNA 2008, so a German ß stays
    ß). A local part outside ASCII (jürgen@) cannot be: that address is left as it is, for a mail
    written with SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if address.isascii() or not at or not local.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


@dataclass
class OutgoingEmail:
    to: str
    content: RenderedEmail
    message_id: str
    from_name: str
    headers: dict[str, str] = field(default_factory=dict)


class SmtpConnections:
    """SMTP sessions kept open from message to message: a burst (a campaign's invitations)
    pays for connecting, the greeting, EHLO, STARTTLS and AUTH once per connection, not once
    per message. At most `SMTP_CONNECTIONS` are open; one idle for longer than
    `SMTP_IDLE_SECONDS` is closed instead of reused, well before a server's idle timeout
    (RFC 5321 asks servers for five minutes) could have closed it under us."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(settings.smtp_connections)

    async def send(self, message: Message, *, sender: str, to: str) -> None:
        async with self._slots:
            smtp = self._reusable()
            if smtp is not None:
                try:
                    return await self._send_on(smtp, message, sender, to)
                except aiosmtplib.SMTPServerDisconnected:
                    # Closed by the server while it sat idle (a relay restarted): that shows
                    # at the first command, before any of the message went.
                    pass
            await self._send_on(await self._connect(), message, sender, to)

    async def _send_on(self, smtp: aiosmtplib.SMTP, message: Message, sender: str,
                       to: str) -> None:
        try:
            await smtp.send_message(message, sender=sender, recipients=[to])
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            # A refusal: aiosmtplib has reset the envelope, the session goes on.
            self._idle.append((smtp, monotonic()))
            raise
        except BaseException:
            smtp.close()
            raise
        self._idle.append((smtp, monotonic()))

    def _reusable(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and monotonic() - since < self._settings.smtp_idle_seconds:
                return smtp
            smtp.close()
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls, timeout=s.smtp_timeout_seconds)
        await smtp.connect()
        return smtp

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.connections = SmtpConnections(settings)

    def build(self, mail: OutgoingEmail) -> Message:
        to = ascii_address(mail.to)
        if not to.isascii():
            return self._build_utf8(mail, to)
        # The classic MIME classes, not EmailMessage: its header parsing made building and
        # flattening the same mail cost 1.1 ms of CPU instead of 0.4 ms, on every message sent.
        msg = self._headed(MIMEMultipart("alternative"), mail, to)
        msg.attach(MIMEText(mail.content.text, "plain", "utf-8"))
        msg.attach(MIMEText(mail.content.html, "html", "utf-8"))
        return msg

    def _headed(self, msg: M, mail: OutgoingEmail, to: str) -> M:
        msg["From"] = formataddr((mail.from_name, self._settings.mail_from))
        msg["To"] = to
        msg["Subject"] = mail.content.subject
        msg["Date"] = formatdate(localtime=False)
        # Deterministic per journey step, so a resend after a crash is recognisable downstream.
        msg["Message-ID"] = mail.message_id
        for name, value in mail.headers.items():
            msg[name] = value
        return msg

    def _build_utf8(self, mail: OutgoingEmail, to: str) -> EmailMessage:
        """A mail to an address whose local part is not ASCII: its headers in UTF-8 (RFC 6532),
        sent with SMTPUTF8. The classic classes would write the address as an encoded word,
        which no address header may hold (RFC 2047, section 5)."""
        msg = self._headed(EmailMessage(policy=SMTPUTF8), mail, to)
        msg.set_content(mail.content.text, charset="utf-8")
        msg.add_alternative(mail.content.html, subtype="html", charset="utf-8")
        return msg

    async def send(self, mail: OutgoingEmail) -> None:
        try:
            # An internationalised domain as its A-label, as in the To header: only a local
            # part outside ASCII needs a relay that offers SMTPUTF8.
            await self.connections.send(self.build(mail), sender=self._settings.mail_from,
                                        to=ascii_address(mail.to))
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [r.code for r in err.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in err.recipients)
            if codes and all(500 <= c < 600 for c in codes):
                raise EmailRejected(reason) from err
            raise EmailDeferred(reason) from err
