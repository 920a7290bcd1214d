"""Puts contacts into a campaign: validates each item on its own and writes contacts and
journeys in one transaction (workflows.starts then starts one journey per contact)."""

import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client as TemporalClient

from activities.webhooks import EndpointWaker
from api import lost_journeys
from api.errors import item_errors
from api.schemas import LOCAL_PAYMENT_PAGES, ClaimIn, ContactIn, EnrolItemResult, FieldError
from contacts import audit, normalise, registry
from contacts.audit import Actor
from contacts.registry import Registry
from contacts.schemas import SCALAR_FIELDS
from core.vocabulary import (
    CHANNEL_NEEDS,
    AuditAction,
    Channel,
    ContactKind,
    ContactPointKind,
    Stage,
)
from db import crud, launches
from db.launches import plan_channels
from db.models import (
    Campaign,
    CampaignClaim,
    Contact,
    ContactIdentityKey,
    ContactPoint,
    Journey,
)
from workflows.journey import FALLBACK
from workflows.starts import workflow_id

T = TypeVar("T")


def validate_items(items: list[Any], *, claim_problem: Callable[[ClaimIn], str | None],
                   local_payment_pages: bool
                   ) -> tuple[dict[int, ContactIn], list[EnrolItemResult]]:
    """The items that are contacts as the campaign takes them, and the others' refusals;
    `claim_problem` says why the campaign's messages could not carry a claim;
    `local_payment_pages` allows a claim's payment page on localhost or a private network."""
    valid: dict[int, ContactIn] = {}
    rejected: list[EnrolItemResult] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(items):
        try:
            item = ContactIn.model_validate(
                raw, context={LOCAL_PAYMENT_PAGES: local_payment_pages})
        except ValidationError as err:
            ext = raw.get("external_id") if isinstance(raw, dict) else None
            rejected.append(EnrolItemResult(
                index=index, status="rejected", external_id=ext if isinstance(ext, str) else None,
                errors=item_errors(err)))
            continue
        if item.claim is not None and (problem := claim_problem(item.claim)):
            rejected.append(_rejected(index, item, problem, "claim.reference"))
            continue
        if item.external_id in first_index:
            rejected.append(EnrolItemResult(
                index=index, status="rejected", external_id=item.external_id,
                errors=[FieldError(field="external_id",
                                   message=f"duplicate of item {first_index[item.external_id]} "
                                           "in this request")]))
            continue
        first_index[item.external_id] = index
        valid[index] = item
    return valid, rejected


def _rejected(index: int, item: ContactIn, message: str, field: str = "item",
              contact_id: uuid.UUID | None = None) -> EnrolItemResult:
    return EnrolItemResult(index=index, status="rejected", external_id=item.external_id,
                           contact_id=contact_id, errors=[FieldError(field=field, message=message)])


def _claim_problems(items: dict[int, ContactIn], *, payments: bool) -> list[EnrolItemResult]:
    if payments:
        return [_rejected(i, item, "required: this campaign reminds of a payment", "claim")
                for i, item in items.items() if item.claim is None]
    return [_rejected(i, item, "this campaign carries no payments", "claim")
            for i, item in items.items() if item.claim is not None]


async def _claims_of_others(session: AsyncSession, campaign: Campaign,
                            contacts: dict[int, Contact], items: dict[int, ContactIn],
                            enrolled: set[uuid.UUID]) -> list[EnrolItemResult]:
    """Reserves each item's claim reference for its contact in the campaign, and refuses the
    items whose reference another contact holds (since an earlier request, or an earlier item
    of this one): one invoice is not dunned from two people. The same contact with its own
    reference again is a repeat while its journey lives (`enrolled`); a new journey for a claim
    already reported paid would ask for the payment again, and is refused."""
    wanted = {i: items[i].claim.reference for i in contacts if items[i].claim is not None}
    if not wanted:
        return []
    await crud.insert_ignoring_conflicts(session, CampaignClaim, [
        {"campaign_id": campaign.id, "reference": reference, "client_id": campaign.client_id,
         "contact_id": contacts[i].id} for i, reference in wanted.items()])
    held = {reference: (owner, paid_at) for reference, owner, paid_at in await session.execute(
        select(CampaignClaim.reference, CampaignClaim.contact_id, CampaignClaim.paid_at)
        .where(CampaignClaim.campaign_id == campaign.id,
               CampaignClaim.reference.in_(wanted.values())))}
    refused = []
    for i, reference in wanted.items():
        owner, paid_at = held[reference]
        if owner != contacts[i].id:
            refused.append(_rejected(i, items[i], f"claim {reference!r} is already the claim of "
                                     f"contact {owner} in this campaign", "claim.reference",
                                     contacts[i].id))
        elif paid_at is not None and contacts[i].id not in enrolled:
            refused.append(_rejected(i, items[i], f"claim {reference!r} was already reported "
                                     f"paid on {paid_at.isoformat()}; it is not asked for again",
                                     "claim.reference", contacts[i].id))
    return refused


