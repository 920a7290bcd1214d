"""Emails as the customer's mail program reads them: a client's message keeps its paragraphs and
line breaks in the HTML part; a mail to an internationalised address has a valid To header."""

import email
import email.policy
import re
import uuid

from messaging.rendering import render_email
from tests.helpers import on_the_page, unique_email

BODY = ("Dear customer,\r\n\r\nYour new address:\nKeizersgracht 1 <b>&</b>\n1015 CJ Amsterdam"
        "\n\n \nKind regards\rAcme")


def client_message(body: str, part: str = "html") -> str:
    return getattr(render_email("client_message", "en", {
        "client_name": "Acme", "subject": "Your address", "body": body, "link": None,
        "brand": None, "preferences_link": "https://x.test/p/pref"}), part)


def test_a_client_message_keeps_its_paragraphs_and_line_breaks_in_html():
    html = client_message(BODY)
    paragraphs = [" ".join(p.split()) for p in re.findall(r"<p>(.*?)</p>", html, re.S)]
    assert paragraphs == [
        "Dear customer,",
        "Your new address:<br> Keizersgracht 1 &lt;b&gt;&amp;&lt;/b&gt;<br> 1015 CJ Amsterdam",
        "Kind regards<br> Acme"]
    assert "\r" not in html


def test_a_client_message_of_one_line_is_one_paragraph():
    paragraphs = re.findall(r"<p>(.*?)</p>", client_message("Thank you."), re.S)
    assert paragraphs == ["Thank you."]


def test_the_text_part_has_the_same_lines_without_carriage_returns():
    text = client_message(BODY, "text")
    assert "\r" not in text
    assert ("Dear customer,\n\nYour new address:\nKeizersgracht 1 <b>&</b>\n1015 CJ Amsterdam"
            "\n\n \nKind regards\nAcme") in text



def built(to: str) -> bytes:
    """The mail to `to` as it goes over SMTP (aiosmtplib flattens it so)."""
    from aiosmtplib.email import flatten_message

    from core.settings import Settings
    from messaging.email import OutgoingEmail, SmtpSender, ascii_address
    from messaging.rendering import RenderedEmail
    mail = SmtpSender(Settings()).build(OutgoingEmail(
        to=to, content=RenderedEmail("Grüße", "Hallo Jürgen\n", "<p>Hallo Jürgen</p>"),
        message_id="<kyc.1.assigned@testserver>", from_name="Acme Ü",
        headers={"Auto-Submitted": "auto-generated"}))
    return flatten_message(mail, utf8=not ascii_address(to).isascii())


def to_header(flat: bytes) -> str:
    [line] = [line for line in flat.split(b"\n") if line.startswith(b"To:")]
    return line.decode("utf-8").strip()


def test_an_internationalised_domain_is_written_as_its_a_label():
    flat = built("jurgen@bücher.example")
    assert to_header(flat) == "To: jurgen@xn--bcher-kva.example"
    parsed = email.message_from_bytes(flat, policy=email.policy.default)
    assert parsed["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert not parsed["To"].defects
    # IDNA 2008: a German ß is a letter of its own, not "ss" (another domain).
    assert to_header(built("jurgen@straße.de")) == "To: jurgen@xn--strae-oqa.de"


def test_a_local_part_outside_ascii_is_written_in_utf8_not_as_an_encoded_word():
    flat = built("jürgen@example.com")
    assert to_header(flat) == "To: jürgen@example.com"
    # (Python's bytes parser leaves UTF-8 headers undecoded.)
    parsed = email.message_from_string(flat.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert parsed["To"].addresses[0].addr_spec == "jürgen@example.com"
    assert str(parsed["Subject"]) == "Grüße"
    body = email.message_from_bytes(flat, policy=email.policy.default)
    assert body.get_body(("plain",)).get_content().strip() == "Hallo Jürgen"
    assert body.get_body(("html",)).get_content().strip() == "<p>Hallo Jürgen</p>"


def raw_mail(mailbox, recipient: bytes) -> bytes:
    [raw] = [path.read_bytes() for path in (mailbox.maildir / "new").iterdir()
             if recipient in path.read_bytes()]
    return raw


async def test_the_sink_receives_a_mail_to_a_local_part_outside_ascii(tenant, http, mailbox):
    """A customer types an address such as jürgen-…@example.com on the page: its verification
    mail goes with SMTPUTF8, its To header the address in UTF-8."""
    campaign = await tenant.create_campaign(consents=[])
    enrolled, customer, page = await on_the_page(tenant, http, mailbox, campaign,
                                                 unique_email("known"))
    typed = f"jürgen-{uuid.uuid4().hex[:6]}@example.com"
    assert (await customer.submit(page, email=typed)).status_code == 200
    [mail] = await mailbox.wait_for(typed)
    assert "=?" not in mail.headers["To"]
    raw = raw_mail(mailbox, typed.encode())
    assert f"\nTo: {typed}\n".encode() in raw


async def test_the_sink_receives_a_mail_to_an_internationalised_domain(tenant, mailbox):
    campaign = await tenant.create_campaign(consents=[])
    local = f"ida-{uuid.uuid4().hex[:6]}"
    await tenant.enrol(campaign["id"], {"external_id": local, "email": f"{local}@bücher.example"})
    [mail] = await mailbox.wait_for(f"{local}@bücher.example")
    raw = raw_mail(mailbox, local.encode())
    # Header and envelope alike: no SMTPUTF8 needed for it.
    assert f"To: {local}@xn--bcher-kva.example".encode() in raw
    assert f"X-RcptTo: {local}@xn--bcher-kva.example".encode() in raw
