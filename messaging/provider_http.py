"""Calls an SMS or print provider's HTTP API and sorts its failures into the two kinds a journey
acts on: permanent (never retry; escalate to another channel) and retryable (try again later).

Only a refusal of the message itself (400, 422 and the like: the number, the document) is
permanent, and becomes the recipient's bounce. An answer that says our installation is set up
wrong (token, URL, upload) would say the same of every customer: it is retried, loudly, until
the operator fixes the setting, and blames no number or address."""

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from core.settings import Settings
from messaging.email import without_recipient

log = logging.getLogger(__name__)

# Client errors that describe a passing condition rather than a bad request.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Answers about our installation, not the recipient, and which setting to look at. A redirect
# (3xx, never followed with our token) is a URL that moved.
CONFIGURATION_4XX = {
    401: "the provider refused our token: check {prefix}_TOKEN",
    403: "the provider denies our token (expired, or without the right to send): "
         "check {prefix}_TOKEN and the provider account",
    404: "no such API at {prefix}_URL: check {prefix}_URL",
    405: "{prefix}_URL does not take a POST: check {prefix}_URL",
    407: "a proxy between us and the provider wants credentials: check the proxy settings",
    411: "the provider wants a Content-Length: check {prefix}_URL and any proxy before it",
    413: "the provider finds our request too large: check {prefix}_URL and the provider's "
         "limits",
    415: "the provider does not take our request's format: check {prefix}_URL is the API this "
         "adapter speaks",
}
REDIRECT = "the provider answered with a redirect to {location}: set {prefix}_URL to where it points"
# Whatever a provider echoes of an Authorization header never leaves the adapter.
CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;}]+")
# Shorter "tokens" (tests, placeholders) would redact ordinary words of the answer.
SHORTEST_REDACTED = 6


class DeliveryFailed(Exception):
    """A provider did not take the message."""


class PermanentDeliveryFailure(DeliveryFailed):
    """The provider refused the message for good (bad number, invalid document)."""


class RetryableDeliveryFailure(DeliveryFailed):
    """The provider could not take the message now (outage, timeout, rate limit)."""


class ProviderMisconfigured(RetryableDeliveryFailure):
    """The provider refuses how we call it (token, URL, upload): retried until the operator
    fixes the named setting, never a bounce of the recipient."""


def _excerpt(text: str, token: str, recipient: str | None) -> str:
    """Up to 300 characters of a provider's answer without our token nor the recipient's
    number: some APIs echo the credentials they refused, or the number they could not reach,
    and the excerpt becomes a bounce reason clients read and a failure in the Temporal UI."""
    if len(token) >= SHORTEST_REDACTED:
        text = text.replace(token, "[redacted]")
    if recipient:
        # As given (+E.164), or without its plus as some APIs write it.
        text = without_recipient(text, recipient, recipient.lstrip("+"))
    return CREDENTIALS.sub(r"\1\2[redacted]", text)[:300]


def _reason(response: httpx.Response, token: str, recipient: str | None) -> str:
    # Providers put the reason in the body; a short excerpt is enough.
    return f"HTTP {response.status_code}: {_excerpt(response.text, token, recipient)}".strip()


@dataclass(frozen=True)
class ProviderApi:
    """One provider endpoint: where to POST, with which token, how long to wait."""

    http: httpx.AsyncClient
    url: str
    token: SecretStr
    timeout: float
    # The settings' names, for what an operator is told to fix: SMS_HTTP or LETTER_HTTP.
    settings_prefix: str = "PROVIDER_HTTP"

    @classmethod
    def for_channel(cls, settings: Settings, channel: Literal["sms", "letter"],
                    http: httpx.AsyncClient) -> "ProviderApi":
        url = getattr(settings, f"{channel}_http_url")
        token = getattr(settings, f"{channel}_http_token")
        if url is None or token is None:
            raise ValueError(f"{channel.upper()}_HTTP_URL and {channel.upper()}_HTTP_TOKEN "
                             "must be set")
        return cls(http, str(url), token, getattr(settings, f"{channel}_timeout_seconds"),
                   f"{channel.upper()}_HTTP")

    async def submit(self, reference: str, *, recipient: str | None = None, **body: Any) -> str:
        """POSTs `body` (httpx's json= or data=/files=) and returns the provider's message id:
        the "id" of its JSON answer, or our reference when it sends none. `recipient` (a
        number) is kept out of the errors.

        The reference doubles as Idempotency-Key, so a provider can drop the repeat when a
        retry follows a lost answer."""
        headers = {
            "Authorization": f"Bearer {self.token.get_secret_value()}",
            "Idempotency-Key": reference,
            "User-Agent": "contact-journeys/1",
        }
        try:
            response = await self.http.post(self.url, headers=headers, timeout=self.timeout,
                                            **body)
        except httpx.TimeoutException as err:
            raise RetryableDeliveryFailure(
                f"provider did not answer within {self.timeout}s") from err
        except httpx.HTTPError as err:
            raise RetryableDeliveryFailure(f"provider unreachable: {type(err).__name__}") from err
        status = response.status_code
        token = self.token.get_secret_value()
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            found = answer.get("id") if isinstance(answer, dict) else None
            return str(found) if found else reference
        if status >= 500 or status in RETRYABLE_4XX:
            raise RetryableDeliveryFailure(_reason(response, token, recipient))
        if status < 400:
            location = _excerpt(response.headers.get("location", "nowhere"), token,
                                recipient)[:200]
            what = REDIRECT.format(prefix=self.settings_prefix, location=location)
        elif status in CONFIGURATION_4XX:
            what = CONFIGURATION_4XX[status].format(prefix=self.settings_prefix)
        else:
            # Other 4xx: the provider refuses this message (number, document) for good.
            raise PermanentDeliveryFailure(_reason(response, token, recipient))
        message = (f"{what}; every message waits and is retried until it is fixed "
                   f"({_reason(response, token, recipient)})")
        # An error, not a warning: no customer is at fault, and nothing goes out until an
        # operator acts.
        log.error("%s provider misconfigured: %s", self.settings_prefix, message)
        raise ProviderMisconfigured(message)
