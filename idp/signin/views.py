"""Sign-in in two steps, and sign-out.

Any failure, at either step, ends the journey on the first page with one
message and one status, whether or not the username exists.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user
from werkzeug.wrappers import Response

from idp import web
from idp.keys.forms import KeyStepForm
from idp.signin.forms import PasswordStepForm, TokenStepForm
from tokens.errors import FlowExpired, SignInFailed
from tokens.signin import SignedIn

blueprint = Blueprint("signin", __name__)

FLOW_KEY = "signin_flow"
NEXT_KEY = "signin_next"


def _failed(message: str) -> tuple[str, int]:
    session.pop(FLOW_KEY, None)
    form = PasswordStepForm(formdata=None)
    return render_template("signin/password.html", form=form, title="Sign in", failure=message), 401


@blueprint.route("/sign-in", methods=["GET", "POST"])
def start() -> Response | str | tuple[str, int]:
    form = PasswordStepForm()
    if request.method == "GET" and request.args.get("next"):
        session[NEXT_KEY] = web.safe_next(request.args.get("next"))
    if request.method == "GET" and request.args.get("login_hint"):
        # A relying application's OIDC login_hint: the username, typed for them.
        form.username.data = request.args["login_hint"][:64]
    if form.validate_on_submit():
        try:
            flow = web.unit().signin.begin(
                form.username.data or "", form.password.data or "", web.client()
            )
        except SignInFailed as failure:
            return _failed(failure.message)
        session[FLOW_KEY] = flow
        return redirect(url_for("signin.second_step"))
    return render_template("signin/password.html", form=form, title="Sign in", failure=None)


@blueprint.route("/sign-in/token", methods=["GET", "POST"])
def second_step() -> Response | str | tuple[str, int]:
    flow = session.get(FLOW_KEY)
    if not flow or not web.unit().signin.is_pending(flow):
        session.pop(FLOW_KEY, None)
        return redirect(url_for("signin.start"))
    form = TokenStepForm()
    if form.validate_on_submit():
        try:
            signed = web.unit().signin.complete(
                flow, form.code.data or "", form.pin.data or "", web.client()
            )
        except (SignInFailed, FlowExpired) as failure:
            return _failed(
                SignInFailed().message if isinstance(failure, SignInFailed) else failure.message
            )
        return _signed_in(signed)
    return render_template("signin/token.html", form=form, title="Enter your token code and PIN")


@blueprint.route("/sign-in/key", methods=["GET", "POST"])
def key_step() -> Response | str | tuple[str, int]:
    """The second step with a security key in place of the token code."""
    flow = session.get(FLOW_KEY)
    signin = web.unit().signin
    if not flow or signin.pending_flow(flow) is None:
        session.pop(FLOW_KEY, None)
        return redirect(url_for("signin.start"))
    form = KeyStepForm()
    if form.validate_on_submit():
        try:
            signed = signin.complete_with_key(
                flow, form.credential.data or "", form.pin.data or "", web.client()
            )
        except (SignInFailed, FlowExpired) as failure:
            return _failed(
                SignInFailed().message if isinstance(failure, SignInFailed) else failure.message
            )
        return _signed_in(signed)
    options = signin.key_options(flow)
    if options is None:
        return redirect(url_for("signin.start"))
    return render_template(
        "signin/key.html", form=form, options=options, title="Use your security key and PIN"
    )


def _signed_in(signed: SignedIn) -> Response:
    """Log the new session in, replacing any live one, and go where asked."""
    target = web.safe_next(session.get(NEXT_KEY))
    previous = web.current_user_or_none()
    if previous is not None:
        # Signing in again over a live session replaces it, on the server too.
        web.unit().signin.sign_out(previous.token)
    session.clear()  # a fresh session at sign-in: nothing from before carries over
    # The service has just started and checked this session; this response is
    # a redirect, and the next request loads the person as every request does.
    login_user(web.NewSession(signed.token))
    return redirect(target)


@blueprint.post("/sign-out")
def sign_out() -> Response:
    signed_in = web.current_user_or_none()
    if signed_in is not None:
        web.unit().signin.sign_out(signed_in.token)
    logout_user()
    session.clear()
    return redirect(url_for("signin.signed_out"))


@blueprint.get("/signed-out")
def signed_out() -> str:
    return render_template("signin/signed_out.html", title="You have signed out")
