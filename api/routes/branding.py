"""Branding: the client's (GET/PUT /v1/branding), its logos, and what the pages load of it
(the theme stylesheet and the logo, served by us so the pages' CSP stays 'self')."""

import hashlib
import struct
import uuid
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Response, UploadFile, status
from sqlalchemy import select

from api.deps import ClientDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems, error_response
from api.message_wording import domain_problem, open_claims_problem
from api.schemas import BrandingIn, BrandingOut, FieldError, LogoOut
from core.settings import Settings
from db.models import BrandLogo, Campaign, Client
from messaging.branding import FONT_STACKS, base_url_problem, brand_for, contrast_problems
from messaging.sms import sms_length_problem

router = APIRouter(prefix="/v1/branding", tags=["branding"], responses=ERROR_RESPONSES)
public = APIRouter(include_in_schema=False)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOGO_SIDES = range(16, 2001)
# Served under a content-derived id: the same URL always returns the same bytes.
IMMUTABLE = "public, max-age=31536000, immutable"


class LogoRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a well-formed PNG: every chunk's CRC checked, IEND present, so what
    pages and letters later decode is a whole image."""
    if not data.startswith(PNG_SIGNATURE):
        raise LogoRejected(415, "the logo must be a PNG image")
    at, seen = len(PNG_SIGNATURE), []
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        if len(body) != length or data[at + 8 + length:at + 12 + length] != struct.pack(
                ">I", zlib.crc32(kind + body)):
            raise LogoRejected(422, "the PNG file is damaged")
        seen.append(kind)
        at += 12 + length
        if kind == b"IEND":
            break
    if not seen or seen[0] != b"IHDR" or seen[-1] != b"IEND":
        raise LogoRejected(422, "the PNG file is incomplete")
    width, height = struct.unpack(">II", data[16:24])
    if width not in LOGO_SIDES or height not in LOGO_SIDES:
        raise LogoRejected(422, f"the logo must be {LOGO_SIDES.start} to {LOGO_SIDES.stop - 1} "
                                f"pixels wide and high, not {width}x{height}")
    return width, height


async def check_branding(session, settings: Settings, client: Client, body: BrandingIn,
                         *, field: str = "", under: dict[str, Any] | None = None) -> dict:
    """The branding as stored, after the checks that need the database or settings: the logo
    is the client's, the custom domain is usable (and leaves every SMS short enough to send),
    and the colours still contrast enough over the branding they override (`under`)."""
    prefix = f"{field}." if field else ""
    stored = body.stored()
    problems = []
    if body.logo_id is not None:
        logo = await session.get(BrandLogo, body.logo_id)
        if logo is None or logo.client_id != client.id:
            problems.append(FieldError(field=f"{prefix}logo_id", message="no such logo"))
    if body.custom_domain is not None:
        problem = (base_url_problem(body.custom_domain, allow_http=settings.dev_mode)
                   or sms_length_problem(client.name, settings, base_url=body.custom_domain))
        if problem:
            problems.append(FieldError(field=f"{prefix}custom_domain", message=problem))
        else:
            stored["custom_domain"] = body.custom_domain.rstrip("/")
    problems += [FieldError(field=f"{prefix}{name}", message=message)
                 for name, message in contrast_problems({**(under or {}), **stored}).items()
                 if name in stored]
    if problems:
        raise FieldProblems(problems)
    return stored


def branding_out(client: Client, settings: Settings) -> BrandingOut:
    brand = brand_for(client.name, client.branding, None, settings)
    return BrandingOut(branding=client.branding or {}, logo_url=brand.logo_url,
                       theme_url=f"{brand.base_url}{brand.theme_path}")


@router.get("", response_model=BrandingOut)
async def read_branding(client: ClientDep, state: StateDep) -> BrandingOut:
    return branding_out(client, state.settings)


@router.put("", response_model=BrandingOut)
async def replace_branding(body: BrandingIn, client: ClientDep, session: SessionDep,
                           state: StateDep) -> BrandingOut:
    """Replaces the client's branding: pages, emails, SMS and letters of every campaign use it,
    except what a campaign's own `branding` overrides."""
    branding = await check_branding(session, state.settings, client, body)
    # Another domain lengthens or shortens every link, in the SMS of running journeys too.
    problems = []
    for campaign in await session.scalars(select(Campaign).where(
            Campaign.client_id == client.id, Campaign.status != "archived")):
        if problem := domain_problem(
                campaign.spec, state.settings,
                before=brand_for(client.name, client.branding, campaign.spec.get("branding"),
                                 state.settings),
                after=brand_for(client.name, branding, campaign.spec.get("branding"),
                                state.settings)):
            problems.append(FieldError(field="custom_domain",
                                       message=f"campaign {campaign.name!r}: {problem}"))
        elif problem := await open_claims_problem(session, state.settings, client, campaign,
                                                  spec=campaign.spec, client_branding=branding):
            problems.append(FieldError(field="custom_domain",
                                       message=f"campaign {campaign.name!r}: {problem}"))
    if problems:
        raise FieldProblems(problems)
    client.branding = branding
    session.add(client)
    await session.commit()
    return branding_out(client, state.settings)


