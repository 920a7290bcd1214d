"""The preference centre and one-click unsubscribe, reached from links in every message.

Each change is a ledger entry with the text that was shown, the time, IP and user agent."""

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from api.deps import SessionDep, StateDep
from api.public_forms import limit_form_posts
from api.routes.customer_page import (
    LANGUAGES,
    client_languages,
    csrf_ok,
    forbidden_page,
    html,
    invalid_link,
    language_switch,
    who,
)
from contacts import registry
from contacts.audit import Actor
from contacts.suppression import CHANNEL_POINTS
from core.security import sha256_hex
from core.vocabulary import MARKETING_KINDS, ActorType, Channel, ConsentSource, TokenPurpose
from db import consents, crud
from db.models import Client, Contact, LegalText, LinkToken, Purpose
from messaging.branding import client_brand

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_form_posts)])
CHANNELS = list(consents.SENDING_CHANNELS)
# The boxes in the order the page shows and saves them: `any` comes first, so that the
# channels are saved as they stand after a withdrawal on every channel.
BOXES = [Channel.any, *CHANNELS]


async def resolve(session, token: str, purpose: TokenPurpose
                  ) -> tuple[LinkToken, Contact, Client] | None:
    if len(token) > 100:
        return None
    link = await session.get(LinkToken, sha256_hex(token))
    if (link is None or link.purpose != purpose or link.contact_id is None
            or link.expires_at <= datetime.now(UTC)):
        return None
    contact = await session.get_one(Contact, link.contact_id)
    if await session.scalar(select(crud.taken_away(contact.id, crud.sent_to(link.step,
                                                                             contact.id)))):
        return None
    return link, contact, await session.get_one(Client, contact.client_id)


def page_language(link: LinkToken, contact: Contact) -> str:
    """The language of the message that carried the link (a journey's, which the customer may
    have chosen on its page) or chosen here since; else the contact's."""
    return (link.scope or {}).get("language") or contact.language


def shown_name(purpose: Purpose, language: str, text: LegalText | None,
               client: Client) -> str | None:
    """The purpose's name on a page in `language`: the client's name for it in that language
    (in `names`, else `name`, written in the client's default language); without one, `name`
    beside a legal text in the default language, and None beside a text in another language
    (the customer's), which then names the purpose itself rather than a name the customer may
    not read. Without a text, there is only the name to show."""
    if language in purpose.names:
        return purpose.names[language]
    if text is None or client.default_language in (language, text.language):
        return purpose.name
    return None


async def offered(session, client: Client, language: str, current: dict) -> list[dict]:
    """Marketing purposes with the text a customer is shown when choosing them; `current`: the
    contact's decisions, whose purposes are shown whatever language their text is in."""
    purposes = await consents.purposes_by_key(session, client_id=client.id)
    texts = await consents.texts_for_purposes(session, client_id=client.id,
                                              language=language,
                                              fallback=client.default_language,
                                              decided=current)
    return [{"key": p.key, "name": shown_name(p, language, texts[p.key], client),
             "text": texts[p.key].text, "legal": texts[p.key]}
            for p in purposes.values() if p.kind in MARKETING_KINDS and p.key in texts]


async def reachable(session, contact: Contact) -> set[str]:
    """The channels that can reach the contact now. An opt-in for another one proves no
    consent (no number to text, or an address that moved to another person), so it is not
    asked for; a standing one stays shown, to be withdrawn."""
    kinds = set(await crud.known_points(session, contact_id=contact.id))
    found = {c for c in CHANNELS if kinds & set(CHANNEL_POINTS.get(c, ()))}
    if await crud.current_address(session, contact_id=contact.id) is not None:
        found.add(Channel.letter)
    return found


def standing_blanket(current: dict, purpose: str) -> bool:
    """Whether the purpose has a grant on `any` standing (given through the client). The page
    shows it only to be withdrawn: it asks for consent per channel, never for all at once."""
    decision = current.get((purpose, Channel.any))
    return decision is not None and decision.granted


def granted_boxes(current: dict, purposes: list[str]) -> set[str]:
    """The boxes ticked for the current decisions: each channel as its ruling decision has it
    (a withdrawal on `any` unticks it), and a standing grant on `any`."""
    return ({f"{p}:{c}" for p in purposes for c in CHANNELS
             if getattr(consents.governing(current, p, c), "granted", False)}
            | {f"{p}:{Channel.any}" for p in purposes if standing_blanket(current, p)})


