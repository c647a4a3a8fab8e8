"""Former names carry the child's date of birth and postcode district, indexed
with the surname, so a search by a former surname is one index range.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('child_former_name', schema=None) as batch_op:
        batch_op.add_column(sa.Column('date_of_birth', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('postcode_district', sa.String(length=5), nullable=True))
    op.execute(
        "UPDATE child_former_name SET "
        "date_of_birth = (SELECT child.date_of_birth FROM child "
        "WHERE child.id = child_former_name.child_id), "
        "postcode_district = (SELECT child.postcode_district FROM child "
        "WHERE child.id = child_former_name.child_id)"
    )
    with op.batch_alter_table('child_former_name', schema=None) as batch_op:
        batch_op.alter_column('date_of_birth', existing_type=sa.Date(), nullable=False)
        batch_op.drop_index(batch_op.f('ix_child_former_name_surname_key'))
        batch_op.create_index('ix_child_former_name_surname_dob',
                              ['surname_key', 'date_of_birth'], unique=False)
        batch_op.create_index('ix_child_former_name_surname_district',
                              ['surname_key', 'postcode_district'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('child_former_name', schema=None) as batch_op:
        batch_op.drop_index('ix_child_former_name_surname_district')
        batch_op.drop_index('ix_child_former_name_surname_dob')
        batch_op.create_index(batch_op.f('ix_child_former_name_surname_key'), ['surname_key'],
                              unique=False)
        batch_op.drop_column('postcode_district')
        batch_op.drop_column('date_of_birth')
