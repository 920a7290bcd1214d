"""GDPR consent state per contact and the client's consequence of a rejection

Revision ID: 0510_gdpr
Revises: 0500_consent
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0510_gdpr"
down_revision = "0500_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("gdpr_consequence", sa.String(length=20), nullable=False,
                                       server_default="full_functionality"))
    op.add_column("contacts", sa.Column("gdpr_consent_state", sa.String(length=12),
                                        nullable=False, server_default="pending"))
    op.add_column("contacts", sa.Column("gdpr_consent_updated_at",
                                        db.models.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("gdpr_consent_updated_at")
        batch.drop_column("gdpr_consent_state")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("gdpr_consequence")
