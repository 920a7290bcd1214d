"""An erased contact's workflow histories in Temporal are deleted after its erasure
(history_erasures: the contacts whose histories are still to go, written with the erasure).

Revision ID: 0870_history_erasures
Revises: 0860_campaign_idempotency
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0870_history_erasures"
down_revision = "0860_campaign_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_erasures",
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("erased_at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index(op.f("ix_history_erasures_client_id"), "history_erasures", ["client_id"])
    op.create_index(op.f("ix_history_erasures_erased_at"), "history_erasures", ["erased_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_history_erasures_erased_at"), table_name="history_erasures")
    op.drop_index(op.f("ix_history_erasures_client_id"), table_name="history_erasures")
    op.drop_table("history_erasures")
