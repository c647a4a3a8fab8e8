"""Errors of authentication. `SignInFailed` is deliberately uninformative."""

from __future__ import annotations

from core.errors import DomainError, InvalidInput


class SignInFailed(DomainError):
    """One error for every failed sign-in, whatever was wrong, so that nothing
    tells an attacker which usernames exist or which factor was right."""

    error_id = "signin.failed"
    title = (
        "The details you entered do not match our records, or the account cannot be used "
        "at the moment. Check them and try again. After several failed attempts the "
        "account is locked for a while; your organisation's administrator can unlock it."
    )


class TooManyAttempts(DomainError):
    """Too many failures from one client address; says nothing about accounts."""

    error_id = "signin.throttled"
    title = "Too many attempts from your network. Wait and try again."

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many attempts from your network. Try again in {retry_after} seconds."
        )
        self.retry_after = retry_after


class FlowExpired(DomainError):
    error_id = "flow.expired"
    title = "That took too long, or the page was already used. Start again."


class ActivationFailed(DomainError):
    error_id = "activation.failed"
    title = (
        "The username or activation code is not right, or the code has expired or was "
        "already used. Check the letter and try again, or ask your administrator for a new one."
    )


class WeakSecret(InvalidInput):
    error_id = "secret.weak"
