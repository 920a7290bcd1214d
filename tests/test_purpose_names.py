"""What a customer reads a consent purpose as: its name in the customer's language, where the
client gave one; else its name, which the client writes in its default language, beside a legal
text in that language; beside a text in the customer's language, that text, rather than a name
in a language the customer may not read."""

from tests.helpers import Customer
from tests.test_consent_ledger import link_to, send, setup_policies, verified_contact

DUTCH = "Stuur mij de maandelijkse nieuwsbrief."
ENGLISH = "Send me the monthly newsletter."
GERMAN = "Senden Sie mir den monatlichen Rundbrief."


def unsubscribe_link(mail) -> str:
    return "".join(mail.headers["List-Unsubscribe"].split()).strip(
        "<>").removeprefix("http://testserver")


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

    unsubscribe = unsubscribe_link(newsletter)
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


async def test_a_german_and_a_dutch_customer_read_the_names_the_client_gives_in_their_languages(
        tenant, http, mailbox):
    await setup_policies(tenant)  # "newsletter", named "Newsletter" and in no other language
    contact_id, address = await verified_contact(tenant, http, mailbox, ["terms", "newsletter"])
    await tenant.ok("PATCH", f"/v1/contacts/{contact_id}", {"language": "de"})
    await send(tenant, contact_id, "newsletter", "Neues im Dezember")
    newsletter = next(m for m in mailbox.to(address) if m.subject == "Neues im Dezember")
    preferences, unsubscribe = link_to(newsletter, "/p/"), unsubscribe_link(newsletter)
    customer = Customer(http)

    async def german_page_shows(name: str | None, text: str, text_language: str = "de") -> None:
        """The purpose headed by its name, else by its legal text."""
        await customer.open(preferences)
        assert '<html lang="de">' in customer.page
        marked = "" if text_language == "de" else f' lang="{text_language}"'
        shown = (f'<legend>{name}</legend>\n    <p class="legal-text"{marked}>{text}</p>' if name
                 else f'<legend class="legal-text"{marked}>{text}</legend>')
        assert shown in customer.page, customer.page

    # No German text nor name: the English name beside the English text, as before names.
    await german_page_shows("Newsletter", ENGLISH, "en")

    named = await tenant.ok("PATCH", "/v1/purposes/newsletter",
                            {"names": {"nl": "Nieuwsbrief", "de": "Rundbrief"}})
    assert (named["name"], named["names"]) == ("Newsletter", {"nl": "Nieuwsbrief",
                                                              "de": "Rundbrief"})
    [listed] = [p for p in await tenant.ok("GET", "/v1/purposes") if p["key"] == "newsletter"]
    assert listed["names"] == named["names"]
    await german_page_shows("Rundbrief", ENGLISH, "en")

    await tenant.ok("POST", "/v1/purposes/newsletter/legal-texts",
                    {"language": "de", "version": "3", "text": GERMAN}, 201)
    await german_page_shows("Rundbrief", GERMAN)
    asked = (await http.get(unsubscribe)).text
    assert f"<p>Möchten Sie „Rundbrief“ von {tenant.name} nicht mehr per E-Mail erhalten?</p>" \
        in asked, asked

    # The German name taken back: the German text names the purpose, as before names.
    await tenant.ok("PATCH", "/v1/purposes/newsletter", {"names": {"nl": "Nieuwsbrief"}})
    await german_page_shows(None, GERMAN)
    asked = (await http.get(unsubscribe)).text
    assert (f"<p>Möchten Sie Folgendes von {tenant.name} nicht mehr per E-Mail erhalten?</p>\n"
            f'<p class="legal-text">{GERMAN}</p>') in asked, asked
    assert "Newsletter" not in customer.page + asked and "Rundbrief<" not in customer.page

    # The customer switches to Dutch, which the unsubscribe link then speaks too.
    await http.post(f"{preferences}/language", data={"language": "nl",
                                                     "csrf_token": customer.csrf()})
    await customer.open(preferences)
    assert (f'<legend>Nieuwsbrief</legend>\n    <p class="legal-text">{DUTCH}</p>'
            in customer.page), customer.page
    asked = (await http.get(unsubscribe)).text
    assert f"<p>Wilt u van {tenant.name} geen ‘Nieuwsbrief’ meer ontvangen via e-mail?</p>" \
        in asked, asked
    done = (await http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})).text
    assert f"U ontvangt van {tenant.name} geen ‘Nieuwsbrief’ meer via e-mail." in done, done
    assert "Newsletter" not in customer.page + asked + done


async def test_a_purposes_names_are_in_languages_the_pages_speak_and_replaced_together(
        tenant, http):
    created = await tenant.ok("POST", "/v1/purposes", {
        "key": "offers", "name": "Offers", "kind": "direct_marketing",
        "names": {"nl": " Aanbiedingen ", "de-AT": "Angebote"}}, 201)
    assert created["names"] == {"nl": "Aanbiedingen", "de": "Angebote"}
    for method, path, body, field in [
        ("POST", "/v1/purposes", {"key": "news", "name": "News", "kind": "direct_marketing",
                                  "names": {"fr": "Nouvelles"}}, "names.fr"),
        ("PATCH", "/v1/purposes/offers", {"names": {"nl": "A" * 201}}, "names.nl"),
        ("PATCH", "/v1/purposes/offers", {"names": {"de": "Angebote\nund mehr"}}, "names.de"),
        ("PATCH", "/v1/purposes/offers", {"names": {"de": " "}}, "names.de"),
        ("PATCH", "/v1/purposes/offers", {"names": None}, "names"),
        ("PATCH", "/v1/purposes/offers", {"name": None}, "name"),
        ("PATCH", "/v1/purposes/offers", {"kind": "service"}, "kind"),
    ]:
        response = await tenant.http.request(method, path, json=body, headers=tenant.auth)
        assert response.status_code == 422, (body, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], response.text
    assert (await tenant.http.patch("/v1/purposes/lottery", json={"names": {}},
                                    headers=tenant.auth)).status_code == 404

    # A new name leaves the names per language; new names replace them all.
    renamed = await tenant.ok("PATCH", "/v1/purposes/offers", {"name": "Special offers"})
    assert (renamed["name"], renamed["names"]) == ("Special offers", created["names"])
    renamed = await tenant.ok("PATCH", "/v1/purposes/offers", {"names": {"de": "Angebote"}})
    assert (renamed["name"], renamed["names"]) == ("Special offers", {"de": "Angebote"})
    assert (await tenant.ok("PATCH", "/v1/purposes/offers", {"names": {}}))["names"] == {}

    schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
    for model in ("PurposeCreate", "PurposeUpdate", "PurposeOut"):
        assert "per language" in schemas[model]["properties"]["names"]["description"], model
