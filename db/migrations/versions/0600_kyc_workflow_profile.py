"""The KYC workflow's own record of each profile, to start a stopped workflow again from it

Revision ID: 0600_kyc_workflow_profile
Revises: 0590_messages_by_recipient
"""

import sqlalchemy as sa
from alembic import op

revision = "0600_kyc_workflow_profile"
down_revision = "0590_messages_by_recipient"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kyc_profiles", sa.Column("workflow_profile", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kyc_profiles") as batch:
        batch.drop_column("workflow_profile")
