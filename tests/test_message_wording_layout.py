"""A campaign's own wording as its customers read it: the lines a client wrote (an address, a
signature) stay lines in the HTML email, escaped like any text, as they do in the plain text."""

import re

from tests.helpers import Tenant, unique_email

WORDING = {"subject": "Our new address",
           "text": "We have moved <for good>:\r\nAcme & Co\nKeizersgracht 1\r\n1015 CJ Amsterdam"
                   "\n\nKind regards,\rThe Acme team"}


def paragraphs(html: str) -> list[str]:
    """The HTML's paragraphs, each with its own line breaks as the mail program shows them."""
    return [" ".join(p.split()) for p in re.findall(r"<p>(.*?)</p>", html, re.S)]


async def test_line_breaks_of_the_campaigns_wording_stay_in_the_html_email(
        tenant: Tenant, mailbox):
    campaign = await tenant.create_campaign(consents=[], languages=["en"],
                                            messages={"invitation": {"en": WORDING}})
    email = unique_email("wording-lines")
    await tenant.enrol(campaign["id"], {"external_id": email, "first_name": "Ann",
                                        "last_name": "Smith", "language": "en", "email": email})

    [mail] = await mailbox.wait_for(email)
    wanted = ["We have moved &lt;for good&gt;:<br> Acme &amp; Co<br> Keizersgracht 1<br> "
              "1015 CJ Amsterdam", "Kind regards,<br> The Acme team"]
    found = paragraphs(mail.html)
    assert found[1:3] == wanted, found
    assert "<for good>" not in mail.html and "\r" not in mail.html
    assert "Keizersgracht 1\n1015 CJ Amsterdam\n\nKind regards,\nThe Acme team" in mail.text
    # The preview shows what is sent.
    preview = await tenant.ok(
        "GET", f"/v1/campaigns/{campaign['id']}/messages/preview?kind=invitation")
    assert paragraphs(preview["html"])[1:3] == wanted
