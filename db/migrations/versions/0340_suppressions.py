"""suppression list of erased contacts' emails and phones (keyed digests only)

Revision ID: 0340_suppressions
Revises: 0330_message_bounces
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0340_suppressions'
down_revision = '0330_message_bounces'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suppressions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'digest')
    )
    op.create_index(op.f('ix_suppressions_client_id'), 'suppressions', ['client_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_suppressions_client_id'), table_name='suppressions')
    op.drop_table('suppressions')
