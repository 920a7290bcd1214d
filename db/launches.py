"""Data access of campaign launches: the contacts a selection matches (walked by keyset), the
launch rows, and a campaign's journeys counted by stage."""

import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    exists,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import LaunchSelection
from core.vocabulary import FINAL_STAGES, Channel, ContactPointKind, Stage, VerificationState
from db.models import (
    POINT_IN_USE,
    CampaignLaunch,
    Contact,
    ContactAddress,
    ContactImportBatch,
    ContactLabel,
    ContactPoint,
    Journey,
)


def imported_contact_ids(session: AsyncSession, import_id: uuid.UUID) -> Select:
    """The contacts an import created or matched, from the id lists its batches stored."""
    batches = ContactImportBatch.import_id == import_id
    if session.bind.dialect.name == "postgresql":
        return select(cast(func.json_array_elements_text(ContactImportBatch.contact_ids),
                           Contact.id.type)).where(batches)
    # SQLite keeps a UUID as 32 hex digits; the JSON list has the dashed form.
    ids = func.json_each(ContactImportBatch.contact_ids).table_valued("value")
    return select(func.replace(cast(ids.c.value, String), "-", "")).select_from(
        ContactImportBatch).join(ids, true()).where(batches)


def missing_verified(spec: dict[str, Any]) -> ColumnElement[bool]:
    """Whether the contact still lacks verified data of a kind the campaign collects: else a
    journey in it would have nothing to ask. An address counts once the customer confirmed it
    in a journey (and no hard bounce refused it since)."""
    def verified(kind: str) -> ColumnElement[bool]:
        if kind == "address":
            return exists().where(
                ContactAddress.contact_id == Contact.id, ContactAddress.active.is_(True),
                ContactAddress.confirmed_at.is_not(None),
                ContactAddress.undeliverable_since.is_(None))
        return exists().where(
            ContactPoint.contact_id == Contact.id, ContactPoint.kind == kind, POINT_IN_USE,
            ContactPoint.verification_state == VerificationState.verified)
    return or_(*(not_(verified(kind)) for kind in spec.get("collect", ["email"])))


def plan_channels(spec: dict[str, Any]) -> list[str]:
    """The channels the campaign reaches contacts on, in the order of its plan."""
    return list(dict.fromkeys(s["channel"] for s in spec.get("channel_plan") or [])) or ["email"]


POINT_KINDS = {Channel.email: ContactPointKind.email, Channel.sms: ContactPointKind.mobile}


def _holds(channel: str, *, deliverable: bool, after: uuid.UUID | None) -> ColumnElement[bool]:
    """Whether the contact has what the channel needs (an email, a mobile, an active postal
    address) that a hard bounce did not refuse, or (`deliverable` false) one that it refused."""
    table = ContactAddress if channel == Channel.letter else ContactPoint
    bounced = table.undeliverable_since.is_not(None)
    return exists().where(
        table.contact_id == Contact.id, *_past(table.contact_id, after),
        *([ContactAddress.active.is_(True)] if table is ContactAddress else
          [ContactPoint.kind == POINT_KINDS[Channel(channel)], POINT_IN_USE]),
        not_(bounced) if deliverable else bounced)


def _past(column: Any, after: uuid.UUID | None) -> list[Any]:
    # Repeated on every table: PostgreSQL does not carry the bound from the contacts to the
    # contact points and labels, and merge-joined them from the first contact on every page
    # (80 ms for a page in the middle of 100,000 contacts; 11 ms with the bound).
    return [] if after is None else [column > after]


def bounced_on(channels: list[str], after: uuid.UUID | None = None) -> ColumnElement[bool]:
    """Whether a hard bounce refused all the contact had for one of the channels."""
    return or_(*(and_(_holds(c, deliverable=False, after=after),
                      not_(_holds(c, deliverable=True, after=after))) for c in channels))


