"""KYC definitions, profiles, documents and events

Revision ID: 0100_kyc
Revises: 0560_consent_displays
Create Date: 2026-11-25 09:55:50.161874
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0100_kyc'
down_revision = '0560_consent_displays'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('kyc_definitions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('requires_verification', sa.Boolean(), nullable=False),
    sa.Column('max_credit_limit', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('expires_after', sa.Interval(), nullable=True),
    sa.Column('remind_before', sa.Interval(), nullable=True),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'level'),
    sa.UniqueConstraint('client_id', 'name')
    )
    op.create_index(op.f('ix_kyc_definitions_client_id'), 'kyc_definitions', ['client_id'], unique=False)
    op.create_table('kyc_documents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('document_type', sa.String(length=40), nullable=False),
    sa.Column('number', sa.String(length=100), nullable=True),
    sa.Column('expires_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('storage_key', sa.String(length=300), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=True),
    sa.Column('source', sa.String(length=30), nullable=False),
    sa.Column('uploaded_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_kyc_documents_client_id'), 'kyc_documents', ['client_id'], unique=False)
    op.create_index('ix_kyc_documents_contact', 'kyc_documents', ['contact_id', 'document_type'], unique=False)
    op.create_table('kyc_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('step', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=50), nullable=False),
    sa.Column('at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('contact_id', 'step')
    )
    op.create_index(op.f('ix_kyc_events_client_id'), 'kyc_events', ['client_id'], unique=False)
    op.create_index(op.f('ix_kyc_events_contact_id'), 'kyc_events', ['contact_id'], unique=False)
    op.create_table('kyc_profiles',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('definition_id', sa.Uuid(), nullable=False),
    sa.Column('workflow_id', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=30), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('assigned_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('expiry_cause', sa.String(length=30), nullable=True),
    sa.Column('verified_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['definition_id'], ['kyc_definitions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('contact_id'),
    sa.UniqueConstraint('workflow_id')
    )
    op.create_index(op.f('ix_kyc_profiles_client_id'), 'kyc_profiles', ['client_id'], unique=False)
    op.create_index('ix_kyc_profiles_expiry', 'kyc_profiles', ['client_id', 'expires_at'], unique=False)
    op.create_index(op.f('ix_kyc_profiles_state'), 'kyc_profiles', ['state'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_kyc_profiles_state'), table_name='kyc_profiles')
    op.drop_index('ix_kyc_profiles_expiry', table_name='kyc_profiles')
    op.drop_index(op.f('ix_kyc_profiles_client_id'), table_name='kyc_profiles')
    op.drop_table('kyc_profiles')
    op.drop_index(op.f('ix_kyc_events_contact_id'), table_name='kyc_events')
    op.drop_index(op.f('ix_kyc_events_client_id'), table_name='kyc_events')
    op.drop_table('kyc_events')
    op.drop_index('ix_kyc_documents_contact', table_name='kyc_documents')
    op.drop_index(op.f('ix_kyc_documents_client_id'), table_name='kyc_documents')
    op.drop_table('kyc_documents')
    op.drop_index(op.f('ix_kyc_definitions_client_id'), table_name='kyc_definitions')
    op.drop_table('kyc_definitions')
