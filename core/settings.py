"""Settings: shipped defaults, then an operator's file, then the environment.

Layering in that order lets an operator change one value without copying the
whole file, and lets a container set secrets-free values through variables.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from core.errors import ConfigurationError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PACKAGE_ROOT / "config" / "default.toml"
ENV_PREFIX = "CONTACTPOINT_"


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    base_url: str
    instance_dir: str
    trusted_proxies: int


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    echo: bool


@dataclass(frozen=True)
class SharedStateSettings:
    backend: str
    redis_url: str
    # What each kind of shared state does when its backend cannot be reached:
    # "closed" refuses the request (503), "open" carries on without it.
    throttling_when_unavailable: str
    replay_cache_when_unavailable: str
    # Put before every Redis key, so that one Redis can serve several deployments.
    redis_key_prefix: str


@dataclass(frozen=True)
class Argon2Settings:
    memory_kib: int
    time_cost: int
    parallelism: int


@dataclass(frozen=True)
class PasswordSettings:
    min_length: int
    max_length: int


@dataclass(frozen=True)
class SignInSettings:
    lockout_threshold: int
    lockout_minutes: int
    permanent_lockout_after: int
    address_failures_per_window: int
    address_window_seconds: int
    flow_minutes: int


@dataclass(frozen=True)
class SessionSettings:
    idle_minutes: int
    absolute_hours: int
    cookie_name: str


@dataclass(frozen=True)
class TotpSettings:
    issuer: str
    digits: int
    period_seconds: int
    drift_steps: int


@dataclass(frozen=True)
class AssuranceSettings:
    level2: str
    level3: str


@dataclass(frozen=True)
class WebAuthnSettings:
    """The relying party that security keys are bound to. Empty values are derived
    from `service.base_url` and `service.name`, so one setting moves them all."""

    rp_id: str
    rp_name: str
    origin: str
    challenge_seconds: int


@dataclass(frozen=True)
class VettingSettings:
    clearance_years: int
    training_valid_years: int
    minimum_identity_confidence: str
    activation_code_days: int


@dataclass(frozen=True)
class LdapSettings:
    """Where `contactpoint directory publish` writes. The password may sit in a
    file (mounted from a secret store) rather than in the settings themselves."""

    url: str
    bind_dn: str
    password: str
    password_file: str
    base_dn: str
    use_starttls: bool
    timeout_seconds: int
    connections: int
    page_size: int


@dataclass(frozen=True)
class OidcSettings:
    """The OpenID Connect provider. An empty issuer means `service.base_url`."""

    issuer: str
    access_token_seconds: int
    id_token_seconds: int
    refresh_token_hours: int
    code_seconds: int
    par_seconds: int
    default_resource: str
    client_cache_seconds: int
    backchannel_timeout_seconds: int
    dpop_max_age_seconds: int


@dataclass(frozen=True)
class ObservabilitySettings:
    """Logs, request ids and metrics: what operators see of a running node."""

    log_level: str
    # "json" (one object a line, for collectors) or "console" (for a terminal).
    log_format: str
    # Take X-Request-ID from the proxy in front; otherwise every id is made here.
    trust_request_id: bool
    # Comma-separated addresses or networks allowed to read /metrics.
    metrics_allowed: str


@dataclass(frozen=True)
class ChildrenSettings:
    """The child-record module: result caps, reasons, shielding reviews, the
    anomaly rules and retention."""

    page_size: int
    max_results: int
    reason_detail_min_length: int
    shield_review_months: int
    volume_per_hour: int
    working_hours_start: int
    working_hours_end: int
    timezone: str
    auto_suspend: bool
    suspend_rules: str
    archive_age: int
    archive_age_with_consent: int
    keep_after_death_days: int
    archive_years: int


@dataclass(frozen=True)
class Settings:
    service: ServiceSettings
    database: DatabaseSettings
    shared_state: SharedStateSettings
    argon2: Argon2Settings
    passwords: PasswordSettings
    signin: SignInSettings
    sessions: SessionSettings
    totp: TotpSettings
    assurance: AssuranceSettings
    vetting: VettingSettings
    webauthn: WebAuthnSettings
    ldap: LdapSettings
    oidc: OidcSettings
    observability: ObservabilitySettings
    children: ChildrenSettings

    @property
    def instance_path(self) -> Path:
        path = Path(self.service.instance_dir)
        return path if path.is_absolute() else (Path.cwd() / path)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.instance_path / 'contactpoint.db'}"

    @property
    def issuer(self) -> str:
        return (self.oidc.issuer or self.service.base_url).rstrip("/")

    @property
    def on_loopback(self) -> bool:
        """Plain http is only tolerated on this machine's own addresses."""
        base = self.service.base_url
        return base.startswith(("http://127.", "http://localhost", "http://[::1]"))


