"""Puts contacts into a campaign: validates each item on its own and writes contacts and
journeys in one transaction (workflows.starts then starts one journey per contact)."""

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import pydantic_fields
from api.schemas import ContactIn, EnrolItemResult, FieldError
from core.vocabulary import CHANNEL_NEEDS, Channel, Stage
from db import crud
from db.models import Campaign, Contact, ContactAddress, ContactPoint, Journey
from workflows.starts import workflow_id


def validate_items(items: list[Any]) -> tuple[dict[int, ContactIn], list[EnrolItemResult]]:
    valid: dict[int, ContactIn] = {}
    rejected: list[EnrolItemResult] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(items):
        try:
            item = ContactIn.model_validate(raw)
        except ValidationError as err:
            ext = raw.get("external_id") if isinstance(raw, dict) else None
            rejected.append(EnrolItemResult(
                index=index, status="rejected", external_id=ext if isinstance(ext, str) else None,
                errors=[FieldError(field=e.field if e.field != "body" else "item", message=e.message)
                        for e in pydantic_fields(err.errors())]))
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


def plan_channels(spec: dict[str, Any]) -> list[str]:
    """The channels the campaign reaches contacts on, in the order of its plan."""
    return list(dict.fromkeys(s["channel"] for s in spec.get("channel_plan") or [])) or ["email"]


def unreachable(channels: list[str]) -> FieldError:
    if channels == ["email"]:
        return FieldError(field="email", message="required: this campaign reaches contacts by "
                          "email and none is known for this contact")
    return FieldError(field="item", message="this campaign reaches contacts by "
                      f"{', '.join(channels)}; the contact needs "
                      f"one of: {', '.join(CHANNEL_NEEDS[Channel(c)] for c in channels)}")


async def reachable_on(session: AsyncSession, contact_ids: list[uuid.UUID],
                    channels: list[str]) -> set[uuid.UUID]:
    """The contacts at least one of the channels can reach."""
    kinds = [{"email": "email", "sms": "mobile"}[c] for c in channels if c != "letter"]
    found = set(await session.scalars(select(ContactPoint.contact_id).where(
        ContactPoint.contact_id.in_(contact_ids), ContactPoint.kind.in_(kinds)))) if kinds else set()
    if "letter" in channels:
        found |= set(await session.scalars(select(ContactAddress.contact_id).where(
            ContactAddress.contact_id.in_(contact_ids), ContactAddress.active.is_(True))))
    return found


async def write_contacts_and_journeys(
    session: AsyncSession, *, campaign: Campaign, items: dict[int, ContactIn]
) -> tuple[list[EnrolItemResult], list[Journey]]:
    client_id = campaign.client_id
    spec = campaign.spec
    ext_ids = [i.external_id for i in items.values()]
    await crud.insert_ignoring_conflicts(session, Contact, [
        {"id": uuid.uuid4(), "client_id": client_id, "external_id": i.external_id,
         "first_name": i.first_name, "last_name": i.last_name,
         "language": i.language or spec["default_language"]}
        for i in items.values()
    ])
    contacts = {c.external_id: c for c in await session.scalars(
        select(Contact).where(Contact.client_id == client_id, Contact.external_id.in_(ext_ids)))}
    for item in items.values():
        contact = contacts[item.external_id]
        # Names and language given now are the client's newest knowledge of the contact.
        for field in ("first_name", "last_name", "language"):
            if getattr(item, field) is not None:
                setattr(contact, field, getattr(item, field))
    emails = [{"id": uuid.uuid4(), "client_id": client_id, "contact_id": contacts[i.external_id].id,
               "kind": "email", "value": str(i.email)} for i in items.values() if i.email]
    if emails:
        await crud.insert_ignoring_conflicts(session, ContactPoint, emails)
    channels = plan_channels(spec)
    reachable_ids = await reachable_on(session, [c.id for c in contacts.values()], channels)

    results: list[EnrolItemResult] = []
    reachable: dict[int, Contact] = {}
    for index, item in items.items():
        contact = contacts[item.external_id]
        if contact.id not in reachable_ids:
            results.append(EnrolItemResult(
                index=index, status="rejected", external_id=item.external_id, contact_id=contact.id,
                errors=[unreachable(channels)]))
        else:
            reachable[index] = contact

    existing = {j.contact_id: j for j in await session.scalars(
        select(Journey).where(Journey.campaign_id == campaign.id,
                              Journey.contact_id.in_([c.id for c in reachable.values()])))}
    new_rows = []
    for contact in reachable.values():
        if contact.id not in existing:
            language = contact.language if contact.language in spec["languages"] else spec[
                "default_language"]
            new_rows.append({"id": uuid.uuid4(), "client_id": client_id, "campaign_id": campaign.id,
                             "contact_id": contact.id, "workflow_id": workflow_id(campaign.id, contact.id),
                             "stage": Stage.enrolled, "language": language})
    if new_rows:
        await crud.insert_ignoring_conflicts(session, Journey, new_rows)
    journeys = {j.contact_id: j for j in await session.scalars(
        select(Journey).where(Journey.campaign_id == campaign.id,
                              Journey.contact_id.in_([c.id for c in reachable.values()])))}
    for index, contact in reachable.items():
        journey = journeys[contact.id]
        results.append(EnrolItemResult(
            index=index, status="already_enrolled" if contact.id in existing else "accepted",
            external_id=contact.external_id, contact_id=contact.id, journey_id=journey.id))
    return results, list(journeys.values())
