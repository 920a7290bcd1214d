"""Creating, changing and reading contacts under a client's rules (uniqueness, mandatory
fields, address types), shared by the API and the CSV import."""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas import FieldError
from contacts import audit, normalise, suppression
from contacts.audit import Actor
from contacts.schemas import (
    DEFAULT_LANGUAGE,
    SCALAR_FIELDS,
    AddressIn,
    AddressOut,
    ContactCreate,
    ContactOut,
    ContactPointIn,
    ContactPointOut,
    ContactSettingsIn,
    ContactUpdate,
    MediumIn,
    MediumOut,
    SuppressedOut,
    UndeliverableOut,
)
from contacts.uniqueness import Rule, identity_keys, parse
from core.security import keyed_digest
from core.vocabulary import FINAL_STAGES, AuditAction, ContactKind, ContactPointKind, MediumKind
from db import crud
from db.models import (
    Campaign,
    Contact,
    ContactAddress,
    ContactIdentityKey,
    ContactLabel,
    ContactPoint,
    ContactSettings,
    IdentificationMedium,
    Journey,
    utcnow,
)

LABEL_KINDS = ("tag", "category")
NAME_FIELDS = frozenset({"kind", "first_name", "last_name", "company_name"})


class Invalid(Exception):
    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


class Duplicate(Exception):
    """The data describes a contact that already exists (names it, never the matching value)."""

    def __init__(self, contact: Contact, reason: str) -> None:
        super().__init__(f"same contact as {contact.id} ({reason})")
        self.contact = contact
        self.reason = reason


@dataclass
class Registry:
    """One client's registry rules, loaded once per request or import batch."""

    client_id: uuid.UUID
    settings: ContactSettingsIn
    secret_key: str

    def __post_init__(self) -> None:
        rules = {ContactKind.person: self.settings.person_rule,
                 ContactKind.company: self.settings.company_rule}
        self.rules: dict[str, Rule | None] = {
            kind: parse(text) if text else None for kind, text in rules.items()}

    @property
    def context(self) -> dict[str, Any]:
        return {"region": self.settings.default_region}

    def identity_keys(self, kind: str, values: dict[str, Any]) -> list[str]:
        rule = self.rules[kind]
        if rule is None:
            return []
        return identity_keys(
            rule, values, scope=f"{self.client_id}:{kind}",
            digest=lambda message: keyed_digest(self.secret_key, b"identity-key", message))

    def medium_lookup(self, kind: str, value: str) -> str:
        return keyed_digest(self.secret_key, b"identification-medium", f"{kind}:{value}")

    def problems(self, kind: str, values: dict[str, Any], addresses: list[AddressIn] | None
                 ) -> list[FieldError]:
        """What makes a contact unacceptable beyond the shape of its fields."""
        return self.name_problems(kind, values) + self.known_contact_problems(
            kind, values, addresses)

    @staticmethod
    def name_problems(kind: str, values: dict[str, Any]) -> list[FieldError]:
        """A new contact needs a name; a change of a known one may leave it out."""
        if kind == ContactKind.person and not (values.get("first_name") or values.get("last_name")):
            return [FieldError(field="last_name", message="a person needs a first or last name")]
        if kind == ContactKind.company and not values.get("company_name"):
            return [FieldError(field="company_name", message="a company needs a name")]
        return []

    def known_contact_problems(self, kind: str, values: dict[str, Any],
                               addresses: list[AddressIn] | None) -> list[FieldError]:
        """`problems` but the name's: what even a change of a known contact must not lack."""
        found = self.rule_problems(kind, values)
        if addresses is not None:
            found += self._address_problems(addresses)
        return found

    def rule_problems(self, kind: str, values: dict[str, Any]) -> list[FieldError]:
        """Fields the uniqueness rule needs and the values lack."""
        rule = self.rules[kind]
        return [FieldError(field=field, message=f"required by the uniqueness rule {rule.text!r}")
                for field in sorted(rule.fields if rule else ()) if values.get(field) in (None, "")]

    def _address_problems(self, addresses: list[AddressIn]) -> list[FieldError]:
        found = []
        known = sorted(t.name for t in self.settings.address_types)
        seen: set[str] = set()
        for i, a in enumerate(addresses):
            if a.type not in known:
                found.append(FieldError(field=f"addresses[{i}].type",
                                        message=f"unknown address type; one of {known}"))
            elif a.type in seen:
                found.append(FieldError(field=f"addresses[{i}].type",
                                        message="one active address per type"))
            seen.add(a.type)
        if sum(a.primary for a in addresses) > 1:
            found.append(FieldError(field="addresses", message="only one address can be primary"))
        for t in self.settings.address_types:
            if t.mandatory and t.name not in seen:
                found.append(FieldError(field="addresses",
                                        message=f"a {t.name} address is required"))
        return found


