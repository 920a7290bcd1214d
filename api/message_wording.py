"""A campaign's own message wording as the API checks and previews it (messaging.wording)."""

from datetime import date, timedelta
from math import ceil
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import FieldProblems
from api.schemas import CampaignCreate, ClaimIn, CodeSettings, FieldError
from core.settings import Settings
from core.vocabulary import FINAL_STAGES, Channel, JourneyKind
from db.launches import plan_channels
from db.models import Campaign, Client, Journey, utcnow
from messaging.branding import Brand, brand_for
from messaging.rendering import claim_view, render_email, render_letter, render_sms, sms_plain
from messaging.sms import longest_context
from messaging.sms_encoding import measure
from messaging.wording import KINDS, wording_for

# Who a preview greets, and whose name an SMS is measured with: a long one, as names come.
SAMPLE_CUSTOMER = {"first_name": "Alexandra", "last_name": "Vandenberghe-Janssens"}
SAMPLE_CODE = "123456"
MINUTE = timedelta(minutes=1)


def sample_claim(language: str) -> dict[str, Any]:
    """An open claim as a payment-reminder campaign's messages name it."""
    return claim_view({"reference": "INV-2026-000042", "amount": "1250.00", "currency": "EUR",
                       "payment_url": "https://pay.example/INV-2026-000042",
                       "due_on": (date.today() + timedelta(days=14)).isoformat()}, None, language)


def stored_messages(campaign: CampaignCreate) -> dict[str, Any] | None:
    """The wording as the campaign keeps it: only what was given."""
    return campaign.messages and campaign.messages.model_dump(mode="json", exclude_none=True)


def not_sent_by(kind: str, campaign_kind: str) -> str | None:
    """Why a campaign of this kind has nothing to word of this kind of message, or None."""
    if KINDS[kind].sent_by == campaign_kind:
        return None
    return (f"a {campaign_kind} campaign sends no {kind} message; its kinds are "
            f"{', '.join(k for k, m in KINDS.items() if m.sent_by == campaign_kind)}")


def check_messages(spec: dict[str, Any], settings: Settings, client: Client,
                   before: dict[str, Any] | None = None, confirming: bool = False) -> None:
    """Refuses wording of messages the campaign does not send, in a language it does not
    speak, SMS wording that, with the link at its longest, needs more segments than an SMS may
    have, and wording of a confirmation the campaign does not send; `before`, the settings a
    change is merged into; `confirming`, whether running journeys still send a confirmation."""
    brand = brand_for(client.name, client.branding, spec.get("branding"), settings)
    messages = spec.get("messages") or {}
    problems = unsent_confirmations(spec, before, confirming)
    stored = (before or {}).get("messages") or {}
    for kind, by_language in messages.items():
        unsent = not_sent_by(kind, spec.get("kind", JourneyKind.data_collection))
        if unsent:
            # Wording stored before this was refused stays through changes that leave it be.
            if stored.get(kind) != by_language:
                problems.append(FieldError(field=f"messages.{kind}", message=unsent))
            continue
        for language, given in by_language.items():
            where = f"messages.{kind}.{language}"
            if language not in spec["languages"]:
                problems.append(FieldError(field=where, message=(
                    f"the campaign does not speak {language!r} (its languages: "
                    f"{spec['languages']}); add it to languages or leave this wording out")))
            elif KINDS[kind].channel == Channel.sms and given.get("text") and (
                    problem := too_many_segments(sms_text(
                        spec, brand, settings, kind, language,
                        sample_claim(language) if spec.get("payments") else None), settings)):
                problems.append(FieldError(field=f"{where}.text", message=(
                    "too long for an SMS: as sent (with the link, code or claim it carries at "
                    f"their longest) it {problem}")))
    if problems:
        raise FieldProblems(problems)


# The thanks once verified, sent only with `send_confirmation`.
CONFIRMATIONS = ("confirmation", "sms_confirmation")


