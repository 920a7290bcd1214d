"""The fault suite: a campaign of FAULT_CONTACTS (default 500) customers walked over HTTP while
a part of the stack fails under it; afterwards nothing may be lost or doubled."""

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.faults.crowd import Campaign, expect_unavailable, verify_nothing_lost
from tests.faults.harness import SUMMARY, FaultStack, PrivatePostgres, fault_stack
from tests.helpers import eventually

CONTACTS = int(os.environ.get("FAULT_CONTACTS", "500"))
# Each scenario as a whole, on top of the bounded waits inside it (a few minutes on a busy
# 2-core machine; well under this on an idle one).
SCENARIO_SECONDS = 600
POSTGRES_DOWN = 5
# How long the webhook receiver refuses connections: the fault itself, not a wait.
RECEIVER_DOWN = float(os.environ.get("FAULT_RECEIVER_DOWN_SECONDS", "10"))
# How long deliveries may take to start, and to resume after the outage, on a busy machine.
DELIVERY_WITHIN = 180


async def during_campaign(stack: FaultStack, fault: str, inject,  # noqa: ANN001
                          observed: Callable[[], Awaitable[str]] | None = None) -> None:
    """Walks the campaign while `inject(campaign)` breaks things, then checks and reports
    (with what `observed` says of the fault, if given)."""
    campaign = Campaign(stack, CONTACTS)
    async with asyncio.timeout(SCENARIO_SECONDS):
        walking = asyncio.create_task(campaign.run())
        try:
            await inject(campaign)
        except BaseException:
            walking.cancel()
            raise
        await walking
        line = await verify_nothing_lost(stack, campaign, fault)
    if observed is not None:
        line += f"; {await observed()}"
    if stack.worker.unasked_restarts or stack.api.unasked_restarts:
        line += (f"; died and restarted: worker x{stack.worker.unasked_restarts}, "
                 f"API x{stack.api.unasked_restarts}")
    SUMMARY.append(line)
    print(line)


async def test_worker_killed_at_random_moments():
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)

    async def inject(campaign: Campaign) -> None:
        for share in (0.1, 0.4, 0.7):
            await campaign.progress(share)
            # A random moment within the next stretch of the campaign, at any step of it.
            await asyncio.sleep(chance.uniform(0, 3))
            stack.worker.kill()
            await asyncio.sleep(chance.uniform(0.5, 3))
            await stack.restart_worker()

    async with fault_stack() as stack:
        await during_campaign(stack, f"worker SIGKILL x3 (seed {seed})", inject)
        assert stack.worker.unasked_restarts == 0


async def test_temporal_server_stopped_and_restarted():
    async def inject(campaign: Campaign) -> None:
        await campaign.progress(0.3)
        stack.temporal.stop()
        # The client enrols again meanwhile (safe to repeat): the journeys cannot be started.
        await expect_unavailable(stack, "POST", f"/v1/campaigns/{campaign.id}/contacts",
                                 json={"contacts": campaign.contacts[:1]}, headers=stack.auth)
        stack.temporal.start()

    async with fault_stack() as stack:
        await during_campaign(stack, "Temporal dev server stopped and restarted", inject)


@pytest.mark.skipif(PrivatePostgres.unavailable_reason() is not None,
                    reason=f"no private PostgreSQL cluster to restart: "
                           f"{PrivatePostgres.unavailable_reason()}")
async def test_postgres_restarted():
    async def inject(campaign: Campaign) -> None:
        await campaign.progress(0.3)
        assert stack.postgres is not None
        await asyncio.to_thread(stack.postgres.stop)
        down_at = time.monotonic()
        await expect_unavailable(stack, "GET", f"/v1/campaigns/{campaign.id}",
                                 headers=stack.auth)
        await expect_unavailable(stack, "GET", stack.mail.any_link("c"))
        await asyncio.sleep(max(0.0, POSTGRES_DOWN - (time.monotonic() - down_at)))
        await asyncio.to_thread(stack.postgres.start)

    async with fault_stack(private_postgres=True) as stack:
        await during_campaign(stack, f"PostgreSQL stopped {POSTGRES_DOWN:.0f} s and restarted",
                              inject)


async def test_webhook_receiver_refuses_connections_then_recovers():
    seen: dict[str, float] = {}

    async def refused_attempts() -> float:
        return await stack.count(
            "select count(*) from webhook_attempts a join webhook_deliveries d "
            "on d.id = a.delivery_id join webhook_endpoints e on e.id = d.endpoint_id "
            "where e.client_id = :client and a.status_code is null")

    async def observed() -> str:
        seen["refused"] = await refused_attempts()
        return (f"{seen['refused']:.0f} attempts refused, deliveries resumed "
                f"{seen['resumed']:.1f} s after it was back")

    async def receiving() -> bool:
        return len(stack.receiver.received) > 0

    async def inject(campaign: Campaign) -> None:
        await campaign.progress(0.2)
        # The outage must meet deliveries in flight: on a busy machine the endpoint's first
        # pass can come a minute after the first event.
        await eventually(receiving, timeout=DELIVERY_WITHIN, interval=0.2,
                         what="deliveries reaching the receiver before the outage")
        await stack.receiver.stop()
        down_at = time.monotonic()
        await asyncio.sleep(RECEIVER_DOWN)
        # Down until an attempt met it: on a busy machine no delivery may fall due within the
        # outage's seconds, and an outage nobody tried to reach proves nothing.
        await eventually(refused_attempts, timeout=DELIVERY_WITHIN, interval=0.2,
                         what="a delivery attempt refused during the outage")
        received = len(stack.receiver.received)
        await stack.receiver.start()
        back_at = time.monotonic()
        assert back_at - down_at >= RECEIVER_DOWN

        async def resumed() -> bool:
            return len(stack.receiver.received) > received
        # Due again within seconds (the retry schedule's longest gap is 2 s), but a pass waits
        # its turn among the campaign's activities on a busy worker.
        await eventually(resumed, timeout=DELIVERY_WITHIN, interval=0.2,
                         what="deliveries resuming after the outage")
        seen["resumed"] = time.monotonic() - back_at

    async with fault_stack() as stack:
        await during_campaign(
            stack, f"webhook receiver refusing connections {RECEIVER_DOWN:.0f} s", inject,
            observed)
        # Deliveries kept coming due during the outage (each refused attempt is logged), and
        # the endpoint was never given up on.
        assert seen["refused"] > 0
        endpoints = (await stack.http.get("/v1/webhook-endpoints", headers=stack.auth)).json()
        assert all(e["enabled"] and not e["failing"] for e in endpoints), endpoints
