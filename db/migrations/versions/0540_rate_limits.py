"""Rate-limit counters for the public forms

Revision ID: 0540_rate_limits
Revises: 0530_one_time_codes
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0540_rate_limits"
down_revision = "0530_one_time_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_counters")
