"""Unit tests of the secrets handling (pure logic, no services)."""

import logging
import os
import stat
import time

import pytest

from api.main import RedactLinkTokens, create_app
from core import security
from core.settings import Settings
from core.storage import LocalDirectoryStorage


def test_api_key_is_found_by_prefix_and_checked_by_hash():
    key, lookup = security.new_api_key()
    assert security.api_key_lookup(key) == lookup
    digest = security.sha256_hex(key)
    assert security.api_key_matches(key, digest)
    assert not security.api_key_matches(key + "x", digest)
    assert key not in digest
    for bad in ["", "cj_", "cj_abc", "xx_abc_def", "cj__secret"]:
        assert security.api_key_lookup(bad) is None


def test_link_tokens_are_stable_per_step_and_unguessable_across_steps():
    a = security.link_token("s1", "journey-1", "invitation")
    assert a == security.link_token("s1", "journey-1", "invitation")  # a retry sends the same link
    others = {security.link_token("s1", "journey-1", "reminder-1"),
              security.link_token("s1", "journey-2", "invitation"),
              security.link_token("s2", "journey-1", "invitation")}
    assert a not in others and len(others) == 3
    assert len(a) >= 43  # 256 bits, base64url


def test_csrf_token_is_bound_to_cookie_scope_and_age():
    csrf = security.Csrf("secret", max_age_seconds=60)
    token = csrf.token("cookie-1", "/c/abc")
    assert csrf.valid(token, "cookie-1", "/c/abc")
    assert not csrf.valid(token, "cookie-2", "/c/abc")
    assert not csrf.valid(token, "cookie-1", "/c/other")
    assert not csrf.valid(None, "cookie-1", "/c/abc")
    assert not csrf.valid("garbage", "cookie-1", "/c/abc")
    issued = int(time.time()) - 61
    old = f"{issued}.{csrf._mac('cookie-1', '/c/abc', issued)}"
    assert not csrf.valid(old, "cookie-1", "/c/abc")


def test_secret_box_round_trip_and_wrong_key():
    sealed = security.SecretBox("k1").seal("whsec_abc")
    assert "whsec_abc" not in sealed
    assert security.SecretBox("k1").open(sealed) == "whsec_abc"
    with pytest.raises(ValueError):
        security.SecretBox("k2").open(sealed)


def test_webhook_secret_format():
    secret = security.new_webhook_secret()
    assert secret.startswith("whsec_") and len(secret) > 40


def test_production_refuses_the_dev_secret():
    with pytest.raises(ValueError, match="SECRET_KEY"):
        Settings(dev_mode=False)
    assert Settings(dev_mode=False, secret_key="a-real-secret").dev_mode is False


@pytest.mark.parametrize(("path", "shown"), [
    ("/c/SeCrEtToKeN_-123?x=1", "/c/<token>?x=1"),
    # Printed codes, however typed: they open the page as the token does.
    ("/l/SECR-ETCO-DE12", "/l/<token>"), ("/L/secretcode12", "/L/<token>"),
    ("/1/SECRET%20CODE", "/1/<token>"), ("/l?code=SECRET-CODE&x=1", "/l?code=<redacted>&x=1"),
    # A lookup's card number (PCI), email or phone, and a search, are personal.
    ("/v1/contacts/lookup?kind=card&value=4111+SECRET+1111", "?kind=card&value=<redacted>"),
    ("/v1/contacts?q=secret%40example.com&limit=5", "?q=<redacted>&limit=5"),
])
def test_access_log_never_shows_link_tokens_or_personal_data(path, shown):
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s "%s %s"',
                               ("1.2.3.4", "GET", path), None)
    RedactLinkTokens().filter(record)
    assert "secr" not in record.getMessage().lower()
    assert shown in record.getMessage()


def test_the_apis_own_log_lines_never_show_link_tokens(caplog):
    """A 503 on a customer's form post names the request's path."""
    create_app(Settings())
    with caplog.at_level(logging.WARNING, logger="api"):
        logging.getLogger("api").warning("%s %s: 503, %s: %s", "POST", "/c/SeCrEtToKeN_-9/code",
                                         "RPCError", "deadline exceeded")
    assert "SeCrEtToKeN" not in caplog.text and "/c/<token>/code" in caplog.text


async def test_identity_documents_are_readable_by_the_service_alone(tmp_path):
    """With the usual umask (022) a stored passport scan was readable by every user of the
    machine, and its folders listable."""
    previous = os.umask(0o022)
    try:
        storage = LocalDirectoryStorage(tmp_path / "kyc")
        await storage.put("client/contact/passport.pdf", b"%PDF-1.4 passport scan")
    finally:
        os.umask(previous)
    stored = tmp_path / "kyc" / "client" / "contact" / "passport.pdf"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    for folder in (tmp_path / "kyc", stored.parent.parent, stored.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert await storage.get("client/contact/passport.pdf") == b"%PDF-1.4 passport scan"
