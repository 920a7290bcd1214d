"""Once a paused campaign is resumed (or archived), wakes its journeys whose invitation or
reminder the pause held back: each then sends it, or, archived, lets it go. Archived, the
journeys that have reached nobody (held, or waiting for a delayed start) are withdrawn first.

Started by the API (`campaign/<campaign id>/wake-held`) after the campaign's new status is
committed, so every journey it finds sees that status when it tries again."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.campaign_launch import CampaignLauncher
    from core.contracts import WakeHeldInput, WakeHeldResult


def wake_held_workflow_id(campaign_id: str) -> str:
    return f"campaign/{campaign_id}/wake-held"


@workflow.defn(name="WakeHeldJourneys")
class WakeHeldJourneysWorkflow:
    @workflow.run
    async def run(self, input: WakeHeldInput) -> WakeHeldResult:
        return await workflow.execute_activity_method(
            CampaignLauncher.wake_held_journeys, input,
            start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(seconds=30))