async def registry_for(session: AsyncSession, *, client_id: uuid.UUID, secret_key: str,
                       to_change: bool = False) -> Registry:
    """`to_change`: for a change of the settings, read under a lock held until commit, so that
    changes made at once each start from what the other stored. A lock on the client's key,
    not on the row, which a client that never changed its settings does not have yet.
    Otherwise the same lock is held shared until commit: a write that keys contacts under the
    rules read here commits before a change of them re-keys the contacts, or starts after it
    and reads the new rules (a contact created meanwhile would otherwise keep no key)."""
    if to_change:
        await crud.lock(session, key=f"contact-settings/{client_id}")
    elif session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock_shared(hashtextextended(:k, 0))"),
                              {"k": f"contact-settings/{client_id}"})
    row = await session.get(ContactSettings, client_id, populate_existing=to_change)
    settings = ContactSettingsIn() if row is None else ContactSettingsIn(
        person_rule=row.person_rule, company_rule=row.company_rule,
        default_region=row.default_region, address_types=row.address_types,
        anonymise_inactive_after_days=row.anonymise_inactive_after_days)
    return Registry(client_id=client_id, settings=settings, secret_key=secret_key)


# The contact points a uniqueness rule can name (rule_values).
POINT_KINDS = frozenset((ContactPointKind.email.value, ContactPointKind.mobile.value))


def rule_values(scalars: dict[str, Any], points: list[tuple[str, str]],
                external_id: str | None) -> dict[str, Any]:
    """The values a uniqueness rule can name: scalar fields, the first email and mobile."""
    values = dict(scalars, external_id=external_id)
    for kind in POINT_KINDS:
        values[kind] = next((v for k, v in points if k == kind), None)
    return values


def scalars_of(body: ContactCreate) -> dict[str, Any]:
    return {f: getattr(body, f) for f in SCALAR_FIELDS}


def contact_scalars(contact: Contact) -> dict[str, Any]:
    return {f: getattr(contact, f) for f in SCALAR_FIELDS}


def address_row(reg: Registry, contact_id: uuid.UUID, a: AddressIn, primary: bool
                ) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "client_id": reg.client_id, "contact_id": contact_id,
            "type": a.type, "active": True, "is_primary": primary, "line1": a.line1,
            "line2": a.line2, "postal_code": a.postal_code, "city": a.city, "region": a.region,
            "country": a.country, "created_at": utcnow()}


def medium_row(reg: Registry, contact_id: uuid.UUID, m: MediumIn) -> dict[str, Any]:
    display = normalise.masked_card(m.value) if m.kind == MediumKind.card else m.value
    return {"id": uuid.uuid4(), "client_id": reg.client_id, "contact_id": contact_id,
            "kind": m.kind, "lookup_sha256": reg.medium_lookup(m.kind, m.value), "display": display,
            "created_at": utcnow()}


def label_rows(reg: Registry, contact_id: uuid.UUID, kind: str, values: list[str]) -> list[dict]:
    return [{"id": uuid.uuid4(), "client_id": reg.client_id, "contact_id": contact_id,
             "kind": kind, "value": v} for v in dict.fromkeys(values)]


def distinct_points(points: list[ContactPointIn]) -> dict[tuple[str, str], ContactPointIn]:
    """The points by their key, each as first given (`Ann@x.nl` then `ann@x.nl` is one)."""
    distinct: dict[tuple[str, str], ContactPointIn] = {}
    for p in points:
        distinct.setdefault(normalise.point_key(p.kind, p.value), p)
    return distinct


