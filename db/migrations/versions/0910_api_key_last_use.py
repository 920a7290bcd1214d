"""An API key remembers when it was last used (api_keys.last_used_at, to the minute), so that
an operator replacing a key sees whether the client's systems still send the old one before
revoking it.

Revision ID: 0910_api_key_last_use
Revises: 0900_document_expiry_days
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0910_api_key_last_use"
down_revision = "0900_document_expiry_days"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("last_used_at", db.models.UtcDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
