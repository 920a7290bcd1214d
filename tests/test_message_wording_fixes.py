"""Message wording, its preview and the branding that shapes it: what a client previews is
what customers are sent, and no setting changed later keeps a campaign's own wording from
being sent."""

from tests.helpers import Tenant


def preview_path(campaign: dict) -> str:
    return f"/v1/campaigns/{campaign['id']}/messages/preview"


async def test_a_campaign_with_a_channel_plan_previews_its_messages(tenant: Tenant):
    # Stored with the default reminders beside the plan, which used to be refused (a 500).
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], channel_plan=[{"channel": "sms"}])
    sms = await tenant.ok("GET", f"{preview_path(campaign)}?kind=sms_invitation")
    assert sms["channel"] == "sms" and sms["segments"] >= 1
    email = await tenant.ok("GET", f"{preview_path(campaign)}?kind=reminder")
    assert email["subject"].startswith(f"Reminder from {tenant.name}")
