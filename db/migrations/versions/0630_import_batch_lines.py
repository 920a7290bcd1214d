"""The file line of each contact an import batch wrote, to report rows not enrolled by line

Revision ID: 0630_import_batch_lines
Revises: 0620_json_null_is_sql_null
"""

import sqlalchemy as sa
from alembic import op

revision = "0630_import_batch_lines"
down_revision = "0620_json_null_is_sql_null"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contact_import_batches", sa.Column("lines", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_import_batches") as batch:
        batch.drop_column("lines")
