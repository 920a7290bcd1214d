"""Every change of a client's contact settings is kept with who made it and the old and new
values (contact_settings_changes), like a campaign's changes.

Revision ID: 0850_contact_settings_changes
Revises: 0840_code_tries
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0850_contact_settings_changes"
down_revision = "0840_code_tries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_settings_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=100), nullable=False),
        sa.Column("changes", sa.JSON(none_as_null=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_contact_settings_changes_client_id"), "contact_settings_changes",
                    ["client_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_contact_settings_changes_client_id"),
                  table_name="contact_settings_changes")
    op.drop_table("contact_settings_changes")
