"""A client's consent purposes, their versioned legal texts, and its sending policies."""

import uuid

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError

from api.consent_schemas import (
    LegalTextCreate,
    LegalTextOut,
    MessagePolicyIn,
    MessagePolicyOut,
    PurposeCreate,
    PurposeOut,
    PurposeUpdate,
)
from api.deps import ClientDep, NoBody, SessionDep
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems
from api.schemas import FieldError, Slug
from core.vocabulary import MARKETING_KINDS, MessageCategory
from db import consents, crud
from db.models import ConsentDisplay, ConsentEvent, LegalText, MessagePolicy, Purpose

router = APIRouter(prefix="/v1", tags=["consent"], responses=ERROR_RESPONSES)


async def purpose_of(session, client_id, key: str) -> Purpose:
    purpose = (await consents.purposes_by_key(session, client_id=client_id)).get(key)
    if purpose is None:
        raise HTTPException(404, f"purpose {key!r} not found")
    return purpose


async def named_purpose(session, client_id, key: str, field: str) -> Purpose:
    """The purpose a request field names: one the client does not have is that field's error."""
    purpose = (await consents.purposes_by_key(session, client_id=client_id)).get(key)
    if purpose is None:
        raise FieldProblems([FieldError(field=field, message=f"unknown purpose {key!r}")])
    return purpose


@router.post("/purposes", status_code=status.HTTP_201_CREATED, response_model=PurposeOut,
             responses={409: {"model": ErrorBody, "description": "a purpose with this key exists"}})
async def create_purpose(body: PurposeCreate, client: ClientDep, session: SessionDep) -> Purpose:
    purpose = Purpose(client_id=client.id, key=body.key, name=body.name, names=body.names,
                      kind=body.kind)
    session.add(purpose)
    try:
        await session.commit()
    except IntegrityError as err:
        if not crud.collided(err):
            raise
        raise HTTPException(409, f"purpose {body.key!r} already exists") from None
    return purpose


@router.get("/purposes", response_model=list[PurposeOut])
async def list_purposes(client: ClientDep, session: SessionDep) -> list[Purpose]:
    return list((await consents.purposes_by_key(session, client_id=client.id)).values())


@router.patch("/purposes/{key}", response_model=PurposeOut)
async def update_purpose(key: Slug, body: PurposeUpdate, client: ClientDep,
                         session: SessionDep) -> Purpose:
    """Renames the purpose, in your default language (`name`) or per language (`names`, all
    of them at once); its key and kind stay, as consents were given for them."""
    purpose = await purpose_of(session, client.id, key)
    if body.name is not None:
        purpose.name = body.name
    if body.names is not None:
        purpose.names = body.names
    await session.commit()
    return purpose


@router.post("/purposes/{key}/legal-texts", status_code=status.HTTP_201_CREATED,
             response_model=LegalTextOut,
             responses={409: {"model": ErrorBody, "description": "version conflict"}})
async def add_legal_text(key: Slug, body: LegalTextCreate, client: ClientDep,
                         session: SessionDep) -> LegalText:
    await purpose_of(session, client.id, key)
    try:
        text = await consents.register_legal_text(
            session, client_id=client.id, purpose_key=key, language=body.language,
            version=body.version, text=body.text)
    except consents.LegalTextConflict as err:
        raise HTTPException(409, str(err)) from None
    await session.commit()
    return text


@router.get("/purposes/{key}/legal-texts", response_model=list[LegalTextOut])
async def list_legal_texts(key: Slug, client: ClientDep, session: SessionDep) -> list[LegalText]:
    await purpose_of(session, client.id, key)
    return list(await session.scalars(select(LegalText).where(
        LegalText.client_id == client.id, LegalText.purpose_key == key)
        .order_by(LegalText.language, LegalText.created_at)))