def _claim_changes(stored: dict[str, Any], claim: ClaimIn) -> list[tuple[str, Any]]:
    """The details (and their stored values) in which a repeated claim differs from the one its
    journey holds; amounts compare as numbers ("125.5" is "125.50")."""
    given = claim.model_dump(mode="json")

    def same(name: str) -> bool:
        old, new = stored.get(name), given[name]
        if name == "amount" and old is not None and new is not None:
            return Decimal(old) == Decimal(new)
        return old == new
    return [(name, stored.get(name)) for name in given if not same(name)]


# A claim detail the stored claim lacks is said in words ("no due date"), not as None.
DETAIL_WORDS = {"due_on": "due date", "payment_url": "payment URL"}


def _stored(name: str, old: Any) -> str:
    return f"no {DETAIL_WORDS.get(name, name)}" if old is None else f"{name} {old!r}"


def _rule_values(item: ContactIn) -> dict[str, Any]:
    scalars = {**dict.fromkeys(SCALAR_FIELDS), "kind": ContactKind.person,
               "first_name": item.first_name, "last_name": item.last_name}
    points = [(ContactPointKind.email, str(item.email))] if item.email else []
    return registry.rule_values(scalars, points, item.external_id)


def _enrolment_hint(problem: FieldError) -> FieldError:
    """A field the rule needs and an enrolment item cannot carry (an ID number, say): the
    contact is created in the registry first, then enrolled by its external id."""
    if problem.field in ContactIn.model_fields:
        return problem
    return FieldError(field=problem.field, message=f"{problem.message}; an enrolment item "
                      "cannot carry it: create the contact with POST /v1/contacts or an "
                      "import, then enrol it by external_id")