T = TypeVar("T")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{path}: settings file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "CONTACTPOINT_CONFIG":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        result.setdefault(section, {})[key] = raw
    return result


def _coerce(value: Any, wanted: type, where: str) -> Any:
    if wanted is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigurationError(f"{where}: expected true or false, got {value!r}")
    if wanted is int:
        # int() would truncate a float (0.5 minutes -> 0) without a word.
        if isinstance(value, bool | float):
            raise ConfigurationError(f"{where}: expected a whole number, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: expected a whole number, got {value!r}") from exc
    if wanted is str:
        if not isinstance(value, str):
            raise ConfigurationError(f"{where}: expected text, got {value!r}")
        return value
    raise ConfigurationError(f"{where}: unsupported setting type {wanted!r}")


def _build(cls: type[T], data: dict[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        place = f"{where}: unknown setting" if where else "unknown section"
        raise ConfigurationError(f"{place} {unknown[0]!r}")
    values: dict[str, Any] = {}
    for field in fields(cls):  # type: ignore[arg-type]
        wanted = hints[field.name]
        key = f"{where}.{field.name}" if where else field.name
        if field.name not in data:
            raise ConfigurationError(f"{key}: missing")
        if is_dataclass(wanted):
            if not isinstance(data[field.name], dict):
                raise ConfigurationError(f"{key}: expected a table")
            values[field.name] = _build(wanted, data[field.name], key)  # type: ignore[arg-type]
        else:
            values[field.name] = _coerce(data[field.name], wanted, key)
    return cls(**values)


def load_settings(
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read the layered settings; `overrides` (for tests and tools) wins last."""
    env = dict(os.environ if environ is None else environ)
    data = _read_toml(DEFAULT_CONFIG)
    extra = env.get("CONTACTPOINT_CONFIG")
    if extra:
        data = _merge(data, _read_toml(Path(extra)))
    data = _merge(data, _env_overrides(env))
    if overrides:
        data = _merge(data, overrides)
    settings = _build(Settings, data, "")
    if settings.shared_state.backend not in {"database", "redis"}:
        raise ConfigurationError("shared_state.backend: expected 'database' or 'redis'")
    for name in ("throttling_when_unavailable", "replay_cache_when_unavailable"):
        if getattr(settings.shared_state, name) not in {"open", "closed"}:
            raise ConfigurationError(f"shared_state.{name}: expected 'open' or 'closed'")
    if settings.observability.log_format not in {"json", "console"}:
        raise ConfigurationError("observability.log_format: expected 'json' or 'console'")
    if settings.observability.log_level.upper() not in {
        "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"
    }:
        raise ConfigurationError(
            "observability.log_level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    if settings.vetting.minimum_identity_confidence not in {"low", "medium", "high", "very_high"}:
        raise ConfigurationError(
            "vetting.minimum_identity_confidence: expected low, medium, high or very_high"
        )
    return settings


@dataclass(frozen=True)
class InstanceSecrets:
    """Keys generated on first run; they never leave the instance folder."""

    session_key: bytes
    data_key: bytes


def _read_or_create_key(path: Path) -> bytes:
    if path.exists():
        raw = path.read_text().strip()
        try:
            key = bytes.fromhex(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{path}: not a hex-encoded key") from exc
        if len(key) != 32:
            raise ConfigurationError(f"{path}: key must be 32 bytes")
        return key
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write aside, then link into place: the key appears whole or not at all,
    # and if another process (a second worker starting at the same moment)
    # got there first, its key is the one everybody uses.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key.hex())
        try:
            os.link(draft, path)
        except FileExistsError:
            return _read_or_create_key(path)
    finally:
        draft.unlink(missing_ok=True)
    return key


def load_instance_secrets(settings: Settings) -> InstanceSecrets:
    """Keys come from files under the instance folder, created when absent.

    CONTACTPOINT_SESSION_KEY_FILE and CONTACTPOINT_DATA_KEY_FILE point elsewhere,
    so that several nodes can share keys mounted from a secret store.
    """
    folder = settings.instance_path
    session_file = Path(os.environ.get("CONTACTPOINT_SESSION_KEY_FILE", folder / "session.key"))
    data_file = Path(os.environ.get("CONTACTPOINT_DATA_KEY_FILE", folder / "data.key"))
    return InstanceSecrets(
        session_key=_read_or_create_key(session_file),
        data_key=_read_or_create_key(data_file),
    )
