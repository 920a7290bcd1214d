"""Data-access functions shared by the API, the activities and the CLI (keyword-only arguments)."""

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Json
from sqlalchemy import (
    JSON,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contacts import normalise
from core import security
from core.vocabulary import (
    FINAL_STAGES,
    NOT_OPENED,
    ContactPointKind,
    EventType,
    Stage,
    VerificationState,
)
from db.kyc_models import KycEvent
from db.models import (
    POINT_IN_USE,
    ApiKey,
    Campaign,
    CampaignClaim,
    Client,
    ClientMessage,
    ConsentEvent,
    Contact,
    ContactAddress,
    ContactPoint,
    Journey,
    JourneyEvent,
    Message,
    OneTimeCode,
    RateLimitCounter,
    SettingsChange,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from messaging.address import PostalAddress, town_lines

SC = TypeVar("SC", bound=SettingsChange)


def dialect_insert(session: AsyncSession, model: type) -> Any:
    """INSERT with the session's dialect, for its ON CONFLICT clauses (PostgreSQL and SQLite)."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    return insert(model)


def insert_ignoring_conflicts_stmt(session: AsyncSession, model: type) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite: the idempotent write.

    The rows go with the execution, not into the statement: SQLAlchemy sends them in one
    multi-row statement all the same, and a statement that carries its rows in VALUES cannot
    be cached, so it was compiled again at every call (a twentieth of the API's CPU)."""
    return dialect_insert(session, model).on_conflict_do_nothing()


async def insert_ignoring_conflicts(session: AsyncSession, model: type,
                                    rows: list[dict[str, Any]]) -> None:
    """Callers need not check for rows: an empty list sends no statement (SQLAlchemy would run
    one with an empty parameter list as a single INSERT of no values)."""
    if rows:
        await session.execute(insert_ignoring_conflicts_stmt(session, model), rows)


# PostgreSQL's SQLSTATEs of a write that met another's: a key taken, a row gone meanwhile.
COLLISIONS = ("23505", "23503")


def collided(err: IntegrityError) -> bool:
    """Whether the write lost a race with a concurrent one (a unique key another request took
    first, a row it deleted), which its caller answers; not a NOT NULL or CHECK constraint our
    own code broke, which is a fault to see (a 500, logged), not a 409 to retry for ever."""
    code = getattr(err.orig, "sqlstate", None)
    if code is not None:
        return code in COLLISIONS
    # SQLite (the quickstart's) names the constraint in words.
    return str(err.orig).startswith(("UNIQUE constraint failed", "FOREIGN KEY constraint failed"))


COPY_FROM_ROWS = 20


async def bulk_insert(session: AsyncSession, model: type, rows: list[dict[str, Any]]) -> None:
    """Inserts many rows with all their columns given: COPY on PostgreSQL (an import's batch of
    a thousand contacts and their rows), executemany elsewhere and for a few rows (COPY takes
    two round trips where an INSERT takes one, e.g. the audit entry of a page view)."""
    if not rows:
        return
    if session.bind.dialect.name != "postgresql" or len(rows) < COPY_FROM_ROWS:
        await session.execute(insert(model), rows)
        return
    columns = list(rows[0])
    json_columns = {c.key for c in model.__table__.columns if isinstance(c.type, JSON)}
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{model.__table__.name}" ({names}) FROM STDIN'
    try:
        async with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row([Json(row[c]) if c in json_columns and row[c] is not None
                                      else row[c] for c in columns])
    except psycopg.IntegrityError as err:
        # Callers handle a lost race the same way whichever path inserted.
        raise IntegrityError(statement, None, err) from err


# What a launch's audience query reads for each contact.
REGISTRY_TABLES = ("contacts", "contact_points", "contact_labels", "contact_addresses")


async def refresh_registry_statistics(session: AsyncSession) -> None:
    """Has PostgreSQL sample the registry's tables again once many rows came at once (an
    import). Until its autovacuum does, a launch's audience query is planned on the tables as
    they were: planned for an empty registry, it read every contact point for each contact,
    6.8 s at 6,000 contacts, growing with the square of their number. SQLite keeps none."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text(f"ANALYZE {', '.join(REGISTRY_TABLES)}"))


def among(session: AsyncSession, column: Any, values: list[Any]) -> Any:
    """`column IN values` for long lists: one array parameter on PostgreSQL (thousands of bind
    parameters cost more to send and plan than the lookup itself)."""
    if session.bind.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


async def create_client(
    session: AsyncSession, *, name: str, default_language: str = "en"
) -> tuple[Client, str]:
    client = Client(name=name, default_language=default_language)
    session.add(client)
    await session.flush()
    key = await create_api_key(session, client_id=client.id)
    return client, key


async def create_api_key(session: AsyncSession, *, client_id: uuid.UUID, name: str = "default") -> str:
    key, lookup = security.new_api_key()
    session.add(
        ApiKey(client_id=client_id, prefix=lookup, key_sha256=security.sha256_hex(key), name=name)
    )
    await session.flush()
    return key


async def api_key_and_client(session: AsyncSession, *, key: str) -> tuple[ApiKey, Client] | None:
    lookup = security.api_key_lookup(key)
    if lookup is None:
        return None
    row = (
        await session.execute(
            select(ApiKey, Client)
            .join(Client, Client.id == ApiKey.client_id)
            .where(ApiKey.prefix == lookup, ApiKey.revoked_at.is_(None))
        )
    ).first()
    if row is None or not security.api_key_matches(key, row.ApiKey.key_sha256):
        return None
    return row.ApiKey, row.Client


async def locked_journey(session: AsyncSession, journey_id: uuid.UUID
                         ) -> tuple[Journey, Contact, Campaign, Client]:
    """The journey, locked until commit, with its contact, campaign and client: one round trip
    where four gets took four (later gets of these four find them in the session)."""
    loaded = (await session.execute(
        select(Journey, Contact, Campaign, Client)
        .join(Contact, Contact.id == Journey.contact_id)
        .join(Campaign, Campaign.id == Journey.campaign_id)
        .join(Client, Client.id == Journey.client_id)
        .where(Journey.id == journey_id)
        .with_for_update(of=Journey))).one()
    # Held for the session's life: its identity map references objects weakly, so one that a
    # caller dropped (or the journey, once flushed) would be read again by the next get.
    session.info.setdefault("held", []).extend(loaded)
    journey, contact, campaign, client = loaded
    return journey, contact, campaign, client


def ended_outside(journey: Journey, own_end: datetime | None = None) -> str | None:
    """The final stage a journey (loaded locked) holds from outside its workflow: cancelled in
    the database only, while its workflow had not started, or was lost, and ran on (a race, a
    reset in the Temporal UI). The first end wins: the workflow's activities change nothing and
    send nothing more, and it ends as that stage. Its own end, found again by a retry of the
    write that made it (at `own_end`), is no such end."""
    if journey.stage in FINAL_STAGES and (own_end is None or journey.finished_at != own_end):
        return journey.stage
    return None


async def lock(session: AsyncSession, *, key: str) -> None:
    """Serialises transactions on one business key (PostgreSQL advisory lock, released at
    commit). SQLite serialises writers anyway."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                              {"k": key})


async def known_points_of(session: AsyncSession, *, contact_ids: list[uuid.UUID],
                          deliverable: bool = False, uncomplained: bool = False
                          ) -> dict[uuid.UUID, dict[str, ContactPoint]]:
    """Each contact's email and mobile to write to, by kind: the newest verified one, else the
    newest known (one query for all); with deliverable, none a hard bounce refused; with
    uncomplained, none whose recipient reported our message as spam. Every message, page and
    enrolment that picks a contact's address or number asks here."""
    query = (select(ContactPoint)
             .where(ContactPoint.contact_id.in_(contact_ids), POINT_IN_USE)
             .order_by(ContactPoint.verification_state == "verified", ContactPoint.created_at,
                       ContactPoint.id))
    if deliverable:
        query = query.where(ContactPoint.undeliverable_since.is_(None))
    if uncomplained:
        query = query.where(ContactPoint.complained_since.is_(None))
    best: dict[uuid.UUID, dict[str, ContactPoint]] = defaultdict(dict)
    for point in await session.scalars(query):
        best[point.contact_id][point.kind] = point  # the last of each kind wins
    return best


async def known_points(session: AsyncSession, *, contact_id: uuid.UUID,
                       deliverable: bool = False, uncomplained: bool = False
                       ) -> dict[str, ContactPoint]:
    return (await known_points_of(session, contact_ids=[contact_id], deliverable=deliverable,
                                  uncomplained=uncomplained)).get(contact_id, {})


async def same_point(session: AsyncSession, *, contact_id: uuid.UUID, kind: str,
                     value: str) -> ContactPoint | None:
    """The contact's point that is this value: an email in any letter case."""
    key = normalise.point_key(kind, value)
    return next((point for point in await session.scalars(select(ContactPoint).where(
        ContactPoint.contact_id == contact_id, ContactPoint.kind == kind)
        # The one in use (there is one at most), else the first removed.
        .order_by(ContactPoint.removed_at.is_not(None), ContactPoint.created_at,
                  ContactPoint.id))
        if normalise.point_key(point.kind, point.value) == key), None)


def is_point(kind: str, value: str) -> Any:
    """The condition that a ContactPoint row is this value: an email in any letter case, as
    `same_point` and the one-mailbox index compare it (a mobile, in E.164, has no letters).
    Served by ix_contact_points_value across a client's contacts."""
    return (ContactPoint.kind == kind) & (func.lower(ContactPoint.value) == func.lower(value))


def taken_away(contact_id: Any, recipient: Any) -> Any:
    """Whether `recipient` (a message's, as a value or a column) is one of the contact's emails
    or mobiles that is no longer in use: removed by the client, or moved to another person by
    the household rule. A link that message carried no longer acts for the contact: that
    mailbox or phone is often a stranger's."""
    points = select(ContactPoint.id).where(ContactPoint.contact_id == contact_id,
                                           ContactPoint.value == recipient
                                           ).correlate_except(ContactPoint)
    return points.exists() & ~points.where(POINT_IN_USE).exists()


def journey_message_recipient(journey_id: Any, step: Any) -> Any:
    """Where the journey's message at the step went, as a scalar subquery (of values, or of
    the enclosing query's columns)."""
    return select(Message.recipient).where(Message.journey_id == journey_id,
                                           Message.step == step).scalar_subquery()


def sent_to(step: str, contact_id: uuid.UUID) -> Any:
    """Where the message that carried one of the contact's own links (preferences,
    unsubscribe, KYC upload) went, as a scalar subquery: a journey's (`<journey id>/<step>`),
    a client's (`message/<id>`) or its KYC profile's (`kyc/<step>`); None for a link no
    message carried."""
    owner, _, rest = step.partition("/")
    if owner == "kyc":
        return select(KycEvent.detail["recipient"].as_string()).where(
            KycEvent.contact_id == contact_id, KycEvent.step == rest).scalar_subquery()
    try:
        owner_id = uuid.UUID(rest if owner == "message" else owner)
    except ValueError:
        return None
    if owner == "message":
        return select(ClientMessage.recipient).where(ClientMessage.id == owner_id
                                                     ).scalar_subquery()
    return journey_message_recipient(owner_id, rest)


async def as_known_email(session: AsyncSession, *, contact_id: uuid.UUID, value: str) -> str:
    """The address as the contact's registry entry spells it when it has it in another letter
    case: `Ann@Example.com` typed for a known `ann@example.com` is that address, not a new one."""
    known = await same_point(session, contact_id=contact_id, kind=ContactPointKind.email,
                             value=value)
    return known.value if known else value


async def known_point(session: AsyncSession, *, contact_id: uuid.UUID, kind: str,
                      deliverable: bool = False, uncomplained: bool = False
                      ) -> ContactPoint | None:
    return (await known_points(session, contact_id=contact_id, deliverable=deliverable,
                               uncomplained=uncomplained)).get(kind)


async def only_undeliverable(session: AsyncSession, *, contact_id: uuid.UUID,
                             channel: str) -> bool:
    """Asked once no deliverable one was found: whether the contact has what the channel needs
    (an email, a mobile, a postal address), but a hard bounce refused it."""
    if channel == "letter":
        return await current_address(session, contact_id=contact_id) is not None
    return await known_point(session, contact_id=contact_id,
                             kind="mobile" if channel == "sms" else "email") is not None


async def current_address(session: AsyncSession, *, contact_id: uuid.UUID,
                          deliverable: bool = False) -> ContactAddress | None:
    """The contact's primary active address, else the newest active one; with deliverable,
    none returned to sender for good."""
    query = (select(ContactAddress)
             .where(ContactAddress.contact_id == contact_id, ContactAddress.active.is_(True))
             .order_by(ContactAddress.is_primary.desc(), ContactAddress.created_at.desc())
             .limit(1))
    if deliverable:
        query = query.where(ContactAddress.undeliverable_since.is_(None))
    return (await session.scalars(query)).first()


def letter_recipient(address: ContactAddress) -> str:
    """The address as a letter's message records its recipient, on one line: the town lines as
    the letter prints them, state or province included ("Mountain View, CA 94043")."""
    postal = PostalAddress(recipient="", street_lines=[line for line in (address.line1,
                                                                         address.line2) if line],
                           postal_code=address.postal_code or "", city=address.city,
                           country=address.country, region=address.region or "")
    return ", ".join([*postal.street_lines, *town_lines(postal), address.country])


def _letter_recipient_without_region(address: ContactAddress) -> str:
    """How letters sent before the region was recorded name their recipient: a bounce of one
    of them still marks the address."""
    return ", ".join([*(line for line in (address.line1, address.line2) if line),
                      f"{address.postal_code or ''} {address.city}", address.country])


async def _points_of(session: AsyncSession, *, contact_id: uuid.UUID, channel: str,
                     recipient: str) -> list[ContactPoint]:
    """The contact's email or mobile a message on the channel went to."""
    return [p for p in await session.scalars(select(ContactPoint).where(
        ContactPoint.contact_id == contact_id,
        ContactPoint.kind == ("mobile" if channel == "sms" else "email")))
        if p.value == recipient or (channel == "email"
                                    and normalise.same_email(p.value, recipient))]


async def mark_undeliverable(session: AsyncSession, *, contact_id: uuid.UUID, channel: str,
                             recipient: str, reason: str, at: datetime) -> None:
    """A hard bounce: the contact's email, mobile or postal address it refused is marked, so
    later messages skip it (as one not known) until it is confirmed or given again."""
    rows: list[ContactPoint | ContactAddress]
    if channel == "letter":
        rows = [a for a in await session.scalars(select(ContactAddress).where(
            ContactAddress.contact_id == contact_id))
            if recipient in (letter_recipient(a)[:320],
                             _letter_recipient_without_region(a)[:320])]
    else:
        rows = await _points_of(session, contact_id=contact_id, channel=channel,
                                recipient=recipient)
    for row in rows:
        if row.undeliverable_since is None:
            row.undeliverable_since, row.undeliverable_reason = at, reason


async def mark_complained(session: AsyncSession, *, contact_id: uuid.UUID, channel: str,
                          recipient: str, at: datetime) -> None:
    """A spam complaint about a message to the contact's email or mobile (a letter has none)."""
    if channel == "letter":
        return
    for point in await _points_of(session, contact_id=contact_id, channel=channel,
                                  recipient=recipient):
        point.complained_since = point.complained_since or at


def clear_undeliverable(row: ContactPoint | ContactAddress) -> None:
    row.undeliverable_since = row.undeliverable_reason = None


# The journey event of a reported payment; its detail holds the reference, paid_at and amount.
PAYMENT_STEP = "payment"
# The journey event of a claim the client withdrew (no longer asked of the contact).
CLAIM_WITHDRAWN_STEP = "claim-withdrawn"


async def add_journey_event(
    session: AsyncSession, *, journey: Journey, step: str, type: str, at: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    await insert_ignoring_conflicts(
        session,
        JourneyEvent,
        [{"journey_id": journey.id, "step": step, "type": type, "at": at, "detail": detail}],
    )


def claim_of_journey() -> Any:
    """Joins a journey to its claim's row: the campaign's reference, as owed by the journey's
    contact (a duplicate enrolled before claims had owners is not that claim)."""
    return ((CampaignClaim.campaign_id == Journey.campaign_id)
            & (CampaignClaim.reference == Journey.claim["reference"].as_string())
            & (CampaignClaim.contact_id == Journey.contact_id))


async def claim_paid(session: AsyncSession, *, journey: Journey) -> None:
    """The journey's payment is its claim's: a later journey with the claim does not ask again,
    and an earlier one's page shows it paid."""
    await session.execute(update(CampaignClaim).where(
        CampaignClaim.campaign_id == journey.campaign_id,
        CampaignClaim.reference == journey.claim["reference"],
        CampaignClaim.contact_id == journey.contact_id, CampaignClaim.paid_at.is_(None))
        .values(paid_at=journey.paid_at))


async def record_opened(session: AsyncSession, *, journey: Journey, at: datetime,
                        link_step: str) -> None:
    """The customer's first visit to the contact page, with the step of the link it came by
    (the message whose link was opened, for the funnel). A journey still `enrolled` holds an
    invitation whose send has not been recorded yet (the customer has the link, so it is out);
    one that moved on meanwhile keeps its stage. The session's copy of the journey keeps the
    stage it was loaded with (nothing on the page reads it after this), which spares the ORM
    matching the criteria against it on every first visit."""
    await session.execute(update(Journey).where(
        Journey.id == journey.id, Journey.stage.in_(NOT_OPENED)).values(stage=Stage.opened)
        .execution_options(synchronize_session=False))
    await add_journey_event(session, journey=journey, step="opened", type=Stage.opened, at=at,
                            detail={"link": link_step})


def endpoints_locked(client_id: uuid.UUID) -> Any:
    """The client's webhook endpoints, locked (their sequence counters) all at once and in one
    order: a transaction recording an event never holds one counter while waiting for another
    that a second such transaction holds. One that changes an endpoint and then records an
    event (disabling a failing one) takes them all this way first."""
    return (select(WebhookEndpoint).where(WebhookEndpoint.client_id == client_id)
            .order_by(WebhookEndpoint.id).with_for_update())


async def record_webhook_event(
    session: AsyncSession, *, client_id: uuid.UUID, key: str, type: str, data: dict[str, Any]
) -> list[str]:
    """Stores the event once (by key) and queues it for each enabled endpoint subscribed to it.

    Returns the ids of the endpoints with the event still pending, to wake once the transaction
    has committed; a retried activity finds the same event and wakes them again, harmlessly.
    """
    endpoints = [e for e in (await session.scalars(
        endpoints_locked(client_id).where(WebhookEndpoint.enabled.is_(True))
    )).all() if subscribes(e, type)]
    await insert_ignoring_conflicts(session, WebhookEvent, [{
        "id": uuid.uuid4(), "client_id": client_id, "key": key, "type": type,
        "payload": {"type": type, "timestamp": utcnow().isoformat(), "data": data},
    }])
    if not endpoints:
        # Most events of a client without a subscribed endpoint: nothing to queue or wake
        # (this skips three of the five round trips a journey's step spends here).
        return []
    # This try's row, or the one an earlier try of the same step recorded.
    event = (await session.scalars(select(WebhookEvent).where(WebhookEvent.key == key))).one()
    queued = set(await session.scalars(
        select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == event.id)))
    for endpoint in endpoints:
        if endpoint.id not in queued:
            await queue_delivery(session, event=event, endpoint=endpoint)
    pending = await session.scalars(
        select(WebhookDelivery.endpoint_id).where(
            WebhookDelivery.event_id == event.id, WebhookDelivery.status == "pending"
        )
    )
    return [str(i) for i in pending]


END_EVENTS = {
    Stage.expired: EventType.journey_expired,
    Stage.opted_out: EventType.journey_opted_out,
    Stage.cancelled: EventType.journey_cancelled,
}


async def announce_end(session: AsyncSession, *, journey: Journey, campaign: Campaign,
                       contact: Contact, step: str, detail: dict[str, Any] | None) -> list[str]:
    """Raises the webhook of the journey's end as recorded (`journey.expired`, `.opted_out`,
    `.cancelled`), once per journey and step; returns the endpoints to wake after commit."""
    assert journey.finished_at is not None
    return await record_webhook_event(
        session, client_id=journey.client_id, key=f"{journey.id}/{step}",
        type=END_EVENTS[Stage(journey.stage)],
        data={
            **journey_ref(journey, campaign),
            "contact": contact_ref(contact),
            "stage": journey.stage,
            "at": journey.finished_at.isoformat(),
            **({"detail": detail} if detail else {}),
        },
    )


def subscribes(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return event_type in endpoint.events or "*" in endpoint.events


async def next_sequence(session: AsyncSession, *, endpoint_id: uuid.UUID) -> int:
    """The endpoint's next sequence number. The row stays locked until commit, so numbers
    rise in the order the events' transactions commit."""
    return (await session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        .values(last_sequence=WebhookEndpoint.last_sequence + 1)
        .returning(WebhookEndpoint.last_sequence)
    )).scalar_one()


async def queue_delivery(
    session: AsyncSession, *, event: WebhookEvent, endpoint: WebhookEndpoint
) -> WebhookDelivery:
    """Queues the event for the endpoint, or queues it again (resend, replay) as a new round
    of attempts. A delivery keeps its sequence number across rounds."""
    now = utcnow()
    # Written first if the endpoint never had the event: a second resend or replay of it at
    # the same time waits here for this one's row, takes it and queues it again, instead of
    # writing a second one (a unique violation, answered as a 500).
    await session.execute(
        insert_ignoring_conflicts_stmt(session, WebhookDelivery),
        [{"id": uuid.uuid4(), "client_id": event.client_id, "event_id": event.id,
          "endpoint_id": endpoint.id, "status": "pending", "attempts": 0,
          "round_started_at": now, "next_attempt_at": now}])
    # Locked, as the delivery workflow locks it to log an attempt: a resend during an attempt
    # is never lost under that attempt's outcome.
    delivery = (await session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.event_id == event.id, WebhookDelivery.endpoint_id == endpoint.id)
        .with_for_update().execution_options(populate_existing=True))).one()
    if delivery.sequence is None:  # new, or queued before deliveries had sequence numbers
        delivery.sequence = await next_sequence(session, endpoint_id=endpoint.id)
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.round_started_at = now
    delivery.next_attempt_at = now
    await session.flush()
    return delivery


