"""Activities of a CSV contact import: plan the batches, import one batch (bulk inserts, matching
by the uniqueness rule), enrol the imported contacts into a campaign, finish. Each batch writes
its outcome with its rows, so a retried batch changes nothing."""

import uuid
from collections import defaultdict
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from api import enrolment
from api.errors import pydantic_fields
from api.schemas import ContactIn
from contacts import audit, csv_import, normalise, registry
from contacts.audit import Actor
from contacts.registry import Registry
from contacts.schemas import SCALAR_FIELDS, ContactCreate
from core.contracts import (
    EnrolImportedInput,
    EnrolImportedResult,
    FinishImportInput,
    ImportBatchInput,
    ImportCounts,
    ImportPlan,
    PlanImportInput,
)
from core.settings import Settings
from core.vocabulary import ActorType, AuditAction, ImportStatus
from db import crud
from db.models import (
    Campaign,
    Contact,
    ContactAddress,
    ContactIdentityKey,
    ContactImport,
    ContactImportBatch,
    ContactImportError,
    ContactLabel,
    ContactPoint,
    IdentificationMedium,
    utcnow,
)
from db.session import transaction
from workflows.starts import start_journeys
from workflows.webhook_endpoint import EndpointDispatcher

ENROL_CHUNK = 1000
ADDRESS_FIELDS = ("line1", "line2", "postal_code", "city", "region", "country")


class ContactImporter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn
    async def plan_import(self, input: PlanImportInput) -> ImportPlan:
        async with transaction(self._sessions) as session:
            import_id = uuid.UUID(input.import_id)
            content = await session.scalar(select(ContactImport.content).where(
                ContactImport.id == import_id))
            _, _, batches, total = csv_import.plan(content or b"", input.batch_size)
            await session.execute(update(ContactImport).where(ContactImport.id == import_id)
                                  .values(status=ImportStatus.running))
        return ImportPlan(total_rows=total, batches=batches)

    @activity.defn
    async def import_batch(self, input: ImportBatchInput) -> ImportCounts:
        spec = input.batch
        import_id = uuid.UUID(input.import_id)
        async with transaction(self._sessions) as session:
            done = await session.get(ContactImportBatch, (import_id, spec.batch_no))
            if done is not None:
                return ImportCounts(done.created, done.updated, done.unchanged, done.failed)
            job = await session.get_one(ContactImport, import_id)
            chunk = await session.scalar(select(func.substr(
                ContactImport.content, spec.start + 1, spec.end - spec.start)).where(
                ContactImport.id == import_id))
            reg = await registry.registry_for(
                session, client_id=job.client_id,
                secret_key=self._settings.secret_key.get_secret_value())
            records = list(csv_import.records(
                chunk or b"", start=0, end=None, first_line=spec.first_line,
                delimiter=job.delimiter, width=len(job.columns)))
            kinds = await _known_kinds(session, reg, job.columns, records)
            try:
                async with session.begin_nested():
                    counts, contacts_by_line = await _Batch(session, reg, job, kinds).write_all(
                        records)
            except IntegrityError:
                # Another import or API call wrote the same contact, card, ... after this batch
                # read what exists: the retry reads it and writes the rest. One that comes again
                # is a gap in the batch's own checks: rather than retry for ever, with none of
                # the batch's rows in, write them one by one, each row still in conflict
                # reported on its line.
                if activity.info().attempt < 2:
                    raise
                activity.logger.exception("import %s batch %s written row by row", import_id,
                                          spec.batch_no)
                counts, contacts_by_line = await _one_by_one(session, reg, job, kinds, records)
            session.add(ContactImportBatch(
                import_id=import_id, batch_no=spec.batch_no, created=counts.created,
                updated=counts.updated, unchanged=counts.unchanged, failed=counts.failed,
                contact_ids=[str(c) for c in contacts_by_line.values()],
                lines=list(contacts_by_line)))
        if statistics_due(spec.batch_no):
            async with transaction(self._sessions) as session:
                await crud.refresh_registry_statistics(session)
        return counts

    @activity.defn
    async def enrol_imported(self, input: EnrolImportedInput) -> EnrolImportedResult:
        """Puts the imported contacts into the campaign, as the enrolment API would; none
        once the campaign is archived, which may happen while the import runs."""
        enrolled = not_enrolled = 0
        async with transaction(self._sessions) as session:
            job = await session.get_one(ContactImport, uuid.UUID(input.import_id))
            reg = await registry.registry_for(
                session, client_id=job.client_id,
                secret_key=self._settings.secret_key.get_secret_value())
            line_of: dict[uuid.UUID, int] = {}
            for contact_ids, lines in await session.execute(
                    select(ContactImportBatch.contact_ids, ContactImportBatch.lines).where(
                        ContactImportBatch.import_id == uuid.UUID(input.import_id))):
                # Batches written before lines were kept report no line (0).
                line_of.update(zip(map(uuid.UUID, contact_ids), lines or [0] * len(contact_ids)))
            ids = list(line_of)
        for start in range(0, len(ids), ENROL_CHUNK):
            async with transaction(self._sessions) as session:
                campaign = await session.get_one(Campaign, uuid.UUID(input.campaign_id))
                if campaign.status == "archived":
                    not_enrolled += len(ids) - start
                    break
                contacts = list(await session.scalars(select(Contact).where(
                    Contact.id.in_(ids[start:start + ENROL_CHUNK]))))
                emails = {cid: points["email"].value for cid, points in (
                    await crud.known_points_of(session, contact_ids=[c.id for c in contacts])
                ).items() if "email" in points}
                items = {i: ContactIn(external_id=c.external_id, first_name=c.first_name,
                                      last_name=c.last_name, language=c.language,
                                      email=emails.get(c.id)) for i, c in enumerate(contacts)}
                results, journeys = await enrolment.write_contacts_and_journeys(
                    session, reg, Actor(ActorType.api_key, job.actor_id), activity.client(),
                    EndpointDispatcher(activity.client(), self._settings), campaign=campaign, items=items)
                # Why a row was not enrolled, by its line, beside the rows that failed.
                await crud.insert_ignoring_conflicts(session, ContactImportError, [
                    {"import_id": job.id, "line": line_of[contacts[r.index].id],
                     "field": error.field, "message": f"not enrolled: {error.message}"[:500]}
                    for r in results if r.status == "rejected" for error in r.errors])
            await start_journeys(activity.client(), self._settings, campaign=campaign,
                                           journeys=journeys)
            refused = sum(r.status == "rejected" for r in results)
            enrolled += len(results) - refused
            not_enrolled += refused
        return EnrolImportedResult(enrolled=enrolled, not_enrolled=not_enrolled)

    @activity.defn
    async def finish_import(self, input: FinishImportInput) -> None:
        """Marks the import done and drops the file: the contacts hold what it said."""
        async with transaction(self._sessions) as session:
            # A launch to the new contacts may follow at once.
            await crud.refresh_registry_statistics(session)
            await session.execute(update(ContactImport).where(
                ContactImport.id == uuid.UUID(input.import_id)).values(
                status=ImportStatus.completed, content=None, finished_at=utcnow(),
                enrolled=input.enrolled.enrolled if input.enrolled else None,
                not_enrolled=input.enrolled.not_enrolled if input.enrolled else None))


