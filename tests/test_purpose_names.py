"""What a customer reads a consent purpose as: its name, which the client writes in its default
language, beside a legal text in that language; beside a text in the customer's language, that
text, rather than a name in a language the customer may not read."""

from tests.helpers import Customer
from tests.test_consent_ledger import link_to, send, setup_policies, verified_contact

DUTCH = "Stuur mij de maandelijkse nieuwsbrief."
ENGLISH = "Send me the monthly newsletter."


async def test_a_dutch_customer_reads_the_purpose_in_dutch_an_english_one_by_its_name(
        tenant, http, mailbox):
    await setup_policies(tenant)  # the purpose "newsletter", named "Newsletter"
    # The newsletter granted on a campaign that words it in English and Dutch.
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    await tenant.ok("PATCH", f"/v1/contacts/{contact_id}", {"language": "nl"})
    await send(tenant, contact_id, "newsletter", "Nieuws van december")
    newsletter = next(m for m in mailbox.to(address) if m.subject == "Nieuws van december")

    customer = Customer(http)
    preferences = link_to(newsletter, "/p/")
    await customer.open(preferences)
    assert '<html lang="nl">' in customer.page
    assert f'<legend class="legal-text">{DUTCH}</legend>' in customer.page, customer.page
    assert "Newsletter" not in customer.page

    unsubscribe = "".join(newsletter.headers["List-Unsubscribe"].split()).strip(
        "<>").removeprefix("http://testserver")
    asked = (await http.get(unsubscribe)).text
    assert (f"<p>Wilt u het volgende niet meer van {tenant.name} ontvangen via e-mail?</p>\n"
            f'<p class="legal-text">{DUTCH}</p>') in asked, asked
    done = (await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})).text
    assert f"U ontvangt het volgende niet meer van {tenant.name} via e-mail:" in done, done
    assert "Newsletter" not in asked + done

    # In the client's language the purpose has its name, and the text beneath it.
    await http.post(f"{preferences}/language", data={"language": "en",
                                                     "csrf_token": customer.csrf()})
    await customer.open(preferences)
    assert (f'<legend>Newsletter</legend>\n    <p class="legal-text">{ENGLISH}</p>'
            in customer.page), customer.page
