"""Journeys started per second for an N-contact campaign enrolled through the HTTP API, against
raw `client.start_workflow` calls per second of a trivial workflow on the same server."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.harness import Bench, Row, Target, cpu_note, until_idle
from bench.raw import RawInput, RawWorkflow

CAMPAIGN = {
    "name": "Bench: email check",
    "languages": ["en"],
    "consents": [{"key": "terms", "purpose": "service-communication", "channel": "email",
                  "mandatory": True,
                  "texts": {"en": {"text": "I agree to receive service emails.", "version": "1"}}}],
    # Long enough that no reminder or expiry fires during the run.
    "reminders": {"interval": "P3D", "max_count": 2},
    "expires_after": "P30D",
}


RAW_BASELINE = "raw start_workflow/s ({0.raw_in_flight} in flight, before and after ours)"


async def start_raw(bench: Bench, count: int) -> float:
    """Starts `count` trivial workflows, `raw_in_flight` at a time; returns the seconds taken."""
    gate = asyncio.Semaphore(bench.options.raw_in_flight)
    run = time.time_ns()

    async def start(index: int) -> str:
        async with gate:
            handle = await bench.temporal.start_workflow(
                RawWorkflow.run, RawInput(index), id=f"bench-raw/{run}/{index}",
                task_queue=bench.raw_task_queue)
            return handle.id

    started = time.perf_counter()
    ids = await asyncio.gather(*(start(i) for i in range(count)))
    bench.shared.setdefault("raw_workflow_ids", []).extend(ids)
    return time.perf_counter() - started


@dataclass
class RawStarts:
    """The raw baseline of a start figure: `count` raw starts timed just before ours and
    `count` more just after, on the same server. A fresh dev server started its first
    thousands of workflows about a quarter faster than the next thousands, which favoured
    whichever side ran first; the baseline counts both."""

    count: int
    before: float = 0.0  # seconds
    after: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return 2 * self.count / (self.before + self.after)

    def note(self) -> str:
        return (f"raw {self.before:.1f}s before ours and {self.after:.1f}s after, for "
                f"{self.count:,} each; CPU ms per raw start: {cpu_note(self.cpu, 2 * self.count)}")


@asynccontextmanager
async def raw_around(bench: Bench, count: int) -> AsyncIterator[RawStarts]:
    """Times the raw starts before the block and after it."""
    raw = RawStarts(count)
    raw.before = await timed_raw(bench, raw)
    yield raw
    raw.after = await timed_raw(bench, raw)


async def timed_raw(bench: Bench, raw: RawStarts) -> float:
    await until_idle(bench.worker_pid)  # nor may our worker's backlog slow the raw starts
    async with bench.cpu_seconds() as used:
        seconds = await start_raw(bench, raw.count)
    for role, spent in used.items():
        raw.cpu[role] = raw.cpu.get(role, 0.0) + spent
    await until_idle(bench.raw_worker_pid)  # the raw worker's backlog must not slow ours
    return seconds


async def create_campaign(bench: Bench) -> str:
    purpose = await bench.http.post("/v1/purposes", headers=bench.auth, json={
        "key": "service-communication", "name": "Service emails", "kind": "service"})
    if purpose.status_code not in (201, 409):  # 409: a figure run earlier registered it
        raise RuntimeError(f"purpose: {purpose.status_code} {purpose.text[:300]}")
    response = await bench.http.post("/v1/campaigns", json=CAMPAIGN, headers=bench.auth)
    response.raise_for_status()
    return response.json()["id"]


async def enrol(bench: Bench, count: int) -> float:
    """Creates the campaign and enrols `count` contacts in requests of `enrol_batch`; returns the
    seconds until every request has answered, i.e. until every journey workflow has started."""
    campaign_id = await create_campaign(bench)
    size = bench.options.enrol_batch
    batches = [[{"external_id": f"c{i}", "email": f"bench-{i}@example.com", "first_name": "Bench"}
                for i in range(start, min(start + size, count))]
               for start in range(0, count, size)]
    gate = asyncio.Semaphore(bench.options.enrol_in_flight)

    async def send(batch: list[dict]) -> None:
        async with gate:
            response = await bench.http.post(f"/v1/campaigns/{campaign_id}/contacts",
                                             json={"contacts": batch}, headers=bench.auth)
            if response.status_code != 202 or response.json()["accepted"] != len(batch):
                raise RuntimeError(f"enrolment failed: {response.status_code} {response.text[:500]}")

    started = time.perf_counter()
    await asyncio.gather(*(send(b) for b in batches))
    elapsed = time.perf_counter() - started
    bench.shared["campaign_id"] = campaign_id
    return elapsed


async def measure(bench: Bench) -> list[Row]:
    count = bench.options.contacts
    async with raw_around(bench, count) as raw, bench.cpu_seconds() as ours_cpu:
        ours_seconds = await enrol(bench, count)
    return [Row(
        f"journeys started/s ({count:,} contacts, HTTP requests of {bench.options.enrol_batch:,})",
        count / ours_seconds, raw.per_second, "/s", RAW_BASELINE.format(bench.options),
        Target("ratio", "≥", 0.8),
        note=f"ours {ours_seconds:.1f}s for {count:,}; CPU ms per journey: "
             f"{cpu_note(ours_cpu, count)}; {raw.note()}")]