def statistics_due(batch_no: int) -> bool:
    """Whether the registry's statistics are refreshed after this batch: each time the import
    has doubled what it wrote (1, 2, 4, 8, ... batches). Each batch looks up the contacts its
    rows name, planned on the statistics of the client's registry as it was before: planned
    for a client with few contacts, PostgreSQL read every contact of the client for each batch
    (1.2 s a batch at 40,000), and a 100,000-row import into a new client's registry took 2 to
    6 minutes instead of 45 s. The autovacuum need not look in time: in a large database a new
    client's rows stay rare in its sample until they are a tenth of the table."""
    return batch_no & (batch_no + 1) == 0


# A row read: its line, the contact it gives, the uniqueness rule's keys of that contact.
Row = tuple[int, ContactCreate, list[str]]


async def _known_kinds(session: AsyncSession, reg: Registry, columns: list[str],
                       records: list[csv_import.Record]) -> dict[str, str]:
    """The kind of each known contact the rows name by external_id: a row without a `kind`
    cell is about that contact as it is (a company stays one), not about a new person."""
    if "external_id" not in columns:
        return {}
    at = columns.index("external_id")
    ids = list({r.cells[at].strip() for r in records if len(r.cells) > at} - {""})
    return dict((await session.execute(select(Contact.external_id, Contact.kind).where(
        Contact.client_id == reg.client_id, crud.among(session, Contact.external_id, ids)))).all())


