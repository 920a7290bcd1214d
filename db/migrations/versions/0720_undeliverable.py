"""A contact point or postal address a hard bounce refused is marked undeliverable
(contact_points / contact_addresses.undeliverable_since and _reason), so later messages skip it

Revision ID: 0720_undeliverable
Revises: 0710_launch_cancelled_because
"""

import sqlalchemy as sa
from alembic import op

revision = "0720_undeliverable"
down_revision = "0710_launch_cancelled_because"
branch_labels = None
depends_on = None

TABLES = ("contact_points", "contact_addresses")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("undeliverable_since", sa.DateTime(timezone=True),
                                       nullable=True))
            batch.add_column(sa.Column("undeliverable_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("undeliverable_reason")
            batch.drop_column("undeliverable_since")
