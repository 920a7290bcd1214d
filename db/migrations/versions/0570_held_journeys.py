"""Journeys whose campaign message waits for the paused campaign to resume

Revision ID: 0570_held_journeys
Revises: 0350_journey_claims
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0570_held_journeys"
down_revision = "0350_journey_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("journeys", sa.Column("held_since", db.models.UtcDateTime(timezone=True),
                                        nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("held_since")
