"""Hardware tokens: PSKC import rate and OTP verifications per second.

    .venv/bin/python bench/tokens.py                       # SQLite (a throwaway file)
    .venv/bin/python bench/tokens.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/tokens.py --count 20000 --encrypted

Import: a PSKC file of `--count` HOTP tokens (100,000 by default) is generated,
then parsed (defusedxml, every MAC checked first when `--encrypted`) and
imported through `InventoryService.import_packages`: each seed sealed with the
data key, the tokens and one history event each written with bulk INSERTs, one
audit entry, one commit. Parse and import are timed apart and together, as
`contactpoint tokens import` runs them.

Verification: `OtpVerifier.verify` on an imported TOTP token, in one process,
for a wrong code (decrypt the seed, three HMACs for the ±1 step window; no
write) and for a right code (the same, plus the conditional UPDATE that claims
the step, and its commit: the clock moves one step before each).

With PostgreSQL the URL names a server and a database to connect to; the
benchmark creates a database of its own beside it and drops it afterwards.
This is a benchmark, not a test: it prints.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import platform
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

# Run as `python bench/tokens.py`, this folder comes first on sys.path and this
# file would shadow the `tokens` package it measures: take the folder off.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import pyotp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import select, text

from core.audit import AuditContext
from core.clock import FrozenClock
from core.db import make_engine
from core.settings import InstanceSecrets, load_settings
from directory.models import OrganisationKind, Role
from directory.service import Grant, Principal
from idp.container import Container
from idp.database import scratch_database, upgrade
from tokens.models import OtpToken
from tokens.pskc import parse_pskc

OPERATOR = Principal(0, "cli:bench", (Grant(0, Role.PLATFORM_ADMIN),))
PSK = bytes.fromhex("12345678901234567890123456789012")
MAC_KEY = bytes.fromhex("1122334455667788990011223344556677889900")


def _cbc(key: bytes, plaintext: bytes) -> bytes:
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(padded) + enc.finalize()


def generate_pskc(count: int, *, encrypted: bool, prefix: str) -> bytes:
    """A vendor-like file: DeviceInfo, CryptoModuleInfo, 6-digit HOTP, random 20-byte seeds."""
    b64 = base64.b64encode
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<KeyContainer Version="1.0" '
        'xmlns="urn:ietf:params:xml:ns:keyprov:pskc" '
        'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
    ]
    aes = '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
    if encrypted:
        parts.append(
            "<EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>"
            '<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"><MACKey>'
            f"{aes}<xenc:CipherData><xenc:CipherValue>{b64(_cbc(PSK, MAC_KEY)).decode()}"
            "</xenc:CipherValue></xenc:CipherData></MACKey></MACMethod>"
        )
    for n in range(count):
        seed = secrets.token_bytes(20)
        if encrypted:
            blob = _cbc(PSK, seed)
            mac = hmac.new(MAC_KEY, blob, hashlib.sha1).digest()
            secret = (
                f"<Secret><EncryptedValue>{aes}<xenc:CipherData><xenc:CipherValue>"
                f"{b64(blob).decode()}</xenc:CipherValue></xenc:CipherData></EncryptedValue>"
                f"<ValueMAC>{b64(mac).decode()}</ValueMAC></Secret>"
            )
        else:
            secret = f"<Secret><PlainValue>{b64(seed).decode()}</PlainValue></Secret>"
        parts.append(
            "<KeyPackage><DeviceInfo><Manufacturer>Bench</Manufacturer>"
            f"<SerialNo>{prefix}{n:08d}</SerialNo></DeviceInfo>"
            f'<Key Id="{prefix}{n:08d}" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">'
            '<AlgorithmParameters><ResponseFormat Length="6" Encoding="DECIMAL"/>'
            f"</AlgorithmParameters><Data>{secret}<Counter><PlainValue>0</PlainValue></Counter>"
            "</Data></Key></KeyPackage>"
        )
    parts.append("</KeyContainer>")
    return "".join(parts).encode()


def totp_file() -> bytes:
    seed = base64.b64encode(secrets.token_bytes(20)).decode()
    return (
        '<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage>'
        "<DeviceInfo><SerialNo>BENCH-TOTP</SerialNo></DeviceInfo>"
        '<Key Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><AlgorithmParameters>'
        '<ResponseFormat Length="6" Encoding="DECIMAL"/></AlgorithmParameters><Data>'
        f"<Secret><PlainValue>{seed}</PlainValue></Secret>"
        "<TimeInterval><PlainValue>30</PlainValue></TimeInterval></Data></Key></KeyPackage>"
        "</KeyContainer>"
    ).encode()


def run(database_url: str, instance_dir: Path, count: int, encrypted: bool,
        verifications: int) -> list[tuple[str, str, str]]:
    engine = make_engine(database_url)
    upgrade(engine)
    settings = load_settings(
        overrides={"service": {"instance_dir": str(instance_dir)},
                   "database": {"url": database_url}},
        environ={},
    )
    keys = InstanceSecrets(session_key=secrets.token_bytes(32), data_key=secrets.token_bytes(32))
    clock = FrozenClock()
    container = Container(settings, secrets=keys, clock=clock, engine=engine)
    rows: list[tuple[str, str, str]] = []
    with container.unit(AuditContext(actor_label="cli:bench")) as unit:
        org = unit.directory.create_organisation(
            code="BENCH", name="Bench Council", kind=OrganisationKind.LOCAL_AUTHORITY,
            accredited=True,
        )
        unit.commit()
        data = generate_pskc(count, encrypted=encrypted, prefix="B")
        started = time.perf_counter()
        packages = parse_pskc(data, source="bench.xml", preshared_key=PSK if encrypted else None)
        parsed = time.perf_counter()
        unit.inventory.import_packages(OPERATOR, org, packages, source="bench.xml", reason="bench")
        unit.commit()
        done = time.perf_counter()
        stored = unit.session.scalar(
            select(text("count(*)")).select_from(OtpToken).where(
                OtpToken.organisation_id == org.id)
        )
        assert stored == count, stored
        kind = "encrypted + MAC" if encrypted else "plain"
        size = f"{len(data) / 1e6:.1f} MB"
        rows.append((f"parse {count:,} tokens ({kind}, {size})",
                     f"{count / (parsed - started):,.0f} /s", f"{parsed - started:.2f} s"))
        rows.append(("import (seal, bulk insert, commit)",
                     f"{count / (done - parsed):,.0f} /s", f"{done - parsed:.2f} s"))
        rows.append(("parse + import, as `tokens import` runs",
                     f"{count / (done - started):,.0f} /s", f"{done - started:.2f} s"))

        (totp,) = parse_pskc(totp_file(), source="totp.xml")
        unit.inventory.import_packages(OPERATOR, org, [totp], source="totp.xml", reason="bench")
        unit.commit()
        token = unit.session.scalars(
            select(OtpToken).where(OtpToken.serial == "BENCH-TOTP")).one()
        secret = unit.otp.secret_of(token)
        otp = pyotp.TOTP(secret)
        wrong = "000000" if otp.at(clock.now()) != "000000" else "111111"
        started = time.perf_counter()
        for _ in range(verifications):
            assert not unit.otp.verify(token, wrong)
        elapsed = time.perf_counter() - started
        rows.append(("OtpVerifier.verify, wrong code (no write)",
                     f"{verifications / elapsed:,.0f} /s",
                     f"{elapsed / verifications * 1e6:.0f} µs each"))
        rights = max(1, verifications // 10)
        started = time.perf_counter()
        for _ in range(rights):
            clock.advance(seconds=30)
            assert unit.otp.verify(token, otp.at(clock.now()))
            unit.commit()
        elapsed = time.perf_counter() - started
        rows.append(("OtpVerifier.verify, right code (claim + commit)",
                     f"{rights / elapsed:,.0f} /s", f"{elapsed / rights * 1e6:.0f} µs each"))
    container.dispose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server URL; a database of its own is made beside it")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--encrypted", action="store_true",
                        help="secrets AES-128-CBC encrypted with the RFC 6030 MAC")
    parser.add_argument("--verifications", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-tokens-") as tmp, ExitStack() as stack:
        if args.database_url:
            url, _name = stack.enter_context(scratch_database(args.database_url, "cp_bench"))
            backend = "PostgreSQL"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            backend = "SQLite (WAL)"
        rows = run(url, Path(tmp) / "instance", args.count, args.encrypted,
                       args.verifications)
    print(f"Hardware tokens on {backend}; Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, one process")
    print(f"  {'measure':<52} {'rate':>14}  time")
    print("  " + "-" * 84)
    for label, rate, note in rows:
        print(f"  {label:<52} {rate:>14}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
