"""Numbers and dates on the customer's page and in their SMS as their language writes them."""

import re

import pytest

from tests.helpers import Customer, unique_email


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
