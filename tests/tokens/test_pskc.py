"""The PSKC parser on RFC 6030's own examples and on the files it must refuse.

No database here: the parser is pure. Duplicate serials already stored are
tested with the inventory (tests/tokens/test_inventory.py)."""

from __future__ import annotations

import pytest

import tokens.pskc as pskc
from core.errors import InvalidInput
from tests.tokens.pskc_files import (
    HOTP_URN,
    PRESHARED_KEY,
    RFC4226_SECRET,
    TOTP_URN,
    Package,
    build_pskc,
)
from tokens.models import OtpAlgorithm
from tokens.pskc import parse_pskc, read_preshared_key, read_pskc

# RFC 6030 figure 6, verbatim but for whitespace: AES-128-CBC with the HMAC-SHA1 MAC.
RFC6030_FIGURE_6 = b"""<?xml version="1.0" encoding="UTF-8"?>
<pskc:KeyContainer
  xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"
  xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"
  xmlns:ds="http://www.w3.org/2000/09/xmldsig#"
  Version="1.0">
    <pskc:EncryptionKey>
        <ds:KeyName>Pre-shared-key</ds:KeyName>
    </pskc:EncryptionKey>
    <pskc:MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
        <pskc:MACKey>
            <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
            <xenc:CipherData>
                <xenc:CipherValue>
ESIzRFVmd4iZABEiM0RVZgKn6WjLaTC1sbeBMSvIhRejN9vJa2BOlSaMrR7I5wSX
                </xenc:CipherValue>
            </xenc:CipherData>
        </pskc:MACKey>
    </pskc:MACMethod>
    <pskc:KeyPackage>
        <pskc:DeviceInfo>
            <pskc:Manufacturer>Manufacturer</pskc:Manufacturer>
            <pskc:SerialNo>987654321</pskc:SerialNo>
        </pskc:DeviceInfo>
        <pskc:CryptoModuleInfo>
            <pskc:Id>CM_ID_001</pskc:Id>
        </pskc:CryptoModuleInfo>
        <pskc:Key Id="12345678" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">
            <pskc:Issuer>Issuer</pskc:Issuer>
            <pskc:AlgorithmParameters>
                <pskc:ResponseFormat Length="8" Encoding="DECIMAL"/>
            </pskc:AlgorithmParameters>
            <pskc:Data>
                <pskc:Secret>
                    <pskc:EncryptedValue>
                        <xenc:EncryptionMethod
                          Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
                        <xenc:CipherData>
                            <xenc:CipherValue>
AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv
                            </xenc:CipherValue>
                        </xenc:CipherData>
                    </pskc:EncryptedValue>
                    <pskc:ValueMAC>Su+NvtQfmvfJzF6bmQiJqoLRExc=</pskc:ValueMAC>
                </pskc:Secret>
                <pskc:Counter>
                    <pskc:PlainValue>0</pskc:PlainValue>
                </pskc:Counter>
            </pskc:Data>
        </pskc:Key>
    </pskc:KeyPackage>
</pskc:KeyContainer>
"""


def _problems(data: bytes, key: bytes | None = None) -> list[str]:
    with pytest.raises(InvalidInput) as refused:
        parse_pskc(data, source="vendor.xml", preshared_key=key)
    assert all(p.source == "vendor.xml" for p in refused.value.problems)
    return [p.describe() for p in refused.value.problems]


class TestAccepted:
    def test_plain_hotp_as_in_figure_2(self) -> None:
        (package,) = parse_pskc(
            build_pskc([Package(digits=8, counter=7)]), source="vendor.xml"
        )
        assert package.serial == "987654321"
        assert package.algorithm is OtpAlgorithm.HOTP
        assert package.digits == 8
        assert package.counter == 7
        assert package.secret == RFC4226_SECRET
        assert package.index == 1
        assert "1234567890" not in repr(package)  # the secret stays out of logs

    def test_totp_with_its_time_interval(self) -> None:
        (package,) = parse_pskc(
            build_pskc([Package(algorithm=TOTP_URN, counter=None, interval=60)]),
            source="vendor.xml",
        )
        assert package.algorithm is OtpAlgorithm.TOTP
        assert package.period_seconds == 60

    def test_rfc_6030_figure_6_verbatim(self) -> None:
        (package,) = parse_pskc(RFC6030_FIGURE_6, source="fig6.xml", preshared_key=PRESHARED_KEY)
        assert package.secret == RFC4226_SECRET
        assert package.digits == 8
        assert package.serial == "987654321"

    def test_encrypted_with_the_mac_built_with_cryptography(self) -> None:
        serials = [f"HW{n:04d}" for n in range(5)]
        packages = parse_pskc(
            build_pskc([Package(serial=s) for s in serials], psk=PRESHARED_KEY),
            source="vendor.xml",
            preshared_key=PRESHARED_KEY,
        )
        assert [p.serial for p in packages] == serials
        assert all(p.secret == RFC4226_SECRET for p in packages)

    def test_key_file_as_hex_or_raw(self) -> None:
        assert read_preshared_key(b"12345678901234567890123456789012\n") == PRESHARED_KEY
        assert read_preshared_key(PRESHARED_KEY) == PRESHARED_KEY
        with pytest.raises(InvalidInput):
            read_preshared_key(b"too short")


