"""The Alembic migrations build exactly the schema the models describe, on both backends."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import column, create_engine, insert, select, table
from sqlalchemy.exc import IntegrityError

from api.schemas import CampaignOut
from db.migrate import alembic_config, new_revision, sync_url, upgrade
from db.kyc_models import KycDocument
from db.models import (AuditEntry, Campaign, Client, Contact, ContactPoint, IdempotentRequest,
                       Journey, Message)
from stack import scratch_database

BEFORE_FOLDING = "0740_answered_and_cancelled"


def test_models_and_migrations_agree(database_url):
    # Raises when a model change has no migration (the fixture migrated this database).
    command.check(alembic_config(database_url))


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    command.check(alembic_config(url))


def test_a_new_revision_follows_the_head(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
    versions = tmp_path / "versions"
    versions.mkdir()
    path = new_revision(url, "Journey notes!", versions)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    text = path.read_text()
    assert path.parent == versions and path.stem.endswith("_journey_notes")
    assert f"down_revision = '{head}'" in text
    # The models and the migrations agree, so there is nothing to migrate.
    assert "op." not in text


def at_revision(backend: str, tmp_path, revision: str) -> Iterator[str]:
    """A database of the backend migrated up to the revision, no further."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/dev.db"
        upgrade(url, revision)
        yield url
    else:
        with scratch_database("cj_migration", revision=revision) as url:
            yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def before_folding(request, tmp_path) -> Iterator[str]:
    """A database at the revision before email points were one in any letter case."""
    yield from at_revision(request.param, tmp_path, BEFORE_FOLDING)


def test_email_points_stored_in_several_letter_cases_are_folded(before_folding):
    """Duplicates from before: the first spelling stays in use and takes a later spelling's
    verification; the others are removed (kept, audited); no new duplicate can be stored."""
    client, contact, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    engine = create_engine(sync_url(before_folding))
    point = ContactPoint.__table__
    with engine.begin() as db:
        db.execute(insert(Client.__table__).values(id=client, name="Acme"))
        db.execute(insert(Contact.__table__), [
            {"id": c, "client_id": client, "external_id": str(c)} for c in (contact, other)])
        db.execute(insert(point), [
            {"id": uuid.uuid4(), "client_id": client, "contact_id": owner, "kind": "email",
             "value": value, "verification_state": state, "created_at": t0 + timedelta(days=i),
             "verified_at": t0 + timedelta(days=i) if state == "verified" else None,
             "verified_via": "email_link" if state == "verified" else None}
            for i, (owner, value, state) in enumerate([
                (contact, "Ann@x.example", "unverified"), (contact, "ann@x.example", "verified"),
                (contact, "ANN@x.example", "unverified"), (contact, "bob@x.example", "unverified"),
                # Another contact's address is theirs, whatever its letter case.
                (other, "ann@x.example", "unverified")])])
    upgrade(before_folding)
    with engine.begin() as db:
        rows = db.execute(select(point.c.value, point.c.verification_state, point.c.verified_at,
                                 point.c.removed_at.is_not(None)).where(
            point.c.contact_id == contact).order_by(point.c.created_at)).all()
        assert [tuple(r) for r in rows] == [
            ("Ann@x.example", "verified", t0 + timedelta(days=1), False),
            ("ann@x.example", "verified", t0 + timedelta(days=1), True),
            ("ANN@x.example", "unverified", None, True),
            ("bob@x.example", "unverified", None, False)]
        audited = db.execute(select(AuditEntry.__table__.c.actor_id).where(
            AuditEntry.__table__.c.contact_id == contact)).scalars().all()
        assert audited == ["migration 0770_registry"] * 3
        with pytest.raises(IntegrityError):
            db.execute(insert(point).values(id=uuid.uuid4(), client_id=client,
                                            contact_id=contact, kind="email",
                                            value="aNN@x.example"))
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def before_mailboxes(request, tmp_path) -> Iterator[str]:
    """A database at the revision before messages kept the mailbox they reach."""
    yield from at_revision(request.param, tmp_path, "0870_history_erasures")


def test_recent_messages_are_given_the_mailbox_the_cap_counts_by(before_mailboxes):
    """The cap counts a day: the messages of the last two days get their mailbox, older ones
    are left as they are."""
    client, contact, campaign, journey = (uuid.uuid4() for _ in range(4))
    now = datetime.now(UTC)
    engine = create_engine(sync_url(before_mailboxes))
    message = Message.__table__
    with engine.begin() as db:
        db.execute(insert(Client.__table__).values(id=client, name="Acme"))
        db.execute(insert(Contact.__table__).values(id=contact, client_id=client,
                                                    external_id="c-1"))
        db.execute(insert(Campaign.__table__).values(id=campaign, client_id=client,
                                                     name="Check", spec={}))
        db.execute(insert(Journey.__table__).values(
            id=journey, client_id=client, campaign_id=campaign, contact_id=contact,
            workflow_id="journey/1", stage="invited", language="en"))
        db.execute(insert(message), [
            {"id": uuid.uuid4(), "client_id": client, "journey_id": journey, "step": step,
             "channel": "email", "template": "verification", "recipient": recipient,
             "created_at": at, "status": "sent", "sent_at": at}
            for step, recipient, at in [("recent", "Victim+1@Example.com", now),
                                        ("dotted", "v.ic.tim@googlemail.com", now),
                                        ("old", "Victim@Example.com", now - timedelta(days=3))]])
    upgrade(before_mailboxes)
    with engine.begin() as db:
        boxes = dict(db.execute(select(message.c.step, message.c.mailbox)).all())
    engine.dispose()
    assert boxes == {"recent": "victim@example.com", "dotted": "victim@gmail.com", "old": None}


