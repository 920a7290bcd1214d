"""A contact's own consent form document behind a GDPR consent decision

Revision ID: 0520_consent_documents
Revises: 0510_gdpr
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0520_consent_documents"
down_revision = "0510_gdpr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("consent_event_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["consent_event_id"], ["consent_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consent_event_id"),
    )
    op.create_index("ix_consent_documents_client_id", "consent_documents", ["client_id"])
    op.create_index("ix_consent_documents_contact_id", "consent_documents", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_consent_documents_contact_id", table_name="consent_documents")
    op.drop_index("ix_consent_documents_client_id", table_name="consent_documents")
    op.drop_table("consent_documents")
