"""One settings registry: environment, sovstack.toml, validation, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

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
