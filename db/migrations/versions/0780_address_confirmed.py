"""An address the customer confirmed or entered in a verified journey is marked
(contact_addresses.confirmed_at): a campaign that collects addresses has nothing to ask them

Revision ID: 0780_address_confirmed
Revises: 0770_registry
"""

import sqlalchemy as sa
from alembic import op

revision = "0780_address_confirmed"
down_revision = "0770_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contact_addresses") as batch:
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_addresses") as batch:
        batch.drop_column("confirmed_at")
