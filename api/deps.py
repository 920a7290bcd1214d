"""Request dependencies: settings, a database session per request, Temporal, the calling client."""

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import or_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client as TemporalClient

from api.errors import FieldProblems, unavailable
from api.schemas import IDEMPOTENCY_KEY_PATTERN, FieldError
from contacts import audit, registry
from contacts.audit import Actor
from core.security import Csrf, SecretBox
from core.settings import Settings
from core.vocabulary import ActorType, AuditAction
from db import crud
from db.models import ApiKey, Client, utcnow
from workflows.webhook_endpoint import EndpointDispatcher


@dataclass
class AppState:
    """Created once in the app's lifespan and shared by every request."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # Rate-limit counters (`db.session.make_counter_engine`).
    counters: async_sessionmaker[AsyncSession]
    temporal: TemporalClient
    csrf: Csrf
    box: SecretBox
    endpoints: EndpointDispatcher


# Dependencies without I/O are still `async def`: FastAPI runs a plain `def` one in its thread
# pool, a hand-off to another thread on every request (about a thirtieth of the API's CPU).
async def app_state(request: Request) -> AppState:
    return request.app.state.journeys


async def get_session(state: Annotated[AppState, Depends(app_state)]) -> AsyncIterator[AsyncSession]:
    session = state.sessions()
    try:
        yield session
    finally:
        try:
            await session.close()
        except DBAPIError as err:
            # The database went away (a restart) while the answer was on its way: the pool
            # has dropped the connection, and failing here would cut the answer off mid-way.
            if not unavailable(err):
                raise


StateDep = Annotated[AppState, Depends(app_state)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="API key of a client: `Bearer cj_...`")


# How exactly a key's last use is kept: an operator asks whether a key is still in use, which
# a minute answers, at one write a minute per busy key.
LAST_USE_PRECISION = timedelta(minutes=1)


async def current_key(
    request: Request,
    session: SessionDep,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[ApiKey, Client]:
    found = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        found = await crud.api_key_and_client(session, key=credentials.credentials)
    if found is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    now = utcnow()
    if found[0].last_used_at is None or now - found[0].last_used_at >= LAST_USE_PRECISION:
        # On a counter connection that commits at once: the request's own transaction may
        # fail or run long, and the use happened all the same.
        async with state.counters() as counters:
            await counters.execute(update(ApiKey).where(ApiKey.id == found[0].id).where(
                or_(ApiKey.last_used_at.is_(None),
                    ApiKey.last_used_at <= now - LAST_USE_PRECISION)).values(last_used_at=now))
            await counters.commit()
    # The audit trail names the key that made the call.
    request.state.actor = Actor(ActorType.api_key, str(found[0].id))
    return found


async def current_client(found: Annotated[tuple[ApiKey, Client], Depends(current_key)]) -> Client:
    return found[1]


async def calling_key(found: Annotated[tuple[ApiKey, Client], Depends(current_key)]) -> ApiKey:
    return found[0]


ClientDep = Annotated[Client, Depends(current_client)]
ApiKeyDep = Annotated[ApiKey, Depends(calling_key)]


async def current_actor(request: Request, client: ClientDep) -> Actor:
    return request.state.actor


ActorDep = Annotated[Actor, Depends(current_actor)]


def registry_dependency(*, to_change: bool):
    """The client's registry rules, for routes that create or change contacts; `to_change`, for
    a change of the contact settings themselves, locked until commit."""
    async def registry_of(client: ClientDep, session: SessionDep, state: StateDep
                          ) -> registry.Registry:
        return await registry.registry_for(
            session, client_id=client.id, to_change=to_change,
            secret_key=state.settings.secret_key.get_secret_value())
    return registry_of


RegistryDep = Annotated[registry.Registry, Depends(registry_dependency(to_change=False))]
ChangingRegistryDep = Annotated[registry.Registry, Depends(registry_dependency(to_change=True))]


@dataclass
class Reads:
    """The audit trail of what a route shows of contacts' personal data, outside the contact
    routes too (journeys, consents, KYC, reports): GDPR's "who saw it" has no back door. Each
    entry names the route it was read through."""

    session: AsyncSession
    # A streamed body's entries: in a session of their own, as the body's rows come.
    sessions: async_sessionmaker[AsyncSession]
    client_id: uuid.UUID
    actor: Actor
    via: str

    async def of(self, contact_ids: Iterable[uuid.UUID], *,
                 action: AuditAction = AuditAction.read, streamed: bool = False) -> None:
        """Recorded and committed before the data leaves (`streamed`: a part of a streamed
        body, so a download cut short audits only what left)."""
        async with self._session(streamed) as session:
            await self._record(session, contact_ids, action)

    async def of_journeys(self, journey_ids: Iterable[uuid.UUID], *,
                          action: AuditAction = AuditAction.read, streamed: bool = False) -> None:
        """The contacts of these journeys (rows that name a journey, e.g. bounces)."""
        async with self._session(streamed) as session:
            await self._record(session, await crud.contacts_of_journeys(
                session, list(journey_ids)), action)

    @asynccontextmanager
    async def _session(self, streamed: bool) -> AsyncIterator[AsyncSession]:
        if not streamed:
            yield self.session
            return
        async with self.sessions() as session:
            yield session

    async def _record(self, session: AsyncSession, contact_ids: Iterable[uuid.UUID],
                      action: AuditAction) -> None:
        await audit.record(session, client_id=self.client_id, actor=self.actor, action=action,
                           contact_ids=list(dict.fromkeys(contact_ids)),
                           detail={"via": self.via})
        await session.commit()


async def reads(request: Request, client: ClientDep, session: SessionDep,
                state: StateDep) -> Reads:
    return Reads(session, state.sessions, client.id, request.state.actor,
                 request.scope["route"].path)


ReadsDep = Annotated[Reads, Depends(reads)]

IdempotencyKeyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200, pattern=IDEMPOTENCY_KEY_PATTERN,
    description="One per request among the client's: sent again with the same request, the key "
                "does nothing twice and answers as the first one did; with another request it "
                "is a 409")]


async def no_body(request: Request) -> None:
    """For routes that take no body: one that names fields is refused (422, each field named),
    where ignoring it would leave a client believing `{"ttl": ...}` or `{"reason": ...}` was
    applied. Nothing, `{}` or `null` is no body; a field the route takes as a query parameter
    is said to be one."""
    raw = await request.body()
    if not raw.strip():
        return
    try:
        data = json.loads(raw)
    except ValueError:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                       "msg": "not JSON", "input": None}]) from None
    if data in ({}, None):
        return
    route = request.scope.get("route")
    queries = {param.alias for param in route.dependant.query_params} if route else set()

    def problem(name: str) -> str:
        return (f"is a query parameter here (?{name}=…), not a field of a body" if name in queries
                else "this request takes no body")
    raise FieldProblems([FieldError(field=name, message=problem(name)) for name in data]
                        if isinstance(data, dict)
                        else [FieldError(field="body", message="this request takes no body")])


NoBody = Depends(no_body)
