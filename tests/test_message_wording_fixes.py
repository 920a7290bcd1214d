"""Message wording, its preview and the branding that shapes it: what a client previews is
what customers are sent, and no setting changed later keeps a campaign's own wording from
being sent."""

from messaging.sms_encoding import measure
from tests.helpers import Tenant
from tests.test_channel_plans import contact, enrol, mobile_number, wait_for_sms


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


SMS_TEXT = ("{client_name}: please check that the number we have for you is still right. "
            "It takes a minute and helps us reach you when it matters")


async def test_the_sms_preview_counts_the_segments_the_sms_sent_takes(tenant: Tenant, settings):
    # Near a segment's end: with a sample link 37 characters short of a real one, the preview
    # said one segment where the SMS sent took two.
    campaign = await tenant.create_campaign(
        languages=["en"], consents=[], collect=["mobile"], channel_plan=[{"channel": "sms"}],
        messages={"sms_invitation": {"en": {"text": SMS_TEXT}}})
    preview = await tenant.ok("GET", f"{preview_path(campaign)}?kind=sms_invitation")
    number = mobile_number()
    await enrol(tenant, campaign["id"], await contact(tenant, mobile=number))
    sms = await wait_for_sms(settings, number)
    assert (len(preview["text"]), preview["segments"], preview["encoding"]) == (
        len(sms["text"]), sms["segments"], measure(sms["text"]).encoding)
    assert sms["segments"] == 2
