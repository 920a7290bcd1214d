"""Renders templates/ in the customer's language: one Jinja2 environment per language.

Texts are gettext messages in templates/locales/<lang>/LC_MESSAGES/messages.po, compiled in
memory at start-up so no build step is needed.
"""

from dataclasses import dataclass
from functools import cache
from io import BytesIO
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.numbers import format_currency, format_percent
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from core.paths import LOCALES_DIR, TEMPLATES_DIR
from messaging.wording import DEFAULT as DEFAULT_WORDING
from messaging.wording import lf_lines

DEFAULT_LANGUAGE = "en"


@cache  # every page and message asks; the locales change only with a deployment
def supported_languages() -> list[str]:
    return sorted({DEFAULT_LANGUAGE} | {p.name for p in LOCALES_DIR.iterdir() if p.is_dir()})


def language_names() -> dict[str, str]:
    """Each supported language named in itself ("Nederlands"), as a language switch shows it."""
    return {code: Locale.parse(code).get_display_name(code).capitalize()
            for code in supported_languages()}


def pick_language(wanted: str | None) -> str:
    base = (wanted or "").lower().split("-")[0].split("_")[0]
    return base if base in supported_languages() else DEFAULT_LANGUAGE


def _translations(language: str) -> NullTranslations:
    po_file = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po_file.exists():
        return NullTranslations()
    with po_file.open("rb") as f:
        catalog = read_po(f, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def long_datetime(value: datetime, language: str) -> str:
    """A moment as the language writes it, to the minute and naming its time zone: "December 4,
    2026, 5:36 AM UTC", "4. Dezember 2026, 05:36 UTC". In UTC, as clients set no time zone."""
    locale = Locale.parse(language)
    time = format_time(value, f"{locale.time_formats['short'].pattern} z", tzinfo=UTC,
                       locale=locale)
    day = format_date(value.astimezone(UTC), "long", locale=locale)
    # CLDR quotes the pattern's literal words ("{1} 'at' {0}"), as Babel's own use unquotes them.
    return (get_datetime_format("long", locale=locale).replace("'", "")
            .replace("{0}", time).replace("{1}", day))


def html_paragraphs(text: str) -> Markup:
    """A client's plain text as HTML: a paragraph at each blank line, its other line breaks
    kept (an address, a signature), whatever line ends it was written with (CRLF, LF or CR);
    every line escaped."""
    lines = lf_lines(text).split("\n")
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(paragraph))
        for blank, paragraph in groupby(lines, key=lambda line: not line.strip()) if not blank)


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(_translations(language), newstyle=True)
    env.globals["language"] = language
    # A campaign's own wording of a message (messaging.wording), which its context may carry.
    env.globals["wording"] = DEFAULT_WORDING
    env.filters["long_date"] = lambda value: format_date(value, "long", locale=language)
    env.filters["long_datetime"] = lambda value: long_datetime(value, language)
    env.filters["paragraphs"] = html_paragraphs
    # A whole percentage as the language writes it: "100 %" in German, "100%" in English.
    env.filters["percent"] = lambda value: format_percent(value / 100, locale=language)
    # `claim is unpaid`: a payment-reminder journey whose claim is still open (claim_view).
    env.tests["unpaid"] = lambda claim: bool(claim) and not claim["paid"]
    return env


@dataclass
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_email(name: str, language: str, context: dict[str, Any]) -> RenderedEmail:
    """email/<name>.txt renders the subject as its first line, then the plain text;
    email/<name>.html the HTML part."""
    env = environment(pick_language(language))
    subject, _, text = env.get_template(f"email/{name}.txt").render(context).partition("\n")
    html = env.get_template(f"email/{name}.html").render(context)
    return RenderedEmail(subject=subject.strip(), text=text.strip() + "\n", html=html)


def render_sms(name: str, language: str, context: dict[str, Any]) -> str:
    """sms/<name>.txt, with the template's own indentation and blank edges removed, and the
    no-break spaces of formatted amounts and dates made plain: GSM-7 has none, and one would
    send the whole text as UCS-2, in more than twice the segments."""
    text = environment(pick_language(language)).get_template(f"sms/{name}.txt").render(context)
    return "\n".join(line.strip() for line in sms_plain(text).strip().splitlines())


def sms_plain(text: str) -> str:
    """The text with the no-break spaces of formatted amounts and dates made plain."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


@dataclass
class RenderedLetter:
    subject: str
    paragraphs: list[str]
    qr_caption: str
    closing: str
    # "Page {page} of {pages}", to format with the page's number and the letter's pages.
    page_number: str


def render_letter(name: str, language: str, context: dict[str, Any]) -> RenderedLetter:
    """letter/<name>.txt defines the blocks subject, body, qr_caption, closing and page_number;
    the body's paragraphs are separated by blank lines (line breaks inside one are only template
    layout)."""
    template = environment(pick_language(language)).get_template(f"letter/{name}.txt")

    def block(name: str) -> str:
        return "".join(template.blocks[name](template.new_context(context)))

    def line(text: str) -> str:
        return " ".join(text.split())

    return RenderedLetter(
        subject=line(block("subject")),
        paragraphs=[line(p) for p in block("body").split("\n\n") if p.strip()],
        qr_caption=line(block("qr_caption")),
        closing=line(block("closing")),
        page_number=line(block("page_number")),
    )


def render_page(name: str, language: str, context: dict[str, Any]) -> str:
    return environment(pick_language(language)).get_template(f"page/{name}.html").render(context)


def claim_view(claim: dict[str, Any] | None, paid_at: datetime | None, language: str
               ) -> dict[str, Any] | None:
    """A payment-reminder journey's claim as the customer reads it, in their language, on the
    day it is read: once its due date has passed, it is overdue since then."""
    if claim is None:
        return None
    locale = pick_language(language)
    amount = claim.get("amount")
    due_on = claim.get("due_on")
    return {
        "reference": claim["reference"], "payment_url": claim["payment_url"],
        "amount": format_currency(Decimal(amount), claim.get("currency", "EUR"), locale=locale)
        if amount is not None else None,
        "due_on": format_date(date.fromisoformat(due_on), "long", locale=locale)
        if due_on else None,
        # "Due on" a day gone by would ask the customer to pay by a day they can no longer
        # keep ("te betalen uiterlijk" in Dutch).
        "overdue": bool(due_on) and date.fromisoformat(due_on) < datetime.now(UTC).date(),
        "paid": paid_at is not None,
    }
