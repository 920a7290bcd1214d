"""webhooks per endpoint: sequence numbers, retry schedule, secret rotation, failing endpoints

Revision ID: 0200_webhooks
Revises: 0100_kyc
Create Date: 2026-11-25 09:56:54.471136
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0200_webhooks"
down_revision = "0100_kyc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("sequence", sa.Integer(), nullable=True))
    op.add_column("webhook_deliveries", sa.Column(
        "round_started_at", db.models.UtcDateTime(timezone=True), nullable=False,
        server_default=sa.func.now()))
    op.add_column("webhook_deliveries", sa.Column(
        "next_attempt_at", db.models.UtcDateTime(timezone=True), nullable=True))
    # Deliveries still pending from before go to their endpoint's queue, due at once.
    op.execute("UPDATE webhook_deliveries SET next_attempt_at = round_started_at "
               "WHERE status = 'pending'")
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                    ["endpoint_id", "status", "next_attempt_at"], unique=False)
    op.add_column("webhook_endpoints", sa.Column("description", sa.String(length=500), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("previous_secret_encrypted", sa.Text(), nullable=True))
    op.add_column("webhook_endpoints", sa.Column(
        "previous_secret_expires_at", db.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column(
        "failing_since", db.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column(
        "last_success_at", db.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column("webhook_endpoints", sa.Column(
        "last_sequence", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_webhook_events_client_created", "webhook_events",
                    ["client_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_events_client_created", table_name="webhook_events")
    op.drop_column("webhook_endpoints", "last_sequence")
    op.drop_column("webhook_endpoints", "last_success_at")
    op.drop_column("webhook_endpoints", "failing_since")
    op.drop_column("webhook_endpoints", "previous_secret_expires_at")
    op.drop_column("webhook_endpoints", "previous_secret_encrypted")
    op.drop_column("webhook_endpoints", "description")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "next_attempt_at")
    op.drop_column("webhook_deliveries", "round_started_at")
    op.drop_column("webhook_deliveries", "sequence")
