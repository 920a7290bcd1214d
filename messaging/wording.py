"""A campaign's own wording of its invitations, reminders and confirmation (`messages` of the
campaign), per message kind and language, over the built-in best-practice texts.

A client writes plain text with a fixed set of `{placeholders}`, never template code: the text
is filled in here and handed to the templates as a value, which autoescape escapes in HTML like
any other. What carries the journey (the link, QR code, button, claim, preference and
unsubscribe links, legal footer) stays the templates' own and cannot be worded away.
"""

from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any

from babel.dates import format_date

from core.vocabulary import Channel


@dataclass(frozen=True)
class MessageKind:
    channel: Channel
    # The journey's template it words (templates/<channel>/); None: all of the channel's, as
    # one letter text serves the invitation and its reminders.
    template: str | None
    parts: tuple[str, ...]


KINDS = {
    "invitation": MessageKind(Channel.email, "invitation", ("subject", "text")),
    "reminder": MessageKind(Channel.email, "reminder", ("subject", "text")),
    "sms_invitation": MessageKind(Channel.sms, "invitation", ("text",)),
    "sms_reminder": MessageKind(Channel.sms, "reminder", ("text",)),
    "letter": MessageKind(Channel.letter, None, ("subject", "text")),
    # The thanks after verification (the campaign's send_confirmation), by email or by SMS.
    "confirmation": MessageKind(Channel.email, "confirmation", ("subject", "text")),
    "sms_confirmation": MessageKind(Channel.sms, "confirmation", ("text",)),
}

PLACEHOLDERS = ("first_name", "last_name", "client_name", "campaign_name", "incentive",
                "expires_on", "claim_reference")


@dataclass(frozen=True)
class Wording:
    """What a campaign words itself of one message; None: the built-in text."""

    subject: str | None = None
    text: str | None = None


DEFAULT = Wording()


def placeholder_problem(text: str) -> str | None:
    """Why the text is no valid wording, or None."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(text)
                  if name is not None]
    except ValueError as err:
        return (f"{err}: write placeholders as {{first_name}}, and a literal brace doubled, "
                f"{{{{ or }}}}")
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            return (f"unknown placeholder {shown}; use only "
                    f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return None


def fill(text: str, values: dict[str, str | None]) -> str:
    # Checked when the campaign was saved; a name outside the values still fills in nothing.
    return "".join(literal + (values.get(name) or "" if name is not None else "")
                   for literal, name, _, _ in Formatter().parse(text))


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
    return Wording(**{part: fill(given[part], values) if given.get(part) else None
                      for part in ("subject", "text")})
