"""A claim remembers when it was reported paid (campaign_claims.paid_at), whichever of its
contact's journeys the payment was reported on; existing claims take the first payment their
contact's journeys recorded

Revision ID: 0700_claim_paid_at
Revises: 0680_campaign_claims
"""

import sqlalchemy as sa
from alembic import op

revision = "0700_claim_paid_at"
down_revision = "0680_campaign_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_claims") as batch:
        batch.add_column(sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True))
    claims = sa.table("campaign_claims", sa.column("campaign_id", sa.Uuid()),
                      sa.column("reference", sa.String()), sa.column("contact_id", sa.Uuid()),
                      sa.column("paid_at", sa.DateTime(timezone=True)))
    journeys = sa.table("journeys", sa.column("campaign_id", sa.Uuid()),
                        sa.column("contact_id", sa.Uuid()), sa.column("claim", sa.JSON()),
                        sa.column("paid_at", sa.DateTime(timezone=True)))
    # Only the owner's journeys count: a duplicate another contact was enrolled with before
    # 0680 is not the claim the row stands for.
    op.execute(claims.update().values(paid_at=sa.select(sa.func.min(journeys.c.paid_at)).where(
        journeys.c.campaign_id == claims.c.campaign_id,
        journeys.c.contact_id == claims.c.contact_id,
        journeys.c.claim["reference"].as_string() == claims.c.reference).scalar_subquery()))


def downgrade() -> None:
    with op.batch_alter_table("campaign_claims") as batch:
        batch.drop_column("paid_at")
