"""campaign launches: the launch table, the journey's launch, one live journey per contact

Revision ID: 0320_campaign_launches
Revises: 0310_branding
Create Date: 2026-11-25 12:30:00
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0320_campaign_launches'
down_revision = "0310_branding"
branch_labels = None
depends_on = None

# Names the unnamed unique constraint of 0001 so batch mode (SQLite) can drop it.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}
LIVE = "stage <> 'expired'"


def upgrade() -> None:
    op.create_table('campaign_launches',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('campaign_id', sa.Uuid(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('selection', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('selected', sa.Integer(), nullable=True),
    sa.Column('started', sa.Integer(), nullable=True),
    sa.Column('skipped', sa.Integer(), nullable=True),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'number')
    )
    op.create_index(op.f('ix_campaign_launches_campaign_id'), 'campaign_launches', ['campaign_id'], unique=False)
    op.create_index(op.f('ix_campaign_launches_client_id'), 'campaign_launches', ['client_id'], unique=False)
    unique_name = "journeys_campaign_id_contact_id_key"
    if op.get_bind().dialect.name == "sqlite":
        unique_name = "uq_journeys_campaign_id_contact_id"
    with op.batch_alter_table('journeys', naming_convention=NAMING) as batch:
        batch.add_column(sa.Column('launch_id', sa.String(length=200), nullable=True))
        batch.drop_constraint(unique_name, type_='unique')
    op.create_index(op.f('ix_journeys_launch_id'), 'journeys', ['launch_id'], unique=False)
    op.create_index('uq_journeys_campaign_contact_live', 'journeys', ['campaign_id', 'contact_id'],
                    unique=True, postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index('uq_journeys_campaign_contact_live', table_name='journeys',
                  postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))
    op.drop_index(op.f('ix_journeys_launch_id'), table_name='journeys')
    # Fails while a contact has two journeys in one campaign, as it must.
    with op.batch_alter_table('journeys', naming_convention=NAMING) as batch:
        batch.create_unique_constraint('journeys_campaign_id_contact_id_key',
                                       ['campaign_id', 'contact_id'])
        batch.drop_column('launch_id')
    op.drop_index(op.f('ix_campaign_launches_client_id'), table_name='campaign_launches')
    op.drop_index(op.f('ix_campaign_launches_campaign_id'), table_name='campaign_launches')
    op.drop_table('campaign_launches')
