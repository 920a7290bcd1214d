"""How to obtain a real id of each kind the client API names in its paths, for the tests that
sweep every route (tenant isolation, fuzzing). A new kind of id needs an entry in ID_SOURCES."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import Tenant, unique_email

IdSource = Callable[[Tenant], Awaitable[str]]


async def new_campaign(tenant: Tenant) -> str:
    return (await tenant.create_campaign(languages=["en"], consents=[]))["id"]


async def enrolled(tenant: Tenant) -> dict[str, Any]:
    result = await tenant.enrol(await new_campaign(tenant),
                                {"external_id": f"iso-{uuid.uuid4().hex[:8]}", "email": unique_email()})
    return result["results"][0]


async def new_journey(tenant: Tenant) -> str:
    return (await enrolled(tenant))["journey_id"]


async def new_contact(tenant: Tenant) -> str:
    return (await enrolled(tenant))["contact_id"]


async def new_webhook_endpoint(tenant: Tenant) -> str:
    response = await tenant.post("/v1/webhook-endpoints",
                                 {"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    return response.json()["id"]


async def new_purpose(tenant: Tenant) -> str:
    key = f"iso-{uuid.uuid4().hex[:8]}"
    await tenant.ensure_purpose(key)
    return key


async def message_body(tenant: Tenant) -> dict[str, Any]:
    response = await tenant.http.put("/v1/message-policies/invoice", json={"category": "financial"},
                                     headers=tenant.auth)
    assert response.status_code == 200, response.text
    return {"contact_id": await new_contact(tenant), "message_type": "invoice",
            "subject": "Your invoice", "text": "Attached."}


async def new_message(tenant: Tenant) -> str:
    return (await tenant.post("/v1/messages", await message_body(tenant))).json()["id"]


# How to obtain a real id of each kind named in a route's path: a new kind needs an entry.
ID_SOURCES: dict[str, IdSource] = {
    "campaign_id": new_campaign,
    "journey_id": new_journey,
    "contact_id": new_contact,
    "endpoint_id": new_webhook_endpoint,
    "message_id": new_message,
    "key": new_purpose,
}
# Path parameters that name something every client names alike, rather than an id of theirs.
SHARED_NAMES = {"message_type": "invoice"}
