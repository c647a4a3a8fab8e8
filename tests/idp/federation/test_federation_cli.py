"""`contactpoint federation add|list|test|remove`, run as an operator runs it,
against a live upstream provider; errors in one line that name the step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from core.audit import AuditEntry
from directory.models import Organisation
from idp.cli import operator
from idp.federation.models import UpstreamProvider
from tests.factories import World
from tests.idp.federation.conftest import UpstreamIdp, free_port
from tests.idp.federation.meanwhile import assert_the_first_stands, provider_added_meanwhile
from tests.idp.test_cli import Cli, _one_line_error


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path / "cli-instance")
    yield runner
    runner.close()


@pytest.fixture
def org(cli: Cli) -> Iterator[Organisation]:
    world = World(cli.container())
    yield world.organisation("Northshire County Council")
    world.close()


def _secret_file(tmp_path: Path, upstream: UpstreamIdp) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(upstream.secret + "\n")
    return path


def test_add_list_test_and_remove_a_provider(
    cli: Cli, org: Organisation, upstream: UpstreamIdp, tmp_path: Path
) -> None:
    added = cli("federation", "add", org.code, "--issuer", upstream.base,
                "--client-id", upstream.client_id,
                "--client-secret-file", str(_secret_file(tmp_path, upstream)),
                "--username-claim", "preferred_username", "--accept-acr", "AAL2",
                "--reason", "the council's own sign-in")
    assert added.exit_code == 0, added.output
    assert f"{org.code}: provider {upstream.base} added (client_secret_basic)" in added.output
    assert "/sign-in/organisation/callback" in added.output
    listed = cli("federation", "list")
    assert listed.exit_code == 0
    assert org.code in listed.output and upstream.client_id in listed.output
    assert "accepted acr: AAL2" in listed.output
    assert upstream.secret not in listed.output
    tested = cli("federation", "test", org.code)
    assert tested.exit_code == 0, tested.output
    assert f"discovery: ok ({upstream.base})" in tested.output
    assert "jwks: ok (4 keys" in tested.output  # the upstream's ES256 and RS256, now and next
    # The secret is sent to the provider, so it is encrypted, never stored as typed.
    with cli.container().unit() as unit:
        stored = unit.session.scalar(select(UpstreamProvider.credential_ciphertext))
        assert stored and upstream.secret not in stored
        dump = " ".join(str(row) for row in unit.session.execute(
            text("SELECT * FROM upstream_provider")))
        assert upstream.secret not in dump
        tags = list(unit.session.scalars(select(AuditEntry.tag)))
        assert "federation:provider:added" in tags
    # Every change says why, as every act of the platform's does (one line if not).
    _one_line_error(cli("federation", "accept-acr", org.code), "reason: Enter the reason")
    _one_line_error(cli("federation", "remove", org.code), "reason: Enter the reason")
    assert "accepted acr: AAL2" in cli("federation", "list").output
    changed = cli("federation", "accept-acr", org.code, "--reason", "AAL2 not enough")
    assert changed.output.strip() == f"{org.code}: accepted acr: none (token and PIN always asked)"
    removed = cli("federation", "remove", org.code, "--reason", "contract ended")
    assert removed.exit_code == 0
    with cli.container().unit() as unit:
        reasons = {e.tag: e.detail.get("reason") for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("federation:%")))}
    assert reasons == {"federation:provider:added": "the council's own sign-in",
                       "federation:policy:changed": "AAL2 not enough",
                       "federation:provider:removed": "contract ended"}
    assert "provider removed, with 0 linked accounts" in removed.output
    assert cli("federation", "list").output.strip() == "no providers"


def test_test_names_the_step_that_failed(cli: Cli, org: Organisation, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    nobody = f"http://127.0.0.1:{free_port()}"
    assert cli("federation", "add", org.code, "--issuer", nobody, "--client-id", "cp",
               "--client-secret-file", str(secret), "--username-claim", "email",
               "--reason", "test").exit_code == 0
    _one_line_error(cli("federation", "test", org.code), "discovery: cannot fetch", nobody)


def test_add_refuses_bad_input_in_one_line(
    cli: Cli, org: Organisation, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    base = ["federation", "add", org.code, "--client-id", "cp", "--username-claim", "email",
            "--reason", "new provider"]
    _one_line_error(cli(*base, "--issuer", "http://idp.example.org",
                        "--client-secret-file", str(secret)), "issuer: must be an https URL")
    _one_line_error(cli(*base, "--issuer", "https://idp.example.org"),
                    "give one of --client-secret-file or --private-key-file")
    _one_line_error(cli(*base, "--issuer", "https://idp.example.org",
                        "--private-key-file", str(key)), "private_key: not an RSA or EC")
    _one_line_error(cli(*base, "--issuer", "https://idp.example.org",
                        "--client-secret-file", str(tmp_path / "missing")),
                    "cannot read the client secret")
    _one_line_error(cli("federation", "test", "NOPE"), "no organisation with code 'NOPE'")
    _one_line_error(cli("federation", "test", org.code), "this organisation has no provider")
    assert cli(*base, "--issuer", "https://idp.example.org",
               "--client-secret-file", str(secret)).exit_code == 0
    _one_line_error(cli(*base, "--issuer", "https://other.example.org",
                        "--client-secret-file", str(secret)), "already has a provider")


def test_a_provider_added_meanwhile_is_refused_in_one_line_as_a_second_one(
    cli: Cli, org: Organisation, tmp_path: Path
) -> None:
    """Two operators at once: the later write meets the unique column."""
    secret = tmp_path / "secret"
    secret.write_text("the-operators-secret")
    with provider_added_meanwhile(cli.container(), operator(), org.id):
        refused = cli("federation", "add", org.code, "--issuer", "https://second.example.org",
                      "--client-id", "cp", "--username-claim", "email",
                      "--client-secret-file", str(secret), "--reason", "second of two")
    _one_line_error(refused, "already has a provider")
    assert_the_first_stands(cli.container(), org.id)
