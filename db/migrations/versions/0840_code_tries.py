"""A code keeps the wrong tries its journey allows (one_time_codes.max_wrong_tries), so the
customer's page tells it locked as the journey does after a campaign's setting changed. Codes
checked before keep none: the page reads the campaign's setting for them, as it did.

Revision ID: 0840_code_tries
Revises: 0800_campaign_changes
"""

import sqlalchemy as sa
from alembic import op

revision = "0840_code_tries"
down_revision = "0800_campaign_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("one_time_codes") as batch:
        batch.add_column(sa.Column("max_wrong_tries", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("one_time_codes") as batch:
        batch.drop_column("max_wrong_tries")
