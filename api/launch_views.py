"""A launch as the API and the `launch.*` webhooks show it, from its row and, while Temporal
knows it, its workflow's progress (kept apart from api.launches, which drives the workflows, so
that the launch's own activities can use it)."""

from api.schemas import LaunchOut
from core.contracts import LaunchProgress
from db.models import CampaignLaunch


def launch_out(launch: CampaignLaunch, progress: LaunchProgress | None) -> LaunchOut:
    """From the workflow's progress while it is known to Temporal, else from the row. A
    finished launch's count of cancelled journeys is the row's, written with its end: the
    workflow's progress takes it in a moment later."""
    known = {"id": launch.id, "number": launch.number, "trigger": launch.trigger,
             "selection": launch.selection, "spread_over": launch.spread_over,
             "created_at": launch.created_at, "finished_at": launch.finished_at,
             "cancelled_because": launch.cancelled_because}
    final = launch.journeys_cancelled if launch.finished_at is not None else None
    if progress is None:
        return LaunchOut(**known, state=launch.state, selected=launch.selected or 0,
                         started=launch.started or 0, skipped=launch.skipped or 0,
                         batches=None, journeys_cancelled=final)
    return LaunchOut(**known, state=progress.state, selected=progress.selected,
                     started=progress.started, skipped=progress.skipped,
                     batches=progress.batches, journeys_cancelled=progress.journeys_cancelled
                     if final is None else final)
