"""Messages by recipient whatever its letter case, for the daily cap of verification messages

Revision ID: 0590_messages_by_recipient
Revises: 0580_launch_spread_over
"""

import sqlalchemy as sa
from alembic import op

revision = "0590_messages_by_recipient"
down_revision = "0580_launch_spread_over"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_recipient", "messages", [sa.text("lower(recipient)"), "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_recipient", table_name="messages")
