"""consent ledger, purposes, legal texts, message policies

Revision ID: 0500_consent
Revises: 0001
Create Date: 2026-11-25 09:56:38.709085
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0500_consent'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('legal_texts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('purpose_key', sa.String(length=63), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'purpose_key', 'language', 'version')
    )
    op.create_index(op.f('ix_legal_texts_client_id'), 'legal_texts', ['client_id'], unique=False)
    op.create_table('message_policies',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('message_type', sa.String(length=63), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('purpose_key', sa.String(length=63), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'message_type')
    )
    op.create_index(op.f('ix_message_policies_client_id'), 'message_policies', ['client_id'], unique=False)
    op.create_table('purposes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('key', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'key')
    )
    op.create_index(op.f('ix_purposes_client_id'), 'purposes', ['client_id'], unique=False)
    op.create_table('client_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('message_type', sa.String(length=63), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_reason', sa.String(length=300), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=True),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'idempotency_key')
    )
    op.create_index(op.f('ix_client_messages_client_id'), 'client_messages', ['client_id'], unique=False)
    op.add_column('clients', sa.Column('household_rule', sa.String(length=10), nullable=False,
                                       server_default='reject'))
    op.add_column('consent_events', sa.Column('actor', sa.String(length=200), nullable=True))
    op.add_column('consent_events', sa.Column('shown_in', sa.String(length=200), nullable=True))
    # Batch mode: SQLite (the dev default) cannot alter columns or add constraints in place.
    with op.batch_alter_table('link_tokens') as batch:
        batch.add_column(sa.Column('contact_id', sa.Uuid(), nullable=True))
        batch.add_column(sa.Column('scope', sa.JSON(), nullable=True))
        batch.alter_column('journey_id', existing_type=sa.Uuid(), nullable=True)
        batch.create_index('ix_link_tokens_contact_id', ['contact_id'], unique=False)
        batch.create_foreign_key('fk_link_tokens_contact_id', 'contacts', ['contact_id'], ['id'],
                                 ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('link_tokens') as batch:
        batch.drop_constraint('fk_link_tokens_contact_id', type_='foreignkey')
        batch.drop_index('ix_link_tokens_contact_id')
        batch.alter_column('journey_id', existing_type=sa.Uuid(), nullable=False)
        batch.drop_column('scope')
        batch.drop_column('contact_id')
    op.drop_column('consent_events', 'shown_in')
    op.drop_column('consent_events', 'actor')
    op.drop_column('clients', 'household_rule')
    for table in ('client_messages', 'purposes', 'message_policies', 'legal_texts'):
        op.drop_index(op.f(f'ix_{table}_client_id'), table_name=table)
        op.drop_table(table)
