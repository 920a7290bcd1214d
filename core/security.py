"""Secrets handling: API keys, personal link tokens, CSRF tokens, webhook secrets at rest,
signed dashboard links."""

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

API_KEY_PREFIX = "cj_"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """Returns (key, lookup prefix). The key is shown once; only its SHA-256 is stored.

    A 256-bit random key needs no slow hash: nothing can be guessed from its digest.
    """
    lookup = secrets.token_hex(8)
    return f"{API_KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}", lookup


def api_key_lookup(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    head, _, rest = key[len(API_KEY_PREFIX) :].partition("_")
    return head if head and rest else None


def api_key_matches(key: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(sha256_hex(key), stored_sha256)


def _derive(secret_key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret_key.encode()
    )


def keyed_digest(secret_key: str, purpose: bytes, value: str) -> str:
    """HMAC-SHA256 under a key derived for one purpose: searchable by equality, yet a guessable
    value (a card number, a surname) cannot be found from the digest without the server secret."""
    return hmac.new(_derive(secret_key, purpose), value.encode(), "sha256").hexdigest()


def link_token(secret_key: str, journey_id: str, step: str) -> str:
    """A personal link token, derived so that a retried send produces the same link.

    Unguessable without the server secret; the database keeps only its SHA-256 and expiry.
    """
    mac = hmac.new(_derive(secret_key, b"link-token"), f"{journey_id}:{step}".encode(), "sha256")
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


# Letters print a code people type. Crockford's base32 alphabet has no I, L, O or U, so the
# letters people read for 0 and 1 still find the code; 60 bits, as nobody types more.
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PAPER_CODE_LENGTH = 12


def paper_code(secret_key: str, owner: str, step: str) -> str:
    """The printed companion of `link_token(secret_key, owner, step)`: derived the same way, so
    a retried letter prints the same code. Grouped by four for reading aloud and typing."""
    mac = hmac.new(_derive(secret_key, b"paper-code"), f"{owner}:{step}".encode(), "sha256")
    code = (base64.b32encode(mac.digest()[:10]).decode()
            .translate(str.maketrans(_RFC4648, _CROCKFORD))[:PAPER_CODE_LENGTH])
    return "-".join(code[i:i + 4] for i in range(0, PAPER_CODE_LENGTH, 4))


def paper_code_sha256(typed: str) -> str | None:
    """The stored hash of a typed code, or None if it cannot be one. Case, dashes, spaces and
    O/I/L for 0/1 do not matter."""
    code = typed.upper().translate(str.maketrans("OIL", "011", "- "))
    if len(code) != PAPER_CODE_LENGTH or not set(code) <= set(_CROCKFORD):
        return None
    return sha256_hex(code)


class Csrf:
    """Double-submit CSRF protection bound to the link token and a browser cookie."""

    COOKIE = "cj_csrf"

    def __init__(self, secret_key: str, max_age_seconds: int = 4 * 3600) -> None:
        self._key = _derive(secret_key, b"csrf")
        self._max_age = max_age_seconds

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def _mac(self, cookie: str, scope: str, issued: int) -> str:
        msg = f"{cookie}:{scope}:{issued}".encode()
        return hmac.new(self._key, msg, "sha256").hexdigest()

    def token(self, cookie: str, scope: str) -> str:
        issued = int(time.time())
        return f"{issued}.{self._mac(cookie, scope, issued)}"

    def valid(self, token: str | None, cookie: str | None, scope: str) -> bool:
        if not token or not cookie or "." not in token:
            return False
        issued_text, mac = token.split(".", 1)
        if not issued_text.isdigit() or time.time() - int(issued_text) > self._max_age:
            return False
        return hmac.compare_digest(mac, self._mac(cookie, scope, int(issued_text)))


class SecretBox:
    """Encrypts webhook signing secrets at rest with a key derived from SECRET_KEY."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, b"secret-box")))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as err:
            raise ValueError("secret cannot be decrypted with this SECRET_KEY") from err


def new_webhook_secret() -> str:
    # Standard Webhooks format: "whsec_" + base64 of 24-64 random bytes.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_code(digits: int = 6) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def one_time_code(secret_key: str, journey_id: str, step: str, digits: int) -> str:
    """A step's one-time code, derived as link tokens are: a send retried after a provider
    timeout may follow one that reached the phone, under the same Idempotency-Key, so it must
    carry the same code, which the database does not hold."""
    digest = keyed_digest(secret_key, b"one-time-code-value", f"{journey_id}:{step}")
    return f"{int(digest, 16) % 10**digits:0{digits}d}"


def code_hmac(secret_key: str, journey_id: str, step: str, code: str) -> str:
    """One-time codes are stored only as a keyed hash: a leaked table reveals none."""
    key = _derive(secret_key, b"one-time-code")
    return hmac.new(key, f"{journey_id}:{step}:{code}".encode(), "sha256").hexdigest()


def dashboard_token(secret_key: str, key_id: uuid.UUID, expires_at: int) -> str:
    """A signed, expiring link to a client's read-only pages (the dashboard), on behalf of the
    API key that asked for it: revoking the key closes its links too.

    The key id and expiry (Unix seconds) travel in the token, under an HMAC.
    """
    payload = f"{key_id.hex}.{expires_at}"
    mac = hmac.new(_derive(secret_key, b"client-link"), payload.encode(), "sha256").digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def key_of_dashboard_token(secret_key: str, token: str) -> uuid.UUID | None:
    """The API key a dashboard token was signed for, or None if forged, malformed or
    expired."""
    parts = token.split(".")
    # ASCII digits, and few: int() refuses "²" and numbers of thousands of digits.
    if len(parts) != 3 or not re.fullmatch(r"[0-9]{1,12}", parts[1]):
        return None
    key_hex, expires_at, _ = parts
    try:
        key_id = uuid.UUID(hex=key_hex)
    except ValueError:
        return None
    expected = dashboard_token(secret_key, key_id, int(expires_at))
    if not hmac.compare_digest(expected, token) or int(expires_at) <= time.time():
        return None
    return key_id
