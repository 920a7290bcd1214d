"""Activities of a campaign launch: register and count the selection, fan out one page of
contacts (bulk-insert their journeys, start the workflows), and finish (optionally cancelling
the journeys the launch started). And, once a paused campaign goes on, waking its journeys
whose invitation or reminder the pause held back.

A batch is idempotent: a retry finds the journeys its first try inserted (by launch id) and
starts them again, which Temporal turns into no-ops; a contact never gets two live journeys in
a campaign (a unique index) and journey workflow ids are fixed per contact and round."""

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from dataclasses import asdict

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from activities.webhooks import EndpointWaker
from api import lost_journeys, withdrawals
from api.enrolment import FALLBACK_CHANNELS
from api.launch_views import launch_out
from api.withdrawals import OPEN_STAGES
from core.contracts import (
    BeginLaunchInput,
    BeginLaunchResult,
    FinishLaunchInput,
    FinishLaunchResult,
    LaunchBatchInput,
    LaunchBatchResult,
    WakeHeldInput,
    WakeHeldResult,
    WithdrawUnreachedInput,
    WithdrawUnreachedResult,
)
from core.settings import Settings
from core.vocabulary import EventType, LaunchState, LaunchTrigger, Stage
from db import crud, launches
from db.models import Campaign, CampaignLaunch, Contact, Journey, JourneyEvent, utcnow
from db.session import transaction
from workflows.journey import JourneyWorkflow
from workflows.starts import journey_language, start_journeys, workflow_id


def first_step_delay(input: LaunchBatchInput, position: int) -> timedelta:
    """How long the journey of the contact at this place in the selection waits before its
    first step, so first steps are spread evenly over `spread_over` from the launch's start."""
    if not input.spread_over or not input.began_at or not input.selected:
        return timedelta(0)
    due = input.began_at + input.spread_over * (position / input.selected)
    return max(due - utcnow(), timedelta(0))


# Contacts read and inserted per transaction within a batch (journeys woken per page).
PAGE = 250
HEARTBEAT_EVERY = 5  # seconds; the batch's heartbeat timeout is a few times this


