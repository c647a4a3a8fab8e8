"""What the relying party of federation costs this service, per sign-in.

A federated sign-in replaces step 1 (an argon2id verification of the password)
by an HTTP round trip to the organisation's token endpoint and the checks of
the ID token it returns. This measures, in this process, on one core:

- the ID token's checks with the provider's keys cached (the steady state):
  header, signature (ES256 and RS256), claims, nonce;
- the same with a cold cache: discovery and JWKS fetched from a provider on
  loopback (a small HTTP server in this process, serving the documents only);
- one argon2id verification with the shipped parameters, for comparison.

The token endpoint's round trip is the provider's to answer and is not
measured here. Run: `.venv/bin/python bench/federation.py [--count N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # keep bench/tokens.py from shadowing the tokens package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from core.settings import load_settings
from idp.federation.upstream import MetadataCache, validate_id_token
from tokens.passwords import SecretHasher

CLIENT_ID = "contactpoint"


def _provider(keys: KeySet) -> tuple[ThreadingHTTPServer, str]:
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    documents["/.well-known/openid-configuration"] = json.dumps({
        "issuer": base, "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks.json",
    }).encode()
    documents["/jwks.json"] = json.dumps(keys.as_dict(private=False)).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, base


def _tokens(base: str, key: ECKey | RSAKey, alg: str, count: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode({"alg": alg, "kid": key.kid},
                   {"iss": base, "aud": CLIENT_ID, "sub": f"person-{i}", "iat": now,
                    "exp": now + 300, "nonce": f"nonce-{i}", "acr": "urn:example:mfa"},
                   key, algorithms=[alg])
        for i in range(count)
    ]


def _timed(work: Callable[[int], object], count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        work(i)
        times.append(time.perf_counter() - start)
    return times


def _row(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"| {label:<46} | {len(times):>6} | {p50:>8.3f} | {p99:>8.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="ID tokens checked per kind")
    args = parser.parse_args()
    count = max(10, args.count)
    es = ECKey.generate_key("P-256", parameters={"kid": "es-1"})
    rs = RSAKey.generate_key(2048, parameters={"kid": "rs-1"})
    server, base = _provider(KeySet([es, rs]))
    try:
        warm = MetadataCache()
        found = warm.discovery(base)
        warm.keys(found)
        results = []
        for key, alg in ((es, "ES256"), (rs, "RS256")):
            tokens = _tokens(base, key, alg, count)

            def check(i: int, tokens: list[str] = tokens) -> object:
                return validate_id_token(tokens[i], found, warm, CLIENT_ID, f"nonce-{i}",
                                         time.time())

            results.append(_row(f"ID token checks, keys cached ({alg})", _timed(check, count)))
        cold_count = max(10, count // 10)
        cold_tokens = _tokens(base, es, "ES256", cold_count)

        def cold(i: int) -> object:
            cache = MetadataCache()
            return validate_id_token(cold_tokens[i], cache.discovery(base), cache, CLIENT_ID,
                                     f"nonce-{i}", time.time())

        results.append(_row("discovery + JWKS fetched, then checks (ES256)",
                            _timed(cold, cold_count)))
        root = Path(__file__).resolve().parent.parent
        settings = load_settings(environ={}, overrides={
            "service": {"instance_dir": str(root / "instance")}})
        hasher = SecretHasher(settings.argon2)
        stored = hasher.hash("correct horse battery staple 42")
        argon_count = max(10, count // 40)
        results.append(_row(
            f"argon2id verify (m={settings.argon2.memory_kib} KiB, t={settings.argon2.time_cost})",
            _timed(lambda _i: hasher.verify(stored, "correct horse battery staple 42"),
                   argon_count)))
    finally:
        server.shutdown()
    print("| what (one core, this process)                  | count  | p50 ms   | p99 ms   |")
    print("|------------------------------------------------|--------|----------|----------|")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
