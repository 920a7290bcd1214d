"""A client's identity on pages, emails, SMS and letters: colours, font, logo, sender names,
legal links and the host name of its links. The client sets it; a campaign may override any
part; what is left unset falls back to the installation's defaults."""

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.settings import Settings
from messaging import letter_pdf

DEFAULT_PRIMARY = "#1d4ed8"
PAGE_BACKGROUND = "#ffffff"
DARK_TEXT, LIGHT_TEXT = "#111827", "#ffffff"
# WCAG 2.1 AA: 4.5:1 for text (1.4.3); 3:1 for the edges of buttons and fields (1.4.11).
TEXT_CONTRAST, UI_CONTRAST = 4.5, 3.0

# Only fonts every device already has: no web font is downloaded, so the content security
# policy stays 'self' and no third party learns who opened a page.
FONT_STACKS = {
    "system": 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
    "humanist": 'Seravek, "Gill Sans Nova", Ubuntu, Calibri, "DejaVu Sans", source-sans-pro, '
                "sans-serif",
    "geometric": 'Avenir, Montserrat, Corbel, "URW Gothic", source-sans-pro, sans-serif',
    "transitional": 'Charter, "Bitstream Charter", "Sitka Text", Cambria, serif',
    "old-style": '"Iowan Old Style", "Palatino Linotype", "URW Palladio L", P052, serif',
    "rounded": 'ui-rounded, "Hiragino Maru Gothic ProN", Quicksand, Comfortaa, Manjari, '
               '"Arial Rounded MT", "Arial Rounded MT Bold", Calibri, source-sans-pro, sans-serif',
}
DEFAULT_FONT = "system"
LEGAL_LINKS = ("privacy_url", "imprint_url", "terms_url")


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    r, g, b = letter_pdf.rgb(colour)
    return 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two #RRGGBB colours, 1 to 21."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def readable_on(background: str) -> str:
    """Dark or light text, whichever reads better; one of them always passes AA."""
    return max((LIGHT_TEXT, DARK_TEXT), key=lambda text: contrast(background, text))


def contrast_problems(values: dict[str, Any]) -> dict[str, str]:
    """Field -> why the colours fail WCAG AA, for a branding given as a dict of its fields."""
    problems = {}
    primary, on_primary = values.get("primary_colour"), values.get("on_primary_colour")
    if primary:
        ratio = contrast(primary, PAGE_BACKGROUND)
        if ratio < UI_CONTRAST:
            problems["primary_colour"] = (
                f"contrast {ratio:.2f}:1 with the white page; buttons and field edges need at "
                f"least {UI_CONTRAST}:1 (WCAG AA)")
    if primary and on_primary:
        ratio = contrast(primary, on_primary)
        if ratio < TEXT_CONTRAST:
            problems["on_primary_colour"] = (
                f"contrast {ratio:.2f}:1 with primary_colour {primary}; text on buttons and the "
                f"header needs at least {TEXT_CONTRAST}:1 (WCAG AA)")
    return problems


def base_url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why a custom domain base URL is unusable, or None: an origin only (scheme and host name,
    optionally a port), https unless allow_http (dev mode)."""
    # urlsplit drops tabs and line breaks without a word; kept, they would end every link in
    # the client's messages and break the List-Unsubscribe header of its mail.
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return "must not contain blanks, line breaks or other control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "not a URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        return f"must start with {' or '.join(f'{s}://' for s in schemes)}"
    if not parts.hostname or parts.username or parts.password:
        return "must be a host name without credentials, e.g. https://contact.example.com"
    if not host_name(parts.hostname):
        return "must name a valid host, e.g. https://contact.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be only scheme and host name, without a path, query or fragment"
    return None


HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def host_name(host: str) -> bool:
    """A DNS name (an internationalised one in any script) or an IP address literal."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        labels = host.rstrip(".").encode("idna").decode("ascii").split(".")
    except UnicodeError:
        return False
    return all(HOST_LABEL.fullmatch(label) for label in labels)


@dataclass(frozen=True)
class Brand:
    """The effective branding of one campaign (or a client without one)."""

    name: str
    base_url: str
    primary_colour: str = DEFAULT_PRIMARY
    on_primary_colour: str = LIGHT_TEXT
    font: str = DEFAULT_FONT
    logo_id: str | None = None
    email_from_name: str | None = None
    sms_sender: str | None = None
    letter_sender: str | None = None
    privacy_url: str | None = None
    imprint_url: str | None = None
    terms_url: str | None = None

    @property
    def font_stack(self) -> str:
        return FONT_STACKS[self.font]

    @property
    def theme_path(self) -> str:
        """The stylesheet with the brand's colours and font; served by us like every style, so
        the pages need no inline styles."""
        return (f"/theme/{self.primary_colour[1:].lower()}/{self.on_primary_colour[1:].lower()}"
                f"/{self.font}.css")

    @property
    def logo_path(self) -> str | None:
        return f"/brand/logos/{self.logo_id}.png" if self.logo_id else None

    @property
    def logo_url(self) -> str | None:
        """Absolute, for emails; pages use the relative path so they work on any host name."""
        return f"{self.base_url}{self.logo_path}" if self.logo_id else None

    @property
    def legal_links(self) -> list[tuple[str, str]]:
        return [(name, getattr(self, name)) for name in LEGAL_LINKS if getattr(self, name)]


def brand_for(client_name: str, client_branding: dict[str, Any] | None,
              campaign_branding: dict[str, Any] | None, settings: Settings) -> Brand:
    merged = {k: v for layer in (client_branding or {}, campaign_branding or {})
              for k, v in layer.items() if v is not None}
    base_url = (merged.pop("custom_domain", None) or settings.public_base_url).rstrip("/")
    primary = merged.pop("primary_colour", DEFAULT_PRIMARY)
    on_primary = merged.pop("on_primary_colour", None)
    # A campaign's colour over the client's text colour may not have been checked together.
    if on_primary is None or contrast(primary, on_primary) < TEXT_CONTRAST:
        on_primary = readable_on(primary)
    return Brand(name=client_name, base_url=base_url, primary_colour=primary,
                 on_primary_colour=on_primary, **merged)


def client_brand(client: Any, settings: Settings) -> Brand:
    """The client's own branding, for what belongs to no campaign (preference centre, KYC)."""
    return brand_for(client.name, client.branding, None, settings)


def letter_branding(brand: Brand, logo_png: bytes | None) -> letter_pdf.Branding:
    """The brand as a letter prints it: the letter sender as the return line above the address,
    the primary colour, the logo."""
    return letter_pdf.Branding(name=brand.name, colour=brand.primary_colour, logo=logo_png,
                               return_address=brand.letter_sender)
