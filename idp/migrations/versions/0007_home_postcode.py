"""Home postcode keys: the identity check's and the person's (own-address alerts)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('identity_check', schema=None) as batch_op:
        batch_op.add_column(sa.Column('home_postcode_key', sa.String(length=32), nullable=True))
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('home_postcode_key', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_column('home_postcode_key')
    with op.batch_alter_table('identity_check', schema=None) as batch_op:
        batch_op.drop_column('home_postcode_key')