class TestRefused:
    def test_a_wrong_mac_refuses_the_file_before_any_secret_is_decrypted(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        decrypted: list[int] = []
        real = pskc._cbc_decrypt

        def spy(key: bytes, blob: bytes) -> bytes:
            decrypted.append(len(blob))
            return real(key, blob)

        monkeypatch.setattr(pskc, "_cbc_decrypt", spy)
        data = build_pskc(
            [Package(serial="GOOD1"), Package(serial="BAD2"), Package(serial="GOOD3")],
            psk=PRESHARED_KEY,
            wrong_mac_for={"BAD2"},
        )
        problems = _problems(data, PRESHARED_KEY)
        assert problems == [
            "vendor.xml, row 2, ValueMAC: serial BAD2: the MAC does not match: the secret "
            "was altered or the key is wrong"
        ]
        # Only the MAC key was decrypted: no secret, not even the good ones.
        assert decrypted == [48]

    def test_a_wrong_preshared_key_fails_every_mac(self) -> None:
        data = build_pskc([Package(serial="A"), Package(serial="B")], psk=PRESHARED_KEY)
        problems = _problems(data, bytes(16))
        assert len(problems) in (1, 2)  # the MAC key fails to unpad, or every MAC fails
        assert all("MAC" in p for p in problems)

    def test_encrypted_without_a_key(self) -> None:
        problems = _problems(build_pskc([Package()], psk=PRESHARED_KEY))
        assert any("pre-shared key" in p for p in problems)

    def test_a_doctype_with_an_external_entity(self) -> None:
        prolog = '<!DOCTYPE KeyContainer [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        data = build_pskc([Package(serial="&xxe;")], prolog=prolog)
        (problem,) = _problems(data)
        assert problem.startswith("vendor.xml, document: refused: DTDForbidden")
        assert "root:" not in problem

    def test_a_billion_laughs_expansion(self) -> None:
        entities = '<!ENTITY lol "lol">' + "".join(
            f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n > 1 else "&lol;" * 10}">'
            for n in range(1, 10)
        )
        data = build_pskc([Package(serial="&lol9;")], prolog=f"<!DOCTYPE lolz [{entities}]>\n")
        (problem,) = _problems(data)
        assert "DTDForbidden" in problem

    def test_malformed_xml(self) -> None:
        (problem,) = _problems(build_pskc([Package()])[:-20])
        assert "document: not well-formed XML" in problem

    def test_unknown_algorithm(self) -> None:
        data = build_pskc(
            [Package(serial="S1"), Package(serial="S2", algorithm="urn:example:ocra")]
        )
        assert _problems(data) == [
            "vendor.xml, row 2, Key: serial S2: algorithm 'urn:example:ocra' is not HOTP or TOTP"
        ]

    def test_duplicate_serial_in_the_file(self) -> None:
        data = build_pskc([Package(serial="D1"), Package(serial="D2"), Package(serial="D1")])
        assert _problems(data) == [
            "vendor.xml, row 3, SerialNo: serial D1 appears again (first in key package 1)"
        ]

    def test_missing_secret(self) -> None:
        data = build_pskc([Package(serial="NOSECRET", secret=None)])
        assert _problems(data) == ["vendor.xml, row 1, Secret: serial NOSECRET: the key has "
                                   "no Secret"]

    @pytest.mark.parametrize("digits", [4, 9, 0])
    def test_bad_digits(self, digits: int) -> None:
        problems = _problems(build_pskc([Package(serial="DIG", digits=digits)]))
        assert problems == [f"vendor.xml, row 1, ResponseFormat: serial DIG: Length "
                            f"'{digits}' must be 6 to 8 digits"]

    def test_every_problem_is_listed_with_its_row_and_serial(self) -> None:
        data = build_pskc(
            [
                Package(serial="OK1"),
                Package(serial="X2", algorithm="urn:nope"),
                Package(serial="X3", secret=None, digits=None),
                Package(serial=None, key_id=""),
                Package(serial="X5", secret=b"short"),
            ]
        )
        parsed = read_pskc(data, source="vendor.xml")
        assert parsed.packages == []
        where = [(p.row, p.field) for p in parsed.problems]
        assert where == [
            (2, "Key"), (3, "ResponseFormat"), (3, "Secret"), (4, "SerialNo"), (5, "Secret"),
        ]

    def test_hotp_urn_constants_are_the_rfc_ones(self) -> None:
        assert HOTP_URN == "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
        assert TOTP_URN == "urn:ietf:params:xml:ns:keyprov:pskc:totp"
