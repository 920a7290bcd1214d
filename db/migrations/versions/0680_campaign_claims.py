"""A claim reference is owed by one contact per campaign (campaign_claims); journeys enrolled
before with a reference another contact already had keep it, the reference now belonging to
the contact enrolled with it first

Revision ID: 0680_campaign_claims
Revises: 0650_lost_journey_not_live
"""

import sqlalchemy as sa
from alembic import op

revision = "0680_campaign_claims"
down_revision = "0650_lost_journey_not_live"
branch_labels = None
depends_on = None


def upgrade() -> None:
    claims = op.create_table(
        "campaign_claims",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "reference"),
    )
    op.create_index("ix_campaign_claims_client_id", "campaign_claims", ["client_id"])
    op.create_index("ix_campaign_claims_contact_id", "campaign_claims", ["contact_id"])
    journeys = sa.table("journeys", sa.column("campaign_id", sa.Uuid()),
                        sa.column("client_id", sa.Uuid()), sa.column("contact_id", sa.Uuid()),
                        sa.column("claim", sa.JSON()), sa.column("created_at", sa.DateTime()))
    # Existing duplicates are left on their journeys (nothing is rewritten); the reference goes
    # to the contact enrolled with it first, so only another contact's new enrolment is refused.
    owners: dict[tuple, dict] = {}
    for row in op.get_bind().execute(
            sa.select(journeys).where(journeys.c.claim.is_not(None))
            .order_by(journeys.c.created_at)):
        reference = (row.claim or {}).get("reference")
        if reference:
            owners.setdefault((row.campaign_id, reference), {
                "campaign_id": row.campaign_id, "reference": reference,
                "client_id": row.client_id, "contact_id": row.contact_id})
    if owners:
        op.bulk_insert(claims, list(owners.values()))


def downgrade() -> None:
    op.drop_table("campaign_claims")