@pytest.fixture(params=["postgresql", "sqlite"])
def before_document_days(request, tmp_path) -> Iterator[str]:
    """A database at the revision before a document's expiry date meant its last valid day."""
    yield from at_revision(request.param, tmp_path, "0890_contact_point_values")


def test_documents_expiring_on_a_date_are_valid_all_of_it(before_document_days):
    """A date was kept as its first moment; it is now kept as the next day's, and a moment
    given with its time stays as it was."""
    client, contact = uuid.uuid4(), uuid.uuid4()
    on_a_date = datetime(2027, 3, 31, tzinfo=UTC)
    at_a_time = datetime(2027, 3, 31, 14, 30, tzinfo=UTC)
    engine = create_engine(sync_url(before_document_days))
    document = KycDocument.__table__
    with engine.begin() as db:
        db.execute(insert(Client.__table__).values(id=client, name="Acme"))
        db.execute(insert(Contact.__table__).values(id=contact, client_id=client,
                                                    external_id="c-1"))
        db.execute(insert(document), [
            {"id": uuid.uuid4(), "client_id": client, "contact_id": contact,
             "document_type": kind, "expires_at": at, "storage_key": kind,
             "content_type": "application/pdf", "size": 1, "sha256": "0" * 64,
             "source": "api"}
            for kind, at in [("id_card", on_a_date), ("passport", at_a_time),
                             ("proof_of_address", None)]])
    upgrade(before_document_days)
    with engine.begin() as db:
        expiries = dict(db.execute(select(document.c.document_type, document.c.expires_at)).all())
    engine.dispose()
    as_utc = {kind: at and at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)
              for kind, at in expiries.items()}
    assert as_utc == {"id_card": datetime(2027, 4, 1, tzinfo=UTC), "passport": at_a_time,
                      "proof_of_address": None}


@pytest.fixture(params=["postgresql", "sqlite"])
def before_idempotent_requests(request, tmp_path) -> Iterator[str]:
    """A database at the revision before a request's Idempotency-Key was kept with its answer."""
    yield from at_revision(request.param, tmp_path, "0910_api_key_last_use")


def test_the_keys_campaigns_were_created_with_still_answer_their_retries(
        before_idempotent_requests):
    """A campaign created with an Idempotency-Key before the move: the retry is still answered
    with that campaign (as it is now: its first answer was not kept); and back again."""
    client, campaign = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    engine = create_engine(sync_url(before_idempotent_requests))
    # The campaigns table as it was, with the columns the migration moves.
    campaigns = table("campaigns", *(column(c.name, c.type) for c in Campaign.__table__.c),
                      column("idempotency_key"), column("request_sha256"))
    with engine.begin() as db:
        db.execute(insert(Client.__table__).values(id=client, name="Acme"))
        db.execute(insert(campaigns).values(
            id=campaign, client_id=client, name="Keyed", spec={"channel_plan": None},
            status="active", created_at=at, updated_at=at, idempotency_key="create-1",
            request_sha256="a" * 64))
        db.execute(insert(Campaign.__table__).values(client_id=client, name="Unkeyed",
                                                     spec={}))
    upgrade(before_idempotent_requests)
    with engine.begin() as db:
        [kept] = db.execute(select(IdempotentRequest.__table__)).mappings().all()
    assert (kept["client_id"], kept["route"], kept["key"], kept["request_sha256"],
            kept["status_code"]) == (client, "POST /v1/campaigns", "create-1", "a" * 64, 201)
    assert CampaignOut.model_validate(kept["answer"]) == CampaignOut(
        id=campaign, name="Keyed", status="active", created_at=at, updated_at=at,
        spec={"channel_plan": None})
    command.downgrade(alembic_config(before_idempotent_requests), "0910_api_key_last_use")
    with engine.begin() as db:
        keys = db.execute(select(campaigns.c.name, campaigns.c.idempotency_key,
                                 campaigns.c.request_sha256)).all()
    engine.dispose()
    assert sorted(keys) == [("Keyed", "create-1", "a" * 64), ("Unkeyed", None, None)]
