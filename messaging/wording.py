"""A campaign's own wording of its messages (`messages` of the campaign), per message kind and
language, over the built-in best-practice texts: invitations, reminders, the letter, the
confirmation, the mails and code that verify what the customer entered, and a re-consent
campaign's invitation and reminder.

A client writes plain text with a fixed set of `{placeholders}` per kind, never template code:
the text is filled in here and handed to the templates as a value, which autoescape escapes in
HTML like any other. What carries the journey (the link, QR code, button, claim, preference and
unsubscribe links, legal footer) stays the templates' own and cannot be worded away.
"""

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any

from babel.dates import format_date

from core.vocabulary import Channel, JourneyKind

# What a message to the contact may name.
CONTACT = ("first_name", "last_name", "client_name", "campaign_name", "incentive",
           "expires_on", "claim_reference")
# A mail to an address the customer only typed names nobody: it may be a stranger's (a typo).
TYPED = ("client_name", "campaign_name", "expires_on")
# A re-consent campaign asks no data and has no incentive or claim.
RECONSENT = ("first_name", "last_name", "client_name", "campaign_name", "expires_on")


@dataclass(frozen=True)
class MessageKind:
    channel: Channel
    # The journey's template it words (templates/<channel>/); None: all of the channel's, as
    # one letter text serves the invitation and its reminders.
    template: str | None
    parts: tuple[str, ...]
    # What the API says of it, beside what its channel's parts say.
    about: str
    placeholders: tuple[str, ...] = CONTACT
    # What its text cannot do without: the code the customer types is the message.
    required: tuple[str, ...] = ()
    # The campaigns that send it.
    sent_by: JourneyKind = JourneyKind.data_collection
    # Sent to confirm what the customer entered: its link lives verification_link_ttl, and a
    # mail offers no preferences (activities.messages).
    verifies: bool = False


WITH_SUBJECT, TEXT_ONLY = ("subject", "text"), ("text",)
KINDS = {
    "invitation": MessageKind(Channel.email, "invitation", WITH_SUBJECT, "the email invitation"),
    "reminder": MessageKind(Channel.email, "reminder", WITH_SUBJECT, "the email reminders"),
    "sms_invitation": MessageKind(Channel.sms, "invitation", TEXT_ONLY,
                                  "the SMS invitation; the link follows its text"),
    "sms_reminder": MessageKind(Channel.sms, "reminder", TEXT_ONLY,
                                "the SMS reminders; the link follows their text"),
    "letter": MessageKind(Channel.letter, None, WITH_SUBJECT, (
        "the letter, invitation and reminders alike; how to reach the page (QR code, "
        "address) follows its text")),
    "confirmation": MessageKind(Channel.email, "confirmation", WITH_SUBJECT, (
        "the email thanking the customer once verified (send_confirmation); nothing to click "
        "follows its text")),
    "sms_confirmation": MessageKind(Channel.sms, "confirmation", TEXT_ONLY, (
        "the SMS thanking the customer once verified (its mobile the only verified address); "
        "no link follows it")),
    "verification": MessageKind(Channel.email, "verification", WITH_SUBJECT, (
        "the email asking to confirm an address entered on the page; the confirmation link "
        "and its expiry follow its text"), placeholders=TYPED, verifies=True),
    "verification_reminder": MessageKind(
        Channel.email, "verification_reminder", WITH_SUBJECT,
        "the reminder of it, when the address is not confirmed yet", placeholders=TYPED,
        verifies=True),
    "sms_code": MessageKind(Channel.sms, "verification_code", TEXT_ONLY, (
        "the SMS with the code that verifies a mobile number entered on the page; its text "
        "is the whole SMS and must hold {code}"),
        placeholders=("code", "valid_minutes", "client_name", "campaign_name"),
        required=("code",), verifies=True),
    "reconsent_invitation": MessageKind(
        Channel.email, "reconsent_invitation", WITH_SUBJECT,
        "a reconsent campaign's email asking to review the consent form; the link follows it",
        placeholders=RECONSENT, sent_by=JourneyKind.reconsent),
    "reconsent_reminder": MessageKind(
        Channel.email, "reconsent_reminder", WITH_SUBJECT, "a reconsent campaign's reminder",
        placeholders=RECONSENT, sent_by=JourneyKind.reconsent),
}


@dataclass(frozen=True)
class Wording:
    """What a campaign words itself of one message; None: the built-in text."""

    subject: str | None = None
    text: str | None = None


DEFAULT = Wording()


def placeholder_problem(text: str, kind: str) -> str | None:
    """Why the text is no valid wording of this kind of message, or None."""
    known = KINDS[kind].placeholders
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(text)
                  if name is not None]
    except ValueError as err:
        return (f"{err}: write placeholders as {{{known[0]}}}, and a literal brace doubled, "
                f"{{{{ or }}}}")
    for name, spec, conversion in fields:
        if name not in known or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            return (f"unknown placeholder {shown}; the {kind} message has only "
                    f"{', '.join('{' + p + '}' for p in known)}")
    missing = [name for name in KINDS[kind].required if name not in {f[0] for f in fields}]
    if missing:
        return (f"the {kind} message must hold {', '.join('{' + p + '}' for p in missing)}: "
                f"it is what the customer types on the page")
    return None


def fill(text: str, values: dict[str, str | None]) -> str:
    # Checked when the campaign was saved; a name outside the values still fills in nothing.
    return "".join(literal + (values.get(name) or "" if name is not None else "")
                   for literal, name, _, _ in Formatter().parse(text))


def lf_lines(text: str) -> str:
    """The text with its line breaks as LF, whatever it was written with (CRLF, or a bare CR,
    which a mail's plain text would keep as it is)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def one_line(value: str | None) -> str | None:
    """The value as a subject may hold it: every run of white space, line breaks (a bare CR,
    U+2028 too) and other control characters one space. A subject is one line: a line break in
    an `incentive_text` would cut it, start the mail's text with the rest or, followed by
    "Name:", stop the mail from being built at all."""
    if not value:
        return value
    return " ".join("".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
                            for ch in value).split())


def placeholder_values(context: dict[str, Any], language: str) -> dict[str, str | None]:
    """The placeholders' values from a message's template context."""
    expires_at: datetime | None = context.get("expires_at")
    claim = context.get("claim")
    return {
        "first_name": context.get("first_name"), "last_name": context.get("last_name"),
        "client_name": context.get("client_name"), "campaign_name": context.get("campaign_name"),
        "incentive": context.get("incentive"),
        "expires_on": expires_at and format_date(expires_at, "long", locale=language),
        "claim_reference": claim and claim["reference"],
        "code": context.get("code"), "valid_minutes": str(context.get("valid_minutes") or ""),
    }


def kind_of(channel: Channel, template: str) -> str | None:
    return next((name for name, kind in KINDS.items()
                 if kind.channel == channel and kind.template in (template, None)), None)


def wording_for(messages: dict[str, Any] | None, kind: str | None, language: str,
                context: dict[str, Any]) -> Wording:
    """The campaign's wording of this message in this language (as picked for the message:
    messaging.rendering.pick_language), filled in from its context."""
    given = ((messages or {}).get(kind) or {}).get(language) if kind else None
    if not given:
        return DEFAULT
    values = placeholder_values(context, language)
    # The subject is checked as one line when saved; the values filled into it are made so.
    by_part = {"subject": {name: one_line(value) for name, value in values.items()},
               "text": values}
    return Wording(**{part: lf_lines(fill(given[part], by_part[part])) if given.get(part)
                      else None for part in ("subject", "text")})
