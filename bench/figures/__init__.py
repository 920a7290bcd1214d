"""The figures, in the order they run. A figure is a module with `async def measure(bench) ->
list[Row]`; later ones may use what earlier ones left in `bench.shared` (the enrolled campaign,
the waiting raw workflows) and otherwise set it up themselves. Add a module here to add one."""

from bench.figures import customer_pages, enrolment, history, worker_memory

FIGURES = {
    "enrolment": enrolment.measure,
    # Before the customers walk: every journey is still waiting.
    "worker_memory": worker_memory.measure,
    "customer_pages": customer_pages.measure,
    "history": history.measure,
}
