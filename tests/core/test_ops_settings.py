"""The operations settings refuse a value they cannot use, naming it."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.settings import load_settings
from idp.metrics import parse_allowed


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("shared_state", "throttling_when_unavailable", "maybe",
         "shared_state.throttling_when_unavailable"),
        ("shared_state", "replay_cache_when_unavailable", "ajar",
         "shared_state.replay_cache_when_unavailable"),
        ("observability", "log_format", "xml", "observability.log_format"),
        ("observability", "log_level", "LOUD", "observability.log_level"),
        ("observability", "trust_request_id", "perhaps", "observability.trust_request_id"),
    ],
)
def test_a_bad_value_is_refused_by_name(section: str, key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        load_settings(environ={f"CONTACTPOINT_{section.upper()}__{key.upper()}": value})


def test_the_defaults_fail_closed_and_allow_metrics_from_loopback_only() -> None:
    settings = load_settings(environ={})
    assert settings.shared_state.throttling_when_unavailable == "closed"
    assert settings.shared_state.replay_cache_when_unavailable == "closed"
    assert settings.observability.trust_request_id is False
    networks = parse_allowed(settings.observability.metrics_allowed)
    assert [str(n) for n in networks] == ["127.0.0.0/8", "::1/128"]


def test_metrics_allowed_names_the_entry_it_cannot_read() -> None:
    named = r"observability\.metrics_allowed: '10\.0\.0\.300'"
    with pytest.raises(ConfigurationError, match=named):
        parse_allowed("127.0.0.1, 10.0.0.300")
