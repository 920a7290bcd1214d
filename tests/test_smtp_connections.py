"""SMTP sessions are kept open from message to message; a real aiosmtpd server counts them."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from core.settings import Settings
from messaging.dev_mail import RefusingMailbox, ensure_maildir, read_outbox
from messaging.email import EmailRejected, OutgoingEmail, SmtpSender
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