def unsent_confirmations(spec: dict[str, Any], before: dict[str, Any] | None,
                         confirming: bool = False) -> list[FieldError]:
    """Wording of a confirmation the campaign does not send, which nobody would read while the
    client believes customers do. Judged on the campaign as created or as a change leaves it
    (a patch may switch `send_confirmation` on and word it at once), when the change touches
    either: a campaign stored so before this was refused keeps it through other changes.
    While journeys started with `send_confirmation` on are open (`confirming`), they still
    send it, worded as the campaign says when they do: the wording is theirs to keep."""
    def confirmation(settings: dict[str, Any]) -> tuple[Any, ...]:
        messages = settings.get("messages") or {}
        return (bool(settings.get("send_confirmation")), *(messages.get(k) for k in CONFIRMATIONS))

    if spec.get("send_confirmation") or confirming or (
            before and confirmation(before) == confirmation(spec)):
        return []
    return [FieldError(field=f"messages.{kind}", message=(
        "the campaign sends no confirmation (send_confirmation is false), so nobody would read "
        "this wording: set send_confirmation to true, in the same patch if you like, or leave "
        "the wording out (null removes it)"))
        for kind in CONFIRMATIONS if (spec.get("messages") or {}).get(kind)]


# The SMS that name a payment-reminder journey's claim.
CLAIM_SMS = ("sms_invitation", "sms_reminder")


# Stand-ins for a claim's values where they go in its SMS (private-use characters, in no real
# text): the texts are rendered once per enrolment, and each claim measured by putting its
# values in, at a thousandth of a rendering's cost.
CLAIM_MARKS = {"reference": "\ue000", "amount": "\ue001", "due_on": "\ue002",
               "payment_url": "\ue003"}


class ClaimSms:
    """The campaign's SMS that name a claim, each claim of an enrolment measured as the sender
    measures its text: with the campaign's wording, the link at its longest, in every language
    of the campaign."""

    def __init__(self, spec: dict[str, Any], brand: Brand, settings: Settings,
                 sends: bool | None = None) -> None:
        """`sends`: whether the journeys measured for send SMS, if not as the campaign's plan
        says (running journeys keep the plan they started with)."""
        self.spec, self.brand, self.settings = spec, brand, settings
        self.sends = Channel.sms in plan_channels(spec) if sends is None else sends
        self.texts: dict[tuple[str, str, bool, bool, bool], str] = {}

    def problem(self, claim: ClaimIn) -> str | None:
        """Why the campaign's SMS could not name this claim, or None: with its reference (its
        amount and due date too) one of them would need more segments than an SMS may have,
        and would be skipped when sent."""
        return self.stored_problem(claim.model_dump(mode="json"))

    def stored_problem(self, stored: dict[str, Any]) -> str | None:
        """As `problem`, for a claim as a journey keeps it."""
        if not self.sends:
            return None
        for language in self.spec["languages"]:
            view = claim_view(stored, None, language)
            # A claim not due yet is named in other words ("overdue since") by the reminders
            # sent once its day has passed: those must fit too.
            for overdue in dict.fromkeys((view["overdue"], view["due_on"] is not None)):
                for kind in CLAIM_SMS:
                    text = self._marked(kind, language, {**view, "overdue": overdue})
                    for field, mark in CLAIM_MARKS.items():
                        if view[field] is not None:
                            text = text.replace(mark, sms_plain(str(view[field])))
                    problem = too_many_segments(text, self.settings)
                    if problem:
                        return (f"too long for the campaign's SMS: with this reference its "
                                f"{KINDS[kind].template} in {language} {problem}")
        return None

    def every_text(self) -> list[str]:
        """Every text a claim could be named in (each kind, language and shape of claim), with
        marks for its values: two campaigns with the same texts take the same claims."""
        if not self.sends:
            return []
        shapes = [{"reference": "R", "payment_url": "U", **amount, **due}
                  for amount in ({}, {"amount": "1"}) for due in ({}, {"due_on": "2026-01-01"})]
        return [self._marked(kind, language, {**claim_view(shape, None, language),
                                              "overdue": overdue})
                for shape in shapes for language in self.spec["languages"]
                for overdue in dict.fromkeys((False, "due_on" in shape)) for kind in CLAIM_SMS]

    def _marked(self, kind: str, language: str, view: dict[str, Any]) -> str:
        """The text with marks for the claim's values; one per shape of claim (with or without
        an amount, a due date, overdue or not), as the text's sentence differs."""
        shape = (kind, language, view["amount"] is not None, view["due_on"] is not None,
                 view["overdue"])
        if shape not in self.texts:
            marked = {**view, **{f: m for f, m in CLAIM_MARKS.items() if view[f] is not None}}
            self.texts[shape] = sms_text(self.spec, self.brand, self.settings, kind, language,
                                         marked)
        return self.texts[shape]


