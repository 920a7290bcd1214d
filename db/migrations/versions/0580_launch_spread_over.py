"""What a launch spreads its invitations over, so a repeated launch call can show it

Revision ID: 0580_launch_spread_over
Revises: 0570_held_journeys
"""

import sqlalchemy as sa
from alembic import op

revision = "0580_launch_spread_over"
down_revision = "0570_held_journeys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaign_launches", sa.Column("spread_over", sa.Interval(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_launches") as batch:
        batch.drop_column("spread_over")
