"""Journeys started per second for an N-contact campaign launched to the contact registry by
one API call (the launch workflow fans out in batches), against raw `client.start_workflow`
calls per second of a trivial workflow on the same server."""

import time
import uuid
from typing import Any

from bench.figures.enrolment import RAW_BASELINE, create_campaign, raw_around, start_raw
from bench.harness import Bench, Row, Target, cpu_note, until
from db import crud
from db.models import Contact, ContactLabel, ContactPoint, utcnow
from db.session import transaction

REGISTRY_CHUNK = 10_000


async def fill_registry(bench: Bench, count: int) -> str:
    """`count` contacts with an email address and a tag of their own (returned), written
    straight into the database: putting them there is not what this figure measures
    (bench.contact_import does)."""
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    async with transaction(bench.sessions) as session:
        client_id = (await crud.api_key_and_client(session, key=bench.api_key))[1].id
    now = utcnow()
    for start in range(0, count, REGISTRY_CHUNK):
        ids = [uuid.uuid4() for _ in range(start, min(start + REGISTRY_CHUNK, count))]
        async with transaction(bench.sessions) as session:
            await crud.bulk_insert(session, Contact, [
                {"id": c, "client_id": client_id, "external_id": f"{tag}-{start + i}",
                 "kind": "person", "first_name": "Bench", "language": "en",
                 "gdpr_consent_state": "pending", "engagement_state": "never_engaged",
                 "created_at": now, "updated_at": now} for i, c in enumerate(ids)])
            await crud.bulk_insert(session, ContactPoint, [
                {"id": uuid.uuid4(), "client_id": client_id, "contact_id": c, "kind": "email",
                 "value": f"{tag}-{start + i}@example.com", "verification_state": "unverified",
                 "created_at": now} for i, c in enumerate(ids)])
            await crud.bulk_insert(session, ContactLabel, [
                {"id": uuid.uuid4(), "client_id": client_id, "contact_id": c, "kind": "tag",
                 "value": tag} for c in ids])
    async with transaction(bench.sessions) as session:  # as an import does when it ends
        await crud.refresh_registry_statistics(session)
    return tag


async def launch(bench: Bench, campaign_id: str, tag: str, count: int, **body: Any) -> float:
    """Launches the campaign to the registry's contacts with this tag; returns the seconds from
    the launch call until the launch has started every journey workflow."""
    started = time.perf_counter()
    response = await bench.http.post(f"/v1/campaigns/{campaign_id}/launch", headers=bench.auth,
                                     json={"selection": {"tags": [tag]}, **body})
    if response.status_code != 202:
        raise RuntimeError(f"launch failed: {response.status_code} {response.text[:500]}")

    async def progress() -> dict:
        return (await bench.http.get(f"/v1/campaigns/{campaign_id}/progress",
                                     headers=bench.auth)).json()["launch"]

    async def finished() -> bool:
        return (await progress())["finished_at"] is not None
    # Half an hour, or longer for a launch of more than 36,000 journeys (at 20/s).
    await until(finished, what=f"the launch of {count:,} journeys", timeout=max(1800, count / 20))
    elapsed = time.perf_counter() - started
    done = await progress()
    if done["started"] != count:
        raise RuntimeError(f"the launch started {done['started']} of {count:,} journeys")
    bench.shared["campaign_id"] = campaign_id
    bench.shared["launch"] = done
    return elapsed


async def launched_campaign(bench: Bench, count: int) -> None:
    """For a figure run on its own: raw workflows to compare with and a launched campaign."""
    await start_raw(bench, count)
    tag = await fill_registry(bench, count)
    await launch(bench, await create_campaign(bench), tag, count)


async def measured(bench: Bench, what: str, **body: Any) -> Row:
    """One launch of `contacts` journeys against as many raw starts before it and after it
    (once every invitation is out), each timed on its own."""
    count = bench.options.contacts
    async with raw_around(bench, count) as raw:
        tag = await fill_registry(bench, count)
        campaign_id = await create_campaign(bench)
        started = time.perf_counter()
        async with bench.cpu_seconds() as whole_cpu:
            async with bench.cpu_seconds() as ours_cpu:
                ours_seconds = await launch(bench, campaign_id, tag, count, **body)
            invited = "" if body else await every_invitation_sent(bench, campaign_id, count,
                                                                  started)
    history = await bench.temporal.get_workflow_handle(
        bench.shared["launch"]["id"]).fetch_history()
    return Row(
        f"journeys started/s ({count:,}-contact campaign, one launch call{what})",
        count / ours_seconds, raw.per_second, "/s", RAW_BASELINE.format(bench.options),
        Target("ratio", "≥", 0.8),
        note=f"ours {ours_seconds:.1f}s for {count:,} ({bench.shared['launch']['batches']} "
             f"batches of {bench.settings.launch_batch_size}, "
             f"{bench.settings.launch_starts_in_flight} starts in flight; last run's history "
             f"{len(history.events)} events); CPU ms per journey: {cpu_note(ours_cpu, count)}"
             + (invited and f"; {invited}, CPU ms per journey until then: "
                            f"{cpu_note(whole_cpu, count)}")
             + f"; {raw.note()}")


async def every_invitation_sent(bench: Bench, campaign_id: str, count: int,
                                started: float) -> str:
    """Waits until every journey of the launch has its invitation out (the journeys' own work,
    which the launch's figure counts only while the fan-out lasts); says when that was."""
    async def all_invited() -> bool:
        return await bench.count_journeys(campaign_id, "invited") >= count
    await until(all_invited, what=f"{count:,} invitations", timeout=max(1800, count / 20))
    return f"every invitation sent {time.perf_counter() - started:.1f}s after the launch call"


async def measure(bench: Bench) -> list[Row]:
    """Each journey sends its invitation as soon as it starts, while the fan-out goes on."""
    return [await measured(bench, "")]


async def measure_spread(bench: Bench) -> list[Row]:
    """The fan-out alone: the invitations are spread over the next day (`spread_over`), so
    each journey is started but takes its first step later. Run after the other figures: its
    journeys wait on."""
    return [await measured(bench, ", invitations spread over a day", spread_over="P1D")]
