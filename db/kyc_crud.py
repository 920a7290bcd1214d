"""KYC data access (keyword-only): what a contact has provided, how a definition judges it, and
the client-scoped lookups the API needs."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.kyc_contracts import KycEvaluation
from core.kyc_rules import DOCUMENT_EXPIRED, DOCUMENT_OF_FIELD, Evidence, documents_of, \
    missing_information, renewal_expiry, rules_of
from core.vocabulary import KYC_LIVE_STATES
from db.kyc_models import KycDefinition, KycDocument, KycProfile
from db.models import Contact, ContactPoint

NAME_FIELDS = ("first_name", "last_name", "company_name")


async def evidence(session: AsyncSession, *, contact: Contact, at: datetime) -> Evidence:
    """The contact's fields with a value, and its newest document of each type, valid or
    expired."""
    found = Evidence(fields={f for f in NAME_FIELDS if getattr(contact, f)})
    found.fields |= set(await session.scalars(
        select(ContactPoint.kind).where(ContactPoint.contact_id == contact.id,
                                        ContactPoint.removed_at.is_(None))))
    documents = await session.scalars(
        select(KycDocument).where(KycDocument.contact_id == contact.id)
        .order_by(KycDocument.uploaded_at.desc(), KycDocument.id))
    newest: dict[str, KycDocument] = {}
    for doc in documents:
        newest.setdefault(doc.document_type, doc)
    for doc in newest.values():
        if doc.expires_at is None or doc.expires_at > at:
            found.documents[doc.document_type] = doc.expires_at
        else:
            found.expired[doc.document_type] = doc.expires_at
    for field, document_type in DOCUMENT_OF_FIELD.items():
        # Known from the registry, or printed on the document (expired or not): either way the
        # field is there, and what it still lacks is a valid document (a rule asks for both).
        if getattr(contact, field) or (document_type in newest
                                        and newest[document_type].number):
            found.fields.add(field)
    return found


async def newest_document(session: AsyncSession, *, contact_id: uuid.UUID,
                          document_type: str) -> KycDocument | None:
    """The document of this type that counts (as in `evidence`): the newest."""
    return (await session.scalars(
        select(KycDocument).where(KycDocument.contact_id == contact_id,
                                  KycDocument.document_type == document_type)
        .order_by(KycDocument.uploaded_at.desc(), KycDocument.id).limit(1))).first()


def default_lead_time(expires_after: timedelta | None, setting: timedelta) -> timedelta:
    """The reminder lead time of a definition that sets none: the setting, but at most half
    the definition's period. Longer, a profile's reminder would fall due at its assignment (and
    at each renewal), telling the customer of an expiry still the whole period away, as
    `remind_before` itself may not (KycDefinitionCreate)."""
    return setting if expires_after is None else min(setting, expires_after / 2)


def applies_to(definition: KycDefinition, contact: Contact) -> bool:
    """Whether a definition is one for contacts of this kind (person, company): it has rules
    for it. Judged by none, a person would meet a company-only level with nothing checked,
    and be assigned it (and told so) on any change of its record."""
    return bool(definition.rules.get(contact.kind))


def judge(definition: KycDefinition, contact: Contact, found: Evidence,
          default_remind_before: timedelta) -> KycEvaluation:
    rules = rules_of(definition.rules.get(contact.kind, []))
    return KycEvaluation(
        definition_id=str(definition.id), name=definition.name, level=definition.level,
        requires_verification=definition.requires_verification,
        expires_after=definition.expires_after,
        remind_before=definition.remind_before or default_lead_time(
            definition.expires_after, default_remind_before),
        document_types=sorted({d for r in rules for d in documents_of(r)}),
        missing=missing_information(rules, found), renewal_expires_at=renewal_expiry(rules, found),
    )


async def evaluate(
    session: AsyncSession, *, contact: Contact, definition_id: uuid.UUID | None, at: datetime,
    default_remind_before: timedelta,
) -> KycEvaluation:
    """Judges the given definition, or picks the highest level whose information is present."""
    found = await evidence(session, contact=contact, at=at)
    if definition_id is not None:
        definition = await definition_of(session, client_id=contact.client_id,
                                         definition_id=definition_id)
        if definition is None:
            return KycEvaluation(definition_id=None, missing=["definition"])
        return judge(definition, contact, found, default_remind_before)
    definitions = await session.scalars(
        select(KycDefinition).where(KycDefinition.client_id == contact.client_id)
        .order_by(KycDefinition.level.desc()))
    lowest = None
    for definition in definitions:
        if not applies_to(definition, contact):
            continue
        judged = judge(definition, contact, found, default_remind_before)
        if not judged.missing:
            return judged
        lowest = judged
    # Nothing qualifies: what the lowest level lacks is the least the contact needs for any.
    return KycEvaluation(definition_id=None,
                         missing=lowest.missing if lowest else ["definition_id"])


async def definition_of(session: AsyncSession, *, client_id: uuid.UUID,
                        definition_id: uuid.UUID) -> KycDefinition | None:
    definition = await session.get(KycDefinition, definition_id)
    return definition if definition is not None and definition.client_id == client_id else None


async def contact_of(session: AsyncSession, *, client_id: uuid.UUID,
                     contact_id: uuid.UUID) -> Contact | None:
    contact = await session.get(Contact, contact_id)
    return contact if contact is not None and contact.client_id == client_id else None


async def profile_of(session: AsyncSession, *, contact_id: uuid.UUID) -> KycProfile | None:
    # Rereads the row: the workflow may have recorded a change since this session loaded it.
    return (await session.scalars(
        select(KycProfile).where(KycProfile.contact_id == contact_id)
        .execution_options(populate_existing=True))).one_or_none()


async def profiles_with_stale_document_expiry(session: AsyncSession) -> list[uuid.UUID]:
    """The running profiles still dated by a document under the rule before migration 0900,
    which took a printed date as its first moment: their expiry is a day before that of one of
    their contact's documents (0900 moved those on to the end of the day) and that of none.
    An anonymised contact's are left as they are: its documents are gone."""
    rows = await session.execute(
        select(KycProfile.id, KycProfile.expires_at, KycDocument.expires_at)
        .join(KycDocument, KycDocument.contact_id == KycProfile.contact_id)
        .join(Contact, Contact.id == KycProfile.contact_id)
        .where(KycProfile.state.in_(list(KYC_LIVE_STATES)),
               KycProfile.expiry_cause == DOCUMENT_EXPIRED, KycProfile.expires_at.is_not(None),
               KycDocument.expires_at.is_not(None), Contact.anonymised_at.is_(None)))
    dated: dict[uuid.UUID, tuple[datetime, set[datetime]]] = {}
    for profile_id, expires_at, document_expires_at in rows:
        dated.setdefault(profile_id, (expires_at, set()))[1].add(document_expires_at)
    return [profile_id for profile_id, (expires_at, documents) in dated.items()
            if expires_at not in documents and expires_at + timedelta(days=1) in documents]


def workflow_id(client_id: uuid.UUID | str, contact_id: uuid.UUID | str) -> str:
    return f"kyc/{client_id}/{contact_id}"
