"""Every model of every package, imported once so the metadata is complete
(for Alembic, and for anything that walks all tables)."""

from __future__ import annotations

from core import audit, outbox, shared_state
from core.db import Base
from directory import models as directory_models
from directory import services_models
from directory.children import models as children_models
from idp.federation import models as federation_models
from idp.oidc import models as oidc_models
from tokens import models as tokens_models
from vetting import models as vetting_models

__all__ = [
    "Base",
    "audit",
    "children_models",
    "directory_models",
    "federation_models",
    "oidc_models",
    "outbox",
    "services_models",
    "shared_state",
    "tokens_models",
    "vetting_models",
]
