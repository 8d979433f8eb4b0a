"""runs: star, notes, user labels, typed best validation score, model / loss columns; indexes

Why (issue 9): the Runs page filters, searches and sorts thousands of runs in SQL, and the user
annotates runs.

- runs.starred / runs.notes and a run_labels table (run_id, label; PK both; index on label):
  what the user adds to a run. Labels are a table, not a JSON column, so "runs with all of these
  labels" and the label facet are indexed queries.
- runs.best_val / runs.best_epoch: the best validation balanced accuracy was a string tag
  (best_val_bal_acc, best_epoch) that every reader parsed; now a typed, sortable column. Backfilled
  from those tags (the tags stay, so no row of an older database is lost).
- runs.model / runs.loss: copied from the params of the same name. Filtering on
  params(key, value) would need an index on a Text column whose values can be long JSON (a
  PostgreSQL btree refuses entries over ~2.7 kB); two short indexed columns written once at
  create_run are simpler and fast. Backfilled from params.
- ix_latest_metrics_key_value: the Runs page sorts on one metric key.
- Non-finite metric values: older databases stored +-Inf as +-float max; they become NULL with the
  is_nan flag, like NaN always was, so every reader sees None for a value that is not finite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 02:30:00
"""
import math

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

FLOAT_MAX = 1.7976931348623157e308


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('starred', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('best_val', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('best_epoch', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('model', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('loss', sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_loss'), ['loss'], unique=False)

    op.create_table('run_labels',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_labels_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'label', name=op.f('pk_run_labels'))
    )
    with op.batch_alter_table('run_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_labels_label'), ['label'], unique=False)
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_latest_metrics_key_value', ['key', 'value'], unique=False)

    conn = op.get_bind()
    runs = sa.table('runs', sa.column('id', sa.String), sa.column('best_val', sa.Float),
                    sa.column('best_epoch', sa.Integer), sa.column('model', sa.String),
                    sa.column('loss', sa.String))
    tags = sa.table('tags', sa.column('run_id', sa.String), sa.column('key', sa.String),
                    sa.column('value', sa.Text))
    params = sa.table('params', sa.column('run_id', sa.String), sa.column('key', sa.String),
                      sa.column('value', sa.Text))

    best: dict[str, dict] = {}
    for run_id, key, value in conn.execute(
            sa.select(tags.c.run_id, tags.c.key, tags.c.value)
            .where(tags.c.key.in_(['best_val_bal_acc', 'best_epoch']))):
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(x):
            continue
        best.setdefault(run_id, {})['best_val' if key == 'best_val_bal_acc' else 'best_epoch'] = (
            x if key == 'best_val_bal_acc' else int(x))
    for run_id, values in best.items():
        conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    for key in ('model', 'loss'):
        rows = conn.execute(sa.select(params.c.run_id, params.c.value)
                            .where(params.c.key == key)).all()
        for run_id, value in rows:
            if value and value != 'null' and len(value) <= 128:
                conn.execute(runs.update().where(runs.c.id == run_id).values(**{key: value}))

    for table in ('metrics', 'latest_metrics'):
        t = sa.table(table, sa.column('value', sa.Float), sa.column('is_nan', sa.Boolean))
        conn.execute(t.update().where(sa.or_(t.c.value >= FLOAT_MAX, t.c.value <= -FLOAT_MAX))
                     .values(value=None, **({'is_nan': True} if table == 'metrics' else {})))


def downgrade() -> None:
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_latest_metrics_key_value')
    with op.batch_alter_table('run_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_labels_label'))
    op.drop_table('run_labels')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_loss'))
        batch_op.drop_index(batch_op.f('ix_runs_model'))
        for col in ('loss', 'model', 'best_epoch', 'best_val', 'notes', 'starred'):
            batch_op.drop_column(col)
