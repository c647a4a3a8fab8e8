"""The relying party's own checks: the metadata cache's refresh rules, and ID
tokens refused before any key is trusted (alg none, HS256, a stranger's key)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from idp.federation.upstream import (
    Discovery,
    MetadataCache,
    UpstreamRefused,
    UpstreamUnavailable,
    validate_id_token,
)
from tests.idp.federation.conftest import UpstreamIdp


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _claims(upstream: UpstreamIdp, nonce: str = "n-1") -> dict[str, object]:
    now = int(time.time())
    return {"iss": upstream.base, "aud": upstream.client_id, "sub": "someone", "iat": now,
            "exp": now + 300, "nonce": nonce}


def test_discovery_and_keys_are_fetched_once_and_refreshed_on_an_unknown_kid_at_most_so_often(
    upstream: UpstreamIdp,
) -> None:
    ticks = Ticks()
    cache = MetadataCache(ttl_seconds=3600, refresh_seconds=30, monotonic=ticks)
    found = cache.discovery(upstream.base)
    assert cache.discovery(upstream.base) is found
    assert cache.fetches == 1
    keys = cache.keys(found)
    known = str(keys.keys[0].kid)
    assert cache.keys(found, known) is keys and cache.fetches == 2
    # An unknown kid soon after a fetch: no new fetch (forged kids cannot make us hammer).
    cache.keys(found, "no-such-kid")
    assert cache.fetches == 2
    ticks.now += 31
    cache.keys(found, "no-such-kid")
    assert cache.fetches == 3
    cache.keys(found, "no-such-kid")
    assert cache.fetches == 3
    # A known kid never refetches until the copy is an hour old.
    ticks.now += 3600
    cache.keys(found, known)
    cache.discovery(upstream.base)
    assert cache.fetches == 5


def test_a_discovery_document_naming_another_issuer_is_refused(upstream: UpstreamIdp) -> None:
    with pytest.raises(UpstreamUnavailable, match=r"^discovery: the document names issuer"):
        MetadataCache().discovery(upstream.base + "/")


def _discovery(upstream: UpstreamIdp) -> Discovery:
    return MetadataCache().discovery(upstream.base)


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_and_symmetric_id_tokens_are_refused(upstream: UpstreamIdp, alg: str) -> None:
    claims = _claims(upstream)
    if alg == "none":
        def part(value: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
        token = f"{part({'alg': 'none'})}.{part(claims)}."
    else:
        # Keyed with the client secret, which anyone holding it could forge.
        key = OctKey.import_key(upstream.secret)
        token = jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])
    cache = MetadataCache()
    with pytest.raises(UpstreamRefused, match="algorithm"):
        validate_id_token(token, _discovery(upstream), cache, upstream.client_id, "n-1",
                          time.time())
    assert cache.fetches == 0  # refused before any key was looked up


def test_an_id_token_signed_by_a_key_the_provider_does_not_publish_is_refused(
    upstream: UpstreamIdp,
) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "forged"})
    token = jwt.encode({"alg": "ES256", "kid": "forged"}, _claims(upstream), stranger,
                       algorithms=["ES256"])
    with pytest.raises(UpstreamRefused, match=r"^bad signature"):
        validate_id_token(token, _discovery(upstream), MetadataCache(), upstream.client_id,
                          "n-1", time.time())
