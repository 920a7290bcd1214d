"""A campaign remembers the Idempotency-Key it was created with (campaigns.idempotency_key,
unique per client) and the SHA-256 of that request, so that a client retrying a lost answer
gets the same campaign, not a second one.

Revision ID: 0860_campaign_idempotency
Revises: 0850_contact_settings_changes
"""

import sqlalchemy as sa
from alembic import op

revision = "0860_campaign_idempotency"
down_revision = "0850_contact_settings_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(length=64), nullable=True))
        batch.create_unique_constraint("campaigns_client_id_idempotency_key_key",
                                       ["client_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_constraint("campaigns_client_id_idempotency_key_key", type_="unique")
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")
