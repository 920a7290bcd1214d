"""All configuration, read from the environment (or .env) in one place."""

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from messaging.phone import check_region

DATA_DIR = Path(".data")
DEV_SECRET = "dev-only-insecure-secret-change-me"
# An SMS sender: up to 11 letters and digits (networks cut or reject longer ones) or a number.
SMS_SENDER = r"^[A-Za-z0-9 .\-]{1,11}$|^\+[0-9]{3,15}$"

# "outbox" writes files that /dev/outbox shows; "http" calls a provider's API.
Adapter = Literal["outbox", "http"]
# A TTL, interval or timeout of zero or less starts the stack and breaks it quietly (every link
# born expired, a retry loop without pause): refused at start, naming the variable.
PositiveDuration = Annotated[timedelta, Field(gt=timedelta(0))]
Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]
# Letters (and the check of a branding's return line) need both files; without them every letter
# would be retried for ever and no later channel of its journey would come.
LETTER_FONT_HINT = (
    "letters are printed in DejaVu Sans: install it (Debian/Ubuntu: apt-get install "
    "fonts-dejavu-core; Fedora: dnf install dejavu-sans-fonts; macOS: brew install --cask "
    "font-dejavu) and, where it is not in /usr/share/fonts/truetype/dejavu/, set "
    "LETTER_FONT_REGULAR and LETTER_FONT_BOLD to its DejaVuSans.ttf and DejaVuSans-Bold.ttf (or "
    "to another Unicode TrueType font's Regular and Bold files)")