async def _page(request: Request, state, session, link: LinkToken, contact: Contact,
                client: Client, saved: bool = False, unreachable: list[str] | None = None,
                unknown: bool = False, ticked: set[str] | None = None,
                shown: set[str] | None = None) -> HTMLResponse:
    """`ticked`: the boxes of a refused form, shown as the customer left them (the refused
    ones too, to untick) rather than the saved choices, so no other change is lost, and
    `shown`, the boxes that form was first shown with, against which the changes count.
    `unknown`: the form chose something this page does not offer."""
    language = page_language(link, contact)
    current = await consents.preferences(session, contact_id=contact.id)
    offers = await offered(session, client, language, current)
    standing = granted_boxes(current, [p["key"] for p in offers])
    ticked = standing if ticked is None else ticked
    shown = standing if shown is None else shown
    reach = await reachable(session, contact)
    # A purpose with no box to show (its only channel moved away) is not shown at all: a
    # text without a choice, and no display recorded for it.
    purposes = [p for p in offers
                if any(c in reach or f"{p['key']}:{c}" in ticked for c in BOXES)]
    displays = await consents.record_displays(
        session, contact=contact, journey_id=None, shown_in="preference_centre",
        texts={p["key"]: (p["key"], Channel.any, {"language": p["legal"].language,
                                                  "version": p["legal"].version,
                                                  "sha256": p["legal"].sha256})
               for p in purposes}, **who(request))
    await session.commit()
    return html(request, state, "preferences", language, {
        "client_name": client.name, "brand": client_brand(client, state.settings),
        "languages": language_switch(client_languages(client)), "purposes": purposes,
        "displays": displays,
        "channels": BOXES, "reachable": reach, "granted": ticked, "shown": shown,
        "saved": saved, "unreachable": unreachable or [], "unknown": unknown},
        status.HTTP_422_UNPROCESSABLE_CONTENT if unreachable or unknown else status.HTTP_200_OK)


@router.get("/p/{token}", response_class=HTMLResponse)
async def preference_centre(token: str, request: Request, session: SessionDep, state: StateDep):
    found = await resolve(session, token, TokenPurpose.preferences)
    if found is None:
        return invalid_link(request, state)
    return await _page(request, state, session, *found)


async def posted(request: Request, session, state, token: str
                 ) -> tuple[LinkToken, Contact, Client] | HTMLResponse:
    """A form posted to the preference centre: its link, contact and client, or the page that
    refuses it (an unknown link, a missing or forged CSRF token)."""
    found = await resolve(session, token, TokenPurpose.preferences)
    if found is None:
        return invalid_link(request, state)
    link, contact, _ = found
    if not await csrf_ok(request, state):
        return forbidden_page(request, state, page_language(link, contact))
    return found


async def decide_alone(session, contact: Contact) -> None:
    """Holds the contact's decisions until this post has saved its own: the same form sent
    twice at once (a double click, a reload, a mail client's retried one-click unsubscribe)
    then finds the first one's decision standing, and records nothing again."""
    await session.refresh(contact, with_for_update=consents.DECIDING)


@router.post("/p/{token}", response_class=HTMLResponse)
async def save_preferences(token: str, request: Request, session: SessionDep, state: StateDep):
    given_at = datetime.now(UTC)
    found = await posted(request, session, state, token)
    if isinstance(found, HTMLResponse):
        return found
    link, contact, client = found
    form = await request.form()
    ticked = set(form.getlist("granted"))
    # A form shown before a later decision (an unsubscribe, an SMS STOP) must not undo it with
    # a box the customer left as it was. A form of a page served before the page said what it
    # showed counts every box.
    shown = set(filter(None, str(form["shown"]).split(","))) if "shown" in form else None
    await decide_alone(session, contact)
    current = await consents.preferences(session, contact_id=contact.id)
    reach = await reachable(session, contact)
    purposes = await offered(session, client, page_language(link, contact), current)
    # A tampered or stale form (a purpose no longer offered, a channel that is none of ours, a
    # grant on every channel that is not standing) is refused whole rather than saved without
    # the choice the customer thinks they made.
    unknown = ticked - {f"{p['key']}:{c}" for p in purposes for c in CHANNELS} - {
        f"{p['key']}:{Channel.any}" for p in purposes if standing_blanket(current, p["key"])}
    decisions, unreachable = [], set()
    # The decisions as they will stand once saved: a withdrawal on `any` unticks every channel
    # granted before it, so a box the customer left ticked is granted again beside it.
    after = dict(current)
    for purpose in purposes:
        for channel in BOXES:
            box = f"{purpose['key']}:{channel}"
            granted = box in ticked - unknown
            ruling = consents.governing(after, purpose["key"], channel)
            # Left as it was shown, a box keeps what rules it now, a decision made since the
            # page was shown included; unless this form's own change on `any` moved it.
            if shown is not None and granted == (box in shown) and \
                    ruling is consents.governing(current, purpose["key"], channel):
                continue
            # Untouched boxes that were never decided stay undecided, not "withdrawn".
            if (ruling is None and not granted) or (ruling is not None
                                                    and ruling.granted == granted):
                continue
            if granted and channel not in reach:
                unreachable.add(channel)
                continue
            after[(purpose["key"], channel)] = consents.Decision(
                purpose=purpose["key"], channel=channel, granted=granted, given_at=given_at,
                source=ConsentSource.message_link, text=purpose["legal"],
                shown_in="preference_centre", **who(request),
                display_id=await consents.verified_display(
                    session, display_id=form.get(f"display-{purpose['key']}"),
                    contact_id=contact.id, purpose=purpose["key"]))
            decisions.append(after[(purpose["key"], channel)])
    if unreachable or unknown:
        # Nothing is saved: the customer sees the choice was refused, not half of it kept.
        return await _page(request, state, session, link, contact, client,
                           unreachable=[c for c in CHANNELS if c in unreachable],
                           unknown=bool(unknown), ticked=ticked - unknown, shown=shown)
    _, endpoints = await consents.record(session, contact=contact, decisions=decisions)
    await session.commit()
    await state.endpoints.wake(client.id, endpoints, "consent changed")
    return await _page(request, state, session, link, contact, client, saved=True)