def distinct_media(reg: Registry, media: list[MediumIn]) -> list[MediumIn]:
    """Each medium as first given: a card given twice (with or without blanks) is one."""
    distinct: dict[tuple[str, str], MediumIn] = {}
    for m in media:
        distinct.setdefault((m.kind, reg.medium_lookup(m.kind, m.value)), m)
    return list(distinct.values())


def new_contact_rows(reg: Registry, body: ContactCreate, keys: list[str]
                     ) -> tuple[dict[str, Any], dict[type, list[dict[str, Any]]]]:
    """The contact row and the rows that belong to it, ready for bulk inserts."""
    contact_id = uuid.uuid4()
    now = utcnow()
    contact = {"id": contact_id, "client_id": reg.client_id,
               "external_id": body.external_id or str(contact_id),
               **scalars_of(body), "language": body.language or DEFAULT_LANGUAGE,
               "engagement_state": "never_engaged", "created_at": now, "updated_at": now}
    primary = next((i for i, a in enumerate(body.addresses) if a.primary), 0)
    points = distinct_points(body.contact_points)
    children: dict[type, list[dict[str, Any]]] = {
        ContactPoint: [{"id": uuid.uuid4(), "client_id": reg.client_id, "contact_id": contact_id,
                        "kind": p.kind, "value": p.value, "label": p.label,
                        "verification_state": "unverified", "created_at": now}
                       for p in points.values()],
        ContactAddress: [address_row(reg, contact_id, a, i == primary)
                         for i, a in enumerate(body.addresses)],
        IdentificationMedium: [medium_row(reg, contact_id, m)
                               for m in distinct_media(reg, body.identification_media)],
        ContactLabel: label_rows(reg, contact_id, "tag", body.tags)
        + label_rows(reg, contact_id, "category", body.categories),
        ContactIdentityKey: [{"client_id": reg.client_id, "key": k, "contact_id": contact_id}
                             for k in keys],
    }
    return contact, children


async def find_duplicate(
    session: AsyncSession, reg: Registry, *, keys: list[str], external_id: str | None,
    media: list[MediumIn], exclude: uuid.UUID | None = None,
) -> Duplicate | None:
    conditions = []
    if keys:
        conditions.append(Contact.id.in_(select(ContactIdentityKey.contact_id).where(
            ContactIdentityKey.client_id == reg.client_id, ContactIdentityKey.key.in_(keys))))
    if external_id:
        conditions.append(Contact.external_id == external_id)
    for m in media:
        conditions.append(Contact.id.in_(select(IdentificationMedium.contact_id).where(
            IdentificationMedium.client_id == reg.client_id, IdentificationMedium.kind == m.kind,
            IdentificationMedium.lookup_sha256 == reg.medium_lookup(m.kind, m.value))))
    if not conditions:
        return None
    query = select(Contact).where(Contact.client_id == reg.client_id, or_(*conditions))
    if exclude is not None:
        query = query.where(Contact.id != exclude)
    existing = (await session.scalars(query.limit(1))).first()
    if existing is None:
        return None
    if external_id and existing.external_id == external_id:
        reason = "same external_id"
    elif keys and await session.scalar(select(ContactIdentityKey.key).where(
            ContactIdentityKey.client_id == reg.client_id, ContactIdentityKey.key.in_(keys),
            ContactIdentityKey.contact_id == existing.id).limit(1)):
        reason = "same values under the uniqueness rule"
    else:
        reason = "same identification medium"
    return Duplicate(existing, reason)


async def insert_rows(session: AsyncSession, children: dict[type, list[dict[str, Any]]]) -> None:
    for model, rows in children.items():
        await crud.bulk_insert(session, model, rows)


async def create(session: AsyncSession, reg: Registry, body: ContactCreate, actor: Actor
                 ) -> uuid.UUID:
    """Raises Invalid or Duplicate; a concurrent create of the same contact fails at flush on the
    identity-key index (the caller rolls back and asks find_duplicate who won)."""
    scalars = scalars_of(body)
    points = [(p.kind, p.value) for p in body.contact_points]
    values = rule_values(scalars, points, body.external_id)
    problems = reg.problems(body.kind, values, body.addresses)
    if problems:
        raise Invalid(problems)
    keys = reg.identity_keys(body.kind, values)
    duplicate = await find_duplicate(session, reg, keys=keys, external_id=body.external_id,
                                     media=body.identification_media)
    if duplicate:
        raise duplicate
    row, children = new_contact_rows(reg, body, keys)
    await crud.bulk_insert(session, Contact, [row])
    await insert_rows(session, children)
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.create,
                       contact_ids=[row["id"]],
                       detail={"fields": sorted(f for f, v in scalars.items() if v is not None)})
    return row["id"]


