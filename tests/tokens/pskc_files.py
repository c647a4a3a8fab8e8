"""PSKC files built the way RFC 6030's figures lay them out, for the tests.

Figure 2 (a plain HOTP key) and figure 6 (a secret encrypted with AES-128-CBC
under a pre-shared key, with the HMAC-SHA1 `ValueMAC` of section 6.1.1 and the
MAC key itself encrypted in `MACMethod/MACKey`) are rebuilt here with
`cryptography`, so each test can change exactly one thing about them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tokens.pskc import HOTP_URN, TOTP_URN

# RFC 4226 appendix D: the secret and the first ten HOTP values (6 digits).
RFC4226_SECRET = b"12345678901234567890"
RFC4226_CODES = [
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489",
]
# RFC 6030 section 6.1: the pre-shared key and the MAC key of figure 6.
PRESHARED_KEY = bytes.fromhex("12345678901234567890123456789012")
MAC_KEY = bytes.fromhex("1122334455667788990011223344556677889900")

__all__ = ["HOTP_URN", "TOTP_URN", "Package", "build_pskc", "cbc_encrypt"]


@dataclass
class Package:
    serial: str | None = "987654321"
    algorithm: str = HOTP_URN
    digits: int | None = 6
    secret: bytes | None = RFC4226_SECRET
    counter: int | None = 0
    interval: int | None = None
    key_id: str = "12345678"


def cbc_encrypt(key: bytes, plaintext: bytes, iv: bytes | None = None) -> bytes:
    """AES-CBC with PKCS#7 padding and the IV prefixed, as RFC 6030 section 6.1 says."""
    iv = iv or os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padded) + encryptor.finalize()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _secret_xml(secret: bytes, psk: bytes | None, mac_key: bytes, wrong_mac: bool) -> str:
    if psk is None:
        return f"<Secret><PlainValue>{_b64(secret)}</PlainValue></Secret>"
    blob = cbc_encrypt(psk, secret)
    mac = hmac.new(mac_key, blob, hashlib.sha1).digest()
    if wrong_mac:
        mac = bytes([mac[0] ^ 1]) + mac[1:]
    return (
        "<Secret><EncryptedValue>"
        '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
        f"<xenc:CipherData><xenc:CipherValue>{_b64(blob)}</xenc:CipherValue></xenc:CipherData>"
        f"</EncryptedValue><ValueMAC>{_b64(mac)}</ValueMAC></Secret>"
    )


def package_xml(
    p: Package, psk: bytes | None = None, mac_key: bytes = MAC_KEY, wrong_mac: bool = False
) -> str:
    device = (
        f"<DeviceInfo><Manufacturer>Manufacturer</Manufacturer><SerialNo>{p.serial}</SerialNo>"
        "</DeviceInfo>"
        if p.serial is not None
        else ""
    )
    response = (
        f'<AlgorithmParameters><ResponseFormat Length="{p.digits}" Encoding="DECIMAL"/>'
        "</AlgorithmParameters>"
        if p.digits is not None
        else ""
    )
    data = ""
    if p.secret is not None:
        data += _secret_xml(p.secret, psk, mac_key, wrong_mac)
    if p.counter is not None:
        data += f"<Counter><PlainValue>{p.counter}</PlainValue></Counter>"
    if p.interval is not None:
        data += f"<TimeInterval><PlainValue>{p.interval}</PlainValue></TimeInterval>"
    return (
        f"<KeyPackage>{device}<CryptoModuleInfo><Id>CM_ID_001</Id></CryptoModuleInfo>"
        f'<Key Id="{p.key_id}" Algorithm="{p.algorithm}"><Issuer>Issuer</Issuer>{response}'
        f"<Data>{data}</Data></Key></KeyPackage>"
    )


def build_pskc(
    packages: list[Package],
    *,
    psk: bytes | None = None,
    mac_key: bytes = MAC_KEY,
    wrong_mac_for: set[str] | None = None,
    prolog: str = "",
) -> bytes:
    """A KeyContainer; with `psk`, every secret is encrypted and MACed (figure 6)."""
    header = ""
    if psk is not None:
        header = (
            "<EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>"
            '<MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1"><MACKey>'
            '<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
            "<xenc:CipherData><xenc:CipherValue>"
            f"{_b64(cbc_encrypt(psk, mac_key))}"
            "</xenc:CipherValue></xenc:CipherData></MACKey></MACMethod>"
        )
    body = "".join(
        package_xml(p, psk, mac_key, p.serial in (wrong_mac_for or set())) for p in packages
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"{prolog}"
        '<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc" '
        'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        f"{header}{body}</KeyContainer>"
    ).encode()