async def _one_by_one(session: AsyncSession, reg: Registry, job: ContactImport,
                      kinds: dict[str, str], records: list[csv_import.Record]
                      ) -> tuple[ImportCounts, dict[int, uuid.UUID]]:
    """The batch's rows written one at a time, each in a savepoint: a row the database refuses
    (a unique index) is a failed line, and the rows around it are written."""
    counts, ids_by_line = ImportCounts(), {}
    for record in records:
        try:
            async with session.begin_nested():
                one, ids = await _Batch(session, reg, job, kinds).write_all([record])
        except IntegrityError as err:
            constraint = getattr(getattr(err.orig, "diag", None), "constraint_name", None)
            why = ("another contact holds what it gives" if crud.collided(err)
                   else "the database refused it")
            batch = _Batch(session, reg, job, kinds)
            batch.fail(record.line, "row", f"not imported: {why}"
                       + (f" ({constraint})" if constraint else ""))
            one, ids = await batch.write()
        for field in ("created", "updated", "unchanged", "failed"):
            setattr(counts, field, getattr(counts, field) + getattr(one, field))
        ids_by_line.update(ids)
    return counts, ids_by_line


class _Batch:
    """Rows of one batch: validated one by one, matched to existing contacts all at once,
    written with bulk inserts; only rows that change something touch a contact."""

    def __init__(self, session: AsyncSession, reg: Registry, job: ContactImport,
                 kinds: dict[str, str]) -> None:
        self.session = session
        self.reg = reg
        self.job = job
        self.kinds = kinds
        self.actor = Actor(ActorType.api_key, job.actor_id)
        self.rows: list[Row] = []
        self.unmatched: dict[int, list[tuple[str, str]]] = {}
        self.errors: list[dict[str, Any]] = []

    async def write_all(self, records: list[csv_import.Record]
                        ) -> tuple[ImportCounts, dict[int, uuid.UUID]]:
        for record in records:
            if record.unreadable:
                self.fail(record.line, "row", record.unreadable)
            else:
                self.read(record.line, record.cells)
        return await self.write()

    def fail(self, line: int, field: str, message: str) -> None:
        self.errors.append({"import_id": self.job.id, "line": line, "field": field,
                            "message": message[:500]})

    def read(self, line: int, cells: list[str]) -> None:
        try:
            data, origin = csv_import.row_data(self.job.columns, cells)
        except csv_import.CsvRejected as err:
            return self.fail(line, "row", str(err))
        if "kind" not in data and data.get("external_id") in self.kinds:
            data["kind"] = self.kinds[data["external_id"]]
        try:
            body = ContactCreate.model_validate(data, context=self.reg.context)
        except ValidationError as err:
            for f in pydantic_fields(err.errors()):
                self.fail(line, csv_import.column_of(f.field, origin), f.message)
            return None
        if body.external_id and "kind" in data:
            # A later row of the file about the contact without a `kind` cell is of this kind.
            self.kinds[body.external_id] = body.kind
        values = registry.rule_values(registry.scalars_of(body), [
            (p.kind, p.value) for p in body.contact_points], body.external_id)
        found = self.reg.known_contact_problems(body.kind, values, body.addresses)
        rule = self.reg.rule_problems(body.kind, values)
        # The rule's fields, a mandatory address type (an import row has one address, so a
        # problem of `addresses` as a whole is a missing type) and a name are what a new
        # contact needs: a row matched to a known contact (`write`) need not repeat what the
        # contact has, as a PATCH need not.
        unmatched = [p for p in found if p in rule or p.field == "addresses"]
        problems = [p for p in found if p not in unmatched]
        for f in problems:
            self.fail(line, csv_import.column_of(f.field, origin), f.message)
        if not problems:
            self.rows.append((line, body, self.reg.identity_keys(body.kind, values)))
            self.unmatched[line] = [
                (csv_import.column_of(f.field, origin), f.message)
                for f in unmatched + self.reg.name_problems(body.kind, values)]
        return None

    async def _owners(self) -> tuple[dict[str, uuid.UUID], dict[str, uuid.UUID],
                                     dict[str, uuid.UUID]]:
        client_id = self.reg.client_id
        keys = [k for _, _, ks in self.rows for k in ks]
        ext_ids = [b.external_id for _, b, _ in self.rows if b.external_id]
        lookups = [self.reg.medium_lookup(m.kind, m.value)
                   for _, b, _ in self.rows for m in b.identification_media]
        among = partial(crud.among, self.session)

        async def pairs(query: Any) -> dict[Any, uuid.UUID]:
            return dict((await self.session.execute(query)).all())

        by_key = await pairs(select(ContactIdentityKey.key, ContactIdentityKey.contact_id).where(
            ContactIdentityKey.client_id == client_id, among(ContactIdentityKey.key, keys)))
        by_ext = await pairs(select(Contact.external_id, Contact.id).where(
            Contact.client_id == client_id, among(Contact.external_id, ext_ids)))
        by_medium = await pairs(select(
            IdentificationMedium.lookup_sha256, IdentificationMedium.contact_id).where(
            IdentificationMedium.client_id == client_id,
            among(IdentificationMedium.lookup_sha256, lookups)))
        return by_key, by_ext, by_medium

    async def write(self) -> tuple[ImportCounts, dict[int, uuid.UUID]]:
        """Writes the rows; returns the counts and each contact written (or found unchanged)
        by its line. A row about a contact an earlier row of the batch writes is written after
        it, as a row of a later batch would be: it updates what that one created."""
        counts = ImportCounts()
        ids_by_line: dict[int, uuid.UUID] = {}
        while self.rows:
            created, changed, unchanged, self.rows = await self._write_rows()
            counts.created += len(created)
            counts.updated += len(changed)
            counts.unchanged += len(unchanged)
            ids_by_line.update(created | changed | unchanged)
        counts.failed = len({e["line"] for e in self.errors})
        await crud.insert_ignoring_conflicts(self.session, ContactImportError, self.errors)
        return counts, dict(sorted(ids_by_line.items()))

    async def _write_rows(self) -> tuple[dict[int, uuid.UUID], dict[int, uuid.UUID],
                                         dict[int, uuid.UUID], list[Row]]:
        """Writes the rows but those about a contact an earlier one writes; returns the
        contacts created, changed and found unchanged, by line, and the rows left for later."""
        by_key, by_ext, by_medium = await self._owners()
        later: list[Row] = []
        claimed: set[str] = set()
        creates: list[Row] = []
        updates: list[tuple[int, uuid.UUID, ContactCreate]] = []
        for line, body, keys in self.rows:
            # A card or loyalty id an earlier row gives is that row's contact's once written:
            # this row waits for it, then is told the medium belongs to another contact.
            lookups = [self.reg.medium_lookup(m.kind, m.value) for m in body.identification_media]
            identities = [f"k:{k}" for k in keys] + [f"m:{m}" for m in lookups] + (
                [f"x:{body.external_id}"] if body.external_id else [])
            if any(i in claimed for i in identities):
                later.append((line, body, keys))
                continue
            owners = {by_key[k] for k in keys if k in by_key}
            if body.external_id in by_ext:
                owners.add(by_ext[body.external_id])
            if len(owners) > 1:
                self.fail(line, "row", "matches more than one existing contact")
                continue
            owner = next(iter(owners), None)
            if owner is not None and f"o:{owner}" in claimed:
                # One row names the contact by external_id, this one by the rule's keys alone:
                # each reads the contact as the other found it, so they take turns.
                later.append((line, body, keys))
                continue
            if owner is not None and body.external_id and body.external_id not in by_ext:
                # A row that names a contact of its own must not rename another one, whom
                # the rule took it for (the API answers such a create with a 409 too).
                self.fail(line, "external_id", f"the uniqueness rule finds contact {owner} "
                                               "under another external_id")
                continue
            taken = [m for m, lookup in zip(body.identification_media, lookups)
                     if by_medium.get(lookup, owner) != owner]
            if taken:
                col = next(c for c, k in csv_import.MEDIUM_COLUMNS.items() if k == taken[0].kind)
                self.fail(line, col, "belongs to another contact")
                continue
            if owner is None and self.unmatched[line]:
                for column, message in self.unmatched[line]:
                    self.fail(line, column, message)
                continue
            claimed.update(identities + ([f"o:{owner}"] if owner else []))
            if owner is None:
                creates.append((line, body, keys))
            else:
                updates.append((line, owner, body))
        created: dict[int, uuid.UUID] = {}
        contacts, children = [], defaultdict(list)
        for line, body, keys in creates:
            row, rows = registry.new_contact_rows(self.reg, body, keys)
            contacts.append(row)
            created[line] = row["id"]
            for model, more in rows.items():
                children[model] += more
        if contacts:
            await crud.bulk_insert(self.session, Contact, contacts)
            await registry.insert_rows(self.session, children)
            await audit.record(self.session, client_id=self.reg.client_id, actor=self.actor,
                               action=AuditAction.create, contact_ids=[c["id"] for c in contacts],
                               detail={"import_id": str(self.job.id)})
        changed, unchanged = await self._update(updates)
        return created, changed, unchanged, later

    async def _update(self, updates: list[tuple[int, uuid.UUID, ContactCreate]]
                      ) -> tuple[dict[int, uuid.UUID], dict[int, uuid.UUID]]:
        """Applies what each row adds or changes; a row equal to the contact writes nothing.
        Returns the changed and the unchanged contacts by line."""
        changed_rows: dict[int, uuid.UUID] = {}
        unchanged_rows: dict[int, uuid.UUID] = {}
        if not updates:
            return changed_rows, unchanged_rows
        ids = [owner for _, owner, _ in updates]
        contacts = {c.id: c for c in await self.session.scalars(
            select(Contact).where(crud.among(self.session, Contact.id, ids)).with_for_update())}
        points, labels, media, addresses = (defaultdict(set) for _ in range(4))
        former: dict[uuid.UUID, dict[tuple, ContactAddress]] = defaultdict(dict)
        for cid, kind, value in await self.session.execute(select(
                ContactPoint.contact_id, ContactPoint.kind, ContactPoint.value).where(
                crud.among(self.session, ContactPoint.contact_id, ids),
                ContactPoint.removed_at.is_(None))):
            points[cid].add(normalise.point_key(kind, value))
        for cid, kind, value in await self.session.execute(select(
                ContactLabel.contact_id, ContactLabel.kind, ContactLabel.value).where(
                crud.among(self.session, ContactLabel.contact_id, ids))):
            labels[cid].add((kind, value))
        for cid, lookup in await self.session.execute(select(
                IdentificationMedium.contact_id, IdentificationMedium.lookup_sha256).where(
                crud.among(self.session, IdentificationMedium.contact_id, ids))):
            media[cid].add(lookup)
        for a in await self.session.scalars(select(ContactAddress).where(
                crud.among(self.session, ContactAddress.contact_id, ids)).order_by(
                ContactAddress.created_at)):
            key = (a.type, *(getattr(a, f) for f in ADDRESS_FIELDS))
            if a.active:
                addresses[a.contact_id].add(key)
            else:
                former[a.contact_id][key] = a  # the newest of equal ones
        for line, owner, body in updates:
            contact = contacts[owner]
            if contact.anonymised_at is not None:
                self.fail(line, "row", enrolment.ANONYMISED)
                continue
            try:
                changed = await self._apply(contact, body, points[owner], labels[owner],
                                            media[owner], addresses[owner], former[owner])
            except registry.Invalid as err:
                for f in err.fields:
                    self.fail(line, f.field, f.message)
                continue
            except registry.Duplicate:
                self.fail(line, "row", "would become the same contact as another one")
                continue
            (changed_rows if changed else unchanged_rows)[line] = owner
        return changed_rows, unchanged_rows

    async def _apply(self, contact: Contact, body: ContactCreate, points: set, labels: set,
                     media: set, addresses: set, former: dict[tuple, ContactAddress]) -> bool:
        reg = self.reg
        given = {f: getattr(body, f) for f in SCALAR_FIELDS if f in body.model_fields_set}
        changed: dict[str, Any] = {}
        if audit.changes(registry.contact_scalars(contact), given):
            changed.update(await registry.apply_scalars(self.session, reg, contact, given))
        new_points = [p for key, p in registry.distinct_points(body.contact_points).items()
                      if key not in points]
        new_labels = [(k, v) for k, vs in (("tag", body.tags), ("category", body.categories))
                      for v in dict.fromkeys(vs) if (k, v) not in labels]
        new_media = [m for m in body.identification_media
                     if reg.medium_lookup(m.kind, m.value) not in media]
        point_changes = [change for p in new_points if (change := await registry.give_point(
            self.session, reg, contact, p.kind, p.value, p.label))]
        if point_changes:
            changed["contact_points"] = {"old": [c["old"] for c in point_changes],
                                         "new": [c["new"] for c in point_changes]}
        for kind, value in new_labels:
            await self.session.execute(insert(ContactLabel), registry.label_rows(
                reg, contact.id, kind, [value]))
        if new_labels:
            changed["labels"] = {"old": None, "new": [v for _, v in new_labels]}
        for m in new_media:
            await self.session.execute(insert(IdentificationMedium), [
                registry.medium_row(reg, contact.id, m)])
        if new_media:
            changed["identification_media"] = {"old": None, "new": [m.kind for m in new_media]}
        if changed:
            await registry.touch(self.session, reg, contact, self.actor, changed)
        moved = False
        for a in body.addresses:
            key = (a.type, *(getattr(a, f) for f in ADDRESS_FIELDS))
            if key in addresses:
                continue
            if key in former:
                # A sync that flips between two addresses would otherwise add a copy each time;
                # the kept one comes back, as `.../activate` brings it back.
                await registry.change_address(self.session, reg, contact, former[key],
                                              "activate", self.actor)
            else:
                await registry.add_address(self.session, reg, contact, a, self.actor)
            moved = True
        return bool(changed) or moved
