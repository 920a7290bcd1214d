"""/dev/outbox shows SMS and letters the local adapters wrote, next to emails, newest first, and
serves each letter's PDF by its id and nothing else."""

import re
import uuid
from datetime import UTC, date, datetime

import httpx
import pytest

from core.settings import Settings
from messaging.address import PostalAddress
from messaging.letter_pdf import Branding
from messaging.letters import LetterRequest, compose_letter, make_letter_sender
from messaging.sms import OutgoingSms, make_sms_sender
from tests.helpers import PrintedLetter


async def test_outbox_lists_sms_and_letters_newest_first(http: httpx.AsyncClient,
                                                         settings: Settings, tmp_path):
    marker = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient() as client:
        sms = make_sms_sender(settings, client)
        letters = make_letter_sender(settings, client)
        await sms.send(OutgoingSms(to="+31612345678", sender="Acme",
                                   text=f"Code {marker}: https://x.test/c/{marker}",
                                   idempotency_key=f"{marker}/sms"))
        link = f"http://testserver/c/{marker}"
        letter = compose_letter(LetterRequest(
            template="invitation", language="de",
            context={"client_name": "Acme", "first_name": None, "link": link,
                     "expires_at": datetime(2026, 12, 24, tzinfo=UTC), "incentive": None},
            branding=Branding(name="Acme"),
            address=PostalAddress(recipient=f"Eva {marker}", street_lines=["Hauptstraße 5"],
                                  postal_code="10115", city="Berlin", country="DE"),
            sender_country="DE", link=link, short_link=f"testserver/s/{marker}",
            date=date(2026, 11, 25), idempotency_key=f"{marker}/letter",
        ), settings)
        receipt = await letters.send(letter)

    page = (await http.get("/dev/outbox")).text
    assert f"Code {marker}: " in page and 'href="https://x.test/c/' + marker in page
    assert "sms · from Acme · 1 segment(s), GSM-7" in page
    assert f"Eva {marker}" in page and "Bitte prüfen Sie Ihre Kontaktdaten" in page
    pdf_link = f"/dev/outbox/letters/{receipt.provider_message_id}.pdf"
    assert f'href="{pdf_link}"' in page
    # Newest first: the letter went out after the SMS.
    assert page.index(f"Eva {marker}") < page.index(f"Code {marker}")

    response = await http.get(pdf_link)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == letter.pdf
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in (await http.get("/dev/outbox")).headers["content-security-policy"]
    assert PrintedLetter(response.content, tmp_path).qr_codes() == [link]


@pytest.mark.parametrize("path", [
    "/dev/outbox/letters/" + "0" * 32 + ".pdf",  # well-formed, unknown
    "/dev/outbox/letters/" + "A" * 32 + ".pdf",
    "/dev/outbox/letters/..%2F..%2F..%2Fetc%2Fpasswd.pdf",
    "/dev/outbox/letters/%2Fetc%2Fpasswd.pdf",
    "/dev/outbox/letters/..%2Fsms%2F" + "0" * 32 + ".pdf",
    "/dev/outbox/letters/../../etc/passwd",
])
async def test_only_outbox_letters_are_served(http: httpx.AsyncClient, path: str):
    response = await http.get(path)
    assert response.status_code == 404
    assert not response.content.startswith(b"%PDF") and b"root:" not in response.content


async def test_letter_json_without_its_pdf_is_not_served(http: httpx.AsyncClient,
                                                         settings: Settings):
    # The JSON of an SMS sits in another outbox; its id must not open anything as a letter.
    async with httpx.AsyncClient() as client:
        receipt = await make_sms_sender(settings, client).send(
            OutgoingSms(to="+31612345678", sender="Acme", text="hi", idempotency_key="x/sms"))
    assert re.fullmatch(r"[0-9a-f]{32}", receipt.provider_message_id)
    response = await http.get(f"/dev/outbox/letters/{receipt.provider_message_id}.pdf")
    assert response.status_code == 404


async def test_outbox_shows_non_ascii_subjects_as_written(http: httpx.AsyncClient, settings):
    """A German subject travels as RFC 2047 encoded words, folded: the outbox shows it as the
    customer's mail program does."""
    from messaging.email import OutgoingEmail, SmtpSender
    from messaging.rendering import RenderedEmail
    subject = f"Acme: Bitte bestätigen Sie Ihre Daten für die Überprüfung {uuid.uuid4().hex[:6]}"
    sender = SmtpSender(settings)
    await sender.send(OutgoingEmail(
        to=f"{uuid.uuid4().hex[:8]}@example.com", message_id=f"<{uuid.uuid4()}@test>",
        from_name="Müller & Söhne", content=RenderedEmail(subject=subject, text="Hallo",
                                                           html="<p>Hallo</p>")))
    await sender.connections.close()
    page = (await http.get("/dev/outbox")).text
    assert subject in page and "=?utf-8?" not in page
