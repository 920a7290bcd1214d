"""Abuse: guessing personal links, and reaching another client's data through any /v1 route.

The route list comes from the app itself, so a new endpoint is covered (or fails loudly here
until this file learns how to obtain a real id of its kind)."""

import base64
import re
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.main import create_app
from core.settings import Settings
from tests.helpers import Mailbox, Tenant, unique_email
from tests.real_ids import (
    ID_SOURCES,
    SHARED_NAMES,
    IdSource,
    message_body,
    new_contact,
    new_webhook_endpoint,
    new_campaign,
)

# --- link-token guessing -------------------------------------------------------------------


async def timed_get(http: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await http.get(path)
    return time.perf_counter() - started, response


async def test_guessed_link_tokens_get_404_and_take_no_telling_time(
    tenant: Tenant, http: httpx.AsyncClient, mailbox: Mailbox
):
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    await tenant.enrol(campaign["id"], {"external_id": "guess", "email": address})
    real = mailbox.link((await mailbox.wait_for(address))[0]).removeprefix("/c/")

    # Tokens shaped like real ones (43 url-safe characters), and a few that are not.
    guesses = [secrets.token_urlsafe(32) for _ in range(200)] + ["a", "-" * 43, "%00", real[:-1]]
    for token in guesses:
        for path in (f"/c/{token}", f"/v/{token}"):
            response = await http.get(path)
            assert response.status_code == 404, (path, response.status_code)
        assert (await http.post(f"/c/{token}", data={"email": "x@example.com"})).status_code == 404

    # A real token where it does not belong (a contact-page token on the verification page)
    # is found in the database and then refused; a random one is not found at all. Neither
    # answer nor its timing may tell an attacker which is which.
    wrong_place, random_token = [], []
    for _ in range(150):  # interleaved, so drift in machine load hits both alike
        seconds, found = await timed_get(http, f"/v/{real}")
        wrong_place.append(seconds)
        seconds, missing = await timed_get(http, f"/v/{secrets.token_urlsafe(32)}")
        random_token.append(seconds)
        assert found.status_code == missing.status_code == 404
        assert found.text == missing.text
    fast, slow = sorted([statistics.median(wrong_place), statistics.median(random_token)])
    # Loose on purpose (a shared CI machine is noisy): a real leak would be a lookup that
    # behaves differently, not a few percent.
    assert slow < 2.5 * fast or slow - fast < 0.002, (wrong_place, random_token)
    # The link itself still works for its owner.
    assert (await http.get(f"/c/{real}")).status_code == 200


# --- tenant isolation over every /v1 route -------------------------------------------------

async def consent_change_body(tenant: Tenant) -> dict[str, Any]:
    await tenant.ensure_purpose("newsletter")
    await tenant.post("/v1/purposes/newsletter/legal-texts",
                      {"language": "en", "version": "iso", "text": "Newsletter, please."})
    given_at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return {"changes": [{"purpose": "newsletter", "channel": "email", "granted": True,
                         "given_at": given_at, "source": "back_office",
                         "legal_text": {"language": "en"}}]}


async def reconsent_campaign(tenant: Tenant) -> str:
    await tenant.ensure_purpose("data-processing", "data_processing")
    campaign = await tenant.create_campaign(
        name="Privacy notice", kind="reconsent", languages=["en"],
        consents=[{"key": "gdpr", "purpose": "data-processing", "channel": "any",
                   "mandatory": True, "texts": {"en": {"text": "We keep your data.",
                                                       "version": "1"}}}])
    return campaign["id"]


async def running_reconsent(tenant: Tenant) -> str:
    campaign_id = await reconsent_campaign(tenant)
    started = await tenant.post(f"/v1/campaigns/{campaign_id}/reconsent-run", {})
    assert started.status_code == 202, started.text
    return campaign_id


PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@dataclass
class Multipart:
    """A form upload as a route's body, where JSON will not do."""

    files: dict[str, tuple[str, bytes, str]]
    data: dict[str, str]


def upload_body() -> Multipart:
    return Multipart(files={"file": ("scan.pdf", PDF, "application/pdf")},
                     data={"document_type": "passport", "number": "NL1234567",
                           "expires_at": "2036-01-01"})


async def registry_contact(tenant: Tenant) -> str:
    """A contact of the registry with no journey: nothing blocks erasing it."""
    response = await tenant.post("/v1/contacts", {
        "first_name": "Iso", "last_name": f"Late-{uuid.uuid4().hex[:6]}",
        "contact_points": [{"kind": "email", "value": unique_email("registry")}]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def kyc_contact(tenant: Tenant) -> str:
    """A registry contact whose KYC profile awaits verification."""
    level = uuid.uuid4().int % 900 + 1
    defined = await tenant.post("/v1/kyc/definitions", {
        "name": f"Level {level}", "level": level,
        "rules": {"person": [{"field": "first_name"}, {"field": "last_name"}]}})
    assert defined.status_code == 201, defined.text
    contact_id = await registry_contact(tenant)
    profile = await tenant.get(f"/v1/kyc/contacts/{contact_id}")
    assert profile.status_code == 200, profile.text
    return contact_id


async def kyc_definition(tenant: Tenant) -> str:
    response = await tenant.post("/v1/kyc/definitions", await kyc_definition_body(tenant))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def kyc_definition_body(tenant: Tenant) -> dict[str, Any]:
    level = uuid.uuid4().int % 900 + 1
    return {"name": f"Level {level}", "level": level,
            "rules": {"person": [{"field": "first_name"}]}}


async def kyc_document(tenant: Tenant) -> str:
    body = upload_body()
    response = await tenant.http.post(f"/v1/kyc/contacts/{await registry_contact(tenant)}/documents",
                                      headers=tenant.auth, files=body.files, data=body.data)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def contact_import(tenant: Tenant) -> str:
    content = f"external_id;last_name\r\niso-{uuid.uuid4().hex[:8]};Imported\r\n;\r\n".encode()
    response = await tenant.http.post("/v1/contact-imports", content=content, headers={
        **tenant.auth, "Content-Type": "text/csv"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def gdpr_consent_body(tenant: Tenant, document: bool = False) -> dict[str, Any]:
    await tenant.ensure_purpose("data-processing", "data_processing")
    await tenant.post("/v1/purposes/data-processing/legal-texts",
                      {"language": "en", "version": "iso", "text": "We keep your data."})
    body = {"state": "accepted", "purpose": "data-processing", "source": "back_office",
            "given_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "legal_text": {"language": "en", "version": "iso"}}
    if document:
        body["document"] = {"filename": "signed.pdf", "content_type": "application/pdf",
                            "content_base64": base64.b64encode(PDF).decode()}
    return body


# Routes whose ids must belong together (a document of that contact, an event of that
# endpoint): one source gives them all.
IdSet = Callable[[Tenant], Awaitable[dict[str, str]]]


async def contact_with_consent_document(tenant: Tenant) -> dict[str, str]:
    contact_id = await new_contact(tenant)
    response = await tenant.post(f"/v1/contacts/{contact_id}/gdpr-consent",
                                 await gdpr_consent_body(tenant, document=True))
    assert response.status_code == 200, response.text
    return {"contact_id": contact_id, "document_id": response.json()["documents"][0]["id"]}


async def contact_with_address(tenant: Tenant) -> dict[str, str]:
    contact_id = await registry_contact(tenant)
    response = await tenant.post(f"/v1/contacts/{contact_id}/addresses", {
        "type": "home", "line1": "Isolatieweg 1", "city": "Utrecht", "country": "NL"})
    assert response.status_code < 300, response.text
    address_id = response.json()["id"]
    return {"contact_id": contact_id, "address_id": address_id, "action": "deactivate"}


async def contact_with_point(tenant: Tenant) -> dict[str, str]:
    contact_id = await registry_contact(tenant)
    [point] = (await tenant.get(f"/v1/contacts/{contact_id}")).json()["contact_points"]
    return {"contact_id": contact_id, "point_id": point["id"]}


async def endpoint_with_event(tenant: Tenant) -> dict[str, str]:
    endpoint_id = await new_webhook_endpoint(tenant)
    changed = await tenant.post(f"/v1/contacts/{await new_contact(tenant)}/consents",
                                await consent_change_body(tenant))
    assert changed.status_code == 201, changed.text
    deliveries = await tenant.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries")
    return {"endpoint_id": endpoint_id, "event_id": deliveries.json()[0]["event_id"]}


ROUTE_ID_SETS: dict[str, IdSet] = {
    "GET /v1/contacts/{contact_id}/gdpr-consent/documents/{document_id}":
        contact_with_consent_document,
    "POST /v1/contacts/{contact_id}/addresses/{address_id}/{action}": contact_with_address,
    "DELETE /v1/contacts/{contact_id}/contact-points/{point_id}": contact_with_point,
    "POST /v1/webhook-endpoints/{endpoint_id}/events/{event_id}/resend": endpoint_with_event,
}


async def payment_journey(tenant: Tenant) -> str:
    campaign = await tenant.create_campaign(languages=["en"], consents=[], payments=True)
    enrolled = await tenant.enrol(campaign["id"], {
        "external_id": f"pay-{uuid.uuid4().hex[:8]}", "email": unique_email(),
        "claim": {"reference": "INV-1", "payment_url": "https://pay.example.com/1"}})
    return enrolled["results"][0]["journey_id"]


async def ended_payment_journey(tenant: Tenant) -> str:
    """A payment journey the client cancelled, its claim still unpaid."""
    journey_id = await payment_journey(tenant)
    assert (await tenant.post(f"/v1/journeys/{journey_id}/cancel", {})).status_code in (200, 202)
    await tenant.wait_for_stage(journey_id, "cancelled")
    return journey_id


async def held_launch(tenant: Tenant) -> str:
    """A campaign whose launch waits, paused, for its client."""
    campaign_id = await new_campaign(tenant)
    await tenant.ok("POST", f"/v1/campaigns/{campaign_id}/launch", {"paused": True}, 202)
    return campaign_id


async def recurring_campaign(tenant: Tenant) -> str:
    campaign_id = await new_campaign(tenant)
    await tenant.ok("PUT", f"/v1/campaigns/{campaign_id}/recurrence", {"every": "P30D"})
    return campaign_id


# Routes whose id must be of a particular sort.
ROUTE_IDS: dict[str, dict[str, IdSource]] = {
    "GET /v1/campaigns/{campaign_id}/reconsent-run": {"campaign_id": running_reconsent},
    "POST /v1/campaigns/{campaign_id}/reconsent-run": {"campaign_id": reconsent_campaign},
    "POST /v1/journeys/{journey_id}/payment-completed": {"journey_id": payment_journey},
    "POST /v1/journeys/{journey_id}/claim-withdrawn": {"journey_id": ended_payment_journey},
    "DELETE /v1/contacts/{contact_id}": {"contact_id": registry_contact},
    "POST /v1/contacts/{contact_id}/anonymise": {"contact_id": registry_contact},
    "POST /v1/kyc/contacts/{contact_id}/documents": {"contact_id": registry_contact},
    "POST /v1/kyc/contacts/{contact_id}/assign": {"contact_id": kyc_contact},
    "GET /v1/kyc/contacts/{contact_id}": {"contact_id": kyc_contact},
    "POST /v1/kyc/contacts/{contact_id}/verify": {"contact_id": kyc_contact},
    "POST /v1/kyc/contacts/{contact_id}/refute": {"contact_id": kyc_contact},
    "GET /v1/kyc/definitions/{definition_id}": {"definition_id": kyc_definition},
    "PATCH /v1/kyc/documents/{document_id}": {"document_id": kyc_document},
    "GET /v1/kyc/documents/{document_id}/file": {"document_id": kyc_document},
    "GET /v1/contact-imports/{import_id}": {"import_id": contact_import},
    "GET /v1/contact-imports/{import_id}/errors": {"import_id": contact_import},
    "POST /v1/campaigns/{campaign_id}/launch/pause": {"campaign_id": held_launch},
    "POST /v1/campaigns/{campaign_id}/launch/resume": {"campaign_id": held_launch},
    "POST /v1/campaigns/{campaign_id}/launch/cancel": {"campaign_id": held_launch},
    "GET /v1/campaigns/{campaign_id}/recurrence": {"campaign_id": recurring_campaign},
}
async def fixed(value: Any) -> Any:
    return value


async def bounce_body(tenant: Tenant) -> dict[str, Any]:
    """A bounce of the owner's invitation, named by journey and step."""
    campaign = await tenant.create_campaign(languages=["en"], consents=[])
    address = unique_email()
    result = await tenant.enrol(campaign["id"], {"external_id": "bounce", "email": address})
    journey_id = result["results"][0]["journey_id"]
    await tenant.wait_for_stage(journey_id, "invited")
    return {"journey_id": journey_id, "step": "invitation", "recipient": address,
            "kind": "soft", "reason": "452 mailbox full"}


# A valid body for each route that takes one, so the answer is about the ids, not the body.
BODIES: dict[str, Callable[[Tenant], Awaitable[Any]]] = {
    # Carries the owner's journey id in the body: the other client must get a 404 for it.
    "POST /v1/bounces": bounce_body,
    "POST /v1/campaigns": lambda t: fixed({"name": "Isolation", "languages": ["en"]}),
    "POST /v1/campaigns/{campaign_id}/launch": lambda t: fixed({}),
    "POST /v1/campaigns/{campaign_id}/launch/cancel": lambda t: fixed({"cancel_journeys": True}),
    "PATCH /v1/campaigns/{campaign_id}": lambda t: fixed({"status": "paused"}),
    "PUT /v1/campaigns/{campaign_id}/recurrence": lambda t: fixed({"every": "P30D"}),
    "POST /v1/campaigns/{campaign_id}/contacts": lambda t: fixed(
        {"contacts": [{"external_id": "other", "email": unique_email()}]}),
    "POST /v1/webhook-endpoints": lambda t: fixed({"url": "http://127.0.0.1:9/h", "events": ["*"]}),
    "POST /v1/consents/import": lambda t: fixed({"items": [{"external_id": "nobody"}]}),
    "POST /v1/suppressions/check": lambda t: fixed({"email": unique_email()}),
    "POST /v1/journeys/{journey_id}/payment-completed": lambda t: fixed({}),
    "POST /v1/contacts/{contact_id}/gdpr-consent": gdpr_consent_body,
    "POST /v1/kyc/contacts/{contact_id}/documents": lambda t: fixed(upload_body()),
    "POST /v1/kyc/contacts/{contact_id}/assign": lambda t: fixed({}),
    "POST /v1/kyc/contacts/{contact_id}/verify": lambda t: fixed(None),
    "POST /v1/kyc/contacts/{contact_id}/refute": lambda t: fixed({"reason": "Blurred scan"}),
    "POST /v1/kyc/definitions": kyc_definition_body,
    "PATCH /v1/kyc/documents/{document_id}": lambda t: fixed({"number": "NL7654321"}),
    "POST /v1/kyc/expiring/notify": lambda t: fixed({"within_days": 30}),
    "POST /v1/webhook-endpoints/{endpoint_id}/events/{event_id}/resend": lambda t: fixed(None),
    "PUT /v1/contact-settings": lambda t: fixed({
        "person_rule": None, "company_rule": None, "default_region": "NL",
        "address_types": [{"name": "home"}], "anonymise_inactive_after_days": None}),
    "PATCH /v1/contact-settings": lambda t: fixed({"default_region": "NL"}),
    "POST /v1/contacts": lambda t: fixed({"last_name": "Isolated"}),
    "PATCH /v1/contacts/{contact_id}": lambda t: fixed({"first_name": "Changed"}),
    "POST /v1/contacts/{contact_id}/addresses": lambda t: fixed(
        {"type": "home", "line1": "Isolatieweg 2", "city": "Utrecht", "country": "NL"}),
    "POST /v1/contacts/{contact_id}/addresses/{address_id}/{action}": lambda t: fixed(None),
    "POST /v1/contacts/{contact_id}/contact-points": lambda t: fixed(
        {"kind": "email", "value": unique_email("point")}),
    "POST /v1/contacts/{contact_id}/identification-media": lambda t: fixed(
        {"kind": "loyalty_id", "value": f"LOY-{uuid.uuid4().hex[:8]}"}),
    "POST /v1/contacts/{contact_id}/consents": consent_change_body,
    "POST /v1/inbound/sms": lambda t: fixed({"from": "+31612345678", "text": "STOP"}),
    "PUT /v1/message-policies/{message_type}": lambda t: fixed({"category": "financial"}),
    # Carries the owner's contact id in the body: the other client must get a 404 for it.
    "POST /v1/messages": message_body,
    "POST /v1/purposes": lambda t: fixed({"key": f"p-{uuid.uuid4().hex[:8]}", "name": "P",
                                          "kind": "direct_marketing"}),
    "PATCH /v1/purposes/{key}": lambda t: fixed({"names": {"nl": "Nieuwsbrief"}}),
    "POST /v1/purposes/{key}/legal-texts": lambda t: fixed(
        {"language": "en", "version": uuid.uuid4().hex[:8], "text": "Words."}),
    "PATCH /v1/settings": lambda t: fixed({"household_rule": "move"}),
    "PUT /v1/branding": lambda t: fixed({"primary_colour": "#14532d", "font": "humanist"}),
    "PUT /v1/campaigns/{campaign_id}/branding": lambda t: fixed({"primary_colour": "#7c2d12"}),
    # Multipart, not JSON: the sweep's JSON call gets a 422, which must show nothing of the owner.
    "POST /v1/branding/logos": lambda t: fixed(None),
    "PATCH /v1/webhook-endpoints/{endpoint_id}": lambda t: fixed({"description": "isolation"}),
    "POST /v1/webhook-endpoints/{endpoint_id}/replay": lambda t: fixed({
        "since": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "until": datetime.now(UTC).isoformat()}),
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret": lambda t: fixed(None),
}
BODY_CARRIES_IDS = {"POST /v1/messages", "POST /v1/bounces"}
# Required query parameters, so the answer is about the ids, not a missing parameter.
QUERIES = {"GET /v1/campaigns/{campaign_id}/messages/preview": "?kind=invitation"}


def flat_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of the app; this FastAPI keeps included routers nested in `app.routes`."""
    for route in routes:
        nested = getattr(route, "effective_route_contexts", None)
        if nested is None:
            yield route
        else:
            yield from (context.original_route for context in nested())


def client_api_routes() -> list[tuple[str, APIRoute]]:
    app = create_app(Settings())
    found = sorted(((method, route) for route in flat_routes(app.routes)
                    if isinstance(route, APIRoute) and route.path.startswith("/v1/")
                    for method in route.methods), key=lambda mr: (mr[1].path, mr[0]))
    # Should FastAPI's route layout change, fail here rather than silently test nothing.
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= {(m, r.path) for m, r in found}, documented
    return found


ROUTES = client_api_routes()


async def call(tenant: Tenant, method: str, path: str, body: Any) -> httpx.Response:
    if isinstance(body, Multipart):
        return await tenant.http.request(method, path, headers=tenant.auth, files=body.files,
                                         data=body.data)
    return await tenant.http.request(method, path, headers=tenant.auth, json=body)


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r.path}" for m, r in ROUTES])
async def test_another_clients_ids_are_404_on_every_route(
    method: str, route: APIRoute, tenant: Tenant, other_tenant: Tenant, mailbox
):
    key = f"{method} {route.path}"
    names = re.findall(r"{(\w+)}", route.path)
    sources = {**ID_SOURCES, **ROUTE_IDS.get(key, {})}
    unknown = [n for n in names if n not in sources and n not in SHARED_NAMES]
    if unknown and key not in ROUTE_ID_SETS:
        pytest.fail(f"{key}: no way to obtain a real {unknown} for the isolation test; "
                    "add it to ID_SOURCES (or SHARED_NAMES, ROUTE_ID_SETS) in tests/test_abuse.py")
    if route.body_field is not None and key not in BODIES:
        pytest.fail(f"{key} takes a body: add a valid one to BODIES in tests/test_abuse.py")
    if key in ROUTE_ID_SETS:
        owner_ids = await ROUTE_ID_SETS[key](tenant)
    else:
        owner_ids = {n: await sources[n](tenant) for n in names if n not in SHARED_NAMES}
    path = route.path.format(**{**SHARED_NAMES, **owner_ids}) + QUERIES.get(key, "")
    body = await BODIES[key](tenant) if key in BODIES else None

    if not owner_ids and key not in BODY_CARRIES_IDS:
        # Nothing of the owner's to point at; the answer must still show nothing of theirs.
        owned = {name: await source(tenant) for name, source in ID_SOURCES.items()}
        response = await call(other_tenant, method, path, body)
        assert response.status_code < 500, response.text
        leaked = [name for name, value in owned.items() if value in response.text]
        assert not leaked, f"{key} shows another client's {leaked}"
        return

    response = await call(other_tenant, method, path, body)
    assert response.status_code == 404, f"{key}: {response.status_code} {response.text[:300]}"
    assert response.json()["error"]["code"] == "not_found"
    # ...while the same request from the owner succeeds, so the ids above were real ones.
    owner = await call(tenant, method, path, body)
    assert owner.status_code < 400, f"{key} as owner: {owner.status_code} {owner.text[:300]}"
