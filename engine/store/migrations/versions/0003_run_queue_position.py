"""runs.queue_position: the order of runs waiting in the job queue

Why (issue 10): several runs can be queued and a configurable number run at once; the user
reorders the waiting ones. A run launched through engine.jobs gets the next position and waits
(status queued, no worker yet) until a slot is free; runs made in-process (post-hoc) have none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 03:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue_position', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('queue_position')