def reachable(channels: list[str], fallback: list[str],
              after: uuid.UUID | None = None) -> ColumnElement[bool]:
    """Whether the campaign's journeys can reach the contact, as they go: on a channel of its
    plan (`channels`), or, where a hard bounce refused what one of them needs, as the journey
    then falls back, on a `fallback` channel."""
    return or_(*(_holds(c, deliverable=True, after=after) for c in channels),
               and_(bounced_on(channels, after),
                    or_(*(_holds(c, deliverable=True, after=after) for c in fallback))))


def selected_contacts(session: AsyncSession, *, client_id: uuid.UUID, spec: dict[str, Any],
                      selection: LaunchSelection, fallback: list[str],
                      after: uuid.UUID | None = None) -> Select:
    """(id, language) of the client's contacts the selection matches that the campaign can
    reach (`reachable`, as enrolment judges it), in id order; with `after`, only those past it
    (the next page of a launch)."""
    def past(column: Any) -> list[Any]:
        return _past(column, after)

    query = select(Contact.id, Contact.language).where(
        Contact.client_id == client_id, Contact.anonymised_at.is_(None), *past(Contact.id),
        reachable(plan_channels(spec), fallback, after))
    if selection.missing_verified_only:
        query = query.where(missing_verified(spec))
    for kind, values in (("tag", selection.tags), ("category", selection.categories)):
        for value in values:
            query = query.where(exists().where(
                ContactLabel.contact_id == Contact.id, *past(ContactLabel.contact_id),
                ContactLabel.kind == kind, ContactLabel.value == value.strip().lower()))
    if selection.import_id:
        query = query.where(Contact.id.in_(
            imported_contact_ids(session, uuid.UUID(selection.import_id))))
    return query.order_by(Contact.id)


async def count_selected(session: AsyncSession, query: Select) -> int:
    return await session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


async def latest_launch(session: AsyncSession, *, campaign_id: uuid.UUID) -> CampaignLaunch | None:
    return await session.scalar(select(CampaignLaunch).where(
        CampaignLaunch.campaign_id == campaign_id).order_by(CampaignLaunch.number.desc()).limit(1))


async def launches_of(session: AsyncSession, *, campaign_id: uuid.UUID, before: int | None,
                      limit: int) -> list[CampaignLaunch]:
    """The campaign's launches, newest first; with `before`, those numbered below it."""
    query = select(CampaignLaunch).where(CampaignLaunch.campaign_id == campaign_id)
    if before is not None:
        query = query.where(CampaignLaunch.number < before)
    return list(await session.scalars(query.order_by(CampaignLaunch.number.desc()).limit(limit)))


async def next_launch_number(session: AsyncSession, *, campaign_id: uuid.UUID) -> int:
    return 1 + (await session.scalar(select(func.max(CampaignLaunch.number)).where(
        CampaignLaunch.campaign_id == campaign_id)) or 0)


async def stage_counts(session: AsyncSession, *, client_id: uuid.UUID,
                       campaign_id: uuid.UUID) -> dict[str, int]:
    counts = dict.fromkeys((s.value for s in Stage), 0)
    counts.update(dict((await session.execute(
        select(Journey.stage, func.count()).where(
            Journey.client_id == client_id, Journey.campaign_id == campaign_id)
        .group_by(Journey.stage))).all()))
    return counts


def held_journeys(campaign_id: uuid.UUID) -> Select[tuple[uuid.UUID, str]]:
    """The campaign's open journeys (id, workflow id) whose invitation or reminder its
    pause holds back."""
    return select(Journey.id, Journey.workflow_id).where(
        Journey.campaign_id == campaign_id, Journey.held_since.is_not(None),
        Journey.stage.not_in(FINAL_STAGES))


def unreached_journeys(campaign_id: uuid.UUID) -> Select[tuple[uuid.UUID, str]]:
    """The campaign's journeys still `enrolled` (held ones among them): an archived campaign
    withdraws those that have reached nobody."""
    return select(Journey.id, Journey.workflow_id).where(
        Journey.campaign_id == campaign_id, Journey.stage == Stage.enrolled)