# Claims read from the database at a time when a change is checked against a campaign's open
# journeys, however many it has.
CLAIMS_AT_ONCE = 1000


async def open_claims_problem(session: AsyncSession, settings: Settings, client: Client,
                              campaign: Campaign, *, spec: dict[str, Any],
                              client_branding: dict[str, Any] | None) -> str | None:
    """Why a change leaving the campaign with settings `spec` and its client with branding
    `client_branding` could not send the SMS of the campaign's open journeys, or None: such
    an SMS would be skipped when sent, unseen by the client who made the change. The journeys
    read the wording and branding when they send, but keep the plan they started with."""
    if not campaign.spec.get("payments"):  # fixed once created: no claims to name
        return None

    def claim_sms(version: dict[str, Any], branding: dict[str, Any] | None,
                  sends: bool | None = None) -> ClaimSms:
        return ClaimSms(version, brand_for(client.name, branding, version.get("branding"),
                                           settings), settings, sends)

    before = claim_sms(campaign.spec, client.branding)
    claims = claim_sms(spec, client_branding, before.sends)
    if claims.every_text() == before.every_text():
        return None
    rows = await session.stream_scalars(
        select(Journey.claim).where(Journey.campaign_id == campaign.id,
                                    Journey.stage.not_in(FINAL_STAGES),
                                    Journey.paid_at.is_(None), Journey.claim.is_not(None))
        .execution_options(yield_per=CLAIMS_AT_ONCE))
    refused, first = 0, None
    async for claim in rows:
        if problem := claims.stored_problem(claim):
            refused += 1
            first = first or (claim["reference"], problem)
    if first is None:
        return None
    reference, problem = first
    journeys = "1 open journey is" if refused == 1 else f"{refused} open journeys are"
    return (f"{journeys} about a claim that the campaign's SMS could no longer name, e.g. "
            f"{reference!r}: {problem}; the change would have their SMS skipped when sent")


def sms_text(spec: dict[str, Any], brand: Brand, settings: Settings, kind: str, language: str,
             claim: dict[str, Any] | None) -> str:
    """The campaign's SMS of this kind as the sender renders it, with the link at its longest
    and a long name."""
    context = longest_context(brand.name, settings, base_url=brand.base_url) | {
        **SAMPLE_CUSTOMER, "campaign_name": spec["name"], "incentive": spec.get("incentive_text"),
        "claim": claim,
        # As many minutes as a fresh code of the campaign is valid: up to 1440, not 10.
        "valid_minutes": ceil(CodeSettings.model_validate(spec.get("verification") or {}
                                                          ).code_ttl / MINUTE)}
    context["wording"] = wording_for(spec.get("messages"), kind, language, context)
    return render_sms(KINDS[kind].template, language, context)


