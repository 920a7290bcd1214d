"""A consent purpose has a name per language beside its one `name` (purposes.names, e.g.
{"nl": "Nieuwsbrief"}), so that a Dutch or German customer reads it in their language; the
purposes there are have none.

Revision ID: 0980_purpose_names
Revises: 0930_idempotent_requests
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0980_purpose_names"
down_revision = "0930_idempotent_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("purposes") as batch:
        batch.add_column(sa.Column("names", db.models.JSON_OR_NULL, nullable=False,
                                   server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("purposes") as batch:
        batch.drop_column("names")
