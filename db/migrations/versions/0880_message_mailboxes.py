"""A message keeps the mailbox its recipient reaches (messages.mailbox, indexed), by which the
daily cap of verification messages counts: the cap's query matched every spelling of an
address (letter case, a +tag, Gmail's dots) with LIKE and replace, which no index serves, so
each verification send read the whole table. It replaces ix_messages_recipient. The cap
counts a day, so only the messages of the last two days are given their mailbox.

Revision ID: 0880_message_mailboxes
Revises: 0870_history_erasures
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import db.models
from db.crud import mailbox

revision = "0880_message_mailboxes"
down_revision = "0870_history_erasures"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    # First: SQLite's batch mode copies the table without an index on an expression.
    op.drop_index("ix_messages_recipient", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("mailbox", sa.String(length=320), nullable=True))
    op.create_index(op.f("ix_messages_mailbox"), "messages", ["mailbox"])
    messages = sa.table("messages", sa.column("id", sa.Uuid()), sa.column("recipient"),
                        sa.column("mailbox"),
                        sa.column("created_at", db.models.UtcDateTime(timezone=True)))
    connection = op.get_bind()
    since = datetime.now(UTC) - timedelta(days=2)
    rows = connection.execute(sa.select(messages.c.id, messages.c.recipient).where(
        messages.c.created_at >= since)).all()
    for start in range(0, len(rows), BATCH):
        connection.execute(
            messages.update().where(messages.c.id == sa.bindparam("row_id"))
            .values(mailbox=sa.bindparam("box")),
            [{"row_id": id_, "box": mailbox(recipient)}
             for id_, recipient in rows[start:start + BATCH]])


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_mailbox"), table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("mailbox")
    op.create_index("ix_messages_recipient", "messages", [sa.text("lower(recipient)"), "sent_at"])
