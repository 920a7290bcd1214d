"""Sends email over real SMTP (a relay in production, the aiosmtpd sink in dev and tests)."""

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTPUTF8
from email.utils import formataddr, formatdate
from time import monotonic
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiosmtplib
import idna
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import Default, SMTPStatus
from temporalio import activity

from core.settings import Settings
from messaging.rendering import RenderedEmail

M = TypeVar("M", bound=Message)
log = logging.getLogger(__name__)

# RFC 5321, 4.5.3.2.6: a client should wait 10 minutes for the reply to the end of the
# message, as a server may scan it (viruses, spam) before it answers. Within an activity, no
# longer than its start-to-close allows, less this margin to record the send: past it,
# Temporal would retry, and the same mail would go again.
END_OF_DATA_SECONDS = 600.0
RECORDING_MARGIN_SECONDS = 5.0


def without_recipient(reply: str, *addresses: str) -> str:
    """A server's reply without the address it refused, which servers echo (`550 5.1.1
    <ann@example.com>: Recipient address rejected`): the reply is the activity's failure in the
    Temporal UI, a bounce's reason and a webhook's, none of which should name the person."""
    for address in addresses:
        reply = re.sub(re.escape(address), "recipient", reply, flags=re.IGNORECASE)
    return reply


class EmailRejected(Exception):
    """The server refused the recipient or the message for good (5xx at RCPT, or at the end of
    DATA: one recipient a transaction, so that answer is the recipient's): a hard bounce at
    send time."""


class EmailDeferred(Exception):
    """The server refused the recipient or the message for now (4xx at RCPT or DATA); after
    some retries a soft bounce."""


def deferred_long_enough(settings: Settings) -> bool:
    """Whether a deferral met on this attempt is a soft bounce: deferred again and again (a
    full mailbox, a server that keeps refusing), it is not retried for ever."""
    return activity.info().attempt >= settings.email_soft_bounce_after_attempts


class EmailUnsendable(Exception):
    """Our relay cannot carry this mail to this address: its local part is not ASCII and the
    relay does not offer SMTPUTF8. No fault of the address (another relay would take it), and
    no retry changes it."""


@dataclass(frozen=True)
class Handover:
    """How a mail left. `unconfirmed` says why the server's acceptance is not known: the whole
    message went, and its reply did not come (a timeout, the connection lost). The server has
    most likely taken it, so it counts as sent: sending it again would most likely give the
    customer the same mail twice."""

    unconfirmed: str | None = None


class MaybeDelivered(Exception):
    """No reply to the end of DATA: the message went whole, its fate is unknown."""


class _Session(aiosmtplib.SMTP):
    """An SMTP session that waits longer for the reply to the end of the message than for
    the others (`end_of_data_timeout`), and tells a failure after the whole message went
    (`MaybeDelivered`) from one before any of it did."""

    end_of_data_timeout: float | None = None

    async def data(self, message: str | bytes, /, *,
                   timeout: Any = Default.token) -> aiosmtplib.SMTPResponse:
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        if isinstance(message, str):
            message = message.encode("ascii")
        body = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
        if self.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        # Raises before anything is written when the connection is gone: nothing went.
        self.protocol.write(body)
        try:
            reply = await self.protocol.read_response(timeout=self.end_of_data_timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
            self.close()
            raise MaybeDelivered(f"no reply to the end of the message: {err}") from err
        if reply.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply


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
        self._idle: list[tuple[_Session, float]] = []
        self._slots = asyncio.Semaphore(settings.smtp_connections)

    async def send(self, message: Message, *, sender: str, to: str) -> Handover:
        async with self._slots:
            try:
                smtp = self._reusable()
                if smtp is not None:
                    try:
                        return await self._send_on(smtp, message, sender, to)
                    except aiosmtplib.SMTPServerDisconnected:
                        # Closed by the server while it sat idle (a relay restarted): that
                        # shows at the first command, before any of the message went.
                        pass
                return await self._send_on(await self._connect(), message, sender, to)
            except MaybeDelivered as err:
                log.warning("mail to %s counted as sent, unconfirmed: %s", to, err)
                return Handover(unconfirmed=str(err))

    async def _send_on(self, smtp: _Session, message: Message, sender: str,
                       to: str) -> Handover:
        smtp.end_of_data_timeout = self._end_of_data_timeout()
        try:
            await smtp.send_message(message, sender=sender, recipients=[to])
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused,
                aiosmtplib.SMTPNotSupported):
            # A refusal (aiosmtplib has reset the envelope), or a mail this server cannot
            # carry, refused before a command went: the session goes on.
            self._idle.append((smtp, monotonic()))
            raise
        except BaseException:
            smtp.close()
            raise
        self._idle.append((smtp, monotonic()))
        return Handover()

    def _end_of_data_timeout(self) -> float:
        if not activity.in_activity():
            return END_OF_DATA_SECONDS
        info = activity.info()
        if info.start_to_close_timeout is None:
            return END_OF_DATA_SECONDS
        left = (info.started_time + info.start_to_close_timeout
                - datetime.now(UTC)).total_seconds() - RECORDING_MARGIN_SECONDS
        return max(1.0, min(END_OF_DATA_SECONDS, left))

    def _reusable(self) -> _Session | None:
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and monotonic() - since < self._settings.smtp_idle_seconds:
                return smtp
            smtp.close()
        return None

    async def _connect(self) -> _Session:
        s = self._settings
        smtp = _Session(
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

    async def send(self, mail: OutgoingEmail) -> Handover:
        """Hands the mail to the server. Raises EmailRejected, EmailDeferred or
        EmailUnsendable when it is refused; other failures (the server unreachable, our sender
        refused at MAIL FROM: the installation's, not the recipient's) are worth a retry."""
        to = ascii_address(mail.to)
        try:
            # An internationalised domain as its A-label, as in the To header: only a local
            # part outside ASCII needs a relay that offers SMTPUTF8.
            return await self.connections.send(self.build(mail),
                                                sender=self._settings.mail_from, to=to)
        except aiosmtplib.SMTPNotSupported as err:
            if to.isascii():
                raise
            raise EmailUnsendable(
                "the mail relay does not offer SMTPUTF8, which an address whose local part "
                "is not ASCII needs") from err
        # Raised `from None`: aiosmtplib's exceptions name the address too, and the SDK
        # turns a cause into one more failure for the Temporal UI.
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [r.code for r in err.recipients]
            reason = without_recipient("; ".join(f"{r.code} {r.message}" for r in err.recipients),
                                       mail.to, to)
            if codes and all(500 <= c < 600 for c in codes):
                raise EmailRejected(reason) from None
            raise EmailDeferred(reason) from None
        except aiosmtplib.SMTPDataError as err:
            # Refused after the recipient was taken (a content filter, a quota): one
            # recipient a transaction, so the answer is that recipient's, as at RCPT. A 421
            # is the server closing the session, nothing to do with the recipient.
            reason = without_recipient(f"{err.code} {err.message}", mail.to, to)
            if 500 <= err.code < 600:
                raise EmailRejected(reason) from None
            if 400 <= err.code < 500 and err.code != 421:
                raise EmailDeferred(reason) from None
            raise