async def _new_contacts(session: AsyncSession, reg: Registry, actor: Actor,
                        items: dict[int, ContactIn], default_language: str,
                        ids: dict[int, uuid.UUID]) -> tuple[list[EnrolItemResult], set[uuid.UUID]]:
    """Creates the contacts the registry does not know yet (item i's with the id ids[i]), under
    the client's uniqueness rule as the contact API does; returns the items refused by it and
    the contacts created."""
    rejected, keys = [], {}
    for index, item in items.items():
        values = _rule_values(item)
        # A contact known only by an email is what a data-collection campaign is for: only
        # what the uniqueness rule needs is required.
        problems = [_enrolment_hint(p) for p in reg.rule_problems(ContactKind.person, values)]
        if problems:
            rejected.append(EnrolItemResult(index=index, status="rejected",
                                            external_id=item.external_id, errors=problems))
        else:
            keys[index] = reg.identity_keys(ContactKind.person, values)
    owners = dict((await session.execute(select(
        ContactIdentityKey.key, ContactIdentityKey.contact_id).where(
        ContactIdentityKey.client_id == reg.client_id,
        ContactIdentityKey.key.in_({k for ks in keys.values() for k in ks})))).all())
    claimed: dict[str, int] = {}
    rows, ours = {}, set()
    for index, item_keys in keys.items():
        owner = next((owners[k] for k in item_keys if k in owners), None)
        earlier = next((claimed[k] for k in item_keys if k in claimed), None)
        if owner is not None:
            rejected.append(_rejected(index, items[index], f"same contact as {owner} (same "
                                      "values under the uniqueness rule)", contact_id=owner))
        elif earlier is not None:
            rejected.append(_rejected(index, items[index], f"same contact as item {earlier} "
                                      "under the uniqueness rule"))
        else:
            claimed.update(dict.fromkeys(item_keys, index))
            item = items[index]
            rows[index] = {"id": ids[index], "client_id": reg.client_id,
                           "external_id": item.external_id, "first_name": item.first_name,
                           "last_name": item.last_name,
                           "language": item.language or default_language}
    if rows:
        await crud.insert_ignoring_conflicts(session, Contact, list(rows.values()))
        # A concurrent request may have created some of them first: only ours get keys here.
        ours = set(await session.scalars(select(Contact.id).where(
            Contact.id.in_([r["id"] for r in rows.values()]))))
        # In one order: two requests inserting the same keys wait for each other, not deadlock.
        identity = sorted(({"client_id": reg.client_id, "key": k, "contact_id": rows[i]["id"]}
                           for i in rows for k in keys[i] if rows[i]["id"] in ours),
                          key=lambda row: row["key"])
        await crud.insert_ignoring_conflicts(session, ContactIdentityKey, identity)
        # A key a concurrent request gave its own contact first (its insert waited for that
        # commit) is not ours: the item is that contact, refused as if it came after it; the
        # contact written for it is undone (write_contacts_and_journeys).
        holders = dict((await session.execute(select(
            ContactIdentityKey.key, ContactIdentityKey.contact_id).where(
            ContactIdentityKey.client_id == reg.client_id,
            ContactIdentityKey.key.in_([row["key"] for row in identity])))).all())
        for index, row in rows.items():
            owner = next((holders[k] for k in keys[index]
                          if holders.get(k, row["id"]) != row["id"]), None)
            if row["id"] in ours and owner is not None:
                rejected.append(_rejected(index, items[index], f"same contact as {owner} (same "
                                          "values under the uniqueness rule)", contact_id=owner))
        await audit.record(session, client_id=reg.client_id, actor=actor,
                           action=AuditAction.create, contact_ids=sorted(ours),
                           detail={"fields": ["contact_points", "first_name", "last_name",
                                              "language"]})
    return rejected, ours


async def _newest_knowledge(session: AsyncSession, reg: Registry, actor: Actor,
                            contacts: dict[int, Contact], items: dict[int, ContactIn]
                            ) -> list[EnrolItemResult]:
    """Names and language given now are the client's newest knowledge of known contacts; a
    change passes the uniqueness rule and lands in the audit trail like an API update."""
    rejected = []
    for index, contact in contacts.items():
        item = items[index]
        given = {f: getattr(item, f) for f in ("first_name", "last_name", "language")
                 if getattr(item, f) is not None and getattr(item, f) != getattr(contact, f)}
        if not given:
            continue
        try:
            changed = await registry.apply_scalars(session, reg, contact, given)
        except registry.Invalid as err:
            rejected.append(EnrolItemResult(index=index, status="rejected",
                                            external_id=item.external_id, contact_id=contact.id,
                                            errors=err.fields))
            continue
        except registry.Duplicate as err:
            rejected.append(_rejected(index, item, str(err), contact_id=contact.id))
            continue
        await registry.touch(session, reg, contact, actor, changed)
    return rejected


async def _emails_of_known(session: AsyncSession, reg: Registry, actor: Actor,
                           items: dict[int, ContactIn], contacts: dict[str, Contact],
                           given: list[tuple[uuid.UUID, str]]) -> list[EnrolItemResult]:
    """Gives known contacts the emails their items carry, as the contact API does, each under
    the uniqueness rule (the address may key the contact anew); returns the items it refuses,
    whose contact stays as it was."""
    index_of = {contacts[item.external_id].id: i for i, item in items.items()}
    by_id = {c.id: c for c in contacts.values()}
    refused = []
    for contact_id, value in given:
        index = index_of[contact_id]
        savepoint = await session.begin_nested()
        try:
            change = await registry.give_point(session, reg, by_id[contact_id], "email", value,
                                               None)
        except registry.Duplicate as err:
            await savepoint.rollback()
            refused.append(_rejected(index, items[index], str(err), "email", contact_id))
            continue
        except IntegrityError as err:
            if not crud.collided(err):
                raise
            # A concurrent request gave the contact the same address first.
            await savepoint.rollback()
            continue
        await savepoint.commit()
        await audit.record(session, client_id=reg.client_id, actor=actor,
                           action=AuditAction.update, contact_ids=[contact_id],
                           detail={"changes": {"contact_points": change}})
    return refused


