"""Settings that make no sense at zero or below are refused when the stack starts, naming the
variable: a TTL of -P1D or a rate limit of 0 started the stack and broke it quietly (every link
born expired, every form post a 429)."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from core.settings import Settings

# A value for each, as an operator's .env would write it.
NONSENSE = {
    "preference_link_ttl": "-P1D",
    "kyc_link_ttl": "PT0S",
    "kyc_remind_before": "PT0S",
    "dashboard_link_ttl": "-PT1H",
    "recurrence_min_interval": "PT0S",
    "webhook_retry_every": "PT0S",
    "webhook_retry_for": "PT0S",
    "anonymise_inactive_every": "PT0S",
    "end_lost_journeys_every": "PT0S",
    "forget_erased_histories_every": "PT0S",
    "idempotency_key_retention": "PT0S",
    "kyc_judgment_wait": "-PT1S",
    "form_posts_per_ip_per_minute": "0",
    "form_posts_per_link_per_minute": "0",
    "printed_code_misses_per_ip_per_minute": "0",
    "verification_messages_per_recipient_per_day": "-1",
    "max_contacts_per_request": "0",
    "webhook_batch_size": "0",
    "webhook_parallel_per_endpoint": "0",
    "import_batch_size": "0",
    "max_import_bytes": "0",
    "max_request_bytes": "0",
    "kyc_max_document_bytes": "0",
    "brand_logo_max_bytes": "0",
    "smtp_timeout_seconds": "0",
    "webhook_timeout_seconds": "-1",
    "sms_timeout_seconds": "0",
    "letter_timeout_seconds": "0",
    "smtp_idle_seconds": "-1",
    "smtp_port": "0",
}


@pytest.mark.parametrize("name", sorted(NONSENSE))
def test_a_setting_at_zero_or_below_is_refused_naming_it(name):
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **{name: NONSENSE[name]})
    [error] = refused.value.errors()
    assert error["loc"] == (name,), error


def test_each_delay_of_the_webhook_retry_schedule_must_be_positive():
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, webhook_retry_delays=["PT5S", "PT0S"])
    assert [e["loc"] for e in refused.value.errors()] == [("webhook_retry_delays", 1)]


def test_the_defaults_and_the_tests_tiny_durations_are_accepted():
    defaults = Settings(_env_file=None)
    assert defaults.preference_link_ttl == timedelta(days=400)
    assert defaults.form_posts_per_ip_per_minute == 30
    # As the test stack runs: fractions of a second, no judgment wait, no idle reuse.
    tiny = Settings(_env_file=None, webhook_retry_delays=["PT0.2S", "PT0.3S"],
                    webhook_retry_every="PT0.5S", recurrence_min_interval="PT1S",
                    kyc_judgment_wait="PT0S", smtp_idle_seconds=0)
    assert tiny.webhook_retry_delays[0] == timedelta(seconds=0.2)


def test_a_refusal_does_not_print_the_secrets_it_read():
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, secret_key="K3y", dev_mode=False, smtp_password="Pa55",
                 smtp_starttls=False)
    assert "SMTP_PASSWORD" in str(refused.value)
    assert "K3y" not in str(refused.value)
