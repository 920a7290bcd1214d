"""A contact's journeys are found by an index (ix_journeys_contact_id): the activity feed, the
GDPR export and erasure, a customer's data entry, a withdrawal and each launch batch looked a
contact's journeys up by reading the whole journeys table, every campaign's of every client.

Revision ID: 0995_journey_contacts
Revises: 0980_purpose_names
"""

from alembic import op

revision = "0995_journey_contacts"
down_revision = "0980_purpose_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_journeys_contact_id"), "journeys", ["contact_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_journeys_contact_id"), table_name="journeys")
