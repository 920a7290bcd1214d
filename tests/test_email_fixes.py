"""Emails as the customer's mail program reads them: a client's message keeps its paragraphs and
line breaks in the HTML part."""

import re

from messaging.rendering import render_email

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
