"""A journey lost with its workflow (ended as cancelled) no longer holds its contact's place in
the campaign: enrolling the contact again starts a new journey beside it

Revision ID: 0650_lost_journey_not_live
Revises: 0630_import_batch_lines
"""

import sqlalchemy as sa
from alembic import op

revision = "0650_lost_journey_not_live"
down_revision = "0630_import_batch_lines"
branch_labels = None
depends_on = None

INDEX = "uq_journeys_campaign_contact_live"
BEFORE = "stage <> 'expired'"
# Only lost journeys among the cancelled ones get a successor; the code tells them apart.
AFTER = "stage NOT IN ('expired', 'cancelled')"


def _replace(new: str) -> None:
    op.drop_index(INDEX, table_name="journeys")
    op.create_index(INDEX, "journeys", ["campaign_id", "contact_id"], unique=True,
                    postgresql_where=sa.text(new), sqlite_where=sa.text(new))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    # Fails while a contact has a lost journey and its successor in one campaign, as it must.
    _replace(BEFORE)
