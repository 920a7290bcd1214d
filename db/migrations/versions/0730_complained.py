"""A contact point whose recipient reported our message as spam (a complaint) is marked
(contact_points.complained_since), so only mandatory and financial messages go to it

Revision ID: 0730_complained
Revises: 0720_undeliverable
"""

import sqlalchemy as sa
from alembic import op

revision = "0730_complained"
down_revision = "0720_undeliverable"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_points") as batch:
        batch.add_column(sa.Column("complained_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_points") as batch:
        batch.drop_column("complained_since")
