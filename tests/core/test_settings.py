"""One settings registry: environment, sovstack.toml, validation, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sovstack.core.errors import BadInput
from sovstack.core.settings import DEV_SECRET, Settings, describe, mask_url


def test_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVSTACK_HOME", str(tmp_path))
    (tmp_path / "sovstack.toml").write_text('[sovstack]\nport = 9001\nhome_jurisdiction = "fr"\n')
    s = Settings()
    assert s.home == tmp_path and s.port == 9001 and s.home_jurisdiction == "FR"
    monkeypatch.setenv("SOVSTACK_PORT", "9002")
    assert Settings().port == 9002  # the environment wins over the file
    assert Settings(port=9003).port == 9003


def test_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="home_jurisdiction"):
        Settings(home=tmp_path, home_jurisdiction="India")
    with pytest.raises(ValidationError, match="port"):
        Settings(home=tmp_path, port=70000)
    with pytest.raises(ValidationError, match="development secret"):
        Settings(home=tmp_path, environment="production", secret_key=DEV_SECRET)
    with pytest.raises(ValidationError):
        Settings(home=tmp_path, no_such_setting=1)  # type: ignore[call-arg]


def test_signing_key_is_created_once_and_private(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    key = s.signing_key()
    assert len(key) > 40 and key == Settings(home=tmp_path).signing_key()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_masked_hides_secrets_and_url_passwords(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, secret_key="very-secret-value",
                 database_url="postgresql+psycopg://app:hunter2@db.internal/sov")
    shown = s.masked()
    assert "very-secret-value" not in str(shown) and "hunter2" not in str(shown)
    assert shown["database_url"] == "postgresql+psycopg://app:********@db.internal/sov"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_every_setting_has_help() -> None:
    rows = describe()
    assert len(rows) == len(Settings.model_fields)
    assert all(text for _env, _default, text in rows)


def test_postgres_urls_mean_the_psycopg_driver_sovstack_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for written in ("postgres://app:pw@db.internal:5432/sov", "postgresql://app:pw@db.internal:5432/sov",
                    "POSTGRES://app:pw@db.internal:5432/sov", " postgresql+psycopg://app:pw@db.internal:5432/sov "):
        assert Settings(home=tmp_path, database_url=written).database_url == \
            "postgresql+psycopg://app:pw@db.internal:5432/sov"
    assert Settings(home=tmp_path, database_url="sqlite:///x.db").database_url == "sqlite:///x.db"
    monkeypatch.delenv("SOVSTACK_DATABASE_URL", raising=False)  # the suite's PostgreSQL run sets it
    assert Settings(home=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'sovstack.db'}"


def test_an_unknown_database_url_says_what_to_write_and_never_echoes_it(tmp_path: Path) -> None:
    for url, problem in (("mysql://app:hunter2@db/sov", "unsupported scheme 'mysql://'"),
                         ("postgresql+psycopg2://app:hunter2@db/sov", "unsupported scheme 'postgresql+psycopg2://'"),
                         ("app:hunter2@db/sov", "not a URL"),
                         ("postgres://app:hunter2@db:port/sov", "not a valid database URL")):
        with pytest.raises(ValidationError) as caught:
            Settings(home=tmp_path, database_url=url)
        text = str(caught.value)
        assert problem in text and "write postgresql://USER:PASSWORD@HOST:5432/DATABASE" in text, text
        assert "hunter2" not in text


def test_redis_url_and_home_are_checked(tmp_path: Path) -> None:
    assert Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0").redis_url == "redis://127.0.0.1:6379/0"
    with pytest.raises(ValidationError, match="write redis://HOST:6379/0"):
        Settings(home=tmp_path, redis_url="127.0.0.1:6379")
    a_file = tmp_path / "sovstack.db"
    a_file.write_text("")
    with pytest.raises(ValidationError, match="exists and is not a folder"):
        Settings(home=a_file)


def test_a_broken_sovstack_toml_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVSTACK_HOME", str(tmp_path))
    config = tmp_path / "sovstack.toml"
    config.write_text("[sovstack\nport = 9001\n")
    with pytest.raises(BadInput, match=r"sovstack.toml: not valid TOML: Expected '\]' .*\(at line 1, column 10\)"):
        Settings()
    config.write_bytes("[sovstack]\ndeployment_name = 'Café'\n".encode("latin-1"))
    with pytest.raises(BadInput, match="sovstack.toml: not valid TOML: 'utf-8' codec can't decode byte 0xe9"):
        Settings()