ANONYMISED = "matches an anonymised contact, which cannot change"
ERASED_MEANWHILE = ("the contact with this external_id was deleted or anonymised while this "
                    "request ran")


def unreachable(channels: list[str], bounced: bool = False, unknown: bool = False) -> FieldError:
    if unknown:
        needs = " or ".join(CHANNEL_NEEDS[Channel(c)] for c in channels)
        return FieldError(field="email" if channels == ["email"] else "item", message=(
            "no contact with this external_id exists: "
            + ("give its email in this item to create it, or " if "email" in channels else "")
            + f"create it first with POST /v1/contacts (or an import) with its {needs}, then "
            "enrol it by external_id"))
    if bounced:
        return FieldError(field="email" if channels == ["email"] else "item", message=(
            f"this campaign reaches contacts by {', '.join(channels)}; what the contact has "
            "for that bounced (it is marked undeliverable), and no mobile number or postal "
            "address that did not bounce is known to fall back to"))
    if channels == ["email"]:
        return FieldError(field="email", message="required: this campaign reaches contacts by "
                          "email and none is known for this contact")
    return FieldError(field="item", message="this campaign reaches contacts by "
                      f"{', '.join(channels)}; the contact needs "
                      f"one of: {', '.join(CHANNEL_NEEDS[Channel(c)] for c in channels)}")


# Where a journey turns when a bounce leaves its plan without a channel that reaches.
FALLBACK_CHANNELS = [step.channel for step in FALLBACK]