async def contact_of(session: AsyncSession, *, client_id: uuid.UUID, contact_id: uuid.UUID,
                     for_update: bool = False) -> Contact | None:
    contact = await session.get(Contact, contact_id, with_for_update=for_update)
    return contact if contact is not None and contact.client_id == client_id else None


async def first_points(session: AsyncSession, contact_id: uuid.UUID) -> list[tuple[str, str]]:
    """The points a uniqueness rule can name: a removed one no longer makes the contact."""
    rows = await session.execute(select(ContactPoint.kind, ContactPoint.value).where(
        ContactPoint.contact_id == contact_id, crud.POINT_IN_USE
    ).order_by(ContactPoint.created_at))
    return [(k, v) for k, v in rows]


async def labels_of(session: AsyncSession, contact_id: uuid.UUID, kind: str) -> list[str]:
    return sorted(await session.scalars(select(ContactLabel.value).where(
        ContactLabel.contact_id == contact_id, ContactLabel.kind == kind)))


async def replace_labels(session: AsyncSession, reg: Registry, contact: Contact, kind: str,
                         values: list[str]) -> dict[str, Any] | None:
    old = await labels_of(session, contact.id, kind)
    new = sorted(set(values))
    if old == new:
        return None
    await session.execute(delete(ContactLabel).where(
        ContactLabel.contact_id == contact.id, ContactLabel.kind == kind,
        ContactLabel.value.not_in(new)))
    missing = [v for v in new if v not in old]
    if missing:
        await session.execute(insert(ContactLabel), label_rows(reg, contact.id, kind, missing))
    return {"old": old, "new": new}


