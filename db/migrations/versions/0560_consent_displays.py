"""consent displays

Revision ID: 0560_consent_displays
Revises: 0550_unverified_retention
Create Date: 2026-11-25 10:52:09.307837
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0560_consent_displays'
down_revision = '0550_unverified_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consent_displays',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('journey_id', sa.Uuid(), nullable=True),
    sa.Column('purpose', sa.String(length=100), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('shown_in', sa.String(length=200), nullable=False),
    sa.Column('legal_text_language', sa.String(length=8), nullable=False),
    sa.Column('legal_text_version', sa.String(length=50), nullable=False),
    sa.Column('legal_text_sha256', sa.String(length=64), nullable=False),
    sa.Column('shown_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_consent_displays_client_id'), 'consent_displays', ['client_id'], unique=False)
    op.create_index('ix_consent_displays_notice', 'consent_displays', ['client_id', 'purpose', 'legal_text_version', 'legal_text_language'], unique=False)
    # Batch mode: SQLite (the dev default) cannot add a constraint in place.
    with op.batch_alter_table('consent_events') as batch:
        batch.add_column(sa.Column('display_id', sa.Uuid(), nullable=True))
        batch.create_foreign_key('fk_consent_events_display_id', 'consent_displays',
                                 ['display_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    # WARNING: constraint name is None; this directive will fail as
    # rendered.  Add a name, or use a naming convention; see
    # https://alembic.sqlalchemy.org/en/latest/naming.html
    with op.batch_alter_table('consent_events') as batch:
        batch.drop_constraint('fk_consent_events_display_id', type_='foreignkey')
        batch.drop_column('display_id')
    op.drop_index('ix_consent_displays_notice', table_name='consent_displays')
    op.drop_index(op.f('ix_consent_displays_client_id'), table_name='consent_displays')
    op.drop_table('consent_displays')