class CampaignLauncher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 temporal: TemporalClient, waker: EndpointWaker) -> None:
        self._sessions = sessions
        self._settings = settings
        self._temporal = temporal
        self._waker = waker

    @activity.defn
    async def begin_launch(self, input: BeginLaunchInput) -> BeginLaunchResult:
        """Registers a scheduled launch (the API registers its own) and counts its selection."""
        campaign_id = uuid.UUID(input.campaign_id)
        for _ in range(3):
            try:
                async with transaction(self._sessions) as session:
                    campaign = await session.get_one(Campaign, campaign_id)
                    launch = await session.get(CampaignLaunch, input.launch_id)
                    if launch is None:
                        launch = CampaignLaunch(
                            id=input.launch_id, client_id=campaign.client_id,
                            campaign_id=campaign_id, trigger=input.trigger,
                            selection=asdict(input.selection),
                            number=await launches.next_launch_number(
                                session, campaign_id=campaign_id))
                        session.add(launch)
                        await session.flush()
                    if input.trigger == LaunchTrigger.schedule:
                        # Its schedule unpaused by an operator (the campaign's status is what
                        # counts), or due while the campaign was being archived; or while a
                        # launch of the client's runs (paused, say), which it would overrun.
                        because = (f"campaign_{campaign.status}" if campaign.status != "active"
                                   else "launch_running" if await self._another_running(
                                       session, launch) else None)
                        if because:
                            launch.cancelled_because = because
                            return BeginLaunchResult(number=launch.number, selected=0,
                                                     cancelled_because=because)
                    selected = await launches.count_selected(session, launches.selected_contacts(
                        session, client_id=campaign.client_id, spec=campaign.spec,
                        selection=input.selection, fallback=FALLBACK_CHANNELS))
                    return BeginLaunchResult(number=launch.number, selected=selected)
            except IntegrityError as err:
                if not crud.collided(err):
                    raise
                continue  # an API launch took the number at the same moment: take the next
        raise RuntimeError("no free launch number after 3 tries")

    async def _another_running(self, session: AsyncSession, launch: CampaignLaunch) -> bool:
        """Whether another launch of the campaign still runs (one an operator terminated
        never recorded its end, so its workflow is asked)."""
        for other in await session.scalars(select(CampaignLaunch.id).where(
                CampaignLaunch.campaign_id == launch.campaign_id, CampaignLaunch.id != launch.id,
                CampaignLaunch.finished_at.is_(None))):
            try:
                described = await self._temporal.get_workflow_handle(other).describe()
            except RPCError:
                continue  # gone from Temporal
            if described.status == WorkflowExecutionStatus.RUNNING:
                return True
        return False

    @activity.defn
    async def launch_batch(self, input: LaunchBatchInput) -> LaunchBatchResult:
        """Pages through the batch's contacts; each page's journeys start while the next page
        is read and inserted, so the server always has `launch_starts_in_flight` starts to
        work on. Heartbeats tell a lost worker within seconds, not at the batch's timeout."""
        gate = asyncio.Semaphore(self._settings.launch_starts_in_flight)
        starting: list[asyncio.Task[None]] = []
        seen = started = 0
        cursor = input.after_contact_id
        try:
            while seen < input.limit:
                limit = min(PAGE, input.limit - seen)
                campaign, page, to_start, delays = await self._insert_page(
                    input, cursor, limit, position=input.position + seen)
                starting.append(asyncio.create_task(start_journeys(
                    self._temporal, self._settings, campaign=campaign, journeys=to_start,
                    gate=gate, delays=delays)))
                seen += len(page)
                started += len(to_start)
                cursor = str(page[-1][0]) if page else cursor
                activity.heartbeat(seen)
                if len(page) < limit:
                    break
            pending = set(starting)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=HEARTBEAT_EVERY)
                for task in done:
                    task.result()  # a failed start fails the batch, which is retried
                activity.heartbeat(seen)
        finally:
            for task in starting:
                task.cancel()
        return LaunchBatchResult(seen=seen, started=started, skipped=seen - started,
                                 last_contact_id=cursor)

    async def _insert_page(self, input: LaunchBatchInput, after: str | None, limit: int,
                           position: int):
        """Reads one page of the selection and inserts its journeys (committed before they
        start: their first activity reads the row); returns the journeys to start."""
        async with transaction(self._sessions) as session:
            campaign = await session.get_one(Campaign, uuid.UUID(input.campaign_id))
            query = launches.selected_contacts(
                session, client_id=campaign.client_id, spec=campaign.spec,
                selection=input.selection, fallback=FALLBACK_CHANNELS,
                after=uuid.UUID(after) if after else None)
            page = (await session.execute(query.limit(limit))).all()
            earlier: dict[uuid.UUID, list[Journey]] = defaultdict(list)
            for journey in await session.scalars(select(Journey).where(
                    Journey.campaign_id == campaign.id,
                    crud.among(session, Journey.contact_id, [c for c, _ in page]))):
                earlier[journey.contact_id].append(journey)
            lost = await lost_journeys.lost_among(
                session, self._temporal, self._waker, [j for theirs in earlier.values() for j in theirs],
                skip_launch=input.launch_id)
            to_start: list[Journey] = []
            delays: dict[uuid.UUID, timedelta] = {}
            rows = []
            for at, (contact_id, language) in enumerate(page, position):
                delays[contact_id] = first_step_delay(input, at)
                theirs = earlier[contact_id]
                live = next((j for j in theirs if j.stage != Stage.expired and j.id not in lost),
                            None)
                if live is not None:
                    if live.launch_id == input.launch_id:  # this batch's earlier try
                        to_start.append(live)
                    continue
                rows.append({
                    "id": uuid.uuid4(), "client_id": campaign.client_id,
                    "campaign_id": campaign.id, "contact_id": contact_id,
                    "workflow_id": workflow_id(campaign.id, contact_id, len(theirs) + 1),
                    "stage": Stage.enrolled, "language": journey_language(campaign.spec, language),
                    "launch_id": input.launch_id})
            if rows:
                # An erasure may have committed since the page was read: its contact gets no
                # journey. Locked until the journeys are written (an erasure under way is
                # waited for), so one that comes after finds its contact's journey open.
                alive = set(await session.scalars(select(Contact.id).where(
                    crud.among(session, Contact.id, [r["contact_id"] for r in rows]),
                    Contact.anonymised_at.is_(None)).with_for_update(read=True, key_share=True)))
                rows = [r for r in rows if r["contact_id"] in alive]
            if rows:
                # A contact enrolled through the API meanwhile keeps that journey instead.
                inserted = set(await session.scalars(crud.insert_ignoring_conflicts_stmt(
                    session, Journey).returning(Journey.id), rows))
                to_start += [Journey(**row) for row in rows if row["id"] in inserted]
        return campaign, page, to_start, {j.id: delays[j.contact_id] for j in to_start}

    @activity.defn
    async def finish_launch(self, input: FinishLaunchInput) -> FinishLaunchResult:
        """Records the launch's end with its final counts, which the workflow's progress
        reaches only once this has answered."""
        cancelled = 0
        if input.cancel_journeys:
            cancelled = await self._cancel_journeys(input.launch_id)
        p = input.progress
        async with transaction(self._sessions) as session:
            # A scheduled launch that started nothing keeps the reason it recorded as it began.
            because = ({"cancelled_because": input.cancelled_because}
                       if input.cancelled_because else {})
            await session.execute(update(CampaignLaunch).where(
                CampaignLaunch.id == input.launch_id).values(
                state=p.state, selected=p.selected, started=p.started, skipped=p.skipped,
                journeys_cancelled=p.journeys_cancelled + cancelled, finished_at=utcnow(),
                **because))
            launch = await session.get_one(CampaignLaunch, input.launch_id)
            campaign = await session.get_one(Campaign, launch.campaign_id)
            # Keyed by the launch: a retry (which writes the end again) announces it once.
            endpoints = await crud.record_webhook_event(
                session, client_id=launch.client_id, key=f"{launch.id}/finished",
                type=(EventType.launch_cancelled if p.state == LaunchState.cancelled
                      else EventType.launch_completed),
                data={"campaign": {"id": str(campaign.id), "name": campaign.name},
                      "launch": launch_out(launch, p).model_dump(mode="json")})
        await self._waker.wake(launch.client_id, endpoints, "launch finished")
        return FinishLaunchResult(journeys_cancelled=cancelled)

    @activity.defn
    async def withdraw_unreached_journeys(
            self, input: WithdrawUnreachedInput) -> WithdrawUnreachedResult:
        """Cancels, in the database, the launch's journeys that have reached nobody yet; their
        workflows are cancelled after (`finish_launch`)."""
        async with transaction(self._sessions) as session:
            ids = await withdrawals.withdraw_unreached(
                session, self._waker, Journey.launch_id == input.launch_id, withdrawals.LAUNCH_CANCELLED)
        return WithdrawUnreachedResult(journeys_cancelled=len(ids))

    async def _cancel_journeys(self, launch_id: str) -> int:
        """Cancels the launch's unfinished journey workflows, then marks their rows; also the
        workflows of the journeys `withdraw_unreached_journeys` cancelled in the database only
        (one already closed is skipped). Counts the journeys that were unfinished."""
        async with self._sessions() as session:
            journeys = list((await session.execute(
                select(Journey.id, Journey.workflow_id, Journey.stage).where(
                    Journey.launch_id == launch_id,
                    Journey.stage.in_([*OPEN_STAGES, Stage.cancelled])))).all())
        await self._to_each([w for _, w, _ in journeys],
                            partial(withdrawals.withdraw, reason=withdrawals.LAUNCH_CANCELLED))
        ids = [j for j, _, stage in journeys if stage != Stage.cancelled]
        async with transaction(self._sessions) as session:
            await withdrawals.mark_cancelled(session, self._waker, ids,
                                             withdrawals.LAUNCH_CANCELLED)
            return await session.scalar(select(func.count()).where(
                crud.among(session, Journey.id, ids), Journey.stage == Stage.cancelled)) or 0

    @activity.defn
    async def wake_held_journeys(self, input: WakeHeldInput) -> WakeHeldResult:
        """Signals every open journey of the campaign that holds a message back, page by page;
        a retry goes on after the last page its heartbeat reported. An archived campaign's
        journeys that have reached nobody yet are withdrawn first, held or not: those of a
        `spread_over` launch would otherwise wait, `enrolled`, for their start to come."""
        details = activity.info().heartbeat_details
        if not details:
            await self._withdraw_if_archived(uuid.UUID(input.campaign_id))
        after: uuid.UUID | None = uuid.UUID(details[0]) if details else None
        woken = int(details[1]) if details else 0
        while True:
            async with self._sessions() as session:
                query = launches.held_journeys(uuid.UUID(input.campaign_id)).order_by(
                    Journey.id).limit(PAGE)
                if after is not None:
                    query = query.where(Journey.id > after)
                page = list((await session.execute(query)).all())
            if not page:
                return WakeHeldResult(journeys_woken=woken)
            await self._to_each([w for _, w in page],
                                lambda handle: handle.signal(JourneyWorkflow.campaign_resumed))
            after, woken = page[-1][0], woken + len(page)
            activity.heartbeat(str(after), woken)

    async def _withdraw_if_archived(self, campaign_id: uuid.UUID) -> None:
        """Withdraws the archived campaign's journeys that have reached nobody, then cancels
        their workflows (with those of an earlier try), which end without recording anything
        more: a workflow whose start is still delayed runs at once."""
        async with transaction(self._sessions) as session:
            if (await session.get_one(Campaign, campaign_id)).status != "archived":
                return
            await withdrawals.withdraw_unreached(session, self._waker,
                                                 Journey.campaign_id == campaign_id,
                                                 withdrawals.CAMPAIGN_ARCHIVED)
        async with self._sessions() as session:
            withdrawn = list(await session.scalars(select(Journey.workflow_id).join(
                JourneyEvent, JourneyEvent.journey_id == Journey.id).where(
                Journey.campaign_id == campaign_id, Journey.stage == Stage.cancelled,
                JourneyEvent.step == withdrawals.CANCELLED_STEP,
                JourneyEvent.detail["reason"].as_string() == withdrawals.CAMPAIGN_ARCHIVED)))
        for at in range(0, len(withdrawn), PAGE):
            await self._to_each(withdrawn[at:at + PAGE], partial(
                withdrawals.withdraw, reason=withdrawals.CAMPAIGN_ARCHIVED))
            activity.heartbeat()  # no page of held journeys yet: a retry withdraws again

    async def _to_each(self, workflow_ids: list[str],
                       act: Callable[[WorkflowHandle], Awaitable[None]]) -> None:
        """Does one thing to each workflow, a bounded number at a time."""
        gate = asyncio.Semaphore(self._settings.launch_starts_in_flight)

        async def one(workflow_id: str) -> None:
            async with gate:
                try:
                    await act(self._temporal.get_workflow_handle(workflow_id))
                except RPCError:
                    pass  # finished meanwhile: its own stage stands

        await asyncio.gather(*(one(w) for w in workflow_ids))
