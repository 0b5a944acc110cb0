"""never reuse ids on SQLite

Audit records (tenant_id, reseller_id), ban_tenants.tenant_id and the outbox (tenant_id, and
the trusted networks' ids as the edges' keys) keep ids without a foreign key, and API clients
keep resellers' and trusted networks' ids. Without AUTOINCREMENT SQLite hands the highest id
of a deleted row to the next insert: a new tenant would read the deleted one's audit log and
bans. AUTOINCREMENT needs the table rebuilt (SQLite cannot ALTER it). PostgreSQL's sequences
never reuse a value: nothing to do there.

The rebuilt tables start counting after every id that anything still remembers, not only
after the ids of the rows left: a tenant deleted before this upgrade is not reused either.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# table -> queries of ids that are (or were) that table's, kept elsewhere without a foreign key
REMEMBERED_IDS = {
    'resellers': [
        'SELECT max(id) FROM resellers',
        'SELECT max(reseller_id) FROM audit_events',
    ],
    'tenants': [
        'SELECT max(id) FROM tenants',
        'SELECT max(tenant_id) FROM audit_events',
        'SELECT max(tenant_id) FROM ban_tenants',
        'SELECT max(tenant_id) FROM outbox',
    ],
    'trusted_networks': [
        'SELECT max(id) FROM trusted_networks',
        "SELECT max(CAST(key AS INTEGER)) FROM outbox WHERE kind = 'trusted_network'",
    ],
}


def _rebuild(table, autoincrement):
    # Batch mode copies the table into a new one and renames it: with foreign keys enforced,
    # dropping the old table would first delete (and so cascade to) every row referencing it.
    bind = op.get_bind()
    bind.exec_driver_sql('PRAGMA foreign_keys=OFF')  # no-op inside a transaction: checked below
    if bind.exec_driver_sql('PRAGMA foreign_keys').scalar():
        raise RuntimeError(f'foreign keys are enforced: rebuilding {table} would cascade')
    with op.batch_alter_table(table, recreate='always',
                              table_kwargs={'sqlite_autoincrement': autoincrement}):
        pass


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    for table, queries in REMEMBERED_IDS.items():
        _rebuild(table, True)
        highest = max((bind.exec_driver_sql(q).scalar() or 0) for q in queries)
        bind.execute(sa.text('DELETE FROM sqlite_sequence WHERE name = :t'), {'t': table})
        if highest:
            bind.execute(sa.text('INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)'),
                         {'t': table, 'seq': highest})


def downgrade():
    if op.get_bind().dialect.name != 'sqlite':
        return
    for table in reversed(REMEMBERED_IDS):
        _rebuild(table, False)
