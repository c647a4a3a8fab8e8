"""Federation: organisations' upstream OpenID Connect providers, links of upstream accounts, requests in flight

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('upstream_provider',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('auth_method', sa.String(length=40), nullable=False),
    sa.Column('credential_ciphertext', sa.Text(), nullable=False),
    sa.Column('username_claim', sa.String(length=100), nullable=False),
    sa.Column('accepted_acr', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_upstream_provider_organisation_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_provider')),
    sa.UniqueConstraint('organisation_id', name=op.f('uq_upstream_provider_organisation_id'))
    )
    op.create_table('upstream_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('upstream_username', sa.String(length=255), nullable=True),
    sa.Column('linked_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_upstream_link_person_id_person')),
    sa.ForeignKeyConstraint(['provider_id'], ['upstream_provider.id'], name=op.f('fk_upstream_link_provider_id_upstream_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_link')),
    sa.UniqueConstraint('issuer', 'subject', name=op.f('uq_upstream_link_issuer'))
    )
    with op.batch_alter_table('upstream_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_link_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_upstream_link_provider_id'), ['provider_id'], unique=False)

    op.create_table('upstream_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_digest', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('nonce', sa.String(length=100), nullable=False),
    sa.Column('verifier_ciphertext', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_upstream_request_person_id_person')),
    sa.ForeignKeyConstraint(['provider_id'], ['upstream_provider.id'], name=op.f('fk_upstream_request_provider_id_upstream_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_request')),
    sa.UniqueConstraint('state_digest', name=op.f('uq_upstream_request_state_digest'))
    )
    with op.batch_alter_table('upstream_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_request_provider_id'), ['provider_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upstream_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_request_provider_id'))

    op.drop_table('upstream_request')
    with op.batch_alter_table('upstream_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_link_provider_id'))
        batch_op.drop_index(batch_op.f('ix_upstream_link_person_id'))

    op.drop_table('upstream_link')
    op.drop_table('upstream_provider')
