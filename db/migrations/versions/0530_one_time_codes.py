"""One-time codes for mobile verification (stored as HMACs)

Revision ID: 0530_one_time_codes
Revises: 0520_consent_documents
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0530_one_time_codes"
down_revision = "0520_consent_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "one_time_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("expires_at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("wrong_tries", sa.Integer(), nullable=False),
        sa.Column("sent_at", db.models.UtcDateTime(timezone=True), nullable=True),
        sa.Column("used_at", db.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "step"),
    )
    op.create_index("ix_one_time_codes_recipient", "one_time_codes", ["recipient"])


def downgrade() -> None:
    op.drop_index("ix_one_time_codes_recipient", table_name="one_time_codes")
    op.drop_table("one_time_codes")
