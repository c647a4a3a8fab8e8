"""The children's-directory alerts about an organisation's own staff, for the
people who manage them (DOMAIN.md: the team investigates, the manager is told).

Kept apart from the console's other views: it reads the child-record module,
which owns the alerts and the rule of who sees them.
"""

from __future__ import annotations

from flask import render_template

from directory.administration import Act
from idp import web
from idp.admin.views import blueprint


@blueprint.get("/organisations/<int:organisation_id>/staff-alerts")
@web.login_required
def staff_alerts(organisation_id: int) -> str:
    actor = web.principal()
    unit = web.unit()
    org = unit.administration.organisation_for(actor, Act.READ_AUDIT, organisation_id)
    return render_template(
        "admin/staff_alerts.html",
        title=f"Alerts about your staff: {org.name}",
        org=org,
        alerts=unit.children.staff_alerts(actor, org.id),
    )
