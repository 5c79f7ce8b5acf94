"""portal links: the customer's link secret, the project's embedding origins

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # NULL until the customer's first link: a customer that never had one has none to revoke.
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('portal_secret', sa.String(length=64), nullable=True))
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('portal_frame_origins', sa.JSON(), server_default='[]', nullable=False))


def downgrade():
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('portal_frame_origins')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('portal_secret')
