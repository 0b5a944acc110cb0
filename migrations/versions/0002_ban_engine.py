"""ban engine

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:31:04.458002
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    policy = op.create_table('ban_policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('max_retry', sa.Integer(), nullable=False),
    sa.Column('find_time', sa.Integer(), nullable=False),
    sa.Column('ban_time', sa.Integer(), nullable=False),
    sa.Column('ban_time_factor', sa.Float(), nullable=False),
    sa.Column('max_ban_time', sa.Integer(), nullable=False),
    sa.Column('scan_user_ids', sa.Integer(), nullable=False),
    sa.Column('ipv6_prefix', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(policy, [{
        'id': 1, 'max_retry': 5, 'find_time': 600, 'ban_time': 3600, 'ban_time_factor': 2.0,
        'max_ban_time': 604800, 'scan_user_ids': 3, 'ipv6_prefix': 64,
    }])
    op.create_table('bans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=True),
    sa.Column('manual', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('offence', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.String(length=200), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('user_ids', sa.JSON(), nullable=False),
    sa.Column('edges', sa.JSON(), nullable=False),
    sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unattributed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bans', schema=None) as batch_op:
        batch_op.create_index('ix_bans_source', ['source', 'until'], unique=False)
        batch_op.create_index('ix_bans_until', ['until'], unique=False)

    op.create_table('failure_windows',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('recent', sa.JSON(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_ids', sa.JSON(), nullable=False),
    sa.Column('edges', sa.JSON(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('tenant_ids', sa.JSON(), nullable=False),
    sa.Column('unattributed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )
    with op.batch_alter_table('failure_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_windows_last_at'), ['last_at'], unique=False)

    op.create_table('offenders',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('offences', sa.Integer(), nullable=False),
    sa.Column('last_banned_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('offenders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offenders_last_banned_until'), ['last_banned_until'], unique=False)

    op.create_table('source_registrations',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'user_id')
    )
    with op.batch_alter_table('source_registrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_registrations_valid_until'), ['valid_until'], unique=False)

    op.create_table('ban_tenants',
    sa.Column('ban_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ban_id'], ['bans.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ban_id', 'tenant_id')
    )
    with op.batch_alter_table('ban_tenants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ban_tenants_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('trusted_networks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'cidr')
    )
    with op.batch_alter_table('trusted_networks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trusted_networks_tenant_id'), ['tenant_id'], unique=False)



def downgrade():
    with op.batch_alter_table('trusted_networks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trusted_networks_tenant_id'))

    op.drop_table('trusted_networks')
    with op.batch_alter_table('ban_tenants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ban_tenants_tenant_id'))

    op.drop_table('ban_tenants')
    with op.batch_alter_table('source_registrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_registrations_valid_until'))

    op.drop_table('source_registrations')
    with op.batch_alter_table('offenders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offenders_last_banned_until'))

    op.drop_table('offenders')
    with op.batch_alter_table('failure_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_windows_last_at'))

    op.drop_table('failure_windows')
    with op.batch_alter_table('bans', schema=None) as batch_op:
        batch_op.drop_index('ix_bans_until')
        batch_op.drop_index('ix_bans_source')

    op.drop_table('bans')
    op.drop_table('ban_policy')
