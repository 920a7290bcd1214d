"""claims of payment-reminder journeys

Revision ID: 0350_journey_claims
Revises: 0340_suppressions
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0350_journey_claims'
down_revision = '0340_suppressions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('journeys') as batch:
        batch.add_column(sa.Column('claim', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('paid_at', db.models.UtcDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('journeys') as batch:
        batch.drop_column('paid_at')
        batch.drop_column('claim')
