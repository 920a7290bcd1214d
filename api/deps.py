"""Request dependencies: settings, a database session per request, Temporal, the calling client."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client as TemporalClient

from core.security import Csrf, SecretBox
from core.settings import Settings
from db import crud
from db.models import Client
from workflows.webhook_endpoint import EndpointDispatcher


@dataclass
class AppState:
    """Created once in the app's lifespan and shared by every request."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    temporal: TemporalClient
    csrf: Csrf
    box: SecretBox
    endpoints: EndpointDispatcher


def app_state(request: Request) -> AppState:
    return request.app.state.journeys


async def get_session(state: Annotated[AppState, Depends(app_state)]) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


StateDep = Annotated[AppState, Depends(app_state)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="API key of a client: `Bearer cj_...`")


async def current_client(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    client = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        client = await crud.client_for_api_key(session, key=credentials.credentials)
    if client is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return client


ClientDep = Annotated[Client, Depends(current_client)]
