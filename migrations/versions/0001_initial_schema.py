"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 12:18:47.555941
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=True),
    sa.Column('actor_key_id', sa.String(length=32), nullable=True),
    sa.Column('actor_name', sa.String(length=200), nullable=True),
    sa.Column('reseller_id', sa.Integer(), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_reseller', ['reseller_id', 'id'], unique=False)
        batch_op.create_index('ix_audit_events_tenant', ['tenant_id', 'id'], unique=False)

    op.create_table('outbox',
    sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_tenant', ['tenant_id', 'version'], unique=False)

    counter = op.create_table('outbox_counter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(counter, [{'id': 1, 'version': 0}])
    op.create_table('resellers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('tenants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trunk_number', sa.String(length=5), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('reseller_id', sa.Integer(), nullable=True),
    sa.Column('ring_mode_code', sa.String(length=8), nullable=False),
    sa.Column('voicemail_code', sa.String(length=8), nullable=False),
    sa.Column('dual_default_ring_mode', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reseller_id'], ['resellers.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('trunk_number')
    )
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tenants_reseller_id'), ['reseller_id'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('reseller_id', sa.Integer(), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reseller_id'], ['resellers.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_id')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_reseller_id'), ['reseller_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('queues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'number')
    )
    op.create_table('ring_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('strategy', sa.String(length=16), nullable=False),
    sa.Column('ring_seconds', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'number')
    )
    op.create_table('tenant_trunks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name')
    )
    op.create_table('extensions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('caller_id_name', sa.String(length=64), nullable=True),
    sa.Column('caller_id_number', sa.String(length=32), nullable=True),
    sa.Column('voicemail_enabled', sa.Boolean(), nullable=False),
    sa.Column('voicemail_pin_hash', sa.String(length=255), nullable=True),
    sa.Column('voicemail_email', sa.String(length=254), nullable=True),
    sa.Column('rings_before_voicemail', sa.Integer(), nullable=False),
    sa.Column('forward_always_enabled', sa.Boolean(), nullable=False),
    sa.Column('forward_always_destination', sa.String(length=32), nullable=True),
    sa.Column('forward_busy_enabled', sa.Boolean(), nullable=False),
    sa.Column('forward_busy_destination', sa.String(length=32), nullable=True),
    sa.Column('forward_no_answer_enabled', sa.Boolean(), nullable=False),
    sa.Column('forward_no_answer_destination', sa.String(length=32), nullable=True),
    sa.Column('class_of_service', sa.String(length=16), nullable=False),
    sa.Column('concurrent_call_limit', sa.Integer(), nullable=False),
    sa.Column('dual_enabled', sa.Boolean(), nullable=False),
    sa.Column('dual_sip_peer', sa.Boolean(), nullable=False),
    sa.Column('dual_external_number', sa.String(length=32), nullable=True),
    sa.Column('dual_trunk_id', sa.Integer(), nullable=True),
    sa.Column('ring_mode', sa.String(length=8), nullable=False),
    sa.Column('password_enc', sa.Text(), nullable=False),
    sa.Column('ha1_realm', sa.String(length=255), nullable=False),
    sa.Column('ha1_md5', sa.String(length=32), nullable=False),
    sa.Column('ha1_sha256', sa.String(length=64), nullable=False),
    sa.Column('remote_ha1_md5', sa.String(length=32), nullable=False),
    sa.Column('remote_ha1_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dual_trunk_id'], ['tenant_trunks.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'number')
    )
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extensions_dual_trunk_id'), ['dual_trunk_id'], unique=False)

    op.create_table('agent_logins',
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sa.String(length=8), nullable=False),
    sa.Column('logged_in_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('extension_id'),
    sa.UniqueConstraint('extension_id', 'endpoint')
    )
    op.create_table('group_subscriptions',
    sa.Column('ring_group_id', sa.Integer(), nullable=False),
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ring_group_id'], ['ring_groups.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ring_group_id', 'extension_id')
    )
    with op.batch_alter_table('group_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_group_subscriptions_extension_id'), ['extension_id'], unique=False)

    op.create_table('queue_agents',
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sa.String(length=8), nullable=False),
    sa.Column('logged_in_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['extension_id', 'endpoint'], ['agent_logins.extension_id', 'agent_logins.endpoint'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['queue_id'], ['queues.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('queue_id', 'extension_id')
    )
    with op.batch_alter_table('queue_agents', schema=None) as batch_op:
        batch_op.create_index('ix_queue_agents_extension', ['extension_id'], unique=False)



def downgrade():
    with op.batch_alter_table('queue_agents', schema=None) as batch_op:
        batch_op.drop_index('ix_queue_agents_extension')

    op.drop_table('queue_agents')
    with op.batch_alter_table('group_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_group_subscriptions_extension_id'))

    op.drop_table('group_subscriptions')
    op.drop_table('agent_logins')
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extensions_dual_trunk_id'))

    op.drop_table('extensions')
    op.drop_table('tenant_trunks')
    op.drop_table('ring_groups')
    op.drop_table('queues')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_api_keys_reseller_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tenants_reseller_id'))

    op.drop_table('tenants')
    op.drop_table('resellers')
    op.drop_table('outbox_counter')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_tenant')

    op.drop_table('outbox')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_tenant')
        batch_op.drop_index('ix_audit_events_reseller')

    op.drop_table('audit_events')