def domain_problem(spec: dict[str, Any], settings: Settings, *, before: Brand,
                   after: Brand) -> str | None:
    """Why the campaign's own SMS wording could not be sent with the links of brand `after`
    (another custom domain) where it could with those of `before`, or None: measured as on save
    (the longest link, a long name, a sample claim), one would need more segments than an SMS
    may have, and be skipped when sent, unseen by the client who changed the domain. A text
    too long already counts only where the change lengthens it."""
    if after.base_url == before.base_url:
        return None
    for kind, by_language in (spec.get("messages") or {}).items():
        if (kind not in KINDS or KINDS[kind].channel != Channel.sms
                or not_sent_by(kind, spec.get("kind", JourneyKind.data_collection))):
            continue
        for language, given in by_language.items():
            if language not in spec["languages"] or not (given or {}).get("text"):
                continue
            claim = sample_claim(language) if spec.get("payments") else None
            text = sms_text(spec, after, settings, kind, language, claim)
            problem = too_many_segments(text, settings)
            if problem and measure(text).segments > measure(
                    sms_text(spec, before, settings, kind, language, claim)).segments:
                return (f"with this domain in its links, the SMS of its own {kind} wording in "
                        f"{language} would be skipped when sent: it {problem}; or choose a "
                        f"shorter domain")
    return None


def too_many_segments(text: str, settings: Settings) -> str | None:
    """What an SMS needs when more segments than an SMS may have (the tail of an error)."""
    length = measure(text)
    if length.segments <= settings.sms_max_segments:
        return None
    return (f"needs {length.segments} {length.encoding} segments, at most "
            f"{settings.sms_max_segments} allowed; shorten it (characters outside GSM-7, such as "
            f"emoji or curly quotes, more than halve what a segment holds)")


def preview(campaign: CampaignCreate, brand: Brand, settings: Settings, kind: str,
            language: str) -> dict[str, Any]:
    """The message of this kind in this language as a sample customer would get it now: the
    campaign's wording where it has one, the built-in text otherwise."""
    unsent = not_sent_by(kind, campaign.kind)
    if unsent:
        raise FieldProblems([FieldError(field="kind", message=unsent)])
    message = KINDS[kind]
    if message.channel == Channel.sms:
        # An SMS is measured with a link as long as a real one (as sms_text measures it on
        # save): a short sample link would show fewer segments than the SMS sent costs.
        link = longest_context(brand.name, settings, base_url=brand.base_url)["link"]
    else:
        # As sent: the mail verifying a typed address links its confirmation page (/v/).
        link = f"{brand.base_url}/{'v' if message.verifies else 'c'}/sample"
    context: dict[str, Any] = {
        **SAMPLE_CUSTOMER, "client_name": brand.name, "campaign_name": campaign.name,
        "link": link,
        # As sent: a mail to an address only typed offers no preferences (activities.messages).
        "preferences_link": None if message.verifies else f"{brand.base_url}/p/sample",
        # As sent (JourneyWorkflow._send): a verifying link lives verification_link_ttl, but
        # never past the journey's end.
        "expires_at": utcnow() + (min(campaign.verification_link_ttl, campaign.expires_after)
                                  if message.verifies else campaign.expires_after),
        "incentive": campaign.incentive_text, "collect": campaign.collect,
        "mode": campaign.mode, "known": [], "brand": brand,
        "claim": sample_claim(language) if campaign.payments else None,
        "code": SAMPLE_CODE, "valid_minutes": ceil(campaign.verification.code_ttl / MINUTE),
    }
    context["wording"] = wording_for(stored_messages(campaign), kind, language, context)
    answer: dict[str, Any] = {"kind": kind, "language": language, "channel": message.channel,
                              "custom": {part: bool(getattr(context["wording"], part))
                                         for part in message.parts}}
    if message.channel == Channel.email:
        email = render_email(message.template, language, context)
        answer |= {"subject": email.subject, "text": email.text, "html": email.html}
    elif message.channel == Channel.sms:
        text = render_sms(message.template, language, context)
        length = measure(text)
        answer |= {"text": text, "segments": length.segments, "encoding": length.encoding}
    else:
        letter = render_letter("invitation", language, context)
        answer |= {"subject": letter.subject, "text": "\n\n".join(letter.paragraphs)}
    return answer
