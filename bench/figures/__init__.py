"""The figures, in the order they run. A figure is a module with `async def measure(bench) ->
list[Row]`; later ones may use what earlier ones left in `bench.shared` (the launched campaign,
the waiting raw workflows) and otherwise set it up themselves. Add a module here to add one."""

from bench.figures import customer_pages, enrolment, history, launch, worker_memory

FIGURES = {
    "launch": launch.measure,
    # Before the customers walk: every journey is still waiting.
    "worker_memory": worker_memory.measure,
    "customer_pages": customer_pages.measure,
    "history": history.measure,
    # Each adds N more waiting journeys, so they run after the figures above.
    "launch_spread": launch.measure_spread,
    "enrolment": enrolment.measure,
}
# Run only when named with --only: journeys started through the enrolment API, 1,000 per
# request (the launch figures measure the registry's way in).
OPT_IN = {"enrolment"}
