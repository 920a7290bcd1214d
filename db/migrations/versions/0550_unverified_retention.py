"""How long a client keeps data entered but never verified

Revision ID: 0550_unverified_retention
Revises: 0540_rate_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "0550_unverified_retention"
down_revision = "0540_rate_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("unverified_retention_days", sa.Integer(), nullable=False,
                                       server_default="30"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("unverified_retention_days")
