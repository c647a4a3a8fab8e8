"""Assurance levels and authentication method references (RFC 8176).

The levels follow NIST SP 800-63B: a password with a one-time-password token
and a PIN is level 2 whatever the token is made of; only a phishing-resistant
hardware authenticator (a security key, bound to this site's origin) reaches
level 3. The names carried in sessions and tokens come from settings (NHS CIS2
style `AAL2`, `AAL3`), so the numbers here are the one thing code compares.
"""

from __future__ import annotations

from core.settings import AssuranceSettings

# RFC 8176 method references used by this service.
PASSWORD = "pwd"  # noqa: S105 - a method reference, not a secret
OTP = "otp"
HARDWARE_KEY = "hwk"
SOFTWARE_KEY = "swk"
PIN = "pin"
# A first factor proved at an organisation's own identity provider (federation).
FEDERATED = "fed"


def acr_for_level(level: int, names: AssuranceSettings) -> str:
    """The configured name of a level; only 2 and 3 are ever granted."""
    if level == 3:
        return names.level3
    if level == 2:
        return names.level2
    raise ValueError(f"no assurance level {level}")


def level_of(acr: str | None, names: AssuranceSettings) -> int:
    """The number of a session's level; an unknown name counts as nothing, so a
    renamed level never silently grants more than it should."""
    if acr == names.level3:
        return 3
    if acr == names.level2:
        return 2
    return 0


def meets(acr: str | None, level: int, names: AssuranceSettings) -> bool:
    return level_of(acr, names) >= level


def security_key_amr() -> list[str]:
    """Password, security key, PIN. RFC 8176 `user` (a presence test) is not
    added: every WebAuthn assertion carries one, so it would tell a relying
    application nothing; whether the key verified its user is audited instead."""
    return [PASSWORD, HARDWARE_KEY, PIN]


def merge_amr(current: list[str], added: list[str]) -> list[str]:
    """The methods of a stepped-up session: what it had, then what was added."""
    merged = list(current)
    for method in added:
        if method not in merged:
            merged.append(method)
    return merged
