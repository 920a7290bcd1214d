"""What a customer waits for under `concurrency` simultaneous customers: opening the contact
page (against a bare FastAPI route served the same way) and submitting the verification page
(HTTP → Temporal update → answer, against a raw update round trip on a trivial workflow)."""

import uuid

from bench.figures.launch import launched_campaign
from bench.harness import (
    INVITATION,
    VERIFICATION,
    Bench,
    Latencies,
    Page,
    Row,
    Target,
    cpu_note,
    timed_concurrently,
    until,
    until_idle,
)
from bench.raw import AnswerInput, RawWorkflow


def latency_rows(what: str, ours: Latencies, raw: Latencies, baseline: str,
                 p50: Target | None, p95: Target | None, cpu: tuple[dict, dict]) -> list[Row]:
    requests = len(ours.seconds)
    note = (f"{requests:,} requests; CPU ms per request: ours {cpu_note(cpu[0], requests)}; "
            f"baseline {cpu_note(cpu[1], requests)}")
    return [Row(f"{what} p{p}", ours.percentile(p), raw.percentile(p), "ms", f"{baseline} p{p}",
                target, note=note if p == 50 else "")
            for p, target in ((50, p50), (95, p95))]


def check(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(message)


async def contact_page_opens(bench: Bench, journeys: list[uuid.UUID]) -> list[Row]:
    """Each request is a customer's first visit: the page also tells the journey it was opened."""
    tokens = [bench.link(j, INVITATION, "invitation") for j in journeys]
    pages: dict[str, Page] = {}

    async def ours(token: str) -> None:
        pages[token] = await bench.get_page(f"/c/{token}")

    async def bare(token: str) -> None:
        check((await bench.bare.get(f"/c/{token}")).status_code == 200, "bare route failed")

    concurrency = bench.options.concurrency
    async with bench.cpu_seconds() as raw_cpu:
        raw = await timed_concurrently(tokens, bare, concurrency)
    async with bench.cpu_seconds() as ours_cpu:
        measured = await timed_concurrently(tokens, ours, concurrency)
    failed = [p.status for p in pages.values() if p.status != 200 or not p.csrf]
    check(not failed, f"{len(failed)} contact pages failed: {failed[:5]}")
    bench.shared["contact_pages"] = pages
    rows = latency_rows("contact page GET, first visit", measured, raw, "bare FastAPI route GET",
                        Target("ratio", "≤", 2), Target("ratio", "≤", 2), (ours_cpu, raw_cpu))

    # A second visit only reads and renders: the journey already knows it was opened.
    async def all_opened() -> bool:
        return await bench.count_journeys(bench.shared["campaign_id"], "opened") >= len(tokens)
    await until(all_opened, what="the journeys to record their first visit")
    await until_idle(bench.worker_pid)
    async with bench.cpu_seconds() as again_cpu:
        again = await timed_concurrently(tokens, ours, concurrency)
    return rows + latency_rows("contact page GET, repeat visit", again, raw,
                               "bare FastAPI route GET", Target("ratio", "≤", 2),
                               Target("ratio", "≤", 2), (again_cpu, raw_cpu))


async def to_verification_pending(bench: Bench, journeys: list[uuid.UUID]) -> dict[str, Page]:
    """Customers enter their email (not measured); returns their open verification pages."""
    pages: dict[str, Page] = bench.shared["contact_pages"]

    async def submit(journey: uuid.UUID) -> None:
        token = bench.link(journey, INVITATION, "invitation")
        response = await bench.post_form(f"/c/{token}", pages[token],
                                         email=f"verified-{journey}@example.com", consent="terms")
        check(response.status_code == 303, f"submission failed: {response.status_code}")

    await timed_concurrently(journeys, submit, bench.options.concurrency)
    campaign_id = bench.shared["campaign_id"]

    async def all_pending() -> bool:
        pending = await bench.count_journeys(campaign_id, "verification_pending")
        return pending >= len(journeys)
    await until(all_pending, what="verification emails sent")
    verify_pages: dict[str, Page] = {}

    async def open_verification(journey: uuid.UUID) -> None:
        token = bench.link(journey, VERIFICATION, "verification-1")
        verify_pages[token] = page = await bench.get_page(f"/v/{token}")
        check(page.status == 200 and page.csrf is not None, f"verification page: {page.status}")

    await timed_concurrently(journeys, open_verification, bench.options.concurrency)
    return verify_pages


async def verification_submits(bench: Bench, journeys: list[uuid.UUID]) -> list[Row]:
    pages = await to_verification_pending(bench, journeys)
    answers: list[int] = []

    async def ours(token: str) -> None:
        response = await bench.post_form(f"/v/{token}", pages[token])
        answers.append(response.status_code)

    raw_ids = bench.shared["raw_workflow_ids"][: len(journeys)]

    async def raw_update(workflow_id: str) -> None:
        result = await bench.temporal.get_workflow_handle(workflow_id).execute_update(
            RawWorkflow.answer, AnswerInput(workflow_id))
        check(result.value == workflow_id, "raw update answered wrongly")

    concurrency = bench.options.concurrency
    await until_idle(bench.worker_pid)  # the verification emails are out
    async with bench.cpu_seconds() as raw_cpu:
        raw = await timed_concurrently(raw_ids, raw_update, concurrency)
    async with bench.cpu_seconds() as ours_cpu:
        measured = await timed_concurrently(list(pages), ours, concurrency)
    check(all(s == 200 for s in answers), f"verification submits failed: {set(answers)}")
    verified = await bench.count_journeys(bench.shared["campaign_id"], "verified")
    check(verified >= len(journeys), f"only {verified} of {len(journeys)} journeys verified")
    rows = latency_rows("verification submit (HTTP → update → answer)", measured, raw,
                        "raw Temporal update round trip", Target("ratio", "≤", 1.3), None,
                        (ours_cpu, raw_cpu))
    return rows + await behind_bare_http(bench, len(journeys), measured, ours_cpu)


async def behind_bare_http(bench: Bench, count: int, measured: Latencies,
                           ours_cpu: dict) -> list[Row]:
    """The same submits against the raw update behind a bare FastAPI form post: what the HTTP
    hop alone adds on these cores, which the raw round trip above leaves out. For reading the
    target's gap; no target of its own."""
    waiting = bench.shared["raw_workflow_ids"]
    if len(waiting) <= 2 * count:  # the last one is the history figure's
        return []
    raw_ids = waiting[count: 2 * count]

    async def bare_update(workflow_id: str) -> None:
        response = await bench.bare.post("/answer", data={"workflow_id": workflow_id})
        check(response.status_code == 200 and workflow_id in response.text,
              f"bare form post failed: {response.status_code}")

    async with bench.cpu_seconds() as bare_cpu:
        bare = await timed_concurrently(raw_ids, bare_update, bench.options.concurrency)
    return latency_rows("verification submit, against bare HTTP in front of the raw update",
                        measured, bare, "raw update behind a bare FastAPI form post", None, None,
                        (ours_cpu, bare_cpu))


async def measure(bench: Bench) -> list[Row]:
    samples = bench.options.samples
    if "campaign_id" not in bench.shared:  # run on its own (--only customer_pages)
        await launched_campaign(bench, max(samples, bench.options.contacts))
    campaign_id = bench.shared["campaign_id"]

    async def enough_invited() -> bool:
        return await bench.count_journeys(campaign_id, "invited") >= samples
    await until(enough_invited, what=f"{samples} invitations sent")
    # Measured on a stack at rest: the campaign's other invitations are sent first.
    await until_idle(bench.worker_pid)
    journeys = [j.id for j in await bench.journeys_in(campaign_id, "invited", samples)]
    rows = await contact_page_opens(bench, journeys)
    return rows + await verification_submits(bench, journeys)
