"""Prometheus metrics: every metric object of the service is defined here.

Other parts of idp increment these objects; domain packages never see them.
Most counters follow the audit log instead of being incremented beside each
`audit.record` call: `AUDIT_COUNTERS` maps a stable audit tag to a counter and
its labels, and `watch_audit` counts an entry once its transaction commits,
so a metric means what the audit log means (something that happened), and a
rolled-back change counts nothing.

With several worker processes, set PROMETHEUS_MULTIPROC_DIR (`contactpoint
serve` does) before this module is imported: each worker then writes its
values to files there and a scrape of any worker adds them all up.

Labels are always from small fixed sets (endpoints of the url map, outcomes
named here), never from what a client sent, so the number of series stays
bounded whatever the traffic.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.audit import PENDING_TAGS
from core.errors import ConfigurationError

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

SIGNINS = Counter(
    "contactpoint_signins_total",
    "Sign-in attempts by outcome: success (both steps), password_failure, "
    "second_factor_failure, throttled (refused by the per-address limit).",
    ["outcome"],
)
LOCKOUTS = Counter(
    "contactpoint_lockouts_total",
    "Accounts locked after consecutive failures: timed or permanent.",
    ["kind"],
)
# Hooks for the OpenID Connect provider and the child-record module: increment
# with bounded labels (`bounded()`), or add their audit tags to AUDIT_COUNTERS.
TOKEN_REQUESTS = Counter(
    "contactpoint_token_requests_total",
    "Token endpoint requests by grant type and outcome.",
    ["grant", "outcome"],
)
CHILD_RECORD_SEARCHES = Counter(
    "contactpoint_child_record_searches_total",
    "Child-record searches by outcome.",
    ["outcome"],
)
CHILD_RECORD_VIEWS = Counter(
    "contactpoint_child_record_views_total",
    "Child-record views by outcome.",
    ["outcome"],
)
REQUEST_LATENCY = Histogram(
    "contactpoint_request_duration_seconds",
    "Time to answer a request, by endpoint (the url map's name; 'unmatched' otherwise).",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RESPONSES = Counter(
    "contactpoint_responses_total",
    "Responses by status class (2xx, 3xx, 4xx, 5xx).",
    ["status_class"],
)
DB_POOL_IN_USE = Gauge(
    "contactpoint_db_pool_connections_in_use",
    "Database connections checked out of the pool now (all workers added up).",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKOUTS = Counter(
    "contactpoint_db_pool_checkouts_total",
    "Database connections taken from the pool.",
)
DB_POOL_SIZE = Gauge(
    "contactpoint_db_pool_size",
    "Configured pool size of each worker (all workers added up).",
    multiprocess_mode="livesum",
)
SHARED_STATE_UNAVAILABLE = Counter(
    "contactpoint_shared_state_unavailable_total",
    "Operations on shared state whose backend could not be reached, by kind and "
    "what the settings made of it (refused or allowed).",
    ["kind", "decision"],
)

# Audit tag -> (counter, labels). Extend with new tags; never with client input.
AUDIT_COUNTERS: dict[str, tuple[Counter, dict[str, str]]] = {
    "signin:success": (SIGNINS, {"outcome": "success"}),
    "signin:password:failure": (SIGNINS, {"outcome": "password_failure"}),
    "signin:second_factor:failure": (SIGNINS, {"outcome": "second_factor_failure"}),
    "signin:throttled": (SIGNINS, {"outcome": "throttled"}),
    "signin:lockout": (LOCKOUTS, {"kind": "timed"}),
    "signin:lockout:permanent": (LOCKOUTS, {"kind": "permanent"}),
}


def bounded(value: str, allowed: Iterable[str], other: str = "other") -> str:
    """A label value from a fixed set: anything unexpected becomes `other`."""
    return value if value in set(allowed) else other


def count_tags(tags: Iterable[str]) -> None:
    for tag in tags:
        found = AUDIT_COUNTERS.get(tag)
        if found is not None:
            counter, labels = found
            counter.labels(**labels).inc()


_PENDING = PENDING_TAGS


def watch_audit(factory: sessionmaker[Session]) -> None:
    """Count committed audit entries of sessions made by `factory`."""

    # The Auditor writes entries with Core statements and notes their tags in
    # session.info[PENDING_TAGS] (see core.audit).

    def committed(session: Session) -> None:
        tags = session.info.pop(_PENDING, None)
        if tags:
            count_tags([t for t in tags if t in AUDIT_COUNTERS])

    def rolled_back(session: Session) -> None:
        session.info.pop(_PENDING, None)

    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_rollback", rolled_back)


def watch_pool(engine: Engine) -> None:
    """Connections in use, from the pool's own checkout and checkin events."""
    size = getattr(engine.pool, "size", None)
    if callable(size):
        DB_POOL_SIZE.set(size())

    def checkout(*_args: Any) -> None:
        DB_POOL_IN_USE.inc()
        DB_POOL_CHECKOUTS.inc()

    def checkin(*_args: Any) -> None:
        DB_POOL_IN_USE.dec()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)


_LIVE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def forget_dead_workers(folder: str) -> list[int]:
    """Live gauges (connections in use now) of worker processes that are gone.

    A worker that dies, killed or crashed, leaves its files behind, and a live
    gauge would count its connections for ever. gunicorn tells us when a
    worker exits (idp.gunicorn_conf); granian does not, so every scrape looks
    for files whose process no longer exists, whichever server runs. Their
    counters and histograms stay: what a dead worker counted still happened."""
    gone: set[int] = set()
    for name in os.listdir(folder):
        match = _LIVE_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            gone.add(pid)
        except PermissionError:  # alive, and someone else's
            continue
    for pid in gone:
        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
    return sorted(gone)


def exposition() -> tuple[bytes, str]:
    """The text a scrape reads: every worker's values when in multiprocess mode."""
    if MULTIPROCESS:
        forget_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed(spec: str) -> tuple[Network, ...]:
    """The `observability.metrics_allowed` setting, checked at start-up."""
    networks = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"observability.metrics_allowed: {part!r} is not an address or network"
            ) from exc
    return tuple(networks)


def allowed_by(networks: tuple[Network, ...]) -> Callable[[str | None], bool]:
    def allowed(address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in networks)

    return allowed
