"""Idempotency-Key on the API's creates: the request sent again (a client retrying an answer it
lost) does nothing twice and is given the first answer; another request with the key is a 409.
A key is kept for IDEMPOTENCY_KEY_RETENTION, and is new again after that."""

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ClientDep, IdempotencyKeyHeader, SessionDep, StateDep
from core.security import sha256_hex
from db import crud
from db.models import IdempotentRequest, utcnow

# The OpenAPI of a route's answer that a retry may replay.
REPLAYED = {"headers": {"Idempotent-Replayed": {
    "description": "`true` on the answer to a retry with the same Idempotency-Key: the answer "
                   "the first request was given",
    "schema": {"type": "string", "enum": ["true"]}}}}


@dataclass
class Idempotency:
    session: AsyncSession
    client_id: uuid.UUID
    route: str
    key: str | None
    retention: timedelta
    claimed: bool = False

    def _this_key(self) -> tuple[Any, ...]:
        return (IdempotentRequest.client_id == self.client_id,
                IdempotentRequest.route == self.route, IdempotentRequest.key == self.key)

    async def replay(self, request: Any, response: Response) -> dict[str, Any] | None:
        """The first answer to this request (`request`: what it asks, as JSON), to give again,
        marked Idempotent-Replayed. None without a key or when this request is the first: the
        key is then its own until its transaction ends, so that a retry sent meanwhile waits
        for that and is given its answer (or, if it failed, goes ahead itself)."""
        if self.key is None:
            return None
        sha256 = sha256_hex(json.dumps(request, sort_keys=True))
        # Past its retention a key is new, whether or not the daily purge has deleted it yet.
        await self.session.execute(delete(IdempotentRequest).where(
            *self._this_key(), IdempotentRequest.created_at < utcnow() - self.retention))
        first = None
        while first is None:
            self.claimed = await self.session.scalar(
                crud.insert_ignoring_conflicts_stmt(self.session, IdempotentRequest)
                .values(client_id=self.client_id, route=self.route, key=self.key,
                        request_sha256=sha256)
                .returning(IdempotentRequest.key)) is not None
            if self.claimed:
                return None
            # None: the first request's record went (its contact erased, its key expired)
            # between the two statements, so this one may claim the key after all.
            first = await self.session.get(IdempotentRequest, (self.client_id, self.route,
                                                               self.key))
        if first.request_sha256 != sha256:
            raise HTTPException(409, "the Idempotency-Key was used with another request")
        response.headers["Idempotent-Replayed"] = "true"
        response.status_code = first.status_code
        return first.answer

    async def answered(self, answer: BaseModel, status_code: int, *,
                       contact_id: uuid.UUID | None = None) -> None:
        """Keeps the answer with the key, in the transaction of what the request did.
        `contact_id`: the contact whose personal data the answer holds, whose erasure deletes
        it."""
        if self.claimed:
            await self.session.execute(update(IdempotentRequest).where(*self._this_key()).values(
                status_code=status_code, answer=answer.model_dump(mode="json"),
                contact_id=contact_id))


async def idempotency(request: Request, client: ClientDep, session: SessionDep,
                      state: StateDep, key: IdempotencyKeyHeader = None) -> Idempotency:
    # Keys are per route: the same key may name a contact's create and a campaign's launch.
    return Idempotency(session, client.id, f"{request.method} {request.scope['route'].path}", key,
                       state.settings.idempotency_key_retention)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
