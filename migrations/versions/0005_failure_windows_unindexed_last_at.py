"""failure windows without an index on last_at

Every failure an edge reports rewrites its source's last_at. With an index on it, each of
those updates also moves an index entry (and on PostgreSQL it cannot be a HOT update, so
every index of the table gets a new entry): during an attack that is a large share of the
ingestion's cost. The index served only the once-a-minute purge and the page of GET
/auth-failures, both over a table that the purge keeps to the sources that failed within
find_time: a scan of it is cheap next to an index write per failure.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:00:00
"""

from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('failure_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_windows_last_at'))


def downgrade():
    with op.batch_alter_table('failure_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_windows_last_at'), ['last_at'], unique=False)