@router.post("/logos", status_code=status.HTTP_201_CREATED, response_model=LogoOut, responses={
    413: {"model": ErrorBody, "description": "Larger than BRAND_LOGO_MAX_BYTES"},
    415: {"model": ErrorBody, "description": "Not a PNG image"}})
async def upload_logo(file: Annotated[UploadFile, Form(description="A PNG image")],
                      client: ClientDep, session: SessionDep, state: StateDep):
    """Uploads a logo (PNG, 16 to 2000 pixels a side); use its `id` as `logo_id`. PNG only:
    it shows in every mail client and prints on letters. Uploading the same file again
    returns the same logo."""
    limit = state.settings.brand_logo_max_bytes
    data = await file.read(limit + 1)
    try:
        if len(data) > limit:
            raise LogoRejected(413, f"the logo is larger than {limit} bytes")
        width, height = png_size(data)
    except LogoRejected as err:
        return error_response(err.status, "logo_rejected", str(err),
                              [FieldError(field="file", message=str(err))])
    digest = hashlib.sha256(data).hexdigest()
    logo = await session.scalar(select(BrandLogo).where(
        BrandLogo.client_id == client.id, BrandLogo.sha256 == digest))
    if logo is None:
        logo = BrandLogo(client_id=client.id, sha256=digest, png=data, width=width,
                         height=height)
        session.add(logo)
        await session.commit()
    brand = brand_for(client.name, client.branding, None, state.settings)
    return LogoOut(id=logo.id, url=f"{brand.base_url}/brand/logos/{logo.id}.png",
                   width=logo.width, height=logo.height)


@public.get("/brand/logos/{logo_id}.png")
async def logo_file(logo_id: str, session: SessionDep) -> Response:
    # A public file's address: one that names no logo is not found, whatever its form.
    try:
        logo = await session.get(BrandLogo, uuid.UUID(logo_id))
    except ValueError:
        logo = None
    if logo is None:
        raise HTTPException(404, "logo not found")
    return Response(logo.png, media_type="image/png", headers={"Cache-Control": IMMUTABLE})


Colour = Annotated[str, Path(pattern=r"^[0-9a-f]{6}$")]


@public.get("/theme/{primary}/{on_primary}/{font}.css")
async def theme(primary: Colour, on_primary: Colour, font: str) -> Response:
    """The brand's custom properties for page.css. Everything in the URL is checked, so
    nothing but a colour or a listed font stack reaches the stylesheet."""
    if font not in FONT_STACKS:
        raise HTTPException(404, "no such font")
    css = (f":root {{ --brand: #{primary}; --on-brand: #{on_primary}; "
           f"--font: {FONT_STACKS[font]}; }}\n")
    return Response(css, media_type="text/css", headers={"Cache-Control": IMMUTABLE})
