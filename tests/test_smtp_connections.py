"""SMTP sessions are kept open from message to message; a real aiosmtpd server counts them."""

import asyncio
import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.settings import Settings
from messaging.dev_mail import RefusingMailbox, ensure_maildir, read_outbox
from messaging.email import (
    EmailDeferred,
    EmailRejected,
    EmailUnsendable,
    Handover,
    OutgoingEmail,
    SmtpSender,
)
from messaging.rendering import RenderedEmail
from stack import free_port


class CountingMailbox(RefusingMailbox):
    """Counts SMTP sessions: a client greets once per connection."""

    def __init__(self, maildir: Path) -> None:
        super().__init__(str(maildir))
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses


class Server:
    """The counting server on a port of its own; restartable, as a relay is restarted."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.port = free_port()
        self.handler = CountingMailbox(maildir)
        self._controller = self._start()

    def _start(self) -> Controller:
        controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        controller.start()
        return controller

    def restart(self) -> None:
        self._controller.stop()
        self._controller = self._start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    ensure_maildir(tmp_path)
    running = Server(tmp_path)
    yield running
    running.stop()


def sender_for(server: Server, settings: Settings, **overrides) -> SmtpSender:
    return SmtpSender(settings.model_copy(update={"smtp_port": server.port, **overrides}))


def mail(to: str) -> OutgoingEmail:
    return OutgoingEmail(to=to, message_id=f"<{to}>", from_name="Acme",
                         content=RenderedEmail(subject="Hello", text="Hi", html="<p>Hi</p>"))


async def test_a_burst_of_messages_shares_a_few_connections(server, settings):
    sender = sender_for(server, settings, smtp_connections=3)
    await asyncio.gather(*(sender.send(mail(f"c{n}@example.com")) for n in range(30)))
    assert len(read_outbox(server.maildir)) == 30
    assert 1 <= server.handler.sessions <= 3
    await sender.connections.close()


async def test_a_refused_recipient_leaves_the_session_usable(server, settings):
    sender = sender_for(server, settings)
    with pytest.raises(EmailRejected):
        await sender.send(mail("nobody@hard-bounce.example.com"))
    await sender.send(mail("somebody@example.com"))
    assert [m.to for m in read_outbox(server.maildir)] == ["somebody@example.com"]
    assert server.handler.sessions == 1
    await sender.connections.close()


async def test_a_refusal_at_the_end_of_data_is_the_recipients(server, settings):
    """A relay that takes the recipient and refuses the message (a content filter's 554, a
    quota's 452 after DATA) answers for that one recipient: rejected or deferred, as at RCPT,
    not an error retried for ever. The session goes on."""
    sender = sender_for(server, settings)
    with pytest.raises(EmailRejected, match="554 5.7.1"):
        await sender.send(mail("ann@data-reject.example.com"))
    with pytest.raises(EmailDeferred, match="452 4.2.2"):
        await sender.send(mail("bob@data-defer.example.com"))
    await sender.send(mail("somebody@example.com"))
    assert [m.to for m in read_outbox(server.maildir)] == ["somebody@example.com"]
    assert server.handler.sessions == 1
    await sender.connections.close()


async def test_a_slow_reply_to_the_end_of_data_is_waited_for(server, settings):
    """A relay scanning the message before it answers (the sink answers 5 s late) gets longer
    than SMTP_TIMEOUT_SECONDS for that reply: it used to time out, and the retry sent the
    same mail again."""
    sender = sender_for(server, settings, smtp_timeout_seconds=1)
    assert await sender.send(mail("eva@slow-ack.example.com")) == Handover()
    assert len(read_outbox(server.maildir)) == 1
    await sender.connections.close()


async def test_a_mail_whose_reply_never_came_counts_as_sent(server, settings):
    """The whole message went, then the connection was lost before the reply: most likely
    taken, so counted as sent (and said to be unconfirmed) rather than sent again. The next
    mail goes on a new session."""
    sender = sender_for(server, settings)
    handover = await sender.send(mail("ida@hang-up.example.com"))
    assert handover.unconfirmed and "no reply to the end of the message" in handover.unconfirmed
    assert await sender.send(mail("next@example.com")) == Handover()
    assert sorted(m.to for m in read_outbox(server.maildir)) == [
        "ida@hang-up.example.com", "next@example.com"]
    assert server.handler.sessions == 2
    await sender.connections.close()


async def test_a_relay_without_smtputf8_cannot_take_a_local_part_outside_ascii(tmp_path,
                                                                               settings):
    """Told at once (no retry changes the relay), as the relay's limit, not the address's;
    the session stays usable."""
    ensure_maildir(tmp_path)
    handler = CountingMailbox(tmp_path)
    port = free_port()
    relay = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    relay.start()
    sender = SmtpSender(settings.model_copy(update={"smtp_port": port}))
    try:
        with pytest.raises(EmailUnsendable, match="SMTPUTF8"):
            await sender.send(mail("jürgen@example.com"))
        await sender.send(mail("juergen@example.com"))
    finally:
        await sender.connections.close()
        relay.stop()
    assert [m.to for m in read_outbox(tmp_path)] == ["juergen@example.com"]
    assert handler.sessions == 1


async def test_an_idle_or_closed_session_is_replaced(server, settings):
    sender = sender_for(server, settings, smtp_idle_seconds=0.2)
    await sender.send(mail("first@example.com"))
    await asyncio.sleep(0.3)
    await sender.send(mail("after-a-pause@example.com"))
    assert server.handler.sessions == 2
    # The server goes away and comes back: the next message connects anew.
    server.restart()
    await sender.send(mail("after-a-restart@example.com"))
    assert server.handler.sessions == 3 and len(read_outbox(server.maildir)) == 3
    await sender.connections.close()


def trusted_certificate(directory: Path) -> ssl.SSLContext:
    """A relay's certificate for 127.0.0.1, made trusted for this test (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    (directory / "relay.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "relay.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "relay.pem", directory / "relay.key")
    return context


async def test_a_password_goes_to_a_relay_over_tls_when_it_offers_it(tmp_path, monkeypatch):
    """SMTP_STARTTLS used to default to false: the password and every mail went in clear to
    a relay that offered STARTTLS. Left unset, the session is upgraded whenever it is offered."""
    logins: list[tuple[bool, bytes]] = []

    class Relay:
        async def handle_DATA(self, server, session, envelope) -> str:
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        logins.append((session.ssl is not None, auth_data.password))
        return AuthResult(success=True)

    port = free_port()
    relay = Controller(Relay(), hostname="127.0.0.1", port=port,
                       tls_context=trusted_certificate(tmp_path), auth_require_tls=False,
                       authenticator=authenticator)
    relay.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "relay.pem"))
    sender = SmtpSender(Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_username="relay",
                                 smtp_password="relay-password"))
    try:
        await sender.send(OutgoingEmail(to="ann@example.com", message_id="<tls@test>",
                                        content=RenderedEmail("Hi", "Text", "<p>Html</p>"),
                                        from_name="Acme"))
    finally:
        await sender.connections.close()
        relay.stop()
    assert logins == [(True, b"relay-password")]


def test_a_password_may_not_go_in_clear_outside_dev_mode():
    with pytest.raises(ValueError, match="in clear"):
        Settings(dev_mode=False, secret_key="a-real-secret", smtp_password="p",
                 smtp_starttls=False)
    assert Settings(dev_mode=False, secret_key="a-real-secret", smtp_password="p").smtp_starttls \
        is None