async def apply_scalars(session: AsyncSession, reg: Registry, contact: Contact,
                        given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Sets the given fields, re-keys the contact when a rule field changed. Raises Invalid or
    Duplicate; returns {field: {old, new}} of what changed."""
    current = contact_scalars(contact)
    merged = {**current, **given}
    points = await first_points(session, contact.id)
    values = rule_values(merged, points, contact.external_id)
    changed = audit.changes(current, given)
    # A contact enrolled by email alone has no name yet; only a change of names must give one.
    problems = (reg.name_problems(merged["kind"], values) if given.keys() & NAME_FIELDS
                else [])
    # Nor does a contact from before the rule lack its fields by this change's fault (as in
    # points_changed): tags or a language can still be changed; a change of a field the rule
    # keys the contact by (or of its kind, which rule applies) needs them all, as a new
    # contact does.
    rule = reg.rules[merged["kind"]]
    if changed.keys() & ({"kind"} | (rule.fields if rule else set())):
        problems += reg.rule_problems(merged["kind"], values)
    if problems:
        raise Invalid(problems)
    if not changed:
        return {}
    await replace_keys(session, reg, contact, merged["kind"], values)
    for field in changed:
        setattr(contact, field, given[field])
    return changed


async def replace_keys(session: AsyncSession, reg: Registry, contact: Contact, kind: str,
                       values: dict[str, Any]) -> None:
    """Keys the contact by its values as they are now; raises Duplicate if another contact
    already has one of the new keys."""
    keys = reg.identity_keys(kind, values)
    old_keys = set(await session.scalars(select(ContactIdentityKey.key).where(
        ContactIdentityKey.contact_id == contact.id)))
    if set(keys) == old_keys:
        return
    duplicate = await find_duplicate(session, reg, keys=keys, external_id=None, media=[],
                                     exclude=contact.id)
    if duplicate:
        raise duplicate
    await session.execute(delete(ContactIdentityKey).where(
        ContactIdentityKey.contact_id == contact.id))
    if keys:
        await session.execute(insert(ContactIdentityKey), [
            {"client_id": reg.client_id, "key": k, "contact_id": contact.id} for k in keys])


async def points_changed(session: AsyncSession, reg: Registry, contact: Contact,
                         removed: str | None = None) -> None:
    """After an email or mobile was added, given again or `removed` (its kind): the rule's keys
    follow the contact's first email and mobile in use, so a removed address no longer blocks
    another contact that has it, and a newly given one makes a duplicate of this contact a 409.
    Raises Invalid when the rule needs the kind removed, Duplicate as above."""
    rule = reg.rules[contact.kind]
    if rule is None or not rule.fields & POINT_KINDS:
        return  # the keys name no point: nothing to read or change
    values = rule_values(contact_scalars(contact), await first_points(session, contact.id),
                         contact.external_id)
    # What the contact lacked before (a rule changed since) is not this change's fault.
    problems = [p for p in reg.rule_problems(contact.kind, values) if p.field == removed]
    if problems:
        raise Invalid(problems)
    await replace_keys(session, reg, contact, contact.kind, values)


async def update(session: AsyncSession, reg: Registry, contact: Contact, body: ContactUpdate,
                 actor: Actor) -> dict[str, dict[str, Any]]:
    given = body.model_dump(exclude_unset=True)
    changed = await apply_scalars(session, reg, contact,
                                  {f: v for f, v in given.items() if f in SCALAR_FIELDS})
    for kind, field in (("tag", "tags"), ("category", "categories")):
        if given.get(field) is not None:
            diff = await replace_labels(session, reg, contact, kind, given[field])
            if diff:
                changed[field] = diff
    if changed:
        await touch(session, reg, contact, actor, changed)
    return changed


async def touch(session: AsyncSession, reg: Registry, contact: Contact, actor: Actor,
                changed: dict[str, Any]) -> None:
    contact.updated_at = utcnow()
    await audit.record(session, client_id=reg.client_id, actor=actor, action=AuditAction.update,
                       contact_ids=[contact.id], detail={"changes": changed})


async def keep_language(session: AsyncSession, secret_key: str, contact: Contact,
                        language: str, actor: Actor) -> None:
    """A language the customer chose on one of our pages, kept as the contact's (audited as
    their change), so later messages speak it too: its open journeys' as well, where their
    campaign speaks it (a journey's messages speak the journey's language)."""
    for journey, languages in await session.execute(
            select(Journey, Campaign.spec["languages"]).join(
                Campaign, Campaign.id == Journey.campaign_id).where(
                Journey.contact_id == contact.id, Journey.finished_at.is_(None),
                Journey.stage.not_in([s.value for s in FINAL_STAGES]))):
        if language in (languages or []):
            journey.language = language
    if language == contact.language:
        return
    changed = audit.changes({"language": contact.language}, {"language": language})
    contact.language = language
    await touch(session, await registry_for(session, client_id=contact.client_id,
                                            secret_key=secret_key), contact, actor, changed)


# --- addresses ---------------------------------------------------------------------------------


async def _addresses(session: AsyncSession, contact_id: uuid.UUID) -> list[ContactAddress]:
    return list(await session.scalars(select(ContactAddress).where(
        ContactAddress.contact_id == contact_id).order_by(ContactAddress.created_at)))


async def _set_primary(session: AsyncSession, addresses: list[ContactAddress],
                       target: ContactAddress | None) -> None:
    # Clear first, then set: the partial unique index allows one primary at any moment.
    for a in addresses:
        if a.is_primary and a is not target:
            a.is_primary = False
    await session.flush()
    if target is not None:
        target.is_primary = True
        await session.flush()


def address_dict(a: ContactAddress) -> dict[str, Any]:
    return {"id": str(a.id), "type": a.type, "active": a.active, "primary": a.is_primary,
            "line1": a.line1, "line2": a.line2, "postal_code": a.postal_code, "city": a.city,
            "region": a.region, "country": a.country}


async def add_address(session: AsyncSession, reg: Registry, contact: Contact, body: AddressIn,
                      actor: Actor) -> ContactAddress:
    """A new address replaces the active one of its type; the old one is kept, inactive."""
    known = sorted(t.name for t in reg.settings.address_types)
    if body.type not in known:
        raise Invalid([FieldError(field="type", message=f"unknown address type; one of {known}")])
    addresses = await _addresses(session, contact.id)
    replaced = next((a for a in addresses if a.active and a.type == body.type), None)
    was_primary = replaced is not None and replaced.is_primary
    if replaced is not None:
        await _deactivate(session, replaced)
    new = ContactAddress(**address_row(reg, contact.id, body, False))
    session.add(new)
    await session.flush()
    addresses.append(new)
    if body.primary or was_primary or not any(a.is_primary for a in addresses):
        await _set_primary(session, addresses, new)
    await touch(session, reg, contact, actor, {"addresses": {
        "old": address_dict(replaced) if replaced else None, "new": address_dict(new)}})
    return new


async def _deactivate(session: AsyncSession, address: ContactAddress) -> None:
    address.active = False
    address.is_primary = False
    address.deactivated_at = utcnow()
    await session.flush()


async def change_address(session: AsyncSession, reg: Registry, contact: Contact,
                         address: ContactAddress, action: str, actor: Actor) -> None:
    """deactivate | activate | primary, keeping one active per type and one primary."""
    before = address_dict(address)
    addresses = await _addresses(session, contact.id)
    if action == "deactivate" and address.active:
        # One active per type: deactivating it would leave the contact without the address
        # its creation had to give.
        if any(t.mandatory and t.name == address.type for t in reg.settings.address_types):
            raise Invalid([FieldError(field="address", message=(
                f"a {address.type} address is required: add the new one, which replaces it, "
                "or activate another"))])
        was_primary = address.is_primary
        await _deactivate(session, address)
        if was_primary:
            # The primary flag moves to the oldest remaining active address, if any.
            await _set_primary(session, addresses, next((a for a in addresses if a.active), None))
    elif action == "activate" and not address.active:
        current = next((a for a in addresses if a.active and a.type == address.type), None)
        was_primary = current is not None and current.is_primary
        if current is not None:
            await _deactivate(session, current)
        address.active = True
        address.deactivated_at = None
        # Brought back by the client after it was returned: letters try it again.
        crud.clear_undeliverable(address)
        await session.flush()
        if was_primary or not any(a.is_primary for a in addresses):
            await _set_primary(session, addresses, address)
    elif action == "primary":
        if not address.active:
            raise Invalid([FieldError(field="address", message="only an active address can be "
                                                                "primary; activate it first")])
        await _set_primary(session, addresses, address)
    else:
        return
    await touch(session, reg, contact, actor, {"addresses": {"old": before,
                                                             "new": address_dict(address)}})


# --- contact points and identification media ---------------------------------------------------


def point_record(point: ContactPoint) -> dict[str, Any]:
    """A contact point as the audit trail keeps it."""
    undeliverable = undeliverable_out(point)
    return {"kind": point.kind, "value": point.value,
            "undeliverable": undeliverable and undeliverable.model_dump(mode="json"),
            "removed_at": point.removed_at and point.removed_at.isoformat()}


async def give_point(session: AsyncSession, reg: Registry, contact: Contact, kind: str,
                     value: str, label: str | None) -> dict[str, Any] | None:
    """The client gives the contact this point: a new one is added; one it has (an email in any
    letter case, which keeps its first spelling) but removed, or a bounce refused, is written
    to again, the client vouching for it. Returns the change for the audit trail, if any."""
    exists = await crud.same_point(session, contact_id=contact.id, kind=kind, value=value)
    if exists is None:
        session.add(ContactPoint(client_id=reg.client_id, contact_id=contact.id, kind=kind,
                                 value=value, label=label))
        change = {"old": None, "new": {"kind": kind, "value": value}}
    elif exists.undeliverable_since is None and exists.removed_at is None:
        return None
    else:
        before = point_record(exists)
        crud.clear_undeliverable(exists)
        exists.removed_at = None
        change = {"old": before, "new": point_record(exists)}
    await points_changed(session, reg, contact)
    return change


async def add_point(session: AsyncSession, reg: Registry, contact: Contact, kind: str, value: str,
                    label: str | None, actor: Actor) -> None:
    change = await give_point(session, reg, contact, kind, value, label)
    if change:
        await touch(session, reg, contact, actor, {"contact_points": change})


async def remove_point(session: AsyncSession, reg: Registry, contact: Contact,
                       point: ContactPoint, actor: Actor) -> None:
    """No message goes to a removed point any more (nor does it count as a way to reach the
    contact); it stays in the registry, listed with its removal, for the audit trail."""
    if point.removed_at is not None:
        return
    before = point_record(point)
    point.removed_at = utcnow()
    await points_changed(session, reg, contact, removed=point.kind)
    await touch(session, reg, contact, actor, {"contact_points": {
        "old": before, "new": point_record(point)}})


async def add_medium(session: AsyncSession, reg: Registry, contact: Contact, body: MediumIn,
                     actor: Actor) -> None:
    duplicate = await find_duplicate(session, reg, keys=[], external_id=None, media=[body])
    if duplicate and duplicate.contact.id != contact.id:
        raise duplicate
    if duplicate:
        return
    row = medium_row(reg, contact.id, body)
    await session.execute(insert(IdentificationMedium), [row])
    await touch(session, reg, contact, actor, {"identification_media": {
        "old": None, "new": {"kind": body.kind, "display": row["display"]}}})


async def lookup(session: AsyncSession, reg: Registry, body: MediumIn) -> Contact | None:
    return (await session.scalars(select(Contact).join(
        IdentificationMedium, IdentificationMedium.contact_id == Contact.id).where(
        IdentificationMedium.client_id == reg.client_id, IdentificationMedium.kind == body.kind,
        IdentificationMedium.lookup_sha256 == reg.medium_lookup(body.kind, body.value)))).first()


# --- reading -----------------------------------------------------------------------------------


def undeliverable_out(row: ContactPoint | ContactAddress) -> UndeliverableOut | None:
    return row.undeliverable_since and UndeliverableOut(reason=row.undeliverable_reason or "",
                                                        since=row.undeliverable_since)


def address_out(a: ContactAddress) -> AddressOut:
    return AddressOut(primary=a.is_primary, undeliverable=undeliverable_out(a), **{
        f: getattr(a, f) for f in AddressOut.model_fields if f not in ("primary", "undeliverable")})


async def outputs(session: AsyncSession, reg: Registry, contacts: list[Contact], *,
                  include_inactive: bool = False, include_removed: bool = False
                  ) -> list[ContactOut]:
    """Contacts with everything that belongs to them, in a fixed number of queries."""
    ids = [c.id for c in contacts]
    points, addresses, media, labels = (defaultdict(list) for _ in range(4))
    query = select(ContactPoint).where(ContactPoint.contact_id.in_(ids))
    if not include_removed:
        query = query.where(ContactPoint.removed_at.is_(None))
    rows = list(await session.scalars(query.order_by(ContactPoint.created_at)))
    erased = await suppression.lookup(session, secret_key=reg.secret_key, client_id=reg.client_id,
                                      points=[(p.kind, p.value) for p in rows])
    for p in rows:
        entry = erased.get((p.kind, p.value))
        points[p.contact_id].append(ContactPointOut.model_validate({
            **{f: getattr(p, f) for f in ContactPointOut.model_fields if hasattr(p, f)},
            "suppressed": entry and SuppressedOut(reason=entry.reason, since=entry.created_at),
            "undeliverable": undeliverable_out(p)}))
    query = select(ContactAddress).where(ContactAddress.contact_id.in_(ids))
    if not include_inactive:
        query = query.where(ContactAddress.active)
    for a in await session.scalars(query.order_by(ContactAddress.created_at)):
        addresses[a.contact_id].append(address_out(a))
    for m in await session.scalars(select(IdentificationMedium).where(
            IdentificationMedium.contact_id.in_(ids)).order_by(IdentificationMedium.created_at)):
        media[m.contact_id].append(MediumOut.model_validate(m, from_attributes=True))
    for label in await session.scalars(select(ContactLabel).where(ContactLabel.contact_id.in_(ids))
                                       .order_by(ContactLabel.value)):
        labels[(label.contact_id, label.kind)].append(label.value)
    return [ContactOut.model_validate({
        **{f: getattr(c, f) for f in ContactOut.model_fields if hasattr(c, f)},
        "tags": labels[(c.id, "tag")], "categories": labels[(c.id, "category")],
        "contact_points": points[c.id], "addresses": addresses[c.id],
        "identification_media": media[c.id]}) for c in contacts]
