"""Clients register the URLs that receive their signed webhook events."""

import uuid

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from api.deps import ClientDep, SessionDep, StateDep
from api.errors import ERROR_RESPONSES
from api.schemas import WebhookEndpointCreate, WebhookEndpointCreated, WebhookEndpointOut
from core.security import new_webhook_secret
from db.models import WebhookEndpoint

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreated)
async def create_endpoint(
    body: WebhookEndpointCreate, client: ClientDep, session: SessionDep, state: StateDep
) -> WebhookEndpointCreated:
    secret = new_webhook_secret()
    endpoint = WebhookEndpoint(
        client_id=client.id, url=str(body.url), events=list(dict.fromkeys(body.events)),
        secret_encrypted=state.box.seal(secret),
    )
    session.add(endpoint)
    await session.commit()
    return WebhookEndpointCreated(**WebhookEndpointOut.model_validate(endpoint, from_attributes=True)
                                  .model_dump(), secret=secret)


@router.get("", response_model=list[WebhookEndpointOut])
async def list_endpoints(client: ClientDep, session: SessionDep) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.client_id == client.id)
        .order_by(WebhookEndpoint.created_at)
    )
    return list(rows)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(endpoint_id: uuid.UUID, client: ClientDep, session: SessionDep) -> None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.client_id != client.id:
        raise HTTPException(404, "webhook endpoint not found")
    await session.delete(endpoint)
    await session.commit()
