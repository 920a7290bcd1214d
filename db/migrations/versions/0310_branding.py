"""branding per client and uploaded logos

Revision ID: 0310_branding
Revises: 0300_contacts
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0310_branding"
down_revision = "0300_contacts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite (the dev default) rebuilds the table to alter it.
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("branding", sa.JSON(), nullable=True))
    op.create_table(
        "brand_logos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", db.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "sha256"),
    )
    op.create_index(op.f("ix_brand_logos_client_id"), "brand_logos", ["client_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_brand_logos_client_id"), table_name="brand_logos")
    op.drop_table("brand_logos")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("branding")