class Settings(BaseSettings):
    # Hidden: a refusal would otherwise print every setting read, SECRET_KEY and passwords too.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Embedded SQLite keeps a fresh laptop dependency-free; production and tests use PostgreSQL.
    database_url: str = f"sqlite+aiosqlite:///{DATA_DIR}/journeys.db"
    # PostgreSQL connections each API or worker process keeps open once it has opened them; it
    # may open 10 more in a burst, closed again after use. One closed costs the next burst a
    # server process start and a fresh PREPARE of each statement it runs (`db.session.PREPARED`).
    database_pool_size: int = Field(default=20, ge=1, le=1000)

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
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # None: upgrade to TLS whenever the server offers STARTTLS (the local sink does not); true:
    # require it; false: never, which a password then may not go with outside dev mode.
    smtp_starttls: bool | None = None
    smtp_timeout_seconds: Seconds = 20
    # Connections kept open between messages (per worker process), and how long one may sit
    # idle and still be reused.
    smtp_connections: int = Field(default=20, ge=1)
    smtp_idle_seconds: float = Field(default=10, ge=0)
    # A recipient the server keeps deferring (4xx) counts as a soft bounce after this many
    # attempts; the journey then switches to its next channel.
    email_soft_bounce_after_attempts: int = Field(default=5, ge=1)
    mail_from: str = "noreply@contact-journeys.local"

    # Per attempt: a receiver slower than this counts as failed and is tried again later.
    webhook_timeout_seconds: Seconds = 10
    # The retry schedule: first attempt at once, then after each of these delays, then every
    # `webhook_retry_every` until `webhook_retry_for` after the first attempt.
    webhook_retry_delays: list[PositiveDuration] = [
        timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
        timedelta(hours=5), timedelta(hours=10)]
    webhook_retry_every: PositiveDuration = timedelta(hours=10)
    webhook_retry_for: PositiveDuration = timedelta(days=3)
    # Deliveries one endpoint's workflow sends per batch, and how many of them in parallel.
    webhook_batch_size: Count = 100
    webhook_parallel_per_endpoint: Count = 10
    # Refuse endpoint URLs that resolve to private, loopback or link-local addresses (SSRF),
    # unless this is set; unset, dev mode allows them (local receivers on 127.0.0.1).
    webhook_allow_private_targets: bool | None = None

    # Verification messages (links, codes) one address or number receives per day, across all
    # journeys: whoever types someone else's address cannot flood them.
    verification_messages_per_recipient_per_day: Count = 5

    # Public forms (customer pages): submissions per minute per IP address and per link.
    form_posts_per_ip_per_minute: Count = 30
    form_posts_per_link_per_minute: Count = 10
    # Short codes of printed links typed in (`/l/<code>`), per minute per IP address.
    printed_code_misses_per_ip_per_minute: Count = 20

    # Preference-centre and unsubscribe links in messages stay valid this long.
    preference_link_ttl: PositiveDuration = timedelta(days=400)

    # Phone numbers typed without a country code are read in this region (ISO code) for a
    # client that has not set its own.
    default_phone_region: str = "NL"

    sms_adapter: Adapter = "outbox"
    sms_outbox_dir: Path = DATA_DIR / "outbox" / "sms"
    sms_http_url: AnyHttpUrl | None = None
    sms_http_token: SecretStr | None = None
    sms_timeout_seconds: Seconds = 10
    # Shown as the SMS sender: alphanumeric (at most 11 characters) or +E.164.
    sms_sender_name: str = Field(default="Journeys", pattern=SMS_SENDER)
    # A longer text is refused before sending: every segment is billed as one SMS.
    sms_max_segments: int = Field(default=4, ge=1, le=10)

    letter_adapter: Adapter = "outbox"
    letter_outbox_dir: Path = DATA_DIR / "outbox" / "letters"
    letter_http_url: AnyHttpUrl | None = None
    letter_http_token: SecretStr | None = None
    letter_timeout_seconds: Seconds = 30
    # A Unicode TrueType family (Regular and Bold files) so any customer's name prints.
    letter_font_regular: Path = Field(
        default=Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), validate_default=True)
    letter_font_bold: Path = Field(
        default=Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"), validate_default=True)

    # KYC documents go through a storage adapter; the default keeps them in a local directory.
    kyc_storage_dir: Path = DATA_DIR / "kyc-documents"
    kyc_max_document_bytes: Count = 10 * 1024 * 1024
    # Reminder lead time when a KYC definition does not set its own.
    kyc_remind_before: PositiveDuration = timedelta(days=30)
    # How long a link to the KYC upload page (after a refute, reminder or expiry) stays valid.
    kyc_link_ttl: PositiveDuration = timedelta(days=30)

    # Largest logo a client may upload (PNG); pages and emails load it on every view.
    brand_logo_max_bytes: Count = 256 * 1024

    # Bounds one API request so a single call cannot monopolise the Temporal client.
    max_contacts_per_request: Count = 1000

    # Campaign launches: contacts per fan-out batch (one activity), journey starts in flight per
    # batch, batches per workflow run before it continues as new (bounds its history).
    launch_batch_size: int = Field(default=1000, ge=1, le=5000)
    launch_starts_in_flight: int = Field(default=100, ge=1, le=1000)
    launch_batches_per_run: int = Field(default=100, ge=1, le=1000)
    # The shortest `every` of a recurring campaign: each launch reads the whole selection, and
    # a contact is asked again at most once per run.
    recurrence_min_interval: PositiveDuration = timedelta(hours=1)
    # Workflows the worker keeps in memory between tasks (the SDK's sticky cache, and its
    # default size). Each waiting journey evicted from it is replayed from its history on its
    # next event instead: a customer confirming minutes after entering data should find the
    # journey still cached among the campaign's other active ones. About 85 KB of RSS each.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    # Activities the worker runs at once. Nearly every one holds a database connection, and the
    # pool has `database_pool_size` + 10: more would queue for a connection (and time out there
    # under a backlog) instead of waiting their turn in Temporal.
    worker_max_concurrent_activities: int = Field(default=30, ge=1)

    # A journey sends its opening message (invitation, a plan's first step) within its first
    # workflow task, tried this often (after 1 s, then 2 s, 4 s…); a server or provider that has
    # not taken it by then (down, say) gets it from an ordinary activity, whose retries add
    # nothing to the history.
    opening_message_local_tries: int = Field(default=3, ge=1, le=6)

    # The task queues this worker process polls: both (the default: one process does it all),
    # or one of them, with another process for the other (as docker-compose runs them). The
    # launch's process then starts a campaign's journeys at its own pace, never behind the
    # invitations those journeys send meanwhile, which fill the journeys' process.
    worker_queues: Literal["all", "journeys", "launches"] = "all"

    # Off (the default), workflow code runs without the SDK's sandbox: a quarter less worker
    # CPU and memory per journey (bench/README.md). Determinism is checked where it matters,
    # before a change lands: the recorded histories replay in CI inside the sandbox.
    worker_workflow_sandbox: bool = False

    # How long a KYC document upload's answer waits for the profile's judgment of it (the
    # document is kept and judged later when no worker runs).
    kyc_judgment_wait: timedelta = Field(default=timedelta(seconds=10), ge=timedelta(0))

    # How long a signed dashboard link stays valid.
    dashboard_link_ttl: PositiveDuration = timedelta(days=1)

    # How long the answer to a request with an Idempotency-Key is kept for its retries (a
    # client's retry of a lost answer comes within minutes or hours; a contact's create answers
    # with its personal data): older, the key is new again, and the daily purge deletes it.
    idempotency_key_retention: PositiveDuration = timedelta(days=1)

    @property
    def launch_task_queue(self) -> str:
        """Campaign launches and their activities: apart from the journeys' own queue."""
        return f"{self.temporal_task_queue}-launches"

    @property
    def polled_task_queues(self) -> list[str]:
        """The task queues this worker process polls (`worker_queues`)."""
        return [queue for queue, role in ((self.temporal_task_queue, "journeys"),
                                          (self.launch_task_queue, "launches"))
                if self.worker_queues in ("all", role)]

    @property
    def private_webhook_targets_allowed(self) -> bool:
        if self.webhook_allow_private_targets is None:
            return self.dev_mode
        return self.webhook_allow_private_targets

    # Per field (not on the whole model), so the error shows the path and not every setting.
    @field_validator("letter_font_regular", "letter_font_bold")
    @classmethod
    def _letter_font_readable(cls, path: Path, info: ValidationInfo) -> Path:
        if not (path.is_file() and os.access(path, os.R_OK)):
            raise ValueError(f"{info.field_name.upper()}: no readable font file at {path}; "
                             f"{LETTER_FONT_HINT}")
        return path

    @field_validator("default_phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        return check_region(value)
    # Contact registry: rows per import activity, largest upload, how often inactive contacts
    # of clients with a retention period are anonymised.
    import_batch_size: Count = 1000
    max_import_bytes: Count = 64 * 1024 * 1024
    # Any other request body (a signed consent form in base64 is the largest JSON one).
    max_request_bytes: Count = 8 * 1024 * 1024
    anonymise_inactive_every: PositiveDuration = timedelta(days=1)
    # How often journeys whose workflow an operator terminated are looked for and ended, so
    # reports and erasure need not wait for someone to meet them. Within the namespace's
    # retention: Temporal forgets closed workflows after it.
    end_lost_journeys_every: PositiveDuration = timedelta(hours=1)
    # How often the workflow histories of erased contacts are deleted from Temporal (the API's
    # erasures delete them at once; this catches the rest: the scheduled and policy ones, and
    # what was still running or unlisted then).
    forget_erased_histories_every: PositiveDuration = timedelta(minutes=15)

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> "Settings":
        if not self.dev_mode and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("SECRET_KEY must be set when DEV_MODE is false")
        if not self.dev_mode and self.smtp_password is not None and self.smtp_starttls is False:
            raise ValueError("SMTP_STARTTLS=false would send SMTP_PASSWORD, and every mail, in "
                             "clear: leave it unset (upgrade when offered) or set it true")
        return self

    @model_validator(mode="after")
    def _http_adapters_need_url_and_token(self) -> "Settings":
        for channel in ("sms", "letter"):
            if getattr(self, f"{channel}_adapter") == "http":
                missing = [f"{channel}_http_{part}".upper() for part in ("url", "token")
                           if getattr(self, f"{channel}_http_{part}") is None]
                if missing:
                    raise ValueError(f"{' and '.join(missing)} must be set when "
                                     f"{channel.upper()}_ADAPTER is http")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