async def consents_of_step(
    session: AsyncSession, *, journey_id: uuid.UUID, step: str
) -> list[ConsentEvent]:
    return list(
        await session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.journey_id == journey_id, ConsentEvent.step == step)
            .order_by(ConsentEvent.checkbox_key)
        )
    )


def journey_ref(journey: Journey, campaign: Campaign) -> dict[str, Any]:
    return {"journey_id": str(journey.id),
            "campaign": {"id": str(campaign.id), "name": campaign.name}}


def contact_ref(contact: Contact) -> dict[str, Any]:
    return {
        "id": str(contact.id),
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
    }


async def verified_points(session: AsyncSession, *, contact_id: uuid.UUID,
                          values: dict[str, str]) -> dict[str, ContactPoint]:
    """Of these values by kind ("email", "mobile"), those the contact has verified, whichever
    journey (or import) verified them."""
    wanted = [(kind, value) for kind, value in values.items() if value]
    if not wanted:
        return {}
    points = (await session.scalars(select(ContactPoint).where(
        ContactPoint.contact_id == contact_id,
        ContactPoint.verification_state == VerificationState.verified, POINT_IN_USE,
        or_(*((ContactPoint.kind == kind) & (ContactPoint.value == value)
              for kind, value in wanted))))).all()
    return {point.kind: point for point in points}


