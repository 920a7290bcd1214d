"""Whom a launch selects: the registry contacts the campaign can reach on its channels, as
enrolment judges it — by SMS a contact known only by mobile, by letter one known only by postal
address, and, past a hard bounce, on the channel its journey then falls back to."""

from tests.helpers import Tenant, mark_bounced, unique_email
from tests.test_campaign_launch import finished_launch, launch, light_campaign
from tests.test_channel_plans import ADDRESS, contact, mobile_number, wait_for_sms


async def launched_to(tenant: Tenant, **campaign: object) -> set[str]:
    """The contacts a launch of a new campaign with these settings started journeys for."""
    campaign_id = await light_campaign(tenant, **campaign)
    await launch(tenant, campaign_id)
    ended = await finished_launch(tenant, campaign_id)
    journeys = (await tenant.ok("GET", f"/v1/campaigns/{campaign_id}/journeys"))["items"]
    assert ended["selected"] == ended["started"] == len(journeys), ended
    return {j["contact_id"] for j in journeys}


async def test_a_launch_selects_whom_the_campaigns_channels_reach(tenant: Tenant, sessions,
                                                                  settings):
    by_mobile = mobile_number()
    mobile_only = (await contact(tenant, mobile=by_mobile))["id"]
    email_only = (await contact(tenant, email=unique_email()))["id"]
    address_only = (await contact(tenant, address=ADDRESS))["id"]
    email_bounced = (await contact(tenant, email=unique_email(), mobile=mobile_number()))["id"]
    await mark_bounced(sessions, email_bounced, "email")
    mobile_bounced = (await contact(tenant, mobile=mobile_number()))["id"]
    await mark_bounced(sessions, mobile_bounced, "mobile")

    assert await launched_to(tenant, channel_plan=[{"channel": "sms"}]) == {
        mobile_only, email_bounced}
    await wait_for_sms(settings, by_mobile)
    assert await launched_to(tenant, channel_plan=[{"channel": "letter"}]) == {address_only}
    # By email, or by SMS where the email bounced, as the journey falls back.
    assert await launched_to(tenant) == {email_only, email_bounced}
