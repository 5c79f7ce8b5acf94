"""refusal examples: each hour's count per code keeps its latest refusal (time, message, model)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: rows counted before this revision have no example; the admin places them at their hour.
    with op.batch_alter_table('refusal_counts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('model', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('refusal_counts', schema=None) as batch_op:
        batch_op.drop_column('model')
        batch_op.drop_column('message')
        batch_op.drop_column('last_at')
