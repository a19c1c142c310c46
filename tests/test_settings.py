"""Settings: defaults, overrides from the environment, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, default_data_dir, get_settings


def test_defaults_live_under_the_data_dir(tmp_path):
    s = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path.resolve()
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'text-diffusion.db'}"
    assert s.artifact_url == (tmp_path.resolve() / "artifacts").as_uri()
    assert s.artifact_url.startswith("file:///")
    assert s.redis_url is None
    assert s.heartbeat_seconds < s.stale_after_seconds
    assert s.max_attempts >= 1


def test_default_data_dir_follows_xdg(tmp_path):
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "text-diffusion"
    assert default_data_dir({}) == Path.home() / ".local" / "share" / "text-diffusion"
    s = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert s.data_dir == (tmp_path / "text-diffusion").resolve()


def test_relative_data_dir_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"DATA_DIR": "data"})
    assert s.data_dir == tmp_path.resolve() / "data"


def test_environment_overrides(tmp_path):
    s = Settings.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u:p@db:5432/td",
            "REDIS_URL": "redis://redis:6379/0",
            "ARTIFACT_URL": "s3://bucket/td/",
            "HEARTBEAT_SECONDS": "2.5",
            "MAX_ATTEMPTS": "5",
            "WEB_PORT": "9000",
            "SQL_ECHO": "true",
        }
    )
    assert s.database_url == "postgresql://u:p@db:5432/td"  # postgres:// normalised
    assert s.redis_url == "redis://redis:6379/0"
    assert s.artifact_url == "s3://bucket/td"
    assert (s.heartbeat_seconds, s.max_attempts, s.web_port, s.sql_echo) == (2.5, 5, 9000, True)


def test_empty_redis_url_means_embedded_broker():
    assert Settings.from_env({"REDIS_URL": ""}).redis_url is None


def test_bare_artifact_path_becomes_a_file_url(tmp_path):
    s = Settings.from_env({"ARTIFACT_URL": str(tmp_path / "art")})
    assert s.artifact_url == (tmp_path / "art").resolve().as_uri()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEARTBEAT_SECONDS", "soon"),
        ("HEARTBEAT_SECONDS", "-1"),
        ("MAX_ATTEMPTS", "0"),
        ("WEB_PORT", "70000"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://localhost:6379"),
        ("SQL_ECHO", "perhaps"),
    ],
)
def test_bad_value_names_the_variable(variable, value):
    with pytest.raises(SettingsError, match=f"{variable}={value}"):
        Settings.from_env({variable: value})


def test_stale_after_must_exceed_heartbeat():
    with pytest.raises(SettingsError, match="STALE_AFTER_SECONDS"):
        Settings.from_env({"HEARTBEAT_SECONDS": "10", "STALE_AFTER_SECONDS": "5"})


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(ValueError, match="frozen"):
        s.max_attempts = 9


def test_get_settings_is_cached_until_cleared(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "a"))
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "b"))
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().data_dir == (tmp_path / "b").resolve()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
