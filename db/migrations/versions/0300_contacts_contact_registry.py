"""contact registry

Revision ID: 0300_contacts
Revises: 0200_webhooks
Create Date: 2026-11-25 09:55:04.591868
"""

from alembic import op
import sqlalchemy as sa
import db.models


revision = '0300_contacts'
down_revision = '0200_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor_type', sa.String(length=20), nullable=False),
    sa.Column('actor_id', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_entries_actor', 'audit_entries', ['client_id', 'actor_type', 'actor_id', 'id'], unique=False)
    op.create_index('ix_audit_entries_contact', 'audit_entries', ['client_id', 'contact_id', 'id'], unique=False)
    op.create_table('contact_settings',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('person_rule', sa.String(length=500), nullable=True),
    sa.Column('company_rule', sa.String(length=500), nullable=True),
    sa.Column('default_region', sa.String(length=2), nullable=False),
    sa.Column('address_types', sa.JSON(), nullable=False),
    sa.Column('anonymise_inactive_after_days', sa.Integer(), nullable=True),
    sa.Column('updated_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('contact_addresses',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=30), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('line1', sa.String(length=300), nullable=False),
    sa.Column('line2', sa.String(length=300), nullable=True),
    sa.Column('postal_code', sa.String(length=20), nullable=True),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_contact_addresses_client_id'), 'contact_addresses', ['client_id'], unique=False)
    op.create_index(op.f('ix_contact_addresses_contact_id'), 'contact_addresses', ['contact_id'], unique=False)
    op.create_index('uq_contact_addresses_active_type', 'contact_addresses', ['contact_id', 'type'], unique=True, postgresql_where=sa.text('active'), sqlite_where=sa.text('active'))
    op.create_index('uq_contact_addresses_primary', 'contact_addresses', ['contact_id'], unique=True, postgresql_where=sa.text('is_primary'), sqlite_where=sa.text('is_primary'))
    op.create_table('contact_identity_keys',
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', 'key')
    )
    op.create_index(op.f('ix_contact_identity_keys_contact_id'), 'contact_identity_keys', ['contact_id'], unique=False)
    op.create_table('contact_imports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('delimiter', sa.String(length=1), nullable=False),
    sa.Column('columns', sa.JSON(), nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Uuid(), nullable=True),
    sa.Column('actor_id', sa.String(length=100), nullable=False),
    sa.Column('enrolled', sa.Integer(), nullable=True),
    sa.Column('not_enrolled', sa.Integer(), nullable=True),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_contact_imports_client_id'), 'contact_imports', ['client_id'], unique=False)
    op.create_table('contact_labels',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('contact_id', 'kind', 'value')
    )
    op.create_index(op.f('ix_contact_labels_client_id'), 'contact_labels', ['client_id'], unique=False)
    op.create_index('ix_contact_labels_lookup', 'contact_labels', ['client_id', 'kind', 'value'], unique=False)
    op.create_table('identification_media',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('contact_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('lookup_sha256', sa.String(length=64), nullable=False),
    sa.Column('display', sa.String(length=320), nullable=False),
    sa.Column('created_at', db.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'kind', 'lookup_sha256')
    )
    op.create_index(op.f('ix_identification_media_client_id'), 'identification_media', ['client_id'], unique=False)
    op.create_index(op.f('ix_identification_media_contact_id'), 'identification_media', ['contact_id'], unique=False)
    op.create_table('contact_import_batches',
    sa.Column('import_id', sa.Uuid(), nullable=False),
    sa.Column('batch_no', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('contact_ids', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['contact_imports.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'batch_no')
    )
    op.create_table('contact_import_errors',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('import_id', sa.Uuid(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('field', sa.String(length=100), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['contact_imports.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('import_id', 'line', 'field')
    )
    op.create_index(op.f('ix_contact_import_errors_import_id'), 'contact_import_errors', ['import_id'], unique=False)
    op.add_column('contact_points', sa.Column('label', sa.String(length=30), nullable=True))
    op.add_column('contacts', sa.Column('date_of_birth', sa.Date(), nullable=True))
    op.add_column('contacts', sa.Column('id_number', sa.String(length=100), nullable=True))
    op.add_column('contacts', sa.Column('id_expires_on', sa.Date(), nullable=True))
    op.add_column('contacts', sa.Column('passport_number', sa.String(length=100), nullable=True))
    op.add_column('contacts', sa.Column('passport_expires_on', sa.Date(), nullable=True))
    op.add_column('contacts', sa.Column('ssn', sa.String(length=100), nullable=True))
    op.add_column('contacts', sa.Column('industry', sa.String(length=100), nullable=True))
    op.add_column('contacts', sa.Column('industry_sector', sa.String(length=100), nullable=True))
    op.add_column('contacts', sa.Column('engagement_state', sa.String(length=20), server_default='never_engaged', nullable=False))
    op.add_column('contacts', sa.Column('engaged_at', db.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column('contacts', sa.Column('anonymised_at', db.models.UtcDateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_contacts_updated_at'), 'contacts', ['updated_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_contacts_updated_at'), table_name='contacts')
    op.drop_column('contacts', 'anonymised_at')
    op.drop_column('contacts', 'engaged_at')
    op.drop_column('contacts', 'engagement_state')
    op.drop_column('contacts', 'industry_sector')
    op.drop_column('contacts', 'industry')
    op.drop_column('contacts', 'ssn')
    op.drop_column('contacts', 'passport_expires_on')
    op.drop_column('contacts', 'passport_number')
    op.drop_column('contacts', 'id_expires_on')
    op.drop_column('contacts', 'id_number')
    op.drop_column('contacts', 'date_of_birth')
    op.drop_column('contact_points', 'label')
    op.drop_index(op.f('ix_contact_import_errors_import_id'), table_name='contact_import_errors')
    op.drop_table('contact_import_errors')
    op.drop_table('contact_import_batches')
    op.drop_index(op.f('ix_identification_media_contact_id'), table_name='identification_media')
    op.drop_index(op.f('ix_identification_media_client_id'), table_name='identification_media')
    op.drop_table('identification_media')
    op.drop_index('ix_contact_labels_lookup', table_name='contact_labels')
    op.drop_index(op.f('ix_contact_labels_client_id'), table_name='contact_labels')
    op.drop_table('contact_labels')
    op.drop_index(op.f('ix_contact_imports_client_id'), table_name='contact_imports')
    op.drop_table('contact_imports')
    op.drop_index(op.f('ix_contact_identity_keys_contact_id'), table_name='contact_identity_keys')
    op.drop_table('contact_identity_keys')
    op.drop_index('uq_contact_addresses_primary', table_name='contact_addresses', postgresql_where=sa.text('is_primary'), sqlite_where=sa.text('is_primary'))
    op.drop_index('uq_contact_addresses_active_type', table_name='contact_addresses', postgresql_where=sa.text('active'), sqlite_where=sa.text('active'))
    op.drop_index(op.f('ix_contact_addresses_contact_id'), table_name='contact_addresses')
    op.drop_index(op.f('ix_contact_addresses_client_id'), table_name='contact_addresses')
    op.drop_table('contact_addresses')
    op.drop_table('contact_settings')
    op.drop_index('ix_audit_entries_contact', table_name='audit_entries')
    op.drop_index('ix_audit_entries_actor', table_name='audit_entries')
    op.drop_table('audit_entries')
