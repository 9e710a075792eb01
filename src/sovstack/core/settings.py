"""The one settings registry of a deployment.

Every setting has a name, a default and help text (the field description). Values come,
highest first, from: explicit keyword arguments, ``SOVSTACK_*`` environment variables, and
``sovstack.toml`` in ``SOVSTACK_HOME``. No other module reads the environment.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sovstack.core.errors import BadInput

DEV_SECRET = "development-only-secret-do-not-use"
SECRET_FILE = "secret_key"
CONFIG_FILE = "sovstack.toml"
# URL schemes people write, and the SQLAlchemy driver each means: psycopg 3 is the PostgreSQL driver sovstack
# ships (hosting platforms hand out postgres:// URLs, which SQLAlchemy cannot load).
DATABASE_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                    "postgresql+psycopg": "postgresql+psycopg", "sqlite": "sqlite",
                    "sqlite+pysqlite": "sqlite+pysqlite"}
DATABASE_URL_HELP = ("write postgresql://USER:PASSWORD@HOST:5432/DATABASE (postgres:// and postgresql+psycopg:// "
                     "work too) or sqlite:///PATH, or leave it empty for the SQLite file under home")
REDIS_SCHEMES = ("redis", "rediss", "unix")
UNSET_SECRETS = {"secret_key": "(from home/secret_key)"}  # what an empty secret means, shown instead of it
# Settings that say where and how this copy runs rather than what the deployment is: left out of an export's
# settings.json, so that the same deployment moved to another machine or database exports the same bytes.
MACHINE_BOUND = frozenset({"home", "environment", "database_url", "redis_url", "secret_key", "host", "port", "workers",
                           "log_level", "otel_endpoint", "export_passphrase"})


def default_home() -> Path:
    """The deployment folder: ``SOVSTACK_HOME`` or ``~/.sovstack``."""
    return Path(os.environ.get("SOVSTACK_HOME") or Path.home() / ".sovstack").expanduser()


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``sovstack.toml`` from the deployment folder, if there is one."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = default_home() / CONFIG_FILE
        if not path.is_file():
            return {}
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise BadInput(f"{path}: cannot be read: {exc.strerror or exc}") from exc
        section = data.get("sovstack", data)
        return {k: v for k, v in section.items() if k in Settings.model_fields}


class Settings(BaseSettings):
    """Effective configuration of one sovstack deployment."""

    # Database and Redis URLs and the secret key may hold passwords: an error names the setting, never the value.
    model_config = SettingsConfigDict(env_prefix="SOVSTACK_", extra="forbid", validate_default=True,
                                      hide_input_in_errors=True)

    home: Path = Field(default_factory=default_home, description="Deployment folder: database, objects, keys.")
    environment: Literal["development", "production", "test"] = Field(
        "production", description="Refuses development defaults (secrets) when production."
    )
    database_url: str = Field(
        "", description="Database URL: postgresql://USER:PASSWORD@HOST:5432/DATABASE (postgres:// works too; "
                        "run with psycopg 3), or sqlite:///PATH; empty means the SQLite file sovstack.db under home."
    )
    redis_url: str = Field("", description="Redis URL for counters shared across replicas (optional).")
    secret_key: SecretStr = Field(
        SecretStr(""), description="Signs session cookies; empty means read or create home/secret_key."
    )
    host: str = Field("127.0.0.1", description="Address `sovstack serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `sovstack serve` listens on.")
    workers: int = Field(1, ge=1, le=64, description="Server worker processes.")
    home_jurisdiction: str = Field(
        "IN", description="ISO 3166-1 alpha-2 code of the deployment's home; seeds the policy at init."
    )
    deployment_name: str = Field("sovstack", description="Name shown in the console header.")
    anonymous_browsing: bool = Field(
        False, description="Let visitors browse open-data catalogue pages without logging in."
    )
    session_max_age: int = Field(8 * 3600, ge=60, description="Console session lifetime in seconds.")
    login_max_failures: int = Field(
        10, ge=1, description="Wrong passwords in a row before an account is locked for a while."
    )
    login_lockout_seconds: int = Field(900, ge=1, description="How long a locked account stays locked.")
    login_max_failures_per_client: int = Field(
        100, ge=1, description="Failed logins from one client address, on any accounts, before it is refused for "
                               "the same while."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body the API accepts.")
    gateway_max_body_bytes: int = Field(
        33_554_432, ge=1024, description="Largest request body the model gateway (/v1/…) accepts: prompts "
        "with images or documents inlined as base64 are large (a 20 MB image is 27 MB of base64).")
    max_upload_bytes: int = Field(
        50 * 1024**3, ge=1024, description="Largest file upload (dataset versions), streamed to disk."
    )
    sandbox_seconds: float = Field(
        30.0, gt=0, le=3600, description="Time limit of one data sandbox query; it is stopped after it."
    )
    sandbox_queries_per_minute: int = Field(
        30, ge=1, le=10_000, description="Sandbox queries one person may send per minute, on all datasets together."
    )
    sandbox_daily_queries: int = Field(
        500, ge=1, le=1_000_000,
        description="Sandbox queries (and airlock submissions) one person may send per day on one granted dataset, "
                    "unless the grant sets its own cap.",
    )
    data_staging_max_age_hours: int = Field(
        24, ge=1, le=24 * 365,
        description="Upload files left in home/objects/tmp by a killed upload are removed once this old, at start "
                    "and on each upload (an upload and its conversion must finish within it).",
    )
    data_request_sla_hours: int = Field(
        72, ge=1, description="Access requests waiting longer than this are flagged in stewards' inboxes."
    )
    sqlite_busy_seconds: float = Field(
        15.0, ge=0, le=600,
        description="SQLite: how long a write waits for another's write lock before the request answers 503 "
                    "(with Retry-After).",
    )
    api_key_touch_seconds: int = Field(
        60, ge=0, description="Minimum interval between last-used updates of an API key."
    )
    log_level: str = Field("info", description="Server log level.")
    export_passphrase: SecretStr = Field(
        SecretStr(""), description="Passphrase that seals credentials in a whole-deployment export (`sovstack export "
        "--secrets encrypt`) and opens them on import; empty means the command asks for it."
    )
    otel_endpoint: str = Field(
        "", description="OpenTelemetry: OTLP/HTTP traces endpoint of your own collector (e.g. "
                        "http://127.0.0.1:4318/v1/traces); one span per gateway call. Empty: tracing off."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        """The URL with the driver sovstack runs on; never echoes the URL (it may hold a password)."""
        value = value.strip()
        if not value:
            return value
        scheme, sep, rest = value.partition("://")
        driver = DATABASE_DRIVERS.get(scheme.lower()) if sep else None
        if driver is None:
            known = f"unsupported scheme {scheme + '://'!r}" if sep else "not a URL"
            raise ValueError(f"{known}: {DATABASE_URL_HELP}")
        url = f"{driver}://{rest}"
        try:
            make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a valid database URL: {DATABASE_URL_HELP}") from exc
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        value = value.strip()
        if value and value.partition("://")[0].lower() not in REDIS_SCHEMES:
            raise ValueError("write redis://HOST:6379/0 (or rediss:// with TLS, unix:///PATH), or leave it empty")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_url(cls, value: str) -> str:
        value = value.strip()
        if value and value.partition("://")[0].lower() not in ("http", "https"):
            raise ValueError("write http://HOST:4318/v1/traces (or https://), or leave it empty for no tracing")
        return value

    @field_validator("home_jurisdiction")
    @classmethod
    def _upper_code(cls, value: str) -> str:
        value = value.strip().upper()
        if len(value) != 2 or not value.isalpha():
            raise ValueError("must be an ISO 3166-1 alpha-2 code such as IN or FR")
        return value

    @model_validator(mode="after")
    def _refuse_dev_secret(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("secret_key: the development secret may not be used in production")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in force (SQLite under home unless set)."""
        return self.database_url or f"sqlite:///{self.home / 'sovstack.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def signing_key(self) -> str:
        """The secret that signs cookies: the setting, else a key kept in home (created once, 0600)."""
        value = self.secret_key.get_secret_value()
        if value:
            return value
        path = self.home / SECRET_FILE
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def masked(self) -> dict[str, Any]:
        """Every setting with its value, secrets and passwords in URLs masked."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else UNSET_SECRETS.get(name, "")
            elif name.endswith("_url") and value:
                value = mask_url(str(value))
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        return shown


def mask_url(url: str) -> str:
    """Hide the password part of a URL such as ``postgresql://u:pw@host/db``."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":********"
    return f"{scheme}://{creds}@{host}"


def describe() -> list[tuple[str, str, str]]:
    """(env var, default, help) of every setting, for docs and `config show`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default_factory is not None else repr(field.default)
        rows.append((f"SOVSTACK_{name.upper()}", default, field.description or ""))
    return rows


# prometheus_client's own variable: when set before it is imported, every process counts into files there.
METRICS_FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def shared_metrics_folder() -> str:
    """The folder where server workers share their metrics (set by `sovstack serve --workers N`), or ""."""
    return os.environ.get(METRICS_FOLDER_VARIABLE, "")


def share_metrics(folder: str) -> None:
    """Make worker processes started from now on count their metrics into ``folder``."""
    os.environ[METRICS_FOLDER_VARIABLE] = folder


def export_for_workers(settings: Settings) -> None:
    """Put explicitly chosen settings into the environment, so server worker processes see them too."""
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        os.environ[f"SOVSTACK_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