async def contacts_of_journeys(session: AsyncSession, journey_ids: list[uuid.UUID]
                               ) -> list[uuid.UUID]:
    return list(await session.scalars(select(Journey.contact_id).distinct()
                                      .where(Journey.id.in_(journey_ids))))


async def journeys_awaiting(session: AsyncSession, *, journey: Journey, kind: str) -> list[str]:
    """The workflow ids of the contact's other open journeys that collected the value this
    journey holds of that kind ("email", "mobile") and have not verified it yet."""
    value = (journey.collected or {}).get(kind)
    if value is None:
        return []
    others = await session.execute(select(Journey.workflow_id, Journey.collected).where(
        Journey.contact_id == journey.contact_id, Journey.id != journey.id,
        Journey.stage.not_in(FINAL_STAGES)))
    return [workflow_id for workflow_id, collected in others
            if (collected or {}).get(kind) == value
            and not (collected or {}).get(f"{kind}_verified_at")]


async def count_hits(session: AsyncSession, *, keys: list[str],
                     window_start: datetime) -> dict[str, int]:
    """Counts one request against each key in the fixed window starting at window_start;
    returns the counts. One atomic upsert for all keys, so concurrent requests on several API
    instances count correctly. On PostgreSQL, call it on a session of
    `db.session.make_counter_engine`: the upsert is then the whole transaction."""
    # The rows as parameters: a cached statement (see `insert_ignoring_conflicts_stmt`).
    stmt = dialect_insert(session, RateLimitCounter)
    stale = stmt.excluded.window_start > RateLimitCounter.window_start
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
        "count": case((stale, 1), else_=RateLimitCounter.count + 1),
        "window_start": case((stale, stmt.excluded.window_start),
                             else_=RateLimitCounter.window_start),
    }).returning(RateLimitCounter.key, RateLimitCounter.count)
    return {key: count for key, count in await session.execute(
        stmt, [{"key": key, "window_start": window_start, "count": 1} for key in keys])}


