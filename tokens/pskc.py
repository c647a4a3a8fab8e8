"""RFC 6030 PSKC files: the seeds of hardware OATH tokens, as vendors ship them.

A vendor file is untrusted input that carries secrets, so the parser is strict:

- It is read with defusedxml, with DTDs forbidden outright: no external
  entity can read a local file, no entity expansion (billion laughs) can
  exhaust memory.
- Secrets may be plain (`PlainValue`) or encrypted under a pre-shared key
  (AES-CBC, the IV prefixed to the ciphertext, RFC 6030 section 6.1). An
  encrypted secret must carry a `ValueMAC`; the MAC key is itself encrypted
  under the pre-shared key in `MACMethod/MACKey` (section 6.1.1). Every MAC in
  the file is checked, in constant time, before any secret is decrypted: a
  tampered file is refused as a whole without ever running the decryption
  (and its padding check) on an attacker's ciphertext.
- Every problem is collected, each naming the element, the key package's
  place in the file and its serial, so a vendor can be told exactly what to
  fix. A file with any problem imports nothing (the caller enforces that).

Nothing here touches the database: duplicate serials already stored are the
inventory service's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

from core.errors import FieldProblem, InvalidInput
from tokens.models import OtpAlgorithm

PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
HOTP_URN = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
TOTP_URN = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
ALGORITHMS = {HOTP_URN: OtpAlgorithm.HOTP, TOTP_URN: OtpAlgorithm.TOTP}
# Encryption algorithm URI -> key length in bytes.
CIPHERS = {
    f"{XENC_NS}aes128-cbc": 16,
    f"{XENC_NS}aes192-cbc": 24,
    f"{XENC_NS}aes256-cbc": 32,
}
MACS: dict[str, Callable[[], object]] = {
    f"{DS_NS}hmac-sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": hashlib.sha256,
}
MIN_DIGITS, MAX_DIGITS = 6, 8
# RFC 4226 section 4, R6: the shared secret is at least 128 bits.
MIN_SECRET_BYTES = 16
MAX_COUNTER = 2**31 - 1  # the column is a 32-bit integer


def _q(name: str, ns: str = PSKC_NS) -> str:
    return f"{{{ns}}}{name}"


@dataclass(frozen=True)
class KeyPackage:
    """One token from the file, its secret in the clear: keep it in memory only
    as long as it takes to seal it with the data key."""

    index: int
    serial: str
    algorithm: OtpAlgorithm
    digits: int
    secret: bytes = field(repr=False)
    counter: int = 0
    period_seconds: int = 30
    drift_steps: int = 0


@dataclass
class PskcFile:
    source: str
    packages: list[KeyPackage]
    problems: list[FieldProblem]

    def raise_if_problems(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)


def read_preshared_key(raw: bytes) -> bytes:
    """A key file holds the key as hex (as RFC 6030's examples print it) or as raw bytes."""
    text = raw.strip()
    try:
        decoded = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        decoded = raw
    if len(decoded) not in (16, 24, 32):
        raise InvalidInput(
            FieldProblem("key-file", "The pre-shared key must be 16, 24 or 32 bytes (or hex)")
        )
    return decoded


def _cbc_decrypt(key: bytes, blob: bytes) -> bytes:
    """AES-CBC with the IV prefixed, PKCS#7 padding removed; ValueError if malformed."""
    if len(blob) < 32 or len(blob) % 16:
        raise ValueError("the ciphertext is not a whole number of AES blocks after the IV")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(blob[:16])).decryptor()
    padded = decryptor.update(blob[16:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise ValueError("the padding is not valid")
    return padded[:-pad]


@dataclass
class _Pending:
    """A key package parsed but for its secret, which waits for the MAC checks."""

    index: int
    serial: str
    algorithm: OtpAlgorithm
    digits: int
    counter: int
    period_seconds: int
    drift_steps: int
    plain: bytes | None = None
    encrypted: bytes | None = None
    encryption: str | None = None
    mac: bytes | None = None


class _Reader:
    def __init__(self, source: str, preshared_key: bytes | None) -> None:
        self.source = source
        self.key = preshared_key
        self.problems: list[FieldProblem] = []

    def problem(self, element: str, message: str, row: int | None = None) -> None:
        self.problems.append(FieldProblem(element, message, row=row, source=self.source))

    # -- small typed readers --------------------------------------------------

    def b64(self, element: Element | None, name: str, row: int | None, serial: str) -> bytes | None:
        if element is None or not (element.text or "").strip():
            return None
        try:
            return base64.b64decode((element.text or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            self.problem(name, f"{self._who(serial)}is not valid base64", row)
            return None

    def integer(
        self, parent: Element | None, name: str, row: int, serial: str, default: int
    ) -> int | None:
        """An `<X><PlainValue>n</PlainValue></X>` integer; the default if absent."""
        if parent is None:
            return default
        if parent.find(_q("EncryptedValue")) is not None:
            self.problem(name, f"{self._who(serial)}an encrypted {name} is not supported", row)
            return None
        plain = parent.find(_q("PlainValue"))
        text = (plain.text or "").strip() if plain is not None else ""
        if not (text.isascii() and text.lstrip("-").isdigit()):
            self.problem(name, f"{self._who(serial)}{name} must be a whole number", row)
            return None
        return int(text)

    @staticmethod
    def _who(serial: str) -> str:
        return f"serial {serial}: " if serial else ""

    # -- the document ---------------------------------------------------------

    def read(self, data: bytes) -> list[KeyPackage]:
        try:
            root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        except DefusedXmlException as error:
            self.problem("document", f"refused: {type(error).__name__} (DTDs and entities are "
                         "not allowed in a PSKC file)")
            return []
        except ParseError as error:
            self.problem("document", f"not well-formed XML: {error}")
            return []
        if root.tag != _q("KeyContainer"):
            self.problem("KeyContainer", "the document is not a PSKC KeyContainer")
            return []
        if root.get("Version") not in ("1.0", None):
            self.problem("KeyContainer", f"version {root.get('Version')!r} is not supported")
        encryption_key = root.find(_q("EncryptionKey"))
        if encryption_key is not None and encryption_key.find(f".//{_q('DerivedKey')}") is not None:
            self.problem("EncryptionKey", "password-based (derived) keys are not supported; "
                         "use a pre-shared key")
        mac_key, mac_hash = self._mac_key(root)
        pending = self._packages(root)
        if self.problems:
            return []
        return self._open(pending, mac_key, mac_hash)

    def _mac_key(self, root: Element) -> tuple[bytes | None, Callable[[], object] | None]:
        method = root.find(_q("MACMethod"))
        if method is None:
            return None, None
        algorithm = method.get("Algorithm", "")
        digest = MACS.get(algorithm)
        if digest is None:
            self.problem("MACMethod", f"MAC algorithm {algorithm!r} is not supported")
            return None, None
        mac_key = method.find(_q("MACKey"))
        if mac_key is None:
            self.problem("MACKey", "MACMethod has no MACKey")
            return None, digest
        blob = self._cipher_value(mac_key, "MACKey", None, "")
        if blob is None:
            return None, digest
        if self.key is None:
            self.problem("MACKey", "the file is encrypted: give the pre-shared key (--key-file)")
            return None, digest
        try:
            # The MAC key is not itself MACed (RFC 6030 section 6.1.1); a wrong one
            # only makes every ValueMAC fail, which refuses the file.
            return _cbc_decrypt(self.key, blob), digest
        except ValueError:
            self.problem("MACKey", "the MAC key does not decrypt under the pre-shared key")
            return None, digest

    def _cipher_value(
        self, encrypted: Element, name: str, row: int | None, serial: str
    ) -> bytes | None:
        method = encrypted.find(_q("EncryptionMethod", XENC_NS))
        algorithm = method.get("Algorithm", "") if method is not None else ""
        size = CIPHERS.get(algorithm)
        if size is None:
            self.problem(name, f"{self._who(serial)}encryption {algorithm!r} is not supported",
                         row)
            return None
        if self.key is not None and len(self.key) != size:
            self.problem(name, f"{self._who(serial)}the pre-shared key is {len(self.key)} bytes; "
                         f"{algorithm.rsplit('#', 1)[-1]} needs {size}", row)
            return None
        value = encrypted.find(f"{_q('CipherData', XENC_NS)}/{_q('CipherValue', XENC_NS)}")
        blob = self.b64(value, name, row, serial)
        if blob is None:
            self.problem(name, f"{self._who(serial)}has no CipherValue", row)
        return blob

    def _packages(self, root: Element) -> list[_Pending]:
        pending: list[_Pending] = []
        seen: dict[str, int] = {}
        packages = root.findall(_q("KeyPackage"))
        if not packages:
            self.problem("KeyContainer", "the file holds no KeyPackage")
        for index, package in enumerate(packages, start=1):
            item = self._package(index, package)
            if item is None:
                continue
            if item.serial in seen:
                self.problem("SerialNo", f"serial {item.serial} appears again (first in key "
                             f"package {seen[item.serial]})", index)
                continue
            seen[item.serial] = index
            pending.append(item)
        return pending

    def _package(self, index: int, package: Element) -> _Pending | None:
        before = len(self.problems)
        key = package.find(_q("Key"))
        serial_el = package.find(f"{_q('DeviceInfo')}/{_q('SerialNo')}")
        serial = (serial_el.text or "").strip() if serial_el is not None else ""
        if not serial and key is not None:
            serial = (key.get("Id") or "").strip()
        if not serial:
            self.problem("SerialNo", "no DeviceInfo/SerialNo (nor Key Id)", index)
        elif len(serial) > 64 or not serial.isprintable():
            self.problem("SerialNo", f"serial {serial[:64]!r} is too long or not printable", index)
        if key is None:
            self.problem("Key", f"{self._who(serial)}the key package has no Key", index)
            return None
        uri = key.get("Algorithm", "")
        algorithm = ALGORITHMS.get(uri)
        if algorithm is None:
            self.problem("Key", f"{self._who(serial)}algorithm {uri!r} is not HOTP or TOTP",
                         index)
        response = key.find(f"{_q('AlgorithmParameters')}/{_q('ResponseFormat')}")
        digits = 0
        if response is None:
            self.problem("ResponseFormat", f"{self._who(serial)}no ResponseFormat: the number "
                         "of digits is unknown", index)
        else:
            length = response.get("Length", "")
            encoding = response.get("Encoding", "DECIMAL")
            if not (length.isascii() and length.isdigit()) or not (
                MIN_DIGITS <= int(length) <= MAX_DIGITS
            ):
                self.problem("ResponseFormat", f"{self._who(serial)}Length {length!r} must be "
                             f"{MIN_DIGITS} to {MAX_DIGITS} digits", index)
            else:
                digits = int(length)
            if encoding != "DECIMAL":
                self.problem("ResponseFormat", f"{self._who(serial)}Encoding {encoding!r} is not "
                             "DECIMAL", index)
        data = key.find(_q("Data"))
        counter = self.integer(
            data.find(_q("Counter")) if data is not None else None, "Counter", index, serial, 0
        )
        period = self.integer(
            data.find(_q("TimeInterval")) if data is not None else None,
            "TimeInterval", index, serial, 30,
        )
        t0 = self.integer(
            data.find(_q("Time")) if data is not None else None, "Time", index, serial, 0
        )
        drift = self.integer(
            data.find(_q("TimeDrift")) if data is not None else None, "TimeDrift", index, serial, 0
        )
        if counter is not None and not 0 <= counter <= MAX_COUNTER:
            self.problem("Counter", f"{self._who(serial)}Counter is out of range", index)
        if period is not None and not 1 <= period <= 3600:
            self.problem("TimeInterval", f"{self._who(serial)}TimeInterval must be 1 to 3600 "
                         "seconds", index)
        if t0 not in (0, None):
            self.problem("Time", f"{self._who(serial)}only a start time (T0) of 0 is supported",
                         index)
        if drift is not None and abs(drift) > 100:
            self.problem("TimeDrift", f"{self._who(serial)}TimeDrift is out of range", index)
        item = _Pending(
            index, serial, algorithm or OtpAlgorithm.HOTP, digits, counter or 0, period or 30,
            drift or 0,
        )
        self._secret(item, data.find(_q("Secret")) if data is not None else None)
        return item if len(self.problems) == before else None

    def _secret(self, item: _Pending, secret: Element | None) -> None:
        row, serial = item.index, item.serial
        if secret is None:
            self.problem("Secret", f"{self._who(serial)}the key has no Secret", row)
            return
        plain = secret.find(_q("PlainValue"))
        encrypted = secret.find(_q("EncryptedValue"))
        if plain is not None:
            item.plain = self.b64(plain, "PlainValue", row, serial)
            if item.plain is None:
                self.problem("Secret", f"{self._who(serial)}the PlainValue is empty", row)
            elif len(item.plain) < MIN_SECRET_BYTES:
                self.problem("Secret", f"{self._who(serial)}the secret is shorter than 128 bits",
                             row)
            return
        if encrypted is None:
            self.problem("Secret", f"{self._who(serial)}the Secret has no PlainValue or "
                         "EncryptedValue", row)
            return
        item.encrypted = self._cipher_value(encrypted, "EncryptedValue", row, serial)
        item.mac = self.b64(secret.find(_q("ValueMAC")), "ValueMAC", row, serial)
        if item.mac is None:
            self.problem("ValueMAC", f"{self._who(serial)}an encrypted secret needs a ValueMAC "
                         "(RFC 6030 section 6.1.1)", row)
        if self.key is None:
            self.problem("EncryptedValue", f"{self._who(serial)}the secret is encrypted: give "
                         "the pre-shared key (--key-file)", row)

    def _open(
        self,
        pending: list[_Pending],
        mac_key: bytes | None,
        mac_hash: Callable[[], object] | None,
    ) -> list[KeyPackage]:
        """Check every MAC first; only when all hold, decrypt."""
        for item in pending:
            if item.encrypted is None:
                continue
            if mac_key is None or mac_hash is None:
                self.problem("MACMethod", f"serial {item.serial}: an encrypted secret needs the "
                             "file's MACMethod with its MACKey", item.index)
                continue
            expected = hmac.new(mac_key, item.encrypted, mac_hash).digest()  # type: ignore[arg-type]
            if not hmac.compare_digest(expected, item.mac or b""):
                self.problem("ValueMAC", f"serial {item.serial}: the MAC does not match: the "
                             "secret was altered or the key is wrong", item.index)
        if self.problems:
            return []
        packages: list[KeyPackage] = []
        for item in pending:
            secret = item.plain
            if item.encrypted is not None:
                assert self.key is not None
                try:
                    secret = _cbc_decrypt(self.key, item.encrypted)
                except ValueError as error:
                    self.problem("EncryptedValue", f"serial {item.serial}: {error}", item.index)
                    continue
                if len(secret) < MIN_SECRET_BYTES:
                    self.problem("Secret", f"serial {item.serial}: the secret is shorter than "
                                 "128 bits", item.index)
                    continue
            assert secret is not None
            packages.append(
                KeyPackage(
                    index=item.index,
                    serial=item.serial,
                    algorithm=item.algorithm,
                    digits=item.digits,
                    secret=secret,
                    counter=item.counter,
                    period_seconds=item.period_seconds,
                    drift_steps=item.drift_steps,
                )
            )
        return packages if not self.problems else []


def read_pskc(data: bytes, *, source: str, preshared_key: bytes | None = None) -> PskcFile:
    """Parse a PSKC file; every problem found is listed, and then no package is returned."""
    reader = _Reader(source, preshared_key)
    packages = reader.read(data)
    return PskcFile(source, packages if not reader.problems else [], reader.problems)


def parse_pskc(data: bytes, *, source: str, preshared_key: bytes | None = None) -> list[KeyPackage]:
    """The packages of a PSKC file, or InvalidInput listing everything wrong with it."""
    parsed = read_pskc(data, source=source, preshared_key=preshared_key)
    parsed.raise_if_problems()
    return parsed.packages
