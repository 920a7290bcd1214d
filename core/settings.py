"""All configuration, read from the environment (or .env) in one place."""

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".data")
DEV_SECRET = "dev-only-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Embedded SQLite keeps a fresh laptop dependency-free; production and tests use PostgreSQL.
    database_url: str = f"sqlite+aiosqlite:///{DATA_DIR}/journeys.db"

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "contact-journeys"

    # Links in messages point here; behind a proxy this is the customer-facing host name.
    public_base_url: str = "http://localhost:8000"
    # Derives link tokens, CSRF tokens and the key that encrypts webhook secrets at rest.
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    # Dev mode serves /dev/outbox (what the local SMTP sink and outboxes received).
    dev_mode: bool = True
    dev_maildir: Path = DATA_DIR / "maildir"

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 20
    mail_from: str = "noreply@contact-journeys.local"
    mail_from_name: str = "contact-journeys"

    webhook_timeout_seconds: float = 10
    # Temporal retries a failing delivery with backoff for this long before giving up.
    webhook_retry_for: timedelta = timedelta(days=3)
    webhook_max_retry_interval: timedelta = timedelta(hours=1)

    # Preference-centre and unsubscribe links in messages stay valid this long.
    preference_link_ttl: timedelta = timedelta(days=400)

    # Bounds one API request so a single call cannot monopolise the Temporal client.
    max_contacts_per_request: int = 1000

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> "Settings":
        if not self.dev_mode and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("SECRET_KEY must be set when DEV_MODE is false")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
