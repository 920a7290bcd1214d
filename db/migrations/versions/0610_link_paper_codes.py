"""Short codes printed on letters, to reach a personal link by typing

Revision ID: 0610_link_paper_codes
Revises: 0600_kyc_workflow_profile
"""

import sqlalchemy as sa
from alembic import op

revision = "0610_link_paper_codes"
down_revision = "0600_kyc_workflow_profile"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("link_tokens") as batch:
        batch.add_column(sa.Column("paper_code_sha256", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_link_tokens_paper_code_sha256", ["paper_code_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("link_tokens") as batch:
        batch.drop_constraint("uq_link_tokens_paper_code_sha256", type_="unique")
        batch.drop_column("paper_code_sha256")
