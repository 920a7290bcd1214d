"""The household rule looks a confirmed email or mobile up among all of a client's contacts, an
email in any letter case (lower(value)): indexed, so that each confirmation does not read every
contact point of the client.

Revision ID: 0890_contact_point_values
Revises: 0880_message_mailboxes
"""

import sqlalchemy as sa
from alembic import op

revision = "0890_contact_point_values"
down_revision = "0880_message_mailboxes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_points_value", "contact_points",
                    ["client_id", sa.text("lower(value)")])


def downgrade() -> None:
    op.drop_index("ix_contact_points_value", table_name="contact_points")
