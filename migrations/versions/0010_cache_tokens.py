"""cache tokens

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cache_read_tokens', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cache_write_tokens', sa.BigInteger(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('cache_write_tokens')
        batch_op.drop_column('cache_read_tokens')
