"""How journey workflows are started, from the API and from fan-out activities alike: the
workflow id, the input from the campaign, the search attributes, and idempotency."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter
from temporalio.client import Client as TemporalClient
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.schemas import CodeSettings
from core.contracts import ChannelStep, JourneyInput, JourneyTimings
from core.settings import Settings
from core.vocabulary import CAMPAIGN_ID, CLIENT_ID, CONTACT_ID, JOURNEY_STAGE, Stage
from db.models import Campaign, Journey
from workflows.journey import JourneyWorkflow

_duration = TypeAdapter(timedelta).validate_python
START_CONCURRENCY = 50


def workflow_id(campaign_id: uuid.UUID, contact_id: uuid.UUID, round: int = 1) -> str:
    """The contact's first journey in the campaign, or (round > 1) a later one that a launch
    started after the earlier ones expired."""
    base = f"journey/{campaign_id}/{contact_id}"
    return base if round == 1 else f"{base}/{round}"


def journey_language(spec: dict[str, Any], language: str | None) -> str:
    return language if language in spec["languages"] else spec["default_language"]


def journey_timings(spec: dict[str, Any], settings: Settings) -> JourneyTimings:
    return JourneyTimings(
        reminder_interval=_duration(spec["reminders"]["interval"]),
        max_reminders=spec["reminders"]["max_count"],
        expires_after=_duration(spec["expires_after"]),
        verification_link_ttl=_duration(spec["verification_link_ttl"]),
        opening_message_local_tries=settings.opening_message_local_tries,
        # Campaigns stored before codes existed have no "verification": the defaults apply.
        **dict(CodeSettings.model_validate(spec.get("verification", {}))),
    )


def journey_plan(spec: dict[str, Any]) -> list[ChannelStep]:
    return [ChannelStep(channel=s["channel"], after=_duration(s["after"]), max=s["max"])
            for s in spec.get("channel_plan") or []]


def start_options(journey: Journey, task_queue: str) -> dict[str, Any]:
    """What a journey's workflow is started with besides its input: what operators find it by
    in the Temporal UI (bench.start_cost measures what that costs the server)."""
    return {
        "id": journey.workflow_id,
        "task_queue": task_queue,
        # A repeated request neither duplicates a running journey nor restarts a finished one.
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "search_attributes": TypedSearchAttributes([
            SearchAttributePair(CLIENT_ID, str(journey.client_id)),
            SearchAttributePair(CAMPAIGN_ID, str(journey.campaign_id)),
            SearchAttributePair(CONTACT_ID, str(journey.contact_id)),
            SearchAttributePair(JOURNEY_STAGE, Stage.enrolled),
        ]),
        "static_summary": f"Journey of contact {journey.contact_id}",
    }


async def start_journeys(
    temporal: TemporalClient, settings: Settings, *, campaign: Campaign, journeys: list[Journey],
    gate: asyncio.Semaphore | None = None, delays: dict[uuid.UUID, timedelta] | None = None,
    invited_by_client: bool = False,
) -> None:
    """Starts each journey (a no-op for one already started), `START_CONCURRENCY` at a time
    or as many as `gate` lets through; `delays` holds back a journey's first step, e.g. to
    spread a launch's invitations over time; `invited_by_client` for journeys whose invitation
    is the client's own message."""
    timings = journey_timings(campaign.spec, settings)
    plan = journey_plan(campaign.spec)
    gate = gate or asyncio.Semaphore(START_CONCURRENCY)

    async def start(journey: Journey) -> None:
        async with gate:
            try:
                await temporal.start_workflow(
                    JourneyWorkflow.run,
                    JourneyInput(
                        journey_id=str(journey.id), client_id=str(journey.client_id),
                        campaign_id=str(journey.campaign_id), contact_id=str(journey.contact_id),
                        language=journey.language, timings=timings,
                        kind=campaign.spec.get("kind", "data_collection"),
                        plan=plan,
                        send_confirmation=campaign.spec.get("send_confirmation", False),
                        invited_by_client=invited_by_client,
                    ),
                    **start_options(journey, settings.temporal_task_queue),
                    start_delay=(delays or {}).get(journey.id) or None,
                )
            except WorkflowAlreadyStartedError:
                pass

    await asyncio.gather(*(start(j) for j in journeys))
