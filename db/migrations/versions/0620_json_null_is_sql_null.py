"""JSON columns store None as SQL NULL: rows written before hold the JSON text 'null'

Revision ID: 0620_json_null_is_sql_null
Revises: 0610_link_paper_codes
"""

from alembic import op

revision = "0620_json_null_is_sql_null"
down_revision = "0610_link_paper_codes"
branch_labels = None
depends_on = None

NULLABLE_JSON = [("clients", "branding"), ("audit_entries", "detail"), ("journeys", "collected"),
                 ("journeys", "claim"), ("kyc_events", "detail"),
                 ("kyc_profiles", "workflow_profile"), ("journey_events", "detail"),
                 ("link_tokens", "scope")]


def upgrade() -> None:
    for table, column in NULLABLE_JSON:
        op.execute(f"UPDATE {table} SET {column} = NULL WHERE CAST({column} AS TEXT) = 'null'")


def downgrade() -> None:
    # Both mean "none"; nothing reads the difference.
    pass
