"""edge fleet

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:39:50.081980
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('edges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('applied_version', sa.BigInteger(), nullable=False),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('edge_batches',
    sa.Column('edge_id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['edge_id'], ['edges.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('edge_id', 'batch_id')
    )
    with op.batch_alter_table('edge_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_edge_batches_received_at'), ['received_at'], unique=False)

    op.create_table('registrations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('edge_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('extension_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=16), nullable=False),
    sa.Column('endpoint', sa.String(length=8), nullable=False),
    sa.Column('contact', sa.String(length=512), nullable=False),
    sa.Column('source_address', sa.String(length=64), nullable=False),
    sa.Column('source_port', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['edge_id'], ['edges.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['extension_id'], ['extensions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('edge_id', 'user_id', 'contact')
    )
    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.create_index('ix_registrations_expires', ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_registrations_extension_id'), ['extension_id'], unique=False)
        batch_op.create_index('ix_registrations_tenant', ['tenant_id', 'user_id'], unique=False)

    with op.batch_alter_table('outbox_counter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pruned_through', sa.BigInteger(), server_default='0', nullable=False))



def downgrade():
    with op.batch_alter_table('outbox_counter', schema=None) as batch_op:
        batch_op.drop_column('pruned_through')

    with op.batch_alter_table('registrations', schema=None) as batch_op:
        batch_op.drop_index('ix_registrations_tenant')
        batch_op.drop_index(batch_op.f('ix_registrations_extension_id'))
        batch_op.drop_index('ix_registrations_expires')

    op.drop_table('registrations')
    with op.batch_alter_table('edge_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_edge_batches_received_at'))

    op.drop_table('edge_batches')
    op.drop_table('edges')