@router.put("/message-policies/{message_type}", response_model=MessagePolicyOut)
async def set_message_policy(message_type: Slug, body: MessagePolicyIn, client: ClientDep,
                             session: SessionDep) -> MessagePolicyOut:
    """Says whether a message type is marketing (needs the customer's consent for a purpose)
    or service, financial or mandatory (sent regardless of marketing preferences)."""
    # Whatever the category: a policy naming a purpose the client has not would mislead
    # whoever reads it, and become wrong the day the type is made marketing.
    purpose = (await named_purpose(session, client.id, body.purpose, "purpose")
               if body.purpose is not None else None)
    if body.category == MessageCategory.marketing and purpose.kind not in MARKETING_KINDS:
        raise FieldProblems([FieldError(
            field="purpose", message=f"purpose {purpose.key!r} is {purpose.kind}, not marketing")])
    # One statement: PUTs of a new type at once (a client's retries) all answer 200.
    stmt = crud.dialect_insert(session, MessagePolicy)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["client_id", "message_type"],
        set_={"category": stmt.excluded.category, "purpose_key": stmt.excluded.purpose_key}),
        [{"id": uuid.uuid4(), "client_id": client.id, "message_type": message_type,
          "category": body.category, "purpose_key": body.purpose}])
    await session.commit()
    return MessagePolicyOut(message_type=message_type, category=body.category,
                            purpose=body.purpose)


@router.delete("/message-policies/{message_type}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, dependencies=[NoBody])
async def delete_message_policy(message_type: Slug, client: ClientDep,
                                session: SessionDep) -> Response:
    """Removes the client's policy: a journey's own message types go back to their built-in
    one; the client's own types can no longer be sent until given a policy again."""
    deleted = await session.execute(delete(MessagePolicy).where(
        MessagePolicy.client_id == client.id, MessagePolicy.message_type == message_type))
    if deleted.rowcount == 0:
        raise HTTPException(404, "no policy for this message type")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/message-policies", response_model=list[MessagePolicyOut])
async def list_message_policies(client: ClientDep, session: SessionDep) -> list[MessagePolicyOut]:
    rows = await session.scalars(select(MessagePolicy).where(MessagePolicy.client_id == client.id))
    return [MessagePolicyOut(message_type=p.message_type, category=p.category,
                             purpose=p.purpose_key) for p in rows]


class NoticeConversion(BaseModel):
    purpose: str
    legal_text_version: str
    legal_text_language: str
    shown_in: str
    shown: int
    accepted: int
    declined: int
    conversion: float = Field(description="accepted / shown")


@router.get("/consent-notices/conversion", response_model=list[NoticeConversion])
async def notice_conversion(client: ClientDep, session: SessionDep,
                            purpose: Slug | None = None) -> list[NoticeConversion]:
    """How often each version of each consent text was shown, and how often the customer who
    saw it then accepted or declined: per purpose, text version, language and place."""
    notice = (ConsentDisplay.purpose, ConsentDisplay.legal_text_version,
              ConsentDisplay.legal_text_language, ConsentDisplay.shown_in)
    # Whether any answer to the display accepted: MAX over 1/0, as SQLite (the quickstart's
    # database) has no bool_or.
    answered = (select(ConsentEvent.display_id,
                       func.max(case((ConsentEvent.granted, 1), else_=0)).label("yes"))
                .where(ConsentEvent.client_id == client.id, ConsentEvent.display_id.is_not(None))
                .group_by(ConsentEvent.display_id).subquery())
    query = (select(*notice, func.count(ConsentDisplay.id),
                    func.count(answered.c.display_id).filter(answered.c.yes == 1),
                    func.count(answered.c.display_id).filter(answered.c.yes == 0))
             .outerjoin(answered, answered.c.display_id == ConsentDisplay.id)
             .where(ConsentDisplay.client_id == client.id).group_by(*notice).order_by(*notice))
    if purpose is not None:
        await named_purpose(session, client.id, purpose, "purpose")
        query = query.where(ConsentDisplay.purpose == purpose)
    return [NoticeConversion(purpose=p, legal_text_version=v, legal_text_language=lang,
                             shown_in=where, shown=shown, accepted=yes, declined=no,
                             conversion=round(yes / shown, 4) if shown else 0.0)
            for p, v, lang, where, shown, yes, no in (await session.execute(query)).all()]
