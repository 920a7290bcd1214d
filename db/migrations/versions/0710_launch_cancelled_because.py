"""A launch remembers why it started nothing when that was its campaign's doing
(campaign_launches.cancelled_because: a scheduled launch due while its campaign was paused or
archived)

Revision ID: 0710_launch_cancelled_because
Revises: 0700_claim_paid_at
"""

import sqlalchemy as sa
from alembic import op

revision = "0710_launch_cancelled_because"
down_revision = "0700_claim_paid_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_launches") as batch:
        batch.add_column(sa.Column("cancelled_because", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_launches") as batch:
        batch.drop_column("cancelled_because")
