"""The console's page for an organisation's own identity provider: add one,
test the connection, change the accepted acr values, remove it.

Every rule (who may, what is valid, what is audited) is in
`FederationService`; these views only call it and show what it says. A client
secret or private key typed in goes to the service and nowhere else: never back
into a page, a flash message or a log line.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from core.errors import Conflict, InvalidInput, NotFound
from directory.models import Organisation
from idp import web
from idp.admin.views import _confirm
from idp.federation.forms import AcceptedAcrForm, ProviderForm, TestConnectionForm
from idp.federation.models import UpstreamProvider
from idp.federation.service import NewProvider, TestReport
from idp.federation.upstream import UpstreamUnavailable
from idp.forms import attach_problems

blueprint = Blueprint(
    "identity_provider",
    __name__,
    url_prefix="/admin/organisations/<int:organisation_id>/identity-provider",
)


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _managed(organisation_id: int) -> tuple[Organisation, UpstreamProvider | None]:
    """The organisation and its provider, for someone the service lets manage it."""
    unit = web.unit()
    provider = unit.federation.provider_for(web.principal(), organisation_id)
    return unit.directory.organisation(organisation_id), provider


def _page(
    org: Organisation,
    provider: UpstreamProvider | None,
    form: ProviderForm,
    *,
    status: int = 200,
    problem: str | None = None,
    report: TestReport | None = None,
    failure: str | None = None,
) -> tuple[str, int]:
    # Whatever was typed as a credential stays out of the page, even after an error.
    form.client_secret.data = ""
    form.private_key.data = ""
    form.private_key.raw_data = None
    page = render_template(
        "federation/admin_provider.html",
        title=f"{org.name}: identity provider",
        org=org,
        provider=provider,
        form=form,
        test_form=TestConnectionForm(),
        redirect_uri=web.unit().federation.redirect_uri,
        problem=problem,
        report=report,
        failure=failure,
    )
    return page, status


@blueprint.route("", methods=["GET", "POST"])
@web.login_required
def show(organisation_id: int) -> Response | tuple[str, int]:
    """The provider if there is one; the form to add one if not."""
    org, provider = _managed(organisation_id)
    unit = web.unit()
    form = ProviderForm()
    if not form.is_submitted():
        return _page(org, provider, form)
    if not form.validate():
        return _page(org, provider, form, status=400)
    new = NewProvider(
        organisation_id=org.id,
        issuer=form.issuer.data or "",
        client_id=form.client_id.data or "",
        username_claim=form.username_claim.data or "",
        accepted_acr=tuple(_lines(form.accepted_acr.data)),
        client_secret=form.client_secret.data or None,
        private_key_pem=(form.private_key.data or "").strip() or None,
    )
    try:
        added = unit.federation.add(web.principal(), new, form.reason.data)
        unit.commit()
    except InvalidInput as error:
        unit.session.rollback()
        placed = attach_problems(form, error)
        return _page(org, None, form, status=400, problem=None if placed else error.message)
    except Conflict as error:
        unit.session.rollback()
        return _page(org, unit.federation.provider_of(org.id), form, status=409,
                     problem=error.message)
    flash(f"{added.issuer} is {org.name}'s identity provider now. Test the connection, "
          "then register the redirect URI below at the provider.")
    return redirect(url_for(".show", organisation_id=org.id))


@blueprint.post("/test")
@web.login_required
def test_connection(organisation_id: int) -> Response | tuple[str, int]:
    """Fetch the provider's discovery document and keys now, as the CLI does,
    and say which step failed."""
    org, provider = _managed(organisation_id)
    if provider is None or not TestConnectionForm().validate_on_submit():
        return redirect(url_for(".show", organisation_id=org.id))
    try:
        report = web.unit().federation.test(org.id, web.principal())
    except UpstreamUnavailable as error:
        return _page(org, provider, ProviderForm(formdata=None), failure=error.message)
    return _page(org, provider, ProviderForm(formdata=None), report=report)


@blueprint.route("/accepted-acr", methods=["GET", "POST"])
@web.login_required
def accepted_acr(organisation_id: int) -> Response | str | tuple[str, int]:
    org, provider = _managed(organisation_id)
    if provider is None:
        raise NotFound("This organisation has no identity provider")
    form = AcceptedAcrForm()
    if form.validate_on_submit():
        unit = web.unit()
        try:
            changed = unit.federation.set_accepted_acr(
                web.principal(), org.id, _lines(form.accepted_acr.data), form.reason.data)
        except InvalidInput as error:
            attach_problems(form, error)
        else:
            unit.commit()
            accepted = (", ".join(changed.accepted_acr)
                        or "none: the token and PIN are always asked")
            flash(f"Accepted acr values saved ({accepted})")
            return redirect(url_for(".show", organisation_id=org.id))
    if not form.is_submitted():
        form.accepted_acr.data = "\n".join(provider.accepted_acr)
    page = render_template("federation/admin_accepted_acr.html", form=form, org=org,
                           provider=provider, title=f"{org.name}: accepted acr values")
    return (page, 400) if form.errors else page


@blueprint.route("/remove", methods=["GET", "POST"])
@web.login_required
def remove(organisation_id: int) -> Response | str | tuple[str, int]:
    org, provider = _managed(organisation_id)
    if provider is None:
        raise NotFound("This organisation has no identity provider")
    unit = web.unit()

    def act(reason: str) -> str:
        links = unit.federation.remove(web.principal(), org.id, reason)
        return (f"{org.name}'s identity provider is removed, with {links} linked "
                f"account{'' if links == 1 else 's'}")

    return _confirm(
        title=f"Remove {org.name}'s identity provider",
        act=act,
        back=url_for(".show", organisation_id=org.id),
        warning="Its people can no longer sign in through it, and every account linked "
        "to it is unlinked: they sign in with their password, token and PIN.",
        button="Remove the identity provider",
        rows=[("Issuer", provider.issuer), ("Client ID", provider.client_id)],
    )