async def hits(session: AsyncSession, *, key: str, window_start: datetime) -> int:
    """What `count_hits` has counted against the key in the window, counting nothing."""
    return await session.scalar(select(RateLimitCounter.count).where(
        RateLimitCounter.key == key, RateLimitCounter.window_start == window_start)) or 0


# Mail providers that deliver an address written with dots in its local part, or without
# them, to one mailbox (the first is the name the others are counted under).
DOTLESS_DOMAINS = ("gmail.com", "googlemail.com")


def mailbox(address: str) -> str:
    """The mailbox an address reaches, as the daily cap of verification messages counts it:
    lower case, without a `+tag` (RFC 5233 subaddressing: victim+1@ reaches victim@), and at
    Gmail without dots. A phone number is itself."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), DOTLESS_DOMAINS[0]
    return f"{local}@{domain}"


async def lock_recipient(session: AsyncSession, *, recipient: str) -> None:
    """Serialises the verification messages (links, codes) to one mailbox or number until
    commit: each send counts those before it, going out or gone, against the daily cap.
    Without it, sends at the same time each counted the same few and all went."""
    await lock(session, key=f"verification-cap/{mailbox(recipient)}")


# The daily cap of verification messages per recipient counts per client, so that whoever
# types a stranger's address at one business cannot keep that person from verifying it at
# another; all clients together send a recipient at most this many times the cap.
ALL_CLIENTS_CAP_FACTOR = 4


def over_verification_cap(counts: tuple[int, int], cap: int) -> bool:
    """Whether (sent by the client, sent by all clients), as `messages_to` and `codes_to`
    count them, reach the per-client cap or the ceiling of all clients together."""
    of_client, of_all = counts
    return of_client >= cap or of_all >= cap * ALL_CLIENTS_CAP_FACTOR


async def messages_to(session: AsyncSession, *, recipient: str, client_id: uuid.UUID,
                      templates: tuple[str, ...], since: datetime,
                      exclude: uuid.UUID | None = None) -> tuple[int, int]:
    """How many of these messages went, or are going, to the recipient's mailbox since then:
    (from the client's journeys, from any client's), whatever the spelling it was typed in
    (letter case, a `+tag`, Gmail's dots: see `mailbox`); not counting `exclude`, the message
    being sent again. Hold `lock_recipient` to count those going out meanwhile."""
    query = select(func.count(case((Message.client_id == client_id, 1))),
                   func.count()).select_from(Message).where(
        Message.mailbox == mailbox(recipient), Message.template.in_(templates),
        or_(and_(Message.status == "sent", Message.sent_at >= since),
            # Being handed over: written before the hand-over, in the transaction that counted.
            and_(Message.status == "sending", Message.created_at >= since)))
    if exclude is not None:
        query = query.where(Message.id != exclude)
    of_client, of_all = (await session.execute(query)).one()
    return of_client, of_all


async def codes_to(session: AsyncSession, *, recipient: str, client_id: uuid.UUID,
                   since: datetime, exclude: uuid.UUID | None = None) -> tuple[int, int]:
    """How many verification codes went to the number since then, or are going (written
    before the hand-over, still valid): (from the client's journeys, from any client's); not
    counting `exclude`, the code being sent again. Hold `lock_recipient` to count those going
    out meanwhile."""
    query = select(func.count(case((Journey.client_id == client_id, 1))), func.count()).join_from(
        OneTimeCode, Journey, Journey.id == OneTimeCode.journey_id).where(
        OneTimeCode.recipient == recipient,
        or_(OneTimeCode.sent_at >= since,
            and_(OneTimeCode.sent_at.is_(None), OneTimeCode.expires_at > utcnow())))
    if exclude is not None:
        query = query.where(OneTimeCode.id != exclude)
    of_client, of_all = (await session.execute(query)).one()
    return of_client, of_all


async def campaigns_of(session: AsyncSession, *, client_id: uuid.UUID, status: str | None,
                       after: Campaign | None, limit: int) -> list[Campaign]:
    """The client's campaigns, oldest first; with `after`, those created after it."""
    query = select(Campaign).where(Campaign.client_id == client_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    if after is not None:
        # Campaigns created in the same instant follow each other by id.
        query = query.where(tuple_(Campaign.created_at, Campaign.id)
                            > tuple_(after.created_at, after.id))
    return list(await session.scalars(
        query.order_by(Campaign.created_at, Campaign.id).limit(limit)))


def changed_settings(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The old and new value of each top-level setting that differs between two snapshots."""
    return {key: {"old": before.get(key), "new": after.get(key)}
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)}


async def settings_changes(session: AsyncSession, model: type[SC], *where: Any,
                           after: int | None, limit: int) -> tuple[list[SC], str | None]:
    """A page of the changes (of a campaign, of contact settings) matching `where`, oldest
    first, after the change `after`: up to `limit` of them and the next page's cursor (None on
    the last page)."""
    query = select(model).where(*where)
    if after is not None:
        query = query.where(model.id > after)
    found = list(await session.scalars(query.order_by(model.id).limit(limit + 1)))
    return found[:limit], str(found[limit - 1].id) if len(found) > limit else None
