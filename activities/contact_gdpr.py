"""Activities of the scheduled anonymisation of inactive contacts."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from contacts import gdpr
from contacts.audit import Actor
from core.contracts import (
    AnonymiseBatchInput,
    AnonymiseInactiveResult,
    ConsequencesBatchInput,
    ConsequencesBatchResult,
    InactiveClient,
)
from core.settings import Settings
from core.vocabulary import ActorType
from db.models import ContactSettings
from db.session import transaction

SYSTEM = Actor(ActorType.system, "anonymise-inactive-contacts")


class ContactRetention:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def clients_with_retention(self) -> list[InactiveClient]:
        async with transaction(self._sessions) as session:
            rows = await session.execute(select(
                ContactSettings.client_id, ContactSettings.anonymise_inactive_after_days).where(
                ContactSettings.anonymise_inactive_after_days.is_not(None)))
            return [InactiveClient(str(cid), days) for cid, days in rows]

    @activity.defn
    async def anonymise_inactive(self, input: AnonymiseBatchInput) -> AnonymiseInactiveResult:
        """Anonymises up to batch_size contacts in one transaction: a retry repeats nothing that
        committed, because anonymised contacts are no longer selected. One a rule protects
        after all (the selection leaves those out, but a journey or KYC upload may come in
        between) is skipped, in a savepoint, and the batch goes on past it: a blocked contact
        never fails the batch, nor holds back the contacts and clients after it."""
        anonymised = 0
        after: uuid.UUID | None = None
        async with transaction(self._sessions) as session:
            while anonymised < input.batch_size:
                wanted = input.batch_size - anonymised
                contacts = await gdpr.inactive_contacts(
                    session, client_id=uuid.UUID(input.client_id), cutoff=input.cutoff,
                    limit=wanted, after=after)
                for contact in contacts:
                    try:
                        async with session.begin_nested():
                            await gdpr.anonymise(session, contact, SYSTEM,
                                                 settings=self._settings)
                    except gdpr.Blocked as err:
                        activity.logger.info("inactive contact %s kept: %s", contact.id, err)
                        continue
                    anonymised += 1
                if len(contacts) < wanted:
                    break
                after = contacts[-1].id
        return AnonymiseInactiveResult(anonymised=anonymised)

    @activity.defn
    async def apply_blocked_consequences(self, input: ConsequencesBatchInput
                                         ) -> ConsequencesBatchResult:
        """Anonymises, now that nothing blocks it any more, contacts whose rejection or
        withdrawal of consent the client's policy anonymises; those still blocked wait for the
        next run."""
        anonymised = 0
        async with transaction(self._sessions) as session:
            found = await gdpr.unapplied_consequences(
                session, limit=input.batch_size,
                after=uuid.UUID(input.after_contact_id) if input.after_contact_id else None)
            for contact, client in found:
                blocked = await gdpr.apply_consent_consequence(
                    session, client, contact, SYSTEM, settings=self._settings)
                anonymised += blocked is None
        last = str(found[-1][0].id) if len(found) == input.batch_size else None
        return ConsequencesBatchResult(anonymised=anonymised, last_contact_id=last)
