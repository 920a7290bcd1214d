"""Worker RSS once every journey of the campaign waits for its customer, against a bare worker
holding as many trivial waiting workflows."""

import psutil

from bench.figures.launch import launched_campaign
from bench.harness import Bench, Row, Target, until, until_idle

MB = 1024 * 1024


async def measure(bench: Bench) -> list[Row]:
    count = bench.options.contacts
    if "campaign_id" not in bench.shared:  # run on its own (--only worker_memory)
        await launched_campaign(bench, count)
    campaign_id = bench.shared["campaign_id"]

    async def all_invited() -> bool:
        return await bench.count_journeys(campaign_id, "invited") >= count
    await until(all_invited, what=f"{count:,} invitations sent")
    await until_idle(bench.worker_pid)
    await until_idle(bench.raw_worker_pid)
    ours = psutil.Process(bench.worker_pid).memory_info().rss / MB
    raw = psutil.Process(bench.raw_worker_pid).memory_info().rss / MB
    waiting = len(bench.shared.get("raw_workflow_ids", []))
    return [Row(f"worker RSS, {count:,} journeys waiting", ours, raw, "MB",
                f"bare worker RSS, {waiting:,} trivial workflows waiting",
                Target("value", "≤", 300))]
