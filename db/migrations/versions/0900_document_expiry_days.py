"""A document's expiry given as a date (as printed on an ID card or passport) is now kept as the
moment the next day begins, the date being the last day it is valid; before, it was kept as the
start of that date, so the document counted as expired, and refused, all of its last day. The
documents stored so, at a UTC midnight, move on a day. (A running profile's own expiry, kept by
its workflow, moves when a worker next starts: api.kyc_profiles.rejudge_stale_document_expiries.)

Revision ID: 0900_document_expiry_days
Revises: 0890_contact_point_values
"""

from datetime import UTC, time, timedelta

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0900_document_expiry_days"
down_revision = "0890_contact_point_values"
branch_labels = None
depends_on = None

BATCH = 1000
documents = sa.table("kyc_documents", sa.column("id", sa.Uuid()),
                     sa.column("expires_at", db.models.UtcDateTime(timezone=True)))


def _shift(days: int) -> None:
    connection = op.get_bind()
    rows = [(id_, at) for id_, at in connection.execute(
        sa.select(documents.c.id, documents.c.expires_at)
        .where(documents.c.expires_at.is_not(None)))
        if at.astimezone(UTC).timetz() == time(tzinfo=UTC)]
    for start in range(0, len(rows), BATCH):
        connection.execute(
            documents.update().where(documents.c.id == sa.bindparam("row_id"))
            .values(expires_at=sa.bindparam("at")),
            [{"row_id": id_, "at": at + timedelta(days=days)}
             for id_, at in rows[start:start + BATCH]])


def upgrade() -> None:
    _shift(1)


def downgrade() -> None:
    _shift(-1)
