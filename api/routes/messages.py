"""Messages a client sends to its contacts through us; the sending rules decide at send time."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import select, update
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from api.deps import ClientDep, IdempotencyKeyHeader, SessionDep, StateDep
from api.errors import ERROR_RESPONSES, ErrorBody, FieldProblems
from api.lost_workflows import how_lost
from api.schemas import IDEMPOTENCY_KEY_PATTERN, FieldError, Slug, Strict, not_blank, one_line
from core.contracts import ClientMessageInput
from core.vocabulary import CLIENT_ID, CONTACT_ID
from db.crud import insert_ignoring_conflicts
from db.models import ClientMessage, Contact, MessagePolicy, utcnow
from workflows.client_message import ClientMessageWorkflow, message_workflow_id

router = APIRouter(prefix="/v1/messages", tags=["messages"], responses=ERROR_RESPONSES)


class MessageCreate(Strict):
    contact_id: uuid.UUID
    message_type: Slug = Field(description="a type with a policy (PUT /v1/message-policies)")
    channel: Literal["email"] = "email"
    # One line: the mail's Subject header, which a line break would cut short.
    subject: Annotated[str, Field(min_length=1, max_length=300), AfterValidator(not_blank),
                       AfterValidator(one_line)]
    text: Annotated[str, Field(min_length=1, max_length=50_000), AfterValidator(not_blank)]
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=IDEMPOTENCY_KEY_PATTERN,
        description="repeating a key with the same message sends nothing twice; with another "
                    "message it is a 409. The Idempotency-Key header says the same")


class MessageOut(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID
    message_type: str
    channel: str
    status: str
    status_reason: str | None
    created_at: datetime
    decided_at: datetime | None


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=MessageOut,
             responses={409: {"model": ErrorBody, "description": (
                 "The idempotency key was used for another message")}})
async def send_message(body: MessageCreate, client: ClientDep, session: SessionDep,
                       state: StateDep, idempotency_key: IdempotencyKeyHeader = None
                       ) -> ClientMessage:
    if None not in (idempotency_key, body.idempotency_key) and \
            idempotency_key != body.idempotency_key:
        raise FieldProblems([FieldError(
            field="Idempotency-Key", message="differs from idempotency_key in the body: send "
                                             "one of them, or the same key in both")])
    # FOR SHARE until commit: a DELETE of the contact (FOR UPDATE) waits for the message
    # written here, or has deleted the contact first (a 404, not a message for nobody).
    contact = await session.get(Contact, body.contact_id, with_for_update={"read": True},
                                populate_existing=True)
    if contact is None or contact.client_id != client.id:
        raise HTTPException(404, "contact not found")
    if (await session.scalars(select(MessagePolicy).where(
            MessagePolicy.client_id == client.id,
            MessagePolicy.message_type == body.message_type))).one_or_none() is None:
        raise FieldProblems([FieldError(
            field="message_type", message=f"unknown message type {body.message_type!r}: define "
                                          "its policy with PUT /v1/message-policies/{type} first")])
    key = idempotency_key or body.idempotency_key or str(uuid.uuid4())
    await insert_ignoring_conflicts(session, ClientMessage, [{
        "id": uuid.uuid4(), "client_id": client.id, "contact_id": body.contact_id,
        "idempotency_key": key, "message_type": body.message_type, "channel": body.channel,
        "subject": body.subject, "body": body.text, "status": "queued"}])
    message = (await session.scalars(select(ClientMessage).where(
        ClientMessage.client_id == client.id, ClientMessage.idempotency_key == key))).one()
    if (message.contact_id, message.message_type, message.channel, message.subject,
            message.body) != (body.contact_id, body.message_type, body.channel, body.subject,
                              body.text):
        # A key reused for another message is a client's bug: sending nothing would hide it.
        raise HTTPException(409, "idempotency_key was used for another message")
    await session.commit()
    await state.temporal.start_workflow(
        ClientMessageWorkflow.run, ClientMessageInput(str(message.id)),
        id=message_workflow_id(str(message.id)), task_queue=state.settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # An operator finds a client's (or a contact's) messages as its journeys; the summary
        # names the type, never the subject or text, which may be personal.
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(CLIENT_ID, str(client.id)),
            SearchAttributePair(CONTACT_ID, str(message.contact_id))]),
        static_summary=f"Message {message.message_type} to contact {message.contact_id}")
    return message


@router.get("/{message_id}", response_model=MessageOut)
async def get_message(message_id: uuid.UUID, client: ClientDep, session: SessionDep,
                      state: StateDep) -> ClientMessage:
    """The message's status. One whose workflow ended before it was decided (an operator
    terminated it in the Temporal UI, say, while it retried through a mail server's outage)
    would read `queued` for ever: it is `failed`, the reason saying so."""
    message = await session.get(ClientMessage, message_id)
    if message is None or message.client_id != client.id:
        raise HTTPException(404, "message not found")
    if message.status == "queued" and (how := await how_lost(
            state.temporal, message_workflow_id(str(message.id)))) not in (None, "not_found"):
        await session.execute(update(ClientMessage).where(
            ClientMessage.id == message.id, ClientMessage.status == "queued").values(
            status="failed", status_reason=f"its workflow was {how.replace('_', ' ')} before the message was sent",
            decided_at=utcnow()))
        await session.commit()
        await session.refresh(message)
    return message
