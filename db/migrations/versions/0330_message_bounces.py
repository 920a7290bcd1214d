"""message bounces

Revision ID: 0330_message_bounces
Revises: 0320_campaign_launches
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = "0330_message_bounces"
down_revision = "0320_campaign_launches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_bounces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "kind"),
    )
    op.create_index(op.f("ix_message_bounces_client_id"), "message_bounces", ["client_id"])
    op.create_index("ix_message_bounces_campaign", "message_bounces", ["campaign_id", "id"])
    # Bounces reported by the provider's message id (email Message-ID, SMS provider id).
    op.create_index("ix_messages_provider_message_id", "messages",
                    ["client_id", "provider_message_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_provider_message_id", table_name="messages")
    op.drop_index("ix_message_bounces_campaign", table_name="message_bounces")
    op.drop_index(op.f("ix_message_bounces_client_id"), table_name="message_bounces")
    op.drop_table("message_bounces")
