"""Calls an SMS or print provider's HTTP API and sorts its failures into the two kinds a journey
acts on: permanent (never retry; escalate to another channel) and retryable (try again later)."""

from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from core.settings import Settings

# Client errors that describe a passing condition rather than a bad request.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class DeliveryFailed(Exception):
    """A provider did not take the message."""


class PermanentDeliveryFailure(DeliveryFailed):
    """The provider refused the message for good (bad number, invalid document, bad credentials)."""


class RetryableDeliveryFailure(DeliveryFailed):
    """The provider could not take the message now (outage, timeout, rate limit)."""


def _reason(response: httpx.Response) -> str:
    # Providers put the reason in the body; a short excerpt is enough and never holds our token.
    return f"HTTP {response.status_code}: {response.text[:300]}".strip()


@dataclass(frozen=True)
class ProviderApi:
    """One provider endpoint: where to POST, with which token, how long to wait."""

    http: httpx.AsyncClient
    url: str
    token: SecretStr
    timeout: float

    @classmethod
    def for_channel(cls, settings: Settings, channel: Literal["sms", "letter"],
                    http: httpx.AsyncClient) -> "ProviderApi":
        url = getattr(settings, f"{channel}_http_url")
        token = getattr(settings, f"{channel}_http_token")
        if url is None or token is None:
            raise ValueError(f"{channel.upper()}_HTTP_URL and {channel.upper()}_HTTP_TOKEN "
                             "must be set")
        return cls(http, str(url), token, getattr(settings, f"{channel}_timeout_seconds"))

    async def submit(self, reference: str, **body: Any) -> str:
        """POSTs `body` (httpx's json= or data=/files=) and returns the provider's message id:
        the "id" of its JSON answer, or our reference when it sends none.

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
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            found = answer.get("id") if isinstance(answer, dict) else None
            return str(found) if found else reference
        if status >= 500 or status in RETRYABLE_4XX:
            raise RetryableDeliveryFailure(_reason(response))
        # Other 4xx, and redirects (never followed with our token): the same call fails again.
        raise PermanentDeliveryFailure(_reason(response))
