"""A campaign's name and settings can be changed: it keeps when it last changed
(campaigns.updated_at; until now, its creation) and every change with who made it and the old
and new values (campaign_changes).

Revision ID: 0800_campaign_changes
Revises: 0780_address_confirmed
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0800_campaign_changes"
down_revision = "0780_address_confirmed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("updated_at", db.models.UtcDateTime(timezone=True),
                                   nullable=True))
    op.execute("UPDATE campaigns SET updated_at = created_at")
    with op.batch_alter_table("campaigns") as batch:
        batch.alter_column("updated_at", nullable=False)
    op.create_table(
        "campaign_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=100), nullable=False),
        sa.Column("changes", sa.JSON(none_as_null=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaign_changes_campaign", "campaign_changes", ["campaign_id", "id"])
    op.create_index(op.f("ix_campaign_changes_client_id"), "campaign_changes", ["client_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_campaign_changes_client_id"), table_name="campaign_changes")
    op.drop_index("ix_campaign_changes_campaign", table_name="campaign_changes")
    op.drop_table("campaign_changes")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("updated_at")
