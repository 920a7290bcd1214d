"""An uploaded KYC document remembers when its upload was answered, its judgment waited for
(kyc_documents.answered_at): until then a retry with the same Idempotency-Key is told the
upload is in progress; documents stored before were all answered. A launch keeps its final
count of cancelled journeys with its end (campaign_launches.journeys_cancelled).

Revision ID: 0740_answered_and_cancelled
Revises: 0730_complained
"""

import sqlalchemy as sa
from alembic import op

revision = "0740_answered_and_cancelled"
down_revision = "0730_complained"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kyc_documents") as batch:
        batch.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE kyc_documents SET answered_at = uploaded_at")
    with op.batch_alter_table("campaign_launches") as batch:
        batch.add_column(sa.Column("journeys_cancelled", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_launches") as batch:
        batch.drop_column("journeys_cancelled")
    with op.batch_alter_table("kyc_documents") as batch:
        batch.drop_column("answered_at")
