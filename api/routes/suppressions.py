"""The client's suppression list: what stays of erased contacts' emails and phones. Entries show
kind, reason and date, never a value; a client can ask whether an address it knows is on the
list. There is no delete: only the customer's own opt-in brings them back into marketing."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, EmailStr, Field, ValidationInfo, field_validator
from sqlalchemy import select

from api.deps import RegistryDep, SessionDep
from api.errors import ERROR_RESPONSES, FieldProblems
from api.routes.contacts import documented, validated
from api.schemas import FieldError, Strict
from contacts import suppression
from contacts.schemas import SuppressedOut
from core.vocabulary import ContactPointKind
from db.models import Suppression
from messaging.phone import parse_phone

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"], responses=ERROR_RESPONSES)


class SuppressionOut(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="email or phone")
    reason: str = Field(description="anonymised or terminated")
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class SuppressionCheck(Strict):
    email: EmailStr | None = None
    phone: str | None = Field(None, max_length=40,
                              description="E.164, or national in the client's default region")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return parse_phone(value, (info.context or {}).get("region"), mobile=False)


class SuppressionVerdict(BaseModel):
    email: SuppressedOut | None = None
    phone: SuppressedOut | None = None


@router.get("", response_model=SuppressionPage)
async def list_suppressions(
    reg: RegistryDep, session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: uuid.UUID | None = Query(None, description="next_cursor of the previous page"),
) -> SuppressionPage:
    query = select(Suppression).where(Suppression.client_id == reg.client_id)
    if cursor is not None:
        query = query.where(Suppression.id > cursor)
    rows = list(await session.scalars(query.order_by(Suppression.id).limit(limit + 1)))
    items = [SuppressionOut.model_validate(s, from_attributes=True) for s in rows[:limit]]
    return SuppressionPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


@router.post("/check", response_model=SuppressionVerdict,
             openapi_extra=documented(SuppressionCheck))
async def check_suppression(
    reg: RegistryDep, session: SessionDep,
    body: Annotated[dict[str, Any], Body(description="A SuppressionCheck object")],
) -> SuppressionVerdict:
    """Whether an email or phone number the client already knows belonged to an erased contact."""
    check = validated(SuppressionCheck, body, reg)
    if check.email is None and check.phone is None:
        raise FieldProblems([FieldError(field="email", message="give an email or a phone")])
    asked = [(ContactPointKind.email, str(check.email))] if check.email else []
    asked += [(ContactPointKind.phone, check.phone)] if check.phone else []
    found = await suppression.lookup(session, secret_key=reg.secret_key, client_id=reg.client_id,
                                     points=asked)
    return SuppressionVerdict(**{
        suppression.family(kind): SuppressedOut(reason=entry.reason, since=entry.created_at)
        for (kind, _), entry in found.items()})