@router.post("/p/{token}/language", response_class=HTMLResponse)
async def switch_language(token: str, request: Request, session: SessionDep, state: StateDep):
    """Shows the page in another language and, as the KYC page does, keeps it as the
    contact's, so later messages speak it too. Only the token is in the URL."""
    found = await posted(request, session, state, token)
    if isinstance(found, HTMLResponse):
        return found
    link, contact, _ = found
    language = (await request.form()).get("language")
    if language in LANGUAGES:
        link.scope = {**(link.scope or {}), "language": language}
        await registry.keep_language(session, state.settings.secret_key.get_secret_value(),
                                     contact, language,
                                     Actor(ActorType.customer, f"preferences:{contact.id}"))
        await session.commit()
    return RedirectResponse(f"/p/{token}", status_code=status.HTTP_303_SEE_OTHER)


async def _unsubscribe_page(request, state, session, token: str, done: bool):
    found = await resolve(session, token, TokenPurpose.unsubscribe)
    if found is None:
        return None, invalid_link(request, state)
    link, contact, client = found
    language, key = page_language(link, contact), link.scope["purpose"]
    purpose = (await consents.purposes_by_key(session, client_id=client.id)).get(key)
    # As the withdrawal will record it: the text in the page's language, else the client's.
    legal = (await consents.texts_for_purposes(
        session, client_id=client.id, language=language, fallback=client.default_language,
        decided=await consents.preferences(session, contact_id=contact.id))).get(key)
    context = {"client_name": client.name, "brand": client_brand(client, state.settings),
               "done": done, "legal": legal, "channel": link.scope["channel"],
               "purpose_name": shown_name(purpose, language, legal, client) if purpose else key}
    return found, html(request, state, "unsubscribe", language, context)


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request, session: SessionDep, state: StateDep):
    # A GET only asks: link scanners that open every link must not unsubscribe anyone.
    return (await _unsubscribe_page(request, state, session, token, done=False))[1]


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, request: Request, session: SessionDep, state: StateDep):
    """RFC 8058 one-click unsubscribe: the mail client POSTs `List-Unsubscribe=One-Click`
    without cookies, so this one form has no CSRF token; the link itself is the secret."""
    given_at = datetime.now(UTC)
    found, page = await _unsubscribe_page(request, state, session, token, done=True)
    if found is None:
        return page
    link, contact, client = found
    purpose, channel = link.scope["purpose"], link.scope["channel"]
    await decide_alone(session, contact)
    current = await consents.preferences(session, contact_id=contact.id)
    if consents.changed(current, purpose, channel, False):
        text = (await consents.texts_for_purposes(
            session, client_id=client.id, language=page_language(link, contact),
            fallback=client.default_language, decided=current))[purpose]
        _, endpoints = await consents.record(session, contact=contact, decisions=[
            consents.Decision(purpose=purpose, channel=channel, granted=False, given_at=given_at,
                              source=ConsentSource.message_link, text=text,
                              shown_in=f"unsubscribe:{link.step}", **who(request))])
        await session.commit()
        await state.endpoints.wake(client.id, endpoints, "consent changed")
    page.status_code = status.HTTP_200_OK
    return page
