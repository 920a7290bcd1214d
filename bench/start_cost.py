"""What a journey's start costs the Temporal server against a bare start, the start alone (no
worker polls either queue, so no workflow task runs): `python -m bench.start_cost [N]`.

A journey is started with what operators find it by in the Temporal UI (four search attributes
and a summary, `workflows.starts.start_options`) and its input; the raw baseline of the launch
figures starts a trivial workflow with none of that. Rounds alternate, on one dev server."""

import asyncio
import sys
import time
import uuid
from datetime import timedelta

import psutil

from bench.raw import RawInput, RawWorkflow
from core.contracts import JourneyInput, JourneyTimings
from db.models import Journey
from stack import local_temporal
from workflows.journey import JourneyWorkflow
from workflows.starts import start_options, workflow_id

IN_FLIGHT = 100  # as the launch figures' raw baseline
ROUNDS = 3
TIMINGS = JourneyTimings(reminder_interval=timedelta(days=7), max_reminders=2,
                         expires_after=timedelta(days=30),
                         verification_link_ttl=timedelta(days=3))


async def bare(client, index: int, queue: str) -> None:
    await client.start_workflow(RawWorkflow.run, RawInput(index),
                                id=f"bench-raw/{uuid.uuid4()}", task_queue=queue)


async def journey(client, index: int, queue: str) -> None:
    ids = {"client_id": uuid.uuid4(), "campaign_id": uuid.uuid4(), "contact_id": uuid.uuid4()}
    row = Journey(id=uuid.uuid4(), language="en",
                  workflow_id=workflow_id(ids["campaign_id"], ids["contact_id"]), **ids)
    await client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(journey_id=str(row.id), language="en", timings=TIMINGS,
                     **{name: str(value) for name, value in ids.items()}),
        **start_options(row, queue))


async def measure(client, server: psutil.Process, start, count: int) -> tuple[float, float, float]:
    """Server and client CPU milliseconds per start, and starts per second."""
    me, gate, queue = psutil.Process(), asyncio.Semaphore(IN_FLIGHT), f"nobody-{uuid.uuid4()}"

    async def one(index: int) -> None:
        async with gate:
            await start(client, index, queue)

    cpu = lambda p: sum(p.cpu_times()[:2])  # noqa: E731
    server_before, client_before, began = cpu(server), cpu(me), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    took = time.perf_counter() - began
    return ((cpu(server) - server_before) * 1000 / count,
            (cpu(me) - client_before) * 1000 / count, count / took)


async def main(count: int) -> None:
    async with local_temporal() as env:
        [server] = [p for p in psutil.Process().children(recursive=True)
                    if "temporal" in " ".join(p.cmdline())]
        totals: dict[str, list[float]] = {"bare": [0.0, 0.0, 0.0], "journey": [0.0, 0.0, 0.0]}
        print(f"{count} starts each way per round, {IN_FLIGHT} in flight, {ROUNDS} rounds")
        for round in range(1, ROUNDS + 1):
            for name, start in (("bare", bare), ("journey", journey)):
                figures = await measure(env.client, server, start, count)
                totals[name] = [t + f / ROUNDS for t, f in zip(totals[name], figures)]
                print(f"round {round} {name:8s} server {figures[0]:.2f} ms, "
                      f"client {figures[1]:.2f} ms per start, {figures[2]:.0f} starts/s")
        (bare_server, *_), (ours_server, *_) = totals["bare"], totals["journey"]
        print(f"mean: server {ours_server:.2f} ms per journey start against {bare_server:.2f} "
              f"per bare start ({ours_server / bare_server:.2f}×)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
