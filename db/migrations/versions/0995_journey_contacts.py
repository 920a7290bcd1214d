"""A contact's journeys, and what a contact's or journey's erasure reaches, are found by an
index: the activity feed, the GDPR export, anonymisation and termination, a customer's data
entry, a withdrawal and each launch batch read the whole of journeys, consent_displays,
client_messages and message_bounces to find one contact's or journey's rows, and a
termination's cascade read consent_events once per consent display deleted.

Revision ID: 0995_journey_contacts
Revises: 0980_purpose_names
"""

from alembic import op

revision = "0995_journey_contacts"
down_revision = "0980_purpose_names"
branch_labels = None
depends_on = None

INDEXED = (("journeys", "contact_id"), ("consent_displays", "contact_id"),
           ("consent_displays", "journey_id"), ("consent_events", "display_id"),
           ("client_messages", "contact_id"), ("message_bounces", "journey_id"))


def upgrade() -> None:
    for table, column in INDEXED:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def downgrade() -> None:
    for table, column in reversed(INDEXED):
        op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
