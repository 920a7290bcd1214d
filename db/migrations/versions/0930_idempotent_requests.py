"""A request sent with an Idempotency-Key is kept with the answer it was given
(idempotent_requests, one per client, route and key), so that a retry is answered as the first
request was, not with what has become of the thing it created since; POST /v1/contacts and a
campaign's launch take the header too. A contact's create names its contact (`contact_id`),
whose erasure deletes the answer with its personal data. The keys campaigns were created with
move there; their first answer was not kept, so each is answered with the campaign as it is at
this migration (until IDEMPOTENCY_KEY_RETENTION after the campaign's creation, as any key).

Revision ID: 0930_idempotent_requests
Revises: 0910_api_key_last_use
"""

import uuid
from datetime import UTC

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0930_idempotent_requests"
down_revision = "0910_api_key_last_use"
branch_labels = None
depends_on = None

CREATE_CAMPAIGN = "POST /v1/campaigns"
campaigns = sa.table(
    "campaigns", sa.column("id", sa.Uuid()), sa.column("client_id", sa.Uuid()),
    sa.column("name", sa.String()), sa.column("status", sa.String()),
    sa.column("spec", db.models.JSON_OR_NULL), sa.column("idempotency_key", sa.String()),
    sa.column("request_sha256", sa.String()),
    sa.column("created_at", db.models.UtcDateTime(timezone=True)),
    sa.column("updated_at", db.models.UtcDateTime(timezone=True)))


def _instant(at) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def upgrade() -> None:
    requests = op.create_table(
        "idempotent_requests",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("answer", db.models.JSON_OR_NULL, nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id", "route", "key"))
    op.create_index("ix_idempotent_requests_contact_id", "idempotent_requests", ["contact_id"])
    connection = op.get_bind()
    rows = [{"client_id": c.client_id, "route": CREATE_CAMPAIGN, "key": c.idempotency_key,
             "request_sha256": c.request_sha256, "status_code": 201, "created_at": c.created_at,
             # CampaignOut's fields; the API answers a replay through that model.
             "answer": {"id": str(c.id), "name": c.name, "status": c.status, "spec": c.spec,
                        "created_at": _instant(c.created_at),
                        "updated_at": _instant(c.updated_at)}}
            for c in connection.execute(sa.select(campaigns).where(
                campaigns.c.idempotency_key.is_not(None)))]
    if rows:
        op.bulk_insert(requests, rows)
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("campaigns_client_id_idempotency_key_key", type_="unique")
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("campaigns_client_id_idempotency_key_key",
                                       ["client_id", "idempotency_key"])
    requests = sa.table("idempotent_requests", sa.column("route", sa.String()),
                        sa.column("key", sa.String()), sa.column("request_sha256", sa.String()),
                        sa.column("answer", db.models.JSON_OR_NULL))
    connection = op.get_bind()
    for key, sha256, answer in connection.execute(
            sa.select(requests.c.key, requests.c.request_sha256, requests.c.answer)
            .where(requests.c.route == CREATE_CAMPAIGN)):
        connection.execute(campaigns.update()
                           .where(campaigns.c.id == uuid.UUID(answer["id"]))
                           .values(idempotency_key=key, request_sha256=sha256))
    op.drop_table("idempotent_requests")
