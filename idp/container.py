"""Wiring: one place builds every service with its collaborators.

The web app, the CLI and the tests all get services from here, so a service
never reaches for a global and every entry point enforces the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditContext, Auditor
from core.clock import Clock, SystemClock
from core.crypto import DataCipher, SecretDigester
from core.db import PreparedStatement, driver_errors, make_engine, make_session_factory
from core.outbox import Outbox
from core.settings import InstanceSecrets, Settings, load_instance_secrets
from core.shared_state import (
    DatabaseSharedState,
    GuardedSharedState,
    RedisSharedState,
    SharedState,
)
from directory.accreditation import AccreditationService
from directory.administration import AdministrationService
from directory.children.loading import ChildLoader
from directory.children.service import ChildrenService
from directory.ldap_connect import LdapTarget
from directory.ldap_publish import LdapPublisher
from directory.service import DirectoryService
from directory.services import ServicesService
from idp.federation.service import FederationService
from idp.federation.upstream import MetadataCache
from idp.oidc.clients import ClientRegistry
from idp.oidc.keys import KeyRotation, KeyStore
from idp.oidc.logout import watch as watch_for_logouts
from tokens.activation import ActivationService
from tokens.attempts import Attempts
from tokens.codes import LetterCodes
from tokens.inventory import InventoryService
from tokens.otp import OtpVerifier
from tokens.passwords import SecretHasher
from tokens.policy import PolicyService
from tokens.resets import ResetService
from tokens.sessions import SessionService
from tokens.signin import SignInService
from tokens.webauthn import SecurityKeyService
from vetting.service import VettingService
from vetting.staff_import import StaffImport


class Container:
    """Long-lived parts: engine, keys, hasher. Cheap `Unit`s are made from it."""

    def __init__(
        self,
        settings: Settings,
        *,
        secrets: InstanceSecrets | None = None,
        clock: Clock | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets or load_instance_secrets(settings)
        self.clock: Clock = clock or SystemClock()
        self.engine = engine or make_engine(settings.database_url, echo=settings.database.echo)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.cipher = DataCipher(self.secrets.data_key)
        self.digester = SecretDigester(self.secrets.data_key)
        self.hasher = SecretHasher(settings.argon2)
        self._redis: redis.Redis | None = None
        # Upstream providers' discovery and keys: public metadata, one copy a process.
        self.upstream_metadata = MetadataCache()
        self.oidc_keys = KeyStore(self.cipher, bootstrap=self._first_signing_keys)
        self._prepared: dict[int, PreparedStatement] = {}
        # Sessions that end here end at every relying application too.
        watch_for_logouts(self.session_factory, self, self.oidc_keys)

    def _first_signing_keys(self) -> None:
        with self.unit(AuditContext(actor_label="system")) as unit:
            if unit.key_rotation.ensure():
                unit.commit()

    def redis_client(self) -> redis.Redis:
        if self._redis is None:
            # One immediate retry (a pooled connection may predate a Redis restart),
            # no backoff: while Redis is down, requests are answered at once.
            self._redis = redis.Redis.from_url(
                self.settings.shared_state.redis_url,
                socket_timeout=2,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    def guarded(self, inner: SharedState) -> SharedState:
        """Redis state with the settings' answer for when Redis is down (the
        database backend needs none: without the database nothing works)."""
        from idp.metrics import SHARED_STATE_UNAVAILABLE

        chosen = self.settings.shared_state
        return GuardedSharedState(
            inner,
            throttling_open=chosen.throttling_when_unavailable == "open",
            replay_open=chosen.replay_cache_when_unavailable == "open",
            unreachable=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
            observe=lambda kind, decision: SHARED_STATE_UNAVAILABLE.labels(kind, decision).inc(),
        )

    def prepared(self, statement: Any) -> PreparedStatement:
        """`statement` compiled for this engine, once (module-level statements only:
        they are kept by identity for the life of the process)."""
        found = self._prepared.get(id(statement))
        if found is None or found.statement is not statement:
            found = self._prepared[id(statement)] = PreparedStatement(
                statement, self.engine.dialect)
        return found

    def unit(self, context: AuditContext | None = None) -> Unit:
        return Unit(self, context or AuditContext())

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass
class Unit:
    """One unit of work: a database session and the services that share it."""

    container: Container
    context: AuditContext
    _raw_writes: bool = False

    def __enter__(self) -> Unit:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @cached_property
    def connection(self) -> Connection:
        """The unit's one database connection, taken from the pool when first
        needed. Its session and its prepared statements share it, and so one
        transaction: on SQLite a second connection would wait for the first's
        write lock."""
        return self.container.engine.connect()

    @cached_property
    def session(self) -> Session:
        return self.container.session_factory(bind=self.connection)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.rollback()
            self.session.close()
            # A closed session may still be used (a lazy load after the request,
            # say), as any SQLAlchemy session may: it then takes a connection
            # of its own from the pool.
            self.session.bind = self.container.engine
        if "connection" in self.__dict__:
            self.__dict__.pop("connection").close()  # back to the pool, rolled back
        self._raw_writes = False

    def commit(self) -> None:
        if "session" in self.__dict__ or not self._raw_writes:
            self.session.commit()
        if self._raw_writes:
            # The session commits its own connection only when it began a
            # transaction there; prepared statements may have run without one.
            with driver_errors(self.container.engine.dialect, "COMMIT"):
                self.connection.connection.commit()
            self._raw_writes = False

    def rollback(self) -> None:
        if "session" in self.__dict__:
            self.session.rollback()
        if "connection" in self.__dict__:
            with driver_errors(self.container.engine.dialect, "ROLLBACK"):
                self.connection.connection.rollback()
        self._raw_writes = False

    def rows(self, statement: Any, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A module-level statement's rows, prepared (`Container.prepared`) and
        run on this unit's connection, inside its transaction."""
        cursor = self._cursor()
        try:
            return self.container.prepared(statement).rows(cursor, values)
        finally:
            cursor.close()

    def execute(self, statement: Any, values: dict[str, Any]) -> int:
        """As `rows`, for a statement that returns none: how many rows it changed.
        `commit` then commits it, with or without the session."""
        cursor = self._cursor()
        try:
            return self.container.prepared(statement).run(cursor, values)
        finally:
            cursor.close()

    def _cursor(self) -> Any:
        self._raw_writes = True
        return self.connection.connection.cursor()

    @property
    def touched_database(self) -> bool:
        """Whether this unit has used the database, by its session or by prepared
        statements (and so may have work to commit): a request that never
        touched it skips the commit."""
        return "connection" in self.__dict__ or "session" in self.__dict__

    @property
    def clock(self) -> Clock:
        return self.container.clock

    @cached_property
    def audit(self) -> Auditor:
        return Auditor(self.session, self.clock, self.context)

    @cached_property
    def shared(self) -> SharedState:
        if self.container.settings.shared_state.backend == "redis":
            prefix = self.container.settings.shared_state.redis_key_prefix
            inner = RedisSharedState(self.container.redis_client(), self.clock, prefix)
            return self.container.guarded(inner)
        return DatabaseSharedState(self.session, self.clock)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.session, self.container.cipher, self.clock, self.audit)

    @cached_property
    def directory(self) -> DirectoryService:
        return DirectoryService(self.session, self.clock, self.audit)

    @cached_property
    def services(self) -> ServicesService:
        """The directory of services: search, maintenance and the CSV bulk load."""
        return ServicesService(self.session, self.clock, self.audit, self.directory)

    @cached_property
    def otp(self) -> OtpVerifier:
        return OtpVerifier(
            self.session, self.container.cipher, self.clock, self.container.settings.totp
        )

    @cached_property
    def codes(self) -> LetterCodes:
        return LetterCodes(self.session, self.container.digester, self.clock)

    @cached_property
    def sessions(self) -> SessionService:
        return SessionService(
            self.session, self.container.digester, self.clock, self.container.settings.sessions
        )

    @cached_property
    def attempts(self) -> Attempts:
        c = self.container
        return Attempts(self.session, c.settings, self.clock, self.audit, self.shared)

    @cached_property
    def signin(self) -> SignInService:
        c = self.container
        return SignInService(
            self.session,
            c.settings,
            self.clock,
            self.audit,
            c.hasher,
            c.digester,
            self.otp,
            self.sessions,
            self.directory,
            self.attempts,
        )

    @cached_property
    def keys(self) -> SecurityKeyService:
        """Security keys; the same instance sign-in verifies assertions with."""
        return self.signin.keys

    @cached_property
    def activation(self) -> ActivationService:
        c = self.container
        return ActivationService(
            self.session,
            c.settings,
            self.clock,
            self.audit,
            self.shared,
            c.hasher,
            c.digester,
            self.codes,
            self.otp,
            self.directory,
        )

    @cached_property
    def resets(self) -> ResetService:
        c = self.container
        return ResetService(
            self.session,
            c.settings,
            self.clock,
            self.audit,
            c.hasher,
            c.digester,
            self.codes,
            self.outbox,
            self.sessions,
            self.directory,
            self.signin,
            self.attempts,
        )

    @cached_property
    def inventory(self) -> InventoryService:
        return InventoryService(
            self.session,
            self.clock,
            self.audit,
            self.otp,
            self.sessions,
            self.directory,
            self.container.hasher,
            self.attempts,
        )

    @cached_property
    def ldap_publisher(self) -> LdapPublisher:
        """Publishing to the server in [ldap]; the settings are checked here, on
        first use, so a service without LDAP configured starts all the same."""
        ldap = self.container.settings.ldap
        return LdapPublisher(
            self.session,
            self.clock,
            self.audit,
            LdapTarget.from_settings(ldap),
            connections=ldap.connections,
            page_size=ldap.page_size,
        )

    @cached_property
    def staff_import(self) -> StaffImport:
        return StaffImport(self.session, self.clock, self.audit, self.directory)

    @cached_property
    def policies(self) -> PolicyService:
        return PolicyService(self.session, self.audit)

    @cached_property
    def vetting(self) -> VettingService:
        return VettingService(
            self.session,
            self.container.settings,
            self.clock,
            self.audit,
            self.directory,
            self.activation,
            self.sessions,
            self.outbox,
        )

    @cached_property
    def accreditation(self) -> AccreditationService:
        """Organisations accredited and suspended; suspension ends access through
        `sessions.end_all_for`, the one place that ends everything a person holds."""
        return AccreditationService(
            self.session, self.clock, self.audit, self.directory, self.sessions
        )

    @cached_property
    def administration(self) -> AdministrationService:
        """Delegated administration: the rules behind the admin console (and the API)."""
        return AdministrationService(
            self.session, self.clock, self.audit, self.directory, self.sessions
        )


    @cached_property
    def federation(self) -> FederationService:
        """Organisations' own identity providers: registration, sign-in, links."""
        c = self.container
        return FederationService(
            self.session,
            self.clock,
            self.audit,
            c.cipher,
            c.digester,
            c.upstream_metadata,
            self.directory,
            self.signin,
            self.attempts,
            c.settings.service.base_url.rstrip("/") + "/sign-in/organisation/callback",
        )

    @cached_property
    def clients(self) -> ClientRegistry:
        """Relying applications: registration, approval, secrets."""
        return ClientRegistry(self.session, self.container.digester, self.clock, self.audit)

    @cached_property
    def key_rotation(self) -> KeyRotation:
        settings = self.container.settings.oidc
        longest = max(settings.access_token_seconds, settings.id_token_seconds) + 600
        return KeyRotation(self.session, self.container.cipher, self.clock, self.audit, longest)

    @cached_property
    def children(self) -> ChildrenService:
        """Child records: search, view, shielding, contact, alerts, retention."""
        c = self.container
        return ChildrenService(
            self.session, self.clock, self.audit, c.cipher, c.settings.children, self.directory,
            c.digester,
        )

    @cached_property
    def child_loader(self) -> ChildLoader:
        c = self.container
        return ChildLoader(self.session, self.clock, self.audit, c.cipher, c.digester)


def build_container(settings: Settings, **kwargs: object) -> Container:
    return Container(settings, **kwargs)  # type: ignore[arg-type]
