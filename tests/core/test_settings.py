"""Settings: shipped defaults < operator's file < environment < overrides.

An operator relies on changing one value without copying the whole file, and on
being told at start-up, by name, about a setting that cannot be used.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import load_instance_secrets, load_settings


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "contactpoint.toml"
    path.write_text(text)
    return str(path)


# -- layering -------------------------------------------------------------------


def test_defaults_are_the_shipped_values() -> None:
    settings = load_settings(environ={})
    assert settings.signin.lockout_threshold == 5
    assert settings.signin.lockout_minutes == 15
    assert settings.signin.permanent_lockout_after == 100
    assert settings.sessions.idle_minutes == 30
    assert settings.sessions.absolute_hours == 12
    assert settings.passwords.min_length == 12
    assert settings.passwords.max_length == 128
    assert settings.vetting.clearance_years == 3
    assert settings.vetting.activation_code_days == 14
    assert settings.database.echo is False


def test_file_overrides_defaults_one_key_at_a_time(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[signin]\nlockout_minutes = 20\n")
    settings = load_settings(environ={"CONTACTPOINT_CONFIG": config})
    assert settings.signin.lockout_minutes == 20
    # The rest of the section keeps its defaults: the file is merged, not swapped in.
    assert settings.signin.lockout_threshold == 5
    assert settings.signin.permanent_lockout_after == 100
    assert settings.sessions.idle_minutes == 30


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[signin]\nlockout_minutes = 20\nlockout_threshold = 7\n")
    settings = load_settings(
        environ={"CONTACTPOINT_CONFIG": config, "CONTACTPOINT_SIGNIN__LOCKOUT_MINUTES": "25"}
    )
    assert settings.signin.lockout_minutes == 25
    assert settings.signin.lockout_threshold == 7  # from the file, untouched by env


def test_overrides_win_over_everything(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[signin]\nlockout_minutes = 20\n")
    settings = load_settings(
        overrides={"signin": {"lockout_minutes": 30}},
        environ={"CONTACTPOINT_CONFIG": config, "CONTACTPOINT_SIGNIN__LOCKOUT_MINUTES": "25"},
    )
    assert settings.signin.lockout_minutes == 30


def test_environment_overrides_defaults_without_a_file() -> None:
    settings = load_settings(
        environ={
            "CONTACTPOINT_DATABASE__URL": "postgresql+psycopg://db.internal/cp",
            "CONTACTPOINT_DATABASE__ECHO": "true",
            "CONTACTPOINT_SESSIONS__IDLE_MINUTES": "10",
        }
    )
    assert settings.database.url == "postgresql+psycopg://db.internal/cp"
    assert settings.database_url == "postgresql+psycopg://db.internal/cp"
    assert settings.database.echo is True
    assert settings.sessions.idle_minutes == 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_environment_booleans(raw: str, expected: bool) -> None:
    settings = load_settings(environ={"CONTACTPOINT_DATABASE__ECHO": raw})
    assert settings.database.echo is expected


def test_os_environ_is_read_when_no_environ_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTPOINT_SIGNIN__LOCKOUT_THRESHOLD", "9")
    assert load_settings().signin.lockout_threshold == 9


@pytest.mark.parametrize(
    "name",
    [
        "CONTACTPOINT_SIGNIN",  # no section/key separator
        "OTHERAPP_SIGNIN__LOCKOUT_MINUTES",  # another application's variable
        "CONTACTPOINT_SESSION_KEY_FILE",  # a path to a key, not a setting
    ],
)
def test_variables_that_are_not_settings_are_ignored(name: str) -> None:
    settings = load_settings(environ={name: "not a number"})
    assert settings.signin.lockout_minutes == 15


def test_empty_database_url_means_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings(overrides={"service": {"instance_dir": str(tmp_path)}}, environ={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'contactpoint.db'}"


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "named"),
    [
        ("file", "lockout_treshold"),
        ("env", "lockout_treshold"),
        ("overrides", "lockout_treshold"),
    ],
)
def test_unknown_key_is_refused_by_name(tmp_path: Path, layer: str, named: str) -> None:
    environ: dict[str, str] = {}
    overrides = None
    if layer == "file":
        environ["CONTACTPOINT_CONFIG"] = write_config(tmp_path, f"[signin]\n{named} = 3\n")
    elif layer == "env":
        environ[f"CONTACTPOINT_SIGNIN__{named.upper()}"] = "3"
    else:
        overrides = {"signin": {named: 3}}
    with pytest.raises(ConfigurationError) as error:
        load_settings(overrides=overrides, environ=environ)
    assert named in str(error.value)
    assert "signin" in str(error.value)


def test_unknown_section_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="sigin"):
        load_settings(environ={"CONTACTPOINT_SIGIN__LOCKOUT_MINUTES": "3"})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[signin]\nlockout_minutes = "soon"\n', "signin.lockout_minutes"),
        ("[signin]\nlockout_minutes = true\n", "signin.lockout_minutes"),
        # Half a minute must not quietly become no lockout at all.
        ("[signin]\nlockout_minutes = 0.5\n", "signin.lockout_minutes"),
        ("[argon2]\nmemory_kib = 19456.7\n", "argon2.memory_kib"),
        ('[database]\necho = "maybe"\n', "database.echo"),
        ("[database]\necho = 1\n", "database.echo"),
        ("[database]\nurl = 5432\n", "database.url"),
        ('[service]\nname = ["a", "b"]\n', "service.name"),
        ("signin = 5\n", "signin"),
    ],
)
def test_bad_type_in_file_is_refused_by_name(tmp_path: Path, toml: str, key: str) -> None:
    config = write_config(tmp_path, toml)
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ={"CONTACTPOINT_CONFIG": config})
    assert key in str(error.value)


@pytest.mark.parametrize(
    ("name", "raw", "key"),
    [
        ("CONTACTPOINT_SIGNIN__LOCKOUT_MINUTES", "fifteen", "signin.lockout_minutes"),
        ("CONTACTPOINT_SIGNIN__LOCKOUT_MINUTES", "1.5", "signin.lockout_minutes"),
        ("CONTACTPOINT_DATABASE__ECHO", "perhaps", "database.echo"),
        ("CONTACTPOINT_TOTP__DIGITS", "", "totp.digits"),
    ],
)
def test_bad_type_in_environment_is_refused_by_name(name: str, raw: str, key: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(environ={name: raw})
    assert key in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"shared_state": {"backend": "memcached"}}, "shared_state.backend"),
        (
            {"vetting": {"minimum_identity_confidence": "some"}},
            "vetting.minimum_identity_confidence",
        ),
    ],
)
def test_values_outside_their_choices_are_refused_by_name(
    overrides: dict[str, dict[str, object]], key: str
) -> None:
    with pytest.raises(ConfigurationError, match=key):
        load_settings(overrides=overrides, environ={})


def test_missing_settings_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(environ={"CONTACTPOINT_CONFIG": str(missing)})


def test_invalid_toml_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[signin\nlockout_minutes = \n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(environ={"CONTACTPOINT_CONFIG": config})


# -- instance secrets ---------------------------------------------------------------


@pytest.fixture
def no_key_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTACTPOINT_SESSION_KEY_FILE", raising=False)
    monkeypatch.delenv("CONTACTPOINT_DATA_KEY_FILE", raising=False)


def instance_settings(folder: Path):  # type: ignore[no-untyped-def]
    return load_settings(overrides={"service": {"instance_dir": str(folder)}}, environ={})


@pytest.mark.usefixtures("no_key_paths")
def test_instance_secrets_are_generated_once_private_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    settings = instance_settings(folder)

    first = load_instance_secrets(settings)

    assert len(first.session_key) == 32
    assert len(first.data_key) == 32
    assert first.session_key != first.data_key
    for name in ("session.key", "data.key"):
        path = folder / name
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (folder / "data.key").read_text().strip() == first.data_key.hex()

    again = load_instance_secrets(settings)
    assert again == first


@pytest.mark.usefixtures("no_key_paths")
def test_separate_instances_get_separate_secrets(tmp_path: Path) -> None:
    one = load_instance_secrets(instance_settings(tmp_path / "one"))
    two = load_instance_secrets(instance_settings(tmp_path / "two"))
    assert one.data_key != two.data_key
    assert one.session_key != two.session_key


@pytest.mark.usefixtures("no_key_paths")
def test_existing_key_file_is_used_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "data.key").write_text("ab" * 32 + "\n")
    secrets = load_instance_secrets(instance_settings(folder))
    assert secrets.data_key == bytes.fromhex("ab" * 32)


@pytest.mark.usefixtures("no_key_paths")
@pytest.mark.parametrize(
    ("content", "problem"),
    [("not hex at all", "not a hex-encoded key"), ("abcd", "32 bytes"), ("", "32 bytes")],
)
def test_damaged_key_file_is_refused_not_replaced(
    tmp_path: Path, content: str, problem: str
) -> None:
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "session.key").write_text(content)
    with pytest.raises(ConfigurationError, match=problem):
        load_instance_secrets(instance_settings(folder))
    assert (folder / "session.key").read_text() == content


def test_key_files_may_live_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mounted = tmp_path / "secrets"
    monkeypatch.setenv("CONTACTPOINT_SESSION_KEY_FILE", str(mounted / "s.key"))
    monkeypatch.setenv("CONTACTPOINT_DATA_KEY_FILE", str(mounted / "d.key"))
    folder = tmp_path / "instance"

    first = load_instance_secrets(instance_settings(folder))

    assert (mounted / "d.key").read_text() == first.data_key.hex()
    assert (mounted / "s.key").read_text() == first.session_key.hex()
    assert not (folder / "data.key").exists()
    assert load_instance_secrets(instance_settings(tmp_path / "other")) == first