async def reachable_on(session: AsyncSession, contact_ids: list[uuid.UUID],
                       channels: list[str]) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The contacts the campaign's journeys can reach (`launches.reachable`, as a launch
    selects them); also the unreachable ones a hard bounce made so."""
    reachable, bounced = set(), set()
    for contact_id, can, dead in await session.execute(select(
            Contact.id, launches.reachable(channels, FALLBACK_CHANNELS),
            launches.bounced_on(channels)).where(Contact.id.in_(contact_ids))):
        if can:
            reachable.add(contact_id)
        elif dead:
            bounced.add(contact_id)
    return reachable, bounced


async def _locked(session: AsyncSession, contacts: dict[str, Contact]) -> dict[str, Contact]:
    """The known contacts (by the items' external ids), locked until commit against their
    erasure (which locks them FOR UPDATE) and read anew, so that none is erased while its
    journey is written and the request answers as it would after an erasure that came first:
    a contact deleted or anonymised (which gives it another external id) meanwhile is no
    longer known by the item's. In id order, so that two requests locking the same contacts
    wait for each other rather than deadlock; FOR NO KEY UPDATE, as two enrolments may each
    change names or language of the same contact."""
    if not contacts:
        return {}
    fresh = {c.id: c for c in await session.scalars(
        select(Contact).where(Contact.id.in_([c.id for c in contacts.values()]))
        .order_by(Contact.id).with_for_update(key_share=True)
        .execution_options(populate_existing=True))}
    return {external_id: fresh[c.id] for external_id, c in contacts.items()
            if c.id in fresh and fresh[c.id].external_id == external_id}


def _not_refused(items: dict[int, T], refused: list[EnrolItemResult]) -> dict[int, T]:
    """The items no result has refused yet (the set built once: a request holds a thousand)."""
    done = {r.index for r in refused}
    return {i: item for i, item in items.items() if i not in done}


async def write_contacts_and_journeys(
    session: AsyncSession, reg: Registry, actor: Actor, temporal: TemporalClient,
    waker: EndpointWaker, *, campaign: Campaign, items: dict[int, ContactIn],
) -> tuple[list[EnrolItemResult], list[Journey]]:
    """Refuses some items and writes the others' contacts and journeys. An item refused after
    its new contact was written (its claim another item holds) leaves no contact behind: the
    writes are undone and done again without it, and its result names no contact."""
    # A new contact's id is the same in each try: a refusal names the contact holding a claim.
    ids = {index: uuid.uuid4() for index in items}
    undone: list[EnrolItemResult] = []
    while True:
        savepoint = await session.begin_nested()
        results, journeys, created = await _write_once(
            session, reg, actor, temporal, waker, campaign=campaign,
            items=_not_refused(items, undone), ids=ids)
        # Item i's refusal after its contact was written: it may name another contact (whose
        # identity key a concurrent request took first), which stays named.
        written = {index for index, contact_id in ids.items() if contact_id in created}
        late = [r for r in results if r.status == "rejected" and r.index in written]
        if not late:
            await savepoint.commit()
            return results + undone, journeys
        await savepoint.rollback()
        undone += [r.model_copy(update={"contact_id": None}) if r.contact_id in created else r
                   for r in late]


async def _write_once(
    session: AsyncSession, reg: Registry, actor: Actor, temporal: TemporalClient,
    waker: EndpointWaker, *, campaign: Campaign, items: dict[int, ContactIn],
    ids: dict[int, uuid.UUID],
) -> tuple[list[EnrolItemResult], list[Journey], set[uuid.UUID]]:
    client_id = campaign.client_id
    spec = campaign.spec

    async def known() -> dict[str, Contact]:
        return {c.external_id: c for c in await session.scalars(select(Contact).where(
            Contact.client_id == client_id,
            Contact.external_id.in_([i.external_id for i in items.values()])))}

    claims = _claim_problems(items, payments=bool(spec.get("payments")))
    items = _not_refused(items, claims)
    before = await _locked(session, await known())
    # An erased person is not asked again, nor filled with new data, under the old key.
    erased = [EnrolItemResult(index=i, status="rejected", external_id=item.external_id,
                              contact_id=held.id, errors=[FieldError(
                                  field="external_id", message=ANONYMISED)])
              for i, item in items.items()
              if (held := before.get(item.external_id)) and held.anonymised_at is not None]
    claims += erased
    items = _not_refused(items, erased)
    channels = plan_channels(spec)
    # An item the campaign cannot reach (no email of its own for it, and no address the
    # registry holds) is refused before anything of it is written: no new contact, no names.
    reachable_before, bounced = await reachable_on(session, [c.id for c in before.values()],
                                                   channels)
    unreachable_new = [
        EnrolItemResult(index=i, status="rejected", external_id=item.external_id,
                        contact_id=held.id if held else None,
                        errors=[unreachable(channels, bool(held) and held.id in bounced,
                                            unknown=held is None)])
        for i, item in items.items()
        if not (item.email and "email" in channels)
        and ((held := before.get(item.external_id)) is None or held.id not in reachable_before)]
    items = _not_refused(items, unreachable_new)
    results, created = await _new_contacts(
        session, reg, actor, {i: item for i, item in items.items()
                              if item.external_id not in before}, spec["default_language"],
        ids)
    results += claims + unreachable_new
    results += await _newest_knowledge(
        session, reg, actor, {i: before[item.external_id] for i, item in items.items()
                              if item.external_id in before}, items)
    items = _not_refused(items, results)
    contacts = await known()
    # A contact another request created meanwhile (under the item's external_id) is locked too;
    # one erased since then as well is refused.
    others = {external_id: contact for external_id, contact in contacts.items()
              if external_id not in before and contact.id not in created}
    if others:
        kept = await _locked(session, others)
        contacts = {external_id: kept.get(external_id, contact)
                    for external_id, contact in contacts.items()
                    if external_id not in others or external_id in kept}
        results += [_rejected(i, item, ERASED_MEANWHILE, "external_id")
                    for i, item in items.items()
                    if item.external_id in others and item.external_id not in kept]
    items = {i: item for i, item in items.items() if item.external_id in contacts}
    # An address the contact has in another letter case is that address, as first spelt.
    wanted: dict[tuple[uuid.UUID, str], str] = {}
    for item in items.values():
        if item.email:
            _, key = normalise.point_key("email", str(item.email))
            wanted.setdefault((contacts[item.external_id].id, key), str(item.email))
    had: dict[tuple[uuid.UUID, str], ContactPoint] = {}
    for point in await session.scalars(select(ContactPoint).where(
            ContactPoint.contact_id.in_([c for c, _ in wanted]), ContactPoint.kind == "email")
            .order_by(ContactPoint.removed_at.is_not(None), ContactPoint.created_at)
            ) if wanted else []:
        had.setdefault((point.contact_id, normalise.point_key("email", point.value)[1]), point)
    added = sorted((c, v) for (c, key), v in wanted.items() if (c, key) not in had)
    new_ones = [(c, v) for c, v in added if c in created]
    if new_ones:
        # Keyed with them when created: nothing to check.
        await crud.insert_ignoring_conflicts(session, ContactPoint, [
            {"id": uuid.uuid4(), "client_id": client_id, "contact_id": c, "kind": "email",
             "value": v} for c, v in new_ones])
    results += await _emails_of_known(
        session, reg, actor, items, contacts,
        [(c, v) for c, v in added if c not in created]
        # The client gives a removed address again: it vouches for it, as on the API.
        + [(p.contact_id, p.value) for p in (had[k] for k in wanted if k in had)
           if p.removed_at is not None])
    items = _not_refused(items, results)
    reachable_ids, bounced = await reachable_on(session, [c.id for c in contacts.values()],
                                                channels)

    reachable: dict[int, Contact] = {}
    for index, item in items.items():
        contact = contacts[item.external_id]
        if contact.id not in reachable_ids:
            results.append(EnrolItemResult(
                index=index, status="rejected", external_id=item.external_id, contact_id=contact.id,
                errors=[unreachable(channels, contact.id in bounced)]))
        else:
            reachable[index] = contact

    async def campaign_journeys() -> list[Journey]:
        return list(await session.scalars(select(Journey).where(
            Journey.campaign_id == campaign.id,
            Journey.contact_id.in_([c.id for c in reachable.values()]))))

    def live(journeys: list[Journey]) -> dict[uuid.UUID, Journey]:
        """Each contact's journey in the campaign that has not expired (nor been lost): one
        whose journeys all expired is asked again in a new round, as a launch does."""
        return {j.contact_id: j for j in journeys
                if j.stage != Stage.expired and j.id not in lost}

    theirs = await campaign_journeys()
    lost = await lost_journeys.lost_among(session, temporal, waker, theirs)
    existing, rounds = live(theirs), Counter(j.contact_id for j in theirs)
    for index, contact in reachable.items():
        journey, claim = existing.get(contact.id), items[index].claim
        if (journey is not None and claim is not None
                and (journey.claim or {}).get("reference") != claim.reference):
            # One journey per contact and campaign: a second claim would be dropped unseen.
            results.append(_rejected(
                index, items[index], f"the contact's journey {journey.id} in this campaign "
                f"({journey.stage}) is about claim {(journey.claim or {}).get('reference')!r}; "
                "another claim can follow once that journey has expired", "claim.reference",
                contact.id))
        elif journey is not None and claim is not None and (changed := _claim_changes(
                journey.claim or {}, claim)):
            # A repeat keeps the journey as it is: new details would never reach the emails.
            results.append(EnrolItemResult(
                index=index, status="rejected", external_id=contact.external_id,
                contact_id=contact.id, errors=[FieldError(
                    field=f"claim.{name}", message=f"the contact's journey {journey.id} in this "
                    f"campaign is about claim {claim.reference!r} with {_stored(name, old)}; "
                    "its details cannot change while that journey runs")
                    for name, old in changed]))
    reachable = _not_refused(reachable, results)
    results += await _claims_of_others(session, campaign, reachable, items, set(existing))
    reachable = _not_refused(reachable, results)
    new_rows = []
    for index, contact in reachable.items():
        if contact.id not in existing:
            language = contact.language if contact.language in spec["languages"] else spec[
                "default_language"]
            claim = items[index].claim
            new_rows.append({"id": uuid.uuid4(), "client_id": client_id, "campaign_id": campaign.id,
                             "contact_id": contact.id,
                             "workflow_id": workflow_id(campaign.id, contact.id,
                                                        rounds[contact.id] + 1),
                             "stage": Stage.enrolled, "language": language,
                             "claim": claim.model_dump(mode="json") if claim else None})
    await crud.insert_ignoring_conflicts(session, Journey, new_rows)
    journeys = live(await campaign_journeys())
    for index, contact in reachable.items():
        journey = journeys[contact.id]
        results.append(EnrolItemResult(
            index=index, status="already_enrolled" if contact.id in existing else "accepted",
            external_id=contact.external_id, contact_id=contact.id, journey_id=journey.id))
    return results, list(journeys.values()), created
