"""Numbers and dates on the customer's page and in their SMS as their language writes them."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from babel.dates import format_date

from tests.helpers import Customer, eventually, unique_email
from tests.test_channel_plans import contact, enrol, mobile_number, sms_to


@pytest.mark.parametrize(("language", "said", "shown"), [
    ("de", "Ihr Profil ist zu 50\u00a0% vollständig", "50\u00a0%"),
    ("nl", "Uw profiel is voor 50% compleet", "50%"),
    ("en", "Your profile is 50% complete", "50%")])
async def test_the_profile_completeness_is_written_as_the_language_writes_percentages(
        tenant, mailbox, http, language, said, shown):
    campaign = await tenant.create_campaign(languages=[language], default_language=language,
                                            consents=[])
    address = unique_email(f"percent-{language}")
    await tenant.enrol(campaign["id"], {"external_id": address, "email": address,
                                        "first_name": "Eva", "language": language})
    [invitation] = await mailbox.wait_for(address)
    customer = Customer(http)
    await customer.open(mailbox.link(invitation))
    # A name and an email address: half of the profile. German sets the sign apart (DIN 5008),
    # with a space that does not break the line.
    assert said in customer.page, re.findall(r'<div class="progress">.*?</div>', customer.page,
                                             re.S)
    assert f'value="50">{shown}</progress>' in customer.page


@pytest.mark.parametrize(("language", "wording"), [
    ("en", "Reminder from {client}: please check your contact details by {date}: "),
    ("nl", "Herinnering van {client}: controleer uiterlijk {date} uw contactgegevens: "),
    ("de", "Erinnerung von {client}: Bitte prüfen Sie Ihre Kontaktdaten bis zum {date}: ")])
async def test_the_sms_reminder_names_the_last_day_as_the_last_day_to_act(
        tenant, settings, language, wording):
    """The date is the link's last day: "before" it (or the Dutch "voor", also read "for")
    told the customer that day was too late already."""
    started = datetime.now(UTC)
    campaign = await tenant.create_campaign(
        languages=[language], default_language=language, consents=[], collect=["mobile"],
        expires_after="P10D", channel_plan=[{"channel": "sms", "max": 2, "after": "PT1S"}])
    number = mobile_number()
    await enrol(tenant, campaign["id"], await contact(tenant, mobile=number, language=language))

    async def reminder() -> dict | None:
        sent = sms_to(settings, number)
        return sent[1] if len(sent) > 1 else None
    text = (await eventually(reminder, what="the SMS reminder"))["text"]
    last_days = {format_date(started + timedelta(days=10) + slack, "long", locale=language)
                 for slack in (timedelta(0), timedelta(minutes=1))}
    assert any(text.startswith(wording.format(client=tenant.name, date=day))
               for day in last_days), text
